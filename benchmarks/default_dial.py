"""The operating point a user gets with no flags: build on one half, evaluate on the other.

Run: ``python benchmarks/default_dial.py [DATA] [--json PATH | --save] [--cache DIR]``
(``DATA`` defaults to ``../shared/data``; results go to ``PATH``, else a scratch folder;
``--save`` writes ``benchmarks/results/default_dial.json``; ``--cache`` keeps the vectors
of the data in ``DIR`` so a second run embeds nothing).

For MMLU and GSM8K (RouteLLM's per-query correctness of Mixtral-8x7B and GPT-4), the
file is split in two halves (identical prompts together). ``build_router`` with its
defaults builds a router from one half (tuning by cross-validation, then the dial set by
cross-validation for the default target: keep 95% of the strongest route's quality);
the other half is evaluated as ``langroute eval`` does. Both directions are run.
Reported per direction: the operating point on the evaluated half (share sent to GPT-4,
quality as a fraction of always-GPT-4, PGR), what the calibration expected (with its
spread over folds and its lower bound: the default aims one standard error inside the
target), APGR, the same router with its dial at the estimate itself
(``standard_errors=0``, the default before), and the old default (the same tuned router
at threshold 0.6).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from langroute import load_exemplars
from langroute.evaluation import evaluate
from langroute.evaluation.calibration import CalibrationResult, calibrate_by_cross_validation
from langroute.evaluation.datasets import assign_folds
from langroute.evaluation.tuning import build_router

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import STRONG, WEAK, embed_once, routellm_files, routellm_parser
from results_path import output_path, write_results

OLD_DEFAULT_THRESHOLD = 0.6


def _point(report: Any) -> dict[str, float]:
    scores = report.scores
    return {
        "strong_share": round(scores.strong_share, 4),
        "quality_fraction_of_strong": round(scores.quality / scores.strong_quality, 4),
        "pgr": round(scores.pgr, 4),
        "apgr": round(scores.apgr, 4),
    }


def run(name: str, path: Path, seed: int, cache_dir: Path | None = None) -> dict[str, Any]:
    """Both directions of one data set."""
    rows = load_exemplars(path)
    started = time.perf_counter()
    cache = embed_once(name, rows, cache_dir)
    embedded = time.perf_counter() - started
    halves = assign_folds([r.text for r in rows], 2, seed)
    directions = []
    for half in (0, 1):
        train = [r for r, h in zip(rows, halves) if h != half]
        test = [r for r, h in zip(rows, halves) if h == half]
        start = time.perf_counter()
        router = build_router(train, routes=[WEAK, STRONG], embedder=cache, mode="scores")
        calibration = CalibrationResult.model_validate(router.calibration)
        default = _point(evaluate(router, test))
        # the same router with the dial at the estimate itself (no standard error spared)
        estimate = calibrate_by_cross_validation(router, standard_errors=0.0)
        at_estimate = _point(evaluate(router, test)) | {
            "threshold": round(estimate.threshold, 4),
            "expected_strong_share": round(estimate.strong_share, 4),
            "expected_quality_fraction": estimate.quality_fraction_of_strong,
        }
        router.threshold = OLD_DEFAULT_THRESHOLD
        old = _point(evaluate(router, test))
        directions.append(
            {
                "built_on": len(train),
                "evaluated": len(test),
                "tuned": router.tuning["chosen"] if router.tuning else None,
                "threshold": round(calibration.threshold, 4),
                "expected": {
                    "strong_share": round(calibration.strong_share, 4),
                    "strong_share_sd": calibration.strong_share_sd,
                    "quality_fraction_of_strong": calibration.quality_fraction_of_strong,
                    "quality_fraction_sd": calibration.quality_fraction_sd,
                    "standard_errors": calibration.standard_errors,
                    "quality_lower_bound": calibration.quality_lower_bound,
                },
                "default": default,
                "at_the_estimate": at_estimate,
                "old_default_threshold_0.6": old,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(f"{name} half {half}: {json.dumps(directions[-1])}", flush=True)
    return {"embedding_seconds": round(embedded, 1), "directions": directions}


def main(argv: list[str] | None = None) -> int:
    """Run both data sets and write the JSON figures."""
    parser = routellm_parser(__doc__.splitlines()[0], "default_dial.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = {
        name: run(name, path, args.seed, args.cache)
        for name, path in routellm_files(parser, args).items()
    }
    write_results(
        output_path(args.json, args.save, "default_dial.json"),
        "default dial: build on one half with no flags, evaluate the other",
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
