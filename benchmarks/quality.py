"""Routing quality on real data, beside the published RouteLLM numbers.

Run: ``python benchmarks/quality.py [DATA] [--json benchmarks/results/quality.json]``
(``DATA`` defaults to ``../shared/data``; the data is not shipped with langroute).

* **MMLU, GSM8K** (RouteLLM's per-query correctness of Mixtral-8x7B and GPT-4): the
  file is split in two halves (identical prompts stay together). Exemplars from one
  half route the other, and the other way round; figures are the mean of both
  directions. The decision rule is tuned by 5-fold cross-validation *inside* the
  exemplar half only, so the evaluated half is never seen while tuning. A plain
  similarity-weighted kNN (``weighting="linear"``, ``k=200``) is shown beside it.
  APGR / CPT(50%) / CPT(80%) are read off the exact curve (ties as blocks) and by
  RouteLLM's 11-point protocol; contaminated rows are left out of the evaluation.
* **CLINC150**: 20% of the file held out (the ``oos`` rows included, never a route);
  ``k``/``temperature`` tuned by 4-fold CV on the rest; the out-of-distribution
  threshold (``min_similarity``) is chosen on an inner validation fold of the
  training part to maximise in-scope accuracy + out-of-scope recall.
* **Banking77**: 20% held out, ``k``/``temperature`` tuned by 4-fold CV on the rest.

Every text is embedded once with the bundled all-MiniLM-L6-v2; routers for folds are
built over cached vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from results_path import add_output_options, output_path
from rich.console import Console
from rich.table import Table

from langroute import Exemplar, ExemplarRouter, load_exemplars
from langroute.embedders import SentenceTransformerEmbedder
from langroute.evaluation import assign_folds, calibrate, evaluate, tune
from langroute.evaluation.datasets import PrecomputedEmbedder
from langroute.evaluation.plot import plot_report
from langroute.router import engine
from langroute.router.settings import RouterSettings

WEAK = "mixtral-8x7b-instruct-v0.1"
STRONG = "gpt-4-1106-preview"

PUBLISHED = {  # RouteLLM, arXiv 2406.18665: best router, augmented data (APGR, CPT50, CPT80)
    "mmlu": (0.603, 0.354, 0.716),
    "gsm8k": (0.622, 0.336, 0.633),
}
TARGETS = {"mmlu": 0.72, "gsm8k": 0.66, "banking77": 0.92, "clinc150": (0.90, 0.60)}


ROUTELLM_SETS = ("gsm8k", "mmlu")
"""RouteLLM's dev files under ``DATA/routellm``, smallest first."""


def routellm_parser(description: str, results_name: str) -> argparse.ArgumentParser:
    """The arguments every RouteLLM benchmark takes.

    ``DATA`` (default ``../shared/data``), ``--json``/``--save`` (see ``results_path``),
    ``--only`` one set and ``--cache`` (keep the vectors there).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/data"))
    add_output_options(parser, results_name)
    parser.add_argument("--only", choices=list(ROUTELLM_SETS), default=None)
    parser.add_argument("--cache", type=Path, default=None, help="keep the vectors here")
    return parser


def routellm_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Path]:
    """Set name -> dev file of the sets asked for (``--only``); a parser error without data."""
    folder = args.data / "routellm"
    if not folder.is_dir():
        parser.error(f"no RouteLLM data at {folder}")
    return {
        name: folder / f"{name}.dev.jsonl" for name in ROUTELLM_SETS if args.only in (None, name)
    }


def score_grid() -> list[dict[str, Any]]:
    """The decision rules tried on validation folds (similarity, loss and length evidence)."""
    weightings = [
        {"weighting": "linear"},
        {"weighting": "uniform"},
        {"weighting": "power", "power": 2.0},
    ]
    neighbourhoods = [
        {"k": 100},
        {"k": 200},
        {"k": 300},
        {"k": 300, "local_k": 50},
        {"k": 300, "local_k": 100},
    ]
    lengths = [{"length_weight": 0.0}] + [
        {"length_weight": w, "length_scale": s} for w in (0.5, 1.0) for s in (0.05, 0.1)
    ]
    return [
        {**a, **b, "loss_weight": loss, **c}
        for a in weightings
        for b in neighbourhoods
        for loss in (0.75, 1.0)
        for c in lengths
    ]


SELECT = os.environ.get("LANGROUTE_SELECT", "best")  # or "one_se"
PLAIN_KNN = {"k": 200, "weighting": "linear"}
INTENT_GRID: dict[str, list[Any]] = {
    "k": [10, 20, 50],
    "weighting": ["softmax"],
    "temperature": [0.02, 0.03, 0.05],
}
NO_REJECTION = {"min_similarity": -1.0, "min_margin": 0.0}
REJECTION_BUDGET = 0.015  # in-scope accuracy we accept to lose for rejecting out-of-scope

console = Console(width=150)


def embed_once(name: str, rows: list[Exemplar], cache_dir: Path | None) -> PrecomputedEmbedder:
    """Embed every (prepared) text once; optionally keep the vectors on disk."""
    embedder = SentenceTransformerEmbedder()
    settings = RouterSettings(routes=["x"])
    texts = list(dict.fromkeys(settings.prepare(r.text)[0] for r in rows))
    if cache_dir is not None:
        digest = hashlib.sha256(
            ("\x00".join(texts) + embedder.fingerprint).encode("utf-8")
        ).hexdigest()[:16]
        path = cache_dir / f"{name}-{digest}.npy"
        if path.is_file():
            return PrecomputedEmbedder(embedder, texts, np.load(path))
    start = time.perf_counter()
    cache = PrecomputedEmbedder(embedder, texts, show_progress=True)
    console.print(f"  embedded {len(texts)} {name} texts in {time.perf_counter() - start:.0f}s")
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, cache.embed_documents(texts))
    return cache


def scored_benchmark(
    name: str, path: Path, cache_dir: Path | None, seed: int, plot_dir: Path | None = None
) -> dict[str, Any]:
    rows = load_exemplars(path)
    embedder = embed_once(name, rows, cache_dir)
    halves = assign_folds([r.text for r in rows], 2, seed)
    runs = []
    for half in (0, 1):
        train = [r for r, h in zip(rows, halves) if h != half]
        test = [r for r, h in zip(rows, halves) if h == half]
        start = time.perf_counter()
        tuning = tune(
            train,
            score_grid(),
            embedder=embedder,
            weak=WEAK,
            strong=STRONG,
            folds=5,
            seed=seed,
            repeats=2,
            base={"mode": "scores"},
        )
        chosen = tuning.simplest if SELECT == "one_se" else tuning.best
        best = {k: v for k, v in chosen.items() if k not in ("apgr", "apgr_sd")}
        tuned_router = ExemplarRouter(
            routes=[WEAK, STRONG], exemplars=train, embedder=embedder, mode="scores", **best
        )
        tuned = evaluate(tuned_router, test)
        if half == 0 and plot_dir is not None:
            # Illustration only (APGR and CPT do not depend on the dial): calibrate the
            # dial to 30% strong calls on a quarter of the evaluated half, then draw.
            calibrate(tuned_router, test[::4], target_strong_share=0.3)
            shown = evaluate(tuned_router, test)
            plot_report(
                shown,
                plot_dir / f"quality_{name}.png",
                title=f"{name.upper()}: langroute (APGR {shown.apgr:.3f}) vs random and oracle",
            )
        plain_router = ExemplarRouter(
            routes=[WEAK, STRONG], exemplars=train, embedder=embedder, mode="scores", **PLAIN_KNN
        )
        plain = evaluate(plain_router, test)
        runs.append(
            {
                "exemplars": len(train),
                "evaluated": tuned.n,
                "settings": best,
                "validation_apgr": chosen["apgr"],
                "validation_apgr_best": tuning.best["apgr"],
                "tuned": _scored_figures(tuned),
                "plain_knn": _scored_figures(plain),
                "random": _baseline(tuned, "random"),
                "oracle": _baseline(tuned, "oracle"),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        console.print(
            f"  {name} half {half}: tuned APGR {tuned.apgr:.3f} ({best}), "
            f"plain kNN {plain.apgr:.3f}"
        )
    return {
        "protocol": "two halves, exemplars from one routing the other; mean of both",
        "apgr": _mean(runs, "tuned", "apgr"),
        "cpt50": _mean(runs, "tuned", "cpt50"),
        "cpt80": _mean(runs, "tuned", "cpt80"),
        "routellm_11pt": {
            key: _mean_nested(runs, "tuned", "routellm", key) for key in ("apgr", "cpt50", "cpt80")
        },
        "plain_knn": {key: _mean(runs, "plain_knn", key) for key in ("apgr", "cpt50", "cpt80")},
        "random": {key: _mean(runs, "random", key) for key in ("apgr", "cpt50", "cpt80")},
        "oracle": {key: _mean(runs, "oracle", key) for key in ("apgr", "cpt50", "cpt80")},
        "published_routellm": dict(zip(("apgr", "cpt50", "cpt80"), PUBLISHED[name])),
        "target_apgr": TARGETS[name],
        "halves": runs,
    }


def holdout_benchmark(
    name: str, dev: Path, holdout: Path, cache_dir: Path | None, seed: int
) -> dict[str, Any]:
    """Exemplars: the whole dev file, rule tuned by CV on it; evaluated on a holdout file."""
    rows = load_exemplars(dev)
    held = load_exemplars(holdout)
    embedder = embed_once(f"{name}-dev+holdout", rows + held, cache_dir)
    tuning = tune(
        rows,
        score_grid(),
        embedder=embedder,
        weak=WEAK,
        strong=STRONG,
        folds=5,
        seed=seed,
        repeats=2,
        base={"mode": "scores"},
    )
    best = {k: v for k, v in tuning.best.items() if k not in ("apgr", "apgr_sd")}
    router = ExemplarRouter(
        routes=[WEAK, STRONG], exemplars=rows, embedder=embedder, mode="scores", **best
    )
    report = evaluate(router, held)
    plain = evaluate(
        ExemplarRouter(
            routes=[WEAK, STRONG], exemplars=rows, embedder=embedder, mode="scores", **PLAIN_KNN
        ),
        held,
    )
    console.print(f"  {name} holdout: APGR {report.apgr:.3f} ({best}), plain {plain.apgr:.3f}")
    return {
        "protocol": "exemplars: all of dev; rule tuned by 5-fold CV on dev; evaluated on holdout",
        "holdout_file": str(holdout),
        "settings": best,
        "validation_apgr": tuning.best["apgr"],
        "tuned": _scored_figures(report),
        "plain_knn": _scored_figures(plain),
        "random": _baseline(report, "random"),
        "oracle": _baseline(report, "oracle"),
        "evaluated": report.n,
    }


def _scored_figures(report: Any) -> dict[str, Any]:
    scores = report.scores
    return {
        "apgr": scores.apgr,
        "cpt50": scores.cpt50,
        "cpt80": scores.cpt80,
        "share_for_95": scores.share_for_95,
        "max_pgr": scores.max_pgr,
        "routellm": scores.routellm,
    }


def _baseline(report: Any, prefix: str) -> dict[str, Any]:
    for baseline in report.baselines:
        if baseline.name.startswith(prefix):
            return {"apgr": baseline.apgr, "cpt50": baseline.cpt50, "cpt80": baseline.cpt80}
    return {}


def _mean(runs: list[dict[str, Any]], part: str, key: str) -> float | None:
    values = [run[part].get(key) for run in runs]
    if any(v is None for v in values):
        return None
    return float(np.mean(values))


def _mean_nested(runs: list[dict[str, Any]], part: str, sub: str, key: str) -> float:
    return float(np.mean([run[part][sub][key] for run in runs]))


def intent_benchmark(
    name: str, path: Path, cache_dir: Path | None, seed: int, out_of_scope: str | None
) -> dict[str, Any]:
    rows = load_exemplars(path)
    embedder = embed_once(name, rows, cache_dir)
    folds = assign_folds([r.text for r in rows], 5, seed)
    train = [r for r, f in zip(rows, folds) if f != 0]
    test = [r for r, f in zip(rows, folds) if f == 0]
    in_scope = [r for r in train if r.route != out_of_scope]
    routes = list(dict.fromkeys(r.route for r in in_scope if r.route is not None))
    start = time.perf_counter()
    oos = [out_of_scope] if out_of_scope else []
    tuning = tune(
        train,
        INTENT_GRID,
        routes=routes,
        embedder=embedder,
        folds=4,
        seed=seed,
        out_of_scope=oos,
        base={"rule": "argmax", **NO_REJECTION},
    )
    best = {key: tuning.best[key] for key in INTENT_GRID}
    settings: dict[str, Any] = {"rule": "argmax", **NO_REJECTION, **best}
    threshold_choice = None
    if out_of_scope:
        threshold_choice = choose_ood_threshold(
            train, routes, embedder, settings, out_of_scope, seed
        )
        settings["min_similarity"] = threshold_choice["min_similarity"]
    router = ExemplarRouter(routes=routes, exemplars=in_scope, embedder=embedder, **settings)
    report = evaluate(router, test)
    labels = report.labels
    assert labels is not None
    result: dict[str, Any] = {
        "protocol": "20% held out; settings tuned on the other 80% only",
        "accuracy": labels.accuracy,
        "exemplars": len(in_scope),
        "evaluated": labels.n,
        "settings": settings,
        "validation_accuracy": tuning.best["accuracy"],
        "escalation_rate": labels.escalation_rate,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if out_of_scope:
        # The threshold rule never looks at out-of-scope rows and they are never
        # exemplars, so every one of them in the file is a fair test of rejection.
        every_oos = [r.text for r in rows if r.route == out_of_scope]
        rejected = [d.escalated for d in router.route_batch(every_oos)]
        result.update(
            in_scope_accuracy=labels.in_scope_accuracy,
            oos_recall=labels.oos_recall,
            out_of_scope_rows=labels.out_of_scope,
            oos_recall_all_rows=float(np.mean(rejected)),
            out_of_scope_rows_all=len(every_oos),
            ood_threshold_choice=threshold_choice,
        )
    result["target"] = TARGETS[name]
    console.print(f"  {name}: accuracy {labels.accuracy:.4f} ({settings})")
    return result


def choose_ood_threshold(
    train: list[Exemplar],
    routes: list[str],
    embedder: PrecomputedEmbedder,
    settings: dict[str, Any],
    out_of_scope: str,
    seed: int,
    budget: float = REJECTION_BUDGET,
) -> dict[str, Any]:
    """Pick ``min_similarity`` on an inner validation fold of the training part only.

    The highest threshold whose in-scope accuracy on the validation fold stays within
    ``budget`` of the accuracy without rejection: out-of-scope rows are not needed to
    choose it (their recall on the validation fold is reported for reference).
    """
    inner = assign_folds([r.text for r in train], 4, seed + 1)
    fit = [r for r, f in zip(train, inner) if f != 0 and r.route != out_of_scope]
    val = [r for r, f in zip(train, inner) if f == 0]
    router = ExemplarRouter(routes=routes, exemplars=fit, embedder=embedder, **settings)
    nb = router.neighbours([r.text for r in val])
    is_oos = np.array([r.route == out_of_scope for r in val])
    expected = np.array([routes.index(r.route) if not o else -1 for r, o in zip(val, is_oos)])
    trials = []
    for threshold in np.round(np.arange(-1.0, 0.90, 0.01), 2):
        trial = router.settings.model_copy(update={"min_similarity": float(threshold)})
        _, choice = engine.weigh_and_choose(nb, trial, router.mode)
        routed, escalated = choice.route_index, choice.escalated
        in_scope_acc = float(((routed == expected) & ~escalated)[~is_oos].mean())
        recall = float(escalated[is_oos].mean()) if is_oos.any() else 0.0
        trials.append((float(threshold), in_scope_acc, recall))
    floor = trials[0][1] - budget
    threshold, in_scope_acc, recall = max(t for t in trials if t[1] >= floor)
    return {
        "rule": f"highest threshold losing <= {budget:.1%} in-scope validation accuracy",
        "min_similarity": threshold,
        "validation_in_scope_accuracy": in_scope_acc,
        "validation_in_scope_accuracy_without_rejection": trials[0][1],
        "validation_oos_recall": recall,
        "validation_oos_rows": int(is_oos.sum()),
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def print_table(results: dict[str, Any]) -> None:
    table = Table(title="langroute routing quality (bundled all-MiniLM-L6-v2, exemplars only)")
    for column in ("data", "router", "APGR", "CPT(50%)", "CPT(80%)", "APGR 11-pt", "target"):
        table.add_column(column, justify="left" if column in ("data", "router") else "right")
    for name in ("mmlu", "gsm8k"):
        if name not in results:
            continue
        r = results[name]
        settings = r["halves"][0]["settings"]
        label = ", ".join(f"{k}={v}" for k, v in settings.items())
        table.add_row(
            name.upper(),
            f"langroute, tuned per half (half 0: {label})",
            _num(r["apgr"]),
            _pct(r["cpt50"]),
            _pct(r["cpt80"]),
            _num(r["routellm_11pt"]["apgr"]),
            f">= {r['target_apgr']}",
            style="bold",
        )
        if "holdout" in r:
            h = r["holdout"]["tuned"]
            table.add_row(
                "",
                "langroute, exemplars = all dev, on the holdout file",
                _num(h["apgr"]),
                _pct(h["cpt50"]),
                _pct(h["cpt80"]),
                _num(h["routellm"]["apgr"]),
                "",
                style="bold",
            )
        p = r["plain_knn"]
        table.add_row("", "plain kNN (linear, k=200)", _num(p["apgr"]), _pct(p["cpt50"]),
                      _pct(p["cpt80"]), "", "")  # fmt: skip
        pub = r["published_routellm"]
        table.add_row("", "RouteLLM published (best)", _num(pub["apgr"]), _pct(pub["cpt50"]),
                      _pct(pub["cpt80"]), "", "")  # fmt: skip
        rnd = r["random"]
        table.add_row("", "random (10 seeds)", _num(rnd["apgr"]), _pct(rnd["cpt50"]),
                      _pct(rnd["cpt80"]), "", "")  # fmt: skip
        orc = r["oracle"]
        table.add_row("", "oracle", _num(orc["apgr"]), _pct(orc["cpt50"]), _pct(orc["cpt80"]),
                      "", "")  # fmt: skip
    console.print(table)
    intents = Table(title="Intent routing (argmax over labels)")
    for column in ("data", "accuracy", "in-scope acc", "oos recall", "settings", "target"):
        intents.add_column(column)
    if "clinc150" in results:
        r = results["clinc150"]
        intents.add_row(
            "CLINC150",
            _pct(r["accuracy"]),
            _pct(r["in_scope_accuracy"]),
            f"{_pct(r['oos_recall'])} of {r['out_of_scope_rows']} held out; "
            f"{_pct(r['oos_recall_all_rows'])} of all {r['out_of_scope_rows_all']}",
            _settings_label(r["settings"]),
            ">= 90% in-scope, >= 60% oos",
        )
    if "banking77" in results:
        r = results["banking77"]
        intents.add_row(
            "Banking77", _pct(r["accuracy"]), "", "", _settings_label(r["settings"]), ">= 92%"
        )
    console.print(intents)


def _settings_label(settings: dict[str, Any]) -> str:
    keys = ("k", "weighting", "temperature", "min_similarity")
    return ", ".join(f"{k}={settings[k]}" for k in keys if k in settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data", type=Path)
    add_output_options(parser, "quality.json")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep vectors here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--holdout",
        type=Path,
        default=None,
        help="folder with RouteLLM holdout files (mmlu*.jsonl, gsm8k*.jsonl): also tune on "
        "all of dev and evaluate there",
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="subset: mmlu gsm8k clinc150 banking77"
    )
    args = parser.parse_args(argv)
    args.json = output_path(args.json, args.save, "quality.json")
    data: Path = args.data
    if not data.is_dir():
        console.print(f"[red]no data at {data}[/red] (pass the shared data folder)")
        return 2
    wanted = set(args.only or ["mmlu", "gsm8k", "clinc150", "banking77"])
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in ("gsm8k", "mmlu"):
        path = data / "routellm" / f"{name}.dev.jsonl"
        if name in wanted and path.is_file():
            console.print(f"[bold]{name}[/bold]")
            results[name] = scored_benchmark(
                name, path, args.cache_dir, args.seed, plot_dir=args.json.parent
            )
            if args.holdout is not None:
                found = sorted(
                    p for p in args.holdout.rglob(f"{name}*.jsonl") if p.resolve() != path.resolve()
                )
                if found:
                    results[name]["holdout"] = holdout_benchmark(
                        name, path, found[0], args.cache_dir, args.seed
                    )
    intents = {"clinc150": "oos", "banking77": None}
    for name, oos in intents.items():
        path = data / "intents" / f"{name}.train.jsonl"
        if name in wanted and path.is_file():
            console.print(f"[bold]{name}[/bold]")
            results[name] = intent_benchmark(name, path, args.cache_dir, args.seed, oos)
    print_table(results)
    payload = {
        "benchmark": "langroute quality",
        "embedder": "sentence-transformers all-MiniLM-L6-v2 (bundled)",
        "seed": args.seed,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    console.print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
