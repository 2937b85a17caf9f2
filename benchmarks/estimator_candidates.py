"""Other ways to turn neighbours into a gain estimate, against the tuned default (APGR).

Run: ``python benchmarks/estimator_candidates.py [DATA] [--json PATH | --save] [--cache DIR]``
(as ``default_dial.py``; ``--save`` writes ``benchmarks/results/estimator_candidates.json``).

RouteLLM's dev files (MMLU, GSM8K) are split in two halves as in ``default_dial.py``.
Within the build half, every candidate is cross-validated (two 5-fold splits, as the
tuner does); each is then scored once on the other half. Candidates, each replayed over
one exact neighbour search per fold:

* ``tuned``: the settings :func:`~langroute.evaluation.tuning.tune_router` chooses on
  the build half (the default router's ranking);
* ``shrink``: the tuned estimate shrunk toward the build half's mean gain with a prior
  worth ``alpha`` neighbours at similarity 1 (empirical-Bayes shrinkage);
* sharper similarity kernels (``power`` 8; ``softmax`` at temperature 0.05 or 0.1, the
  kind of kernel RouteLLM's similarity-weighted ranking router uses), ``k`` 200 or 500;
* ``ridge``: a ridge regression of the gain on the query vector (for one pair of models
  RouteLLM's matrix-factorisation router is a linear function of the embedding), alone
  or averaged with the tuned estimate (weight ``beta``).

Reported per direction and candidate: the cross-validated APGR (mean and spread over
folds) and the APGR on the other half; and which candidate the cross-validation would
have picked, with its figure on the other half.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import STRONG, WEAK, embed_once, routellm_files, routellm_parser
from results_path import output_path, write_results

from langroute import ExemplarRouter, load_exemplars
from langroute.evaluation.datasets import assign_folds, is_contaminated
from langroute.evaluation.metrics import cost_quality_curve
from langroute.evaluation.tuning import tune_router
from langroute.router import engine

DEPTH = 500


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, float]:
    mean = x.mean(axis=0)
    centred = x - mean
    gram = centred.T @ centred + penalty * np.eye(x.shape[1])
    return mean, np.linalg.solve(gram, centred.T @ (y - y.mean())), float(y.mean())


def candidates(tuned: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> recipe; simple ones first."""
    out: dict[str, dict[str, Any]] = {"tuned": {"settings": tuned}}
    for alpha in (1.0, 5.0, 20.0):
        out[f"tuned, shrink alpha={alpha:g}"] = {"settings": tuned, "shrink": alpha}
    kernels = {
        "power 2": {"weighting": "power", "power": 2.0},
        "power 8": {"weighting": "power", "power": 8.0},
        "softmax 0.1": {"weighting": "softmax", "temperature": 0.1},
        "softmax 0.05": {"weighting": "softmax", "temperature": 0.05},
    }
    for k in (200, 500):
        for name, kernel in kernels.items():
            out[f"k={k}, {name}"] = {"settings": {"k": k, **kernel}}
    for penalty in (3.0, 10.0, 30.0):
        out[f"ridge {penalty:g}"] = {"ridge": penalty, "beta": None}
        for beta in (0.5, 1.0):
            out[f"tuned + {beta:g} ridge {penalty:g}"] = {
                "settings": tuned,
                "ridge": penalty,
                "beta": beta,
            }
    return out


def scores_of(
    recipe: dict[str, Any],
    nb: engine.Neighbourhood,
    routes: list[str],
    train_vectors: np.ndarray,
    train_gain: np.ndarray,
    test_vectors: np.ndarray,
) -> np.ndarray:
    """The escalation score of each test query under one recipe."""
    z = np.zeros(len(nb))
    if "settings" in recipe:
        from langroute.router.settings import RouterSettings

        settings = RouterSettings(routes=routes, mode="scores", **recipe["settings"])
        z = engine.weigh(nb, settings, "scores").escalation - 0.5
        if "shrink" in recipe:  # undo the mean, redo it with a prior at the global mean
            cut = nb.head(settings.k)
            weights = np.clip(cut.sims, 0.0, None) ** settings.power
            total = weights.sum(axis=1)
            z = (z * total + recipe["shrink"] * train_gain.mean()) / (total + recipe["shrink"])
    if "ridge" in recipe:
        mean, beta, intercept = _ridge(train_vectors, train_gain, recipe["ridge"])
        linear = (test_vectors - mean) @ beta + intercept
        z = (
            linear
            if recipe["beta"] is None
            else (z + recipe["beta"] * linear) / (1 + recipe["beta"])
        )
    return z


def run(name: str, path: Path, seed: int, cache_dir: Path | None) -> list[dict[str, Any]]:
    """Both directions of one data set."""
    rows = load_exemplars(path)
    cache = embed_once(name, rows, cache_dir)
    routes = [WEAK, STRONG]
    halves = assign_folds([r.text for r in rows], 2, seed)
    out = []
    for half in (0, 1):
        build = [r for r, h in zip(rows, halves) if h != half]
        # scored as ``langroute eval`` scores: without the rows RouteLLM marks contaminated
        test = [r for r, h in zip(rows, halves) if h == half and not is_contaminated(r)]
        router = ExemplarRouter(routes=routes, exemplars=build, embedder=cache, mode="scores")
        tuned = dict(tune_router(router).chosen)
        recipes = candidates(tuned)
        figures: dict[str, list[float]] = {key: [] for key in recipes}

        def score_split(
            train: list[Any], held: list[Any], recipes: dict[str, dict[str, Any]] = recipes
        ) -> dict[str, float]:
            fold_router = ExemplarRouter(
                routes=routes, exemplars=train, embedder=cache, mode="scores"
            )
            nb = fold_router.neighbours([r.text for r in held], k=min(DEPTH, len(train)))
            w = np.array([r.scores[WEAK] for r in held])
            s = np.array([r.scores[STRONG] for r in held])
            gain = np.array([r.scores[STRONG] - r.scores[WEAK] for r in train])
            train_vectors = fold_router.vectors([r.id for r in train]).astype(np.float64)
            test_vectors = cache.embed_queries(nb.queries).astype(np.float64)
            return {
                key: cost_quality_curve(
                    scores_of(recipe, nb, routes, train_vectors, gain, test_vectors), w, s
                ).apgr
                for key, recipe in recipes.items()
            }

        for repeat in range(2):
            fold_of = assign_folds([r.text for r in build], 5, seed + repeat)
            for f in range(5):
                train = [r for r, g in zip(build, fold_of) if g != f]
                held = [r for r, g in zip(build, fold_of) if g == f]
                for key, value in score_split(train, held).items():
                    figures[key].append(value)
        unseen = score_split(build, test)
        picked = max(recipes, key=lambda key: float(np.mean(figures[key])))
        result = {
            "data": name,
            "evaluated_half": half,
            "tuned": tuned,
            "candidates": {
                key: {
                    "cv_apgr": round(float(np.mean(figures[key])), 4),
                    "cv_sd": round(float(np.std(figures[key])), 4),
                    "unseen_apgr": round(unseen[key], 4),
                }
                for key in recipes
            },
            "picked_by_cross_validation": picked,
            "picked_unseen_apgr": round(unseen[picked], 4),
            "tuned_unseen_apgr": round(unseen["tuned"], 4),
        }
        print(json.dumps({k: v for k, v in result.items() if k != "candidates"}), flush=True)
        out.append(result)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both data sets and write the JSON figures."""
    parser = routellm_parser(__doc__.splitlines()[0], "estimator_candidates.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = [
        result
        for name, path in routellm_files(parser, args).items()
        for result in run(name, path, args.seed, args.cache)
    ]
    write_results(
        output_path(args.json, args.save, "estimator_candidates.json"),
        "gain estimators: cross-validated on one half, scored once on the other",
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
