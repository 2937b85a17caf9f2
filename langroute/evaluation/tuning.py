"""Tune router settings (``k``, weighting, rule, ...) on validation folds.

Each fold is routed by a router built from the other folds; every setting is replayed
through the decision engine (:mod:`langroute.engine`) over one neighbour search per
fold, so a sweep of hundreds of settings costs one embedding of the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from langroute import engine
from langroute.embedders import as_embedder
from langroute.evaluation import metrics as m
from langroute.evaluation.datasets import (
    EvalData,
    PrecomputedEmbedder,
    assign_folds,
    default_routes,
    expected_routes,
    is_contaminated,
    load_eval_set,
    score_pair,
)
from langroute.evaluation.evaluator import neighbourhood, settings_for
from langroute.router import ExemplarRouter
from langroute.settings import RouterSettings

__all__ = ["TuningReport", "tune"]


class TuningReport(BaseModel):
    """Validation-fold results of every setting tried, best first."""

    metric: str
    folds: int
    repeats: int = 1
    results: list[dict[str, Any]]
    best: dict[str, Any] = Field(description="The setting with the best mean over folds.")
    simplest: dict[str, Any] = Field(
        description=(
            "One-standard-error rule: the first setting in grid order that trails the best "
            "by at most one paired standard error over folds (list simple settings first); "
            "less prone to picking a setting that won on validation noise."
        )
    )


def tune(
    data: EvalData,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    *,
    routes: Sequence[str] | None = None,
    embedder: Any = None,
    folds: int = 5,
    seed: int = 0,
    weak: str | None = None,
    strong: str | None = None,
    out_of_scope: Sequence[str] = (),
    exclude_contaminated: bool = True,
    show_progress: bool = False,
    base: Mapping[str, Any] | None = None,
    router_factory: Callable[..., ExemplarRouter] | None = None,
    repeats: int = 1,
) -> TuningReport:
    """Sweep router settings (``k``, ``weighting``, ``rule``, ...) on validation folds.

    Each fold is scored by a router built from the other folds; a setting's figure is
    the mean over folds of APGR (scored data) or accuracy (labelled data). Only
    validation folds are scored, so the best setting is not tuned on its own test rows.

    Args:
        data: rows with scores or route labels.
        grid: setting name -> values to try, e.g. ``{"k": [20, 50], "weighting": [...]}``
            (every combination), or an explicit list of settings dicts.
        routes: route names cheapest first (see :func:`cross_validate`).
        embedder: the embedder (default: bundled MiniLM); every row is embedded once.
        folds: number of folds.
        seed: fold assignment seed.
        weak: score key of the weak model (scored data).
        strong: score key of the strong model (scored data).
        out_of_scope: labels that are never routes (they score as rejections).
        exclude_contaminated: do not score rows marked ``contaminated``.
        show_progress: progress bar while embedding.
        base: fixed settings applied to every trial.
        router_factory: optional ``(routes, exemplars, embedder, **settings)`` builder.
        repeats: repeat the k-fold split with seeds ``seed, seed + 1, ...`` and average
            (steadier figures on small data).

    Returns:
        A :class:`TuningReport`; ``report.best`` is the winning setting with its score.

    Example:
        >>> tune("mmlu.dev.jsonl", {"k": [50, 100]}, weak="w", strong="s").best  # doctest: +SKIP
        {'k': 100, 'apgr': 0.66, ...}
    """
    rows = load_eval_set(data)
    oos = set(out_of_scope)
    route_list = default_routes(rows, routes, weak, strong, oos)
    base_options = dict(base or {})
    if weak and strong and weak in route_list and strong in route_list:
        base_options.setdefault("mode", "scores")
    if isinstance(grid, Mapping):
        names = list(grid)
        combos = [
            dict(zip(names, values))
            for values in itertools.product(*(list(grid[n]) for n in names))
        ]
    else:
        combos = [dict(combo) for combo in grid]
    if not combos:
        raise ValueError("the grid is empty")
    template = settings_for(route_list, base_options)
    prepared = [template.prepare(r.text)[0] for r in rows]
    cache = PrecomputedEmbedder(as_embedder(embedder), prepared, show_progress=show_progress)
    pair = (
        score_pair(rows, route_list, template.score_keys, weak, strong)
        if all(r.scores for r in rows)
        else None
    )
    metric = "apgr" if pair is not None else "accuracy"
    k_max = max(int(c.get("k", template.k)) for c in combos)
    factory = router_factory or ExemplarRouter
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    figures = np.full((len(combos), folds * repeats), np.nan)
    for column, (repeat, f) in enumerate(itertools.product(range(repeats), range(folds))):
        if f == 0:
            fold_of = assign_folds([r.text for r in rows], folds, seed + repeat)
        train = [r for r, g in zip(rows, fold_of) if g != f and r.route not in oos]
        test = [
            i
            for i, g in enumerate(fold_of)
            if g == f and not (exclude_contaminated and is_contaminated(rows[i]))
        ]
        if not test:
            continue
        router = factory(routes=route_list, exemplars=train, embedder=cache, **base_options)
        nb = neighbourhood(router, [rows[i].text for i in test], k=k_max)
        test_rows = [rows[i] for i in test]
        if pair is not None:
            w = np.array([r.scores[pair[0]] for r in test_rows])  # type: ignore[index]
            s = np.array([r.scores[pair[1]] for r in test_rows])  # type: ignore[index]
        else:
            expected = expected_routes(test_rows, route_list, template.score_keys)
        for c, combo in enumerate(combos):
            settings = RouterSettings.model_validate(router.settings.model_dump() | combo)
            mode = router.mode if settings.mode == "auto" else settings.mode
            evidence, choice = engine.weigh_and_choose(nb, settings, mode)
            if pair is not None:
                figures[c, column] = m.cost_quality_curve(evidence.escalation, w, s).apgr
            else:
                hits = [
                    (route_list[int(p)] == e and not x) if e is not None else bool(x)
                    for p, x, e in zip(choice.route_index, choice.escalated, expected)
                ]
                figures[c, column] = float(np.mean(hits))
    means = np.nanmean(figures, axis=1)
    order = np.argsort(-means, kind="stable")

    def row(i: int) -> dict[str, Any]:
        return combos[i] | {metric: float(means[i]), f"{metric}_sd": float(np.nanstd(figures[i]))}

    results = [row(int(i)) for i in order]
    top = int(order[0])
    simplest = top
    for i in range(len(combos)):  # grid order: simple settings first
        diff = figures[top] - figures[i]
        diff = diff[~np.isnan(diff)]
        if len(diff) == 0:
            continue
        # Paired standard error: folds differ in difficulty, settings share the folds.
        se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if float(diff.mean()) <= se:
            simplest = i
            break
    return TuningReport(
        metric=metric,
        folds=folds,
        repeats=repeats,
        results=results,
        best=results[0],
        simplest=row(simplest),
    )
