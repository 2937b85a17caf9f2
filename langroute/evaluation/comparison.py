"""Gate a routing change: two routers on the same fixed evaluation set ("golden traces").

:func:`compare` routes every row of one evaluation set with router A (the baseline) and
router B (the candidate) and reports:

* each router's figures and the deltas (B minus A): APGR, CPT(50%), CPT(80%), strong
  share and quality at the dial for scored data; accuracy, escalation rate and the
  quality-loss-weighted error for labelled data; for both, quality loss (sent cheaper
  than needed) and cost inflation (sent stronger than needed);
* the queries whose route flipped, each with both decisions' nearest exemplars, and
  whether the flip adds quality loss, removes it, removes cost inflation or adds it;
* a verdict: B is *worse* when its headline figure (APGR for scored data, the weighted
  error for labelled data) trails A's by more than ``tolerance``. ``langroute compare``
  exits non-zero then, so a CI job can block a bad router.

Example:
    >>> from langroute.evaluation.comparison import compare
    >>> result = compare(router_a, router_b, "golden.jsonl")  # doctest: +SKIP
    >>> result.worse, result.deltas["apgr"], len(result.flipped)  # doctest: +SKIP
    (False, 0.004, 12)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from langroute.errors import RouterConfigError
from langroute.evaluation.datasets import EvalData, expected_routes, load_eval_set
from langroute.evaluation.evaluator import Evaluated, evaluate_decisions
from langroute.evaluation.reports import EvalReport, finite_json
from langroute.evaluation.tuning import weighted_error
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.exemplars import Exemplar

__all__ = ["Comparison", "FlippedQuery", "compare"]

Effect = Literal[
    "quality_loss_added",
    "quality_loss_removed",
    "cost_inflation_removed",
    "cost_inflation_added",
    "neutral",
]
"""What a flip does, judged by the row's expected route (or its scores)."""

_NEIGHBOURS_SHOWN = 3
_EFFECT_ORDER: dict[str, int] = {
    "quality_loss_added": 0,
    "cost_inflation_added": 1,
    "quality_loss_removed": 2,
    "cost_inflation_removed": 3,
    "neutral": 4,
}


class FlippedQuery(BaseModel):
    """A query routed differently by the two routers, with both decisions' neighbours."""

    index: int = Field(description="Row number in the evaluation set (0-based, after filtering).")
    id: str
    text: str
    route_a: str
    route_b: str
    expected: str | None = Field(
        description="The route the row should take (label, or derived from its scores)."
    )
    scores: dict[str, float] | None = None
    effect: Effect
    neighbours_a: list[dict[str, Any]]
    neighbours_b: list[dict[str, Any]]


class Comparison(BaseModel):
    """Router A (baseline) against router B (candidate) on one evaluation set.

    Attributes:
        kind: ``scores`` or ``labels``.
        n: rows evaluated (contaminated ones left out).
        metric: the headline figure the verdict uses (``apgr`` or ``weighted_error``).
        higher_is_better: whether a larger headline figure is better.
        a / b: each router's figures.
        deltas: B minus A, per figure.
        quality_loss_added: share of rows B sends cheaper than needed that A did not,
            minus the share it fixes (B's quality loss minus A's).
        cost_inflation_removed: A's cost inflation minus B's (share of rows).
        flipped_count: rows whose route differs.
        effects: flipped rows per :data:`Effect`.
        flipped: the flipped rows, the harmful ones first (at most ``max_flipped``).
        tolerance: how far B's headline figure may trail A's.
        worse: B trails A by more than ``tolerance``.
        verdict: one line saying so.
    """

    kind: Literal["scores", "labels"]
    n: int
    routes: list[str]
    metric: Literal["apgr", "weighted_error"]
    higher_is_better: bool
    a: dict[str, float | None]
    b: dict[str, float | None]
    deltas: dict[str, float | None]
    quality_loss_added: float
    cost_inflation_removed: float
    flipped_count: int
    effects: dict[str, int]
    flipped: list[FlippedQuery]
    tolerance: float
    worse: bool
    verdict: str

    def to_json_dict(self) -> dict[str, Any]:
        """Every figure as standard JSON (NaN and infinities become None)."""
        return finite_json(self.model_dump(mode="json"))


def _figures(evaluated: Evaluated, expected: list[str | None], routes: list[str]) -> dict[str, Any]:
    report: EvalReport = evaluated.report
    out: dict[str, Any] = {}
    if report.scores is not None:
        s = report.scores
        out |= {
            "apgr": s.apgr,
            "cpt50": s.cpt50,
            "cpt80": s.cpt80,
            "strong_share": s.strong_share,
            "quality": s.quality,
        }
    labels = report.labels
    if labels is not None:
        out |= {
            "accuracy": labels.accuracy,
            "escalation_rate": labels.escalation_rate,
            "quality_loss": labels.quality_loss,
            "cost_inflation": labels.cost_inflation,
        }
    chosen = [routes.index(d.route) for d in evaluated.decisions]
    escalated = [d.escalated for d in evaluated.decisions]
    rule = "argmax" if report.settings.get("rule") == "argmax" else "threshold"
    out["weighted_error"] = weighted_error(chosen, escalated, expected, routes, rule)
    out["threshold"] = report.threshold
    return out


def _difference(first: dict[str, Any], second: dict[str, Any], key: str) -> float:
    if first.get(key) is None or second.get(key) is None:
        return float("nan")
    return float(first[key] - second[key])


def _neighbours(decision: RouteDecision) -> list[dict[str, Any]]:
    return [
        {"id": nb.id, "text": nb.text, "route": nb.route, "similarity": round(nb.similarity, 4)}
        for nb in decision.neighbours[:_NEIGHBOURS_SHOWN]
    ]


def _effect(
    row: Exemplar,
    a: int,
    b: int,
    expected: str | None,
    routes: list[str],
    pair: tuple[str, str] | None,
) -> Effect:
    """What moving ``row`` from route ``a`` to route ``b`` does (indices, cheapest first)."""
    if pair is not None and row.scores is not None and len(routes) == 2:
        weak, strong = row.scores[pair[0]], row.scores[pair[1]]
        if b < a:  # to the cheap model
            return "quality_loss_added" if strong > weak else "cost_inflation_removed"
        return "quality_loss_removed" if strong > weak else "cost_inflation_added"
    if expected is None:
        return "neutral"
    want = routes.index(expected)
    if b < a:
        return "quality_loss_added" if b < want else "cost_inflation_removed"
    return "quality_loss_removed" if a < want else "cost_inflation_added"


def compare(
    router_a: ExemplarRouter,
    router_b: ExemplarRouter,
    eval_set: EvalData,
    *,
    tolerance: float = 0.01,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    max_flipped: int = 200,
    show_progress: bool = False,
) -> Comparison:
    """Compare a baseline router A with a candidate B on the same evaluation set.

    Args:
        router_a: the baseline (e.g. the router in production).
        router_b: the candidate.
        eval_set: a JSONL/CSV path or rows, scored or labelled, that neither router
            was built from.
        tolerance: how far B's headline figure (APGR, or the weighted error for
            labelled data) may trail A's before B counts as worse.
        weak: score key of the weak model (scored data; default: the cheapest route's).
        strong: score key of the strong model (default: the strongest route's).
        exclude_contaminated: leave out rows marked ``contaminated``.
        max_flipped: how many flipped queries to keep (the harmful ones first).
        show_progress: progress bars while routing.

    Returns:
        A :class:`Comparison`; ``comparison.worse`` is the gate.

    Raises:
        RouterConfigError: the routers have different routes, or the tolerance is negative.
    """
    if tolerance < 0:
        raise RouterConfigError(f"tolerance must be at least 0, got {tolerance}")
    routes = router_a.routes
    if router_b.routes != routes:
        raise RouterConfigError(
            f"the routers route to different models: A {routes}, B {router_b.routes}; "
            "compare routers over the same routes"
        )
    rows = load_eval_set(eval_set, routes)
    options: dict[str, Any] = {
        "weak": weak,
        "strong": strong,
        "exclude_contaminated": exclude_contaminated,
        "show_progress": show_progress,
    }
    first = evaluate_decisions(router_a, rows, **options)
    second = evaluate_decisions(router_b, rows, **options)
    kept = first.rows
    expected = expected_routes(kept, routes, router_a.settings.score_keys)
    figures_a = _figures(first, expected, routes)
    figures_b = _figures(second, expected, routes)
    deltas = {
        key: (figures_b[key] - value)
        if value is not None and figures_b.get(key) is not None
        else None
        for key, value in figures_a.items()
    }
    index = {route: i for i, route in enumerate(routes)}
    flips: list[FlippedQuery] = []
    effects = {name: 0 for name in _EFFECT_ORDER}
    for i, (row, da, db) in enumerate(zip(kept, first.decisions, second.decisions)):
        if da.route == db.route:
            continue
        effect = _effect(row, index[da.route], index[db.route], expected[i], routes, first.pair)
        effects[effect] += 1
        flips.append(
            FlippedQuery(
                index=i,
                id=row.id,
                text=row.text,
                route_a=da.route,
                route_b=db.route,
                expected=expected[i],
                scores=row.scores,
                effect=effect,
                neighbours_a=_neighbours(da),
                neighbours_b=_neighbours(db),
            )
        )
    flips.sort(key=lambda f: (_EFFECT_ORDER[f.effect], f.index))
    scored = first.pair is not None
    metric: Literal["apgr", "weighted_error"] = "apgr" if scored else "weighted_error"
    higher = metric == "apgr"
    a_value, b_value = figures_a[metric], figures_b[metric]
    change = (b_value - a_value) if higher else (a_value - b_value)  # > 0: B better
    worse = bool(np.isfinite(change) and change < -tolerance)
    direction = "higher" if higher else "lower"
    verdict = (
        f"B is worse: {metric} {a_value:.4f} -> {b_value:.4f} ({direction} is better), "
        f"beyond the tolerance {tolerance:g}"
        if worse
        else f"B is not worse: {metric} {a_value:.4f} -> {b_value:.4f} "
        f"({direction} is better; tolerance {tolerance:g})"
    )
    return Comparison(
        kind="scores" if scored else "labels",
        n=len(kept),
        routes=routes,
        metric=metric,
        higher_is_better=higher,
        a=figures_a,
        b=figures_b,
        deltas=deltas,
        quality_loss_added=_difference(figures_b, figures_a, "quality_loss"),
        cost_inflation_removed=_difference(figures_a, figures_b, "cost_inflation"),
        flipped_count=len(flips),
        effects=effects,
        flipped=flips[:max_flipped],
        tolerance=tolerance,
        worse=worse,
        verdict=verdict,
    )
