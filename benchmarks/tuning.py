"""Tuned by default: ``langroute build`` / ``eval`` with no flags, before and after.

Run: ``python benchmarks/tuning.py [DATA] [--json benchmarks/results/tuning.json]``
(``DATA`` defaults to ``../shared/data``; the data is not shipped with langroute).

Two-halves protocol on RouteLLM's dev files (MMLU, GSM8K): each file is split in two
halves (identical prompts stay together); exemplars from one half route the other, and
the other way round; figures are the mean of both directions, contaminated rows left
out of the evaluation. For each direction:

* **before**: the router ``langroute eval EXEMPLARS EVALSET`` gave with no flags before
  tuning was the default (``k=10``, softmax weighting);
* **after**: the router ``langroute build`` now gives with no flags
  (:func:`langroute.evaluation.build_router`: cross-validation within the exemplar half
  only, over the default grid), with what the tuner chose, its validation APGR and the
  time tuning took.

With ``--holdout DIR`` holding an MT-Bench file (``mt_bench*.jsonl``), exemplars from
both dev files (MMLU + GSM8K) route MT-Bench first turns as well (out of distribution).

Every text is embedded once with the bundled all-MiniLM-L6-v2 (``--cache-dir`` keeps
the vectors on disk between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import STRONG, WEAK, console, embed_once
from results_path import add_output_options, output_path

from langroute import Exemplar, ExemplarRouter, load_exemplars
from langroute.evaluation import assign_folds, build_router, evaluate

TARGETS = {"mmlu": 0.665, "gsm8k": 0.62, "mt_bench": 0.68}


def _direction(train: list[Exemplar], test: list[Exemplar], embedder: Any) -> dict[str, Any]:
    before = ExemplarRouter(routes=[WEAK, STRONG], exemplars=train, embedder=embedder)
    started = time.perf_counter()
    after = build_router(train, routes=[WEAK, STRONG], embedder=embedder)
    build_seconds = time.perf_counter() - started
    tuning = after.tuning or {}
    before_report = evaluate(before, test)
    after_report = evaluate(after, test)
    return {
        "exemplars": len(train),
        "evaluated": after_report.n,
        "before": _figures(before_report),
        "after": _figures(after_report),
        "chosen": tuning.get("chosen"),
        "validation_apgr": tuning.get("validation"),
        "validation_apgr_untuned": tuning.get("untuned"),
        "trials": tuning.get("trials"),
        "tuning_seconds": tuning.get("seconds"),
        "build_seconds_vectors_cached": round(build_seconds, 2),
    }


def _figures(report: Any) -> dict[str, Any]:
    return {
        "apgr": report.apgr,
        "cpt50": report.cpt50,
        "cpt80": report.cpt80,
        "routellm_11pt_apgr": report.scores.routellm["apgr"],
    }


def two_halves(name: str, path: Path, cache_dir: Path | None, seed: int) -> dict[str, Any]:
    rows = load_exemplars(path)
    embedder = embed_once(name, rows, cache_dir)
    halves = assign_folds([r.text for r in rows], 2, seed)
    runs = []
    for half in (0, 1):
        train = [r for r, h in zip(rows, halves) if h != half]
        test = [r for r, h in zip(rows, halves) if h == half]
        run = _direction(train, test, embedder)
        runs.append(run)
        console.print(
            f"  {name} half {half}: before {run['before']['apgr']:.3f}, after "
            f"{run['after']['apgr']:.3f} (chose {run['chosen']}, tuning {run['tuning_seconds']}s)"
        )
    return {
        "protocol": "two halves, exemplars from one routing the other; mean of both",
        "before_apgr": float(np.mean([r["before"]["apgr"] for r in runs])),
        "after_apgr": float(np.mean([r["after"]["apgr"] for r in runs])),
        "target_apgr": TARGETS[name],
        "halves": runs,
    }


def out_of_distribution(data: Path, holdout: Path, cache_dir: Path | None) -> dict[str, Any] | None:
    found = sorted(holdout.rglob("mt_bench*.jsonl"))
    if not found:
        return None
    rows = [
        *load_exemplars(data / "routellm" / "mmlu.dev.jsonl"),
        *load_exemplars(data / "routellm" / "gsm8k.dev.jsonl"),
    ]
    test = load_exemplars(found[0])
    embedder = embed_once("mmlu+gsm8k+mt_bench", rows + test, cache_dir)
    run = _direction(rows, test, embedder)
    console.print(
        f"  MT-Bench: before {run['before']['apgr']:.3f}, after {run['after']['apgr']:.3f}"
    )
    return {"protocol": "exemplars: MMLU + GSM8K dev; evaluated on MT-Bench", **run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data", type=Path)
    add_output_options(parser, "tuning.json")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep vectors here")
    parser.add_argument("--holdout", type=Path, default=None, help="folder with mt_bench*.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="subset: mmlu gsm8k")
    args = parser.parse_args(argv)
    args.json = output_path(args.json, args.save, "tuning.json")
    if not (args.data / "routellm").is_dir():
        console.print(f"no RouteLLM data under {args.data} (pass the shared data folder)")
        return 2
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in args.only or ["gsm8k", "mmlu"]:
        path = args.data / "routellm" / f"{name}.dev.jsonl"
        if path.is_file():
            console.print(f"[bold]{name}[/bold]")
            results[name] = two_halves(name, path, args.cache_dir, args.seed)
    if args.holdout is not None:
        ood = out_of_distribution(args.data, args.holdout, args.cache_dir)
        if ood is not None:
            results["mt_bench"] = ood | {"target_apgr": TARGETS["mt_bench"]}
    if "mt_bench" not in results:
        results["mt_bench"] = {"skipped": "no MT-Bench file (pass --holdout DIR)"}
    payload = {
        "benchmark": "langroute tuned by default",
        "embedder": "sentence-transformers all-MiniLM-L6-v2 (bundled)",
        "seed": args.seed,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    console.print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
