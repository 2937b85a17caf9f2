"""Does the tuned figure predict unseen data? The best-mean rule against the one-SE rule.

Run: ``python benchmarks/tuning_rule.py [DATA] [--json PATH | --save] [--only SET]
[--cache DIR]`` (``DATA`` defaults to ``../shared/data``; results go to ``PATH``, else a
scratch folder; ``--save`` writes ``benchmarks/results/tuning_rule.json``; ``--cache``
keeps the vectors there).

RouteLLM's dev files (MMLU, GSM8K) are split in two halves; a router is tuned by
cross-validation within one half (:func:`langroute.evaluation.tuning.tune_router`, two
5-fold splits) with each selection rule, then evaluated on the other half. Reported per
direction and rule: the validation APGR with its spread over folds, the APGR on the
unseen half, and whether the unseen figure lies within validation ± one standard deviation.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import STRONG, WEAK, embed_once, routellm_files, routellm_parser
from results_path import output_path, write_results

from langroute import ExemplarRouter, load_exemplars
from langroute.evaluation import assign_folds, evaluate
from langroute.evaluation.tuning import tune_router

RULES = ("best", "simplest")


def run(name: str, path: Path, seed: int, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Both directions of one data set, with each rule."""
    rows = load_exemplars(path)
    embedder = embed_once(name, rows, cache_dir)
    halves = assign_folds([r.text for r in rows], 2, seed)
    out = []
    for half in (0, 1):
        train = [r for r, h in zip(rows, halves) if h != half]
        test = [r for r, h in zip(rows, halves) if h == half]
        for rule in RULES:
            router = ExemplarRouter(
                routes=[WEAK, STRONG], exemplars=train, embedder=embedder, mode="scores"
            )
            record = tune_router(router, seed=seed, select=rule)
            unseen = evaluate(router, test).apgr
            entry = {
                "data": name,
                "half": half,
                "rule": rule,
                "chosen": record.chosen,
                "validation_apgr": round(record.validation, 4),
                "validation_sd": round(record.validation_sd, 4),
                "unseen_apgr": round(unseen, 4),
                "within_one_sd": abs(unseen - record.validation) <= record.validation_sd,
            }
            out.append(entry)
            print(json.dumps(entry), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both data sets and write the JSON figures."""
    parser = routellm_parser(__doc__.splitlines()[0], "tuning_rule.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = [
        result
        for name, path in routellm_files(parser, args).items()
        for result in run(name, path, args.seed, args.cache)
    ]
    write_results(
        output_path(args.json, args.save, "tuning_rule.json"),
        "tuning rule: validation APGR against the unseen half",
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
