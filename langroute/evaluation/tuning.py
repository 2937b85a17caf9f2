"""Tune router settings (``k``, weighting, loss weight, ...) on validation folds.

Each fold is routed by a router built from the other folds; every setting is replayed
through the decision engine (:mod:`langroute.router.engine`) over one neighbour search per
fold, so a sweep of hundreds of settings costs one embedding of the data.

:func:`tune` sweeps any grid over any data. :func:`tune_router` is what ``langroute
build`` runs by default: it cross-validates the decision settings of a built router
within its own exemplars (the default grid, :func:`default_grid`), reusing the vectors
the router already holds, applies the winner and keeps a :class:`TuningRecord` on the
router (saved in its manifest). :func:`build_router` builds and tunes in one call when
there are enough exemplars (:func:`tuning_skip_reason`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from langroute.embedders import as_embedder
from langroute.errors import RouterConfigError
from langroute.evaluation import metrics as m
from langroute.evaluation.batches import neighbourhood, settings_for
from langroute.evaluation.calibration import DEFAULT_QUALITY_TARGET
from langroute.evaluation.datasets import (
    EvalData,
    PrecomputedEmbedder,
    assign_folds,
    default_routes,
    exemplar_score_pair,
    exemplar_vectors,
    expected_routes,
    is_contaminated,
    load_eval_set,
    require_two_routes,
    score_pair,
)
from langroute.router import engine
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.exemplars import Exemplar
from langroute.router.settings import RouterSettings

__all__ = [
    "MIN_EXEMPLARS_TO_TUNE",
    "QUALITY_LOSS_WEIGHT",
    "TUNED_SETTINGS",
    "TuningRecord",
    "TuningReport",
    "build_router",
    "default_grid",
    "tune",
    "tune_router",
    "tuning_skip_reason",
    "weighted_error",
]

Metric = Literal["auto", "apgr", "accuracy", "weighted_error"]

MIN_EXEMPLARS_TO_TUNE = 100
"""Fewer exemplars than this are not tuned by default: with 5 folds a validation fold
then holds under 20 queries, too few for APGR or an error rate to tell settings apart
(the untuned defaults are kept; ``tune=True`` forces it)."""

MIN_PER_ROUTE = 5
"""Labelled data: every route but the fallback needs this many exemplars (one per fold)
before tuning, so no fold router loses a route."""

DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 2
"""Tuning splits the exemplars into :data:`DEFAULT_FOLDS` folds twice (seeds ``seed``
and ``seed + 1``): on RouteLLM's data one split's validation noise (about 0.04 APGR per
fold) is larger than the differences between the best settings, and a second split
steadies the choice for about twice the time."""

QUALITY_LOSS_WEIGHT = 2.0
"""In :func:`weighted_error`, a query sent to a cheaper route than it needs costs this
many times a query sent to a stronger route than it needs."""

TUNED_SETTINGS = (
    "k",
    "weighting",
    "temperature",
    "power",
    "loss_weight",
    "local_k",
    "length_weight",
    "length_scale",
    "threshold",
)
"""The decision settings the default grid sweeps; those a user fixes are kept."""


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
    metric: Metric = "auto",
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
        metric: what ranks the settings: ``apgr`` (scored data, higher is better),
            ``accuracy`` (labelled data, higher is better), ``weighted_error`` (labelled
            data, lower is better: see :func:`weighted_error`) or ``auto`` (APGR for
            scored data, else accuracy).

    Returns:
        A :class:`TuningReport`; ``report.best`` is the winning setting with its score.

    Example:
        >>> tune("mmlu.dev.jsonl", {"k": [50, 100]}, weak="w", strong="s").best  # doctest: +SKIP
        {'k': 100, 'apgr': 0.66, ...}
    """
    oos = set(out_of_scope)
    rows = load_eval_set(
        data,
        routes,
        out_of_scope=sorted(oos),
        infer_routes=routes is None and not (weak and strong),
    )
    route_list = default_routes(rows, routes, weak, strong, oos)
    require_two_routes(route_list)
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
    if metric == "auto":
        metric = "apgr" if pair is not None else "accuracy"
    elif metric == "apgr" and pair is None:
        raise RouterConfigError("metric='apgr' needs scores for the weak and the strong model")
    sign = -1.0 if metric == "weighted_error" else 1.0  # figures are ranked higher-better
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
        if metric != "apgr":
            expected = expected_routes(test_rows, route_list, template.score_keys)
        for c, combo in enumerate(combos):
            settings = RouterSettings.model_validate(router.settings.model_dump() | combo)
            mode = router.mode if settings.mode == "auto" else settings.mode
            evidence, choice = engine.weigh_and_choose(nb, settings, mode)
            if metric == "apgr":
                figures[c, column] = m.cost_quality_curve(evidence.escalation, w, s).apgr
            elif metric == "weighted_error":
                figures[c, column] = weighted_error(
                    choice.route_index, choice.escalated, expected, route_list, settings.rule
                )
            else:
                hits = [
                    (route_list[int(p)] == e and not x) if e is not None else bool(x)
                    for p, x, e in zip(choice.route_index, choice.escalated, expected)
                ]
                figures[c, column] = float(np.mean(hits))
    means = np.nanmean(figures, axis=1)
    order = np.argsort(-sign * means, kind="stable")

    def row(i: int) -> dict[str, Any]:
        return combos[i] | {metric: float(means[i]), f"{metric}_sd": float(np.nanstd(figures[i]))}

    results = [row(int(i)) for i in order]
    top = int(order[0])
    simplest = top
    for i in range(len(combos)):  # grid order: simple settings first
        diff = sign * (figures[top] - figures[i])
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


def weighted_error(
    route_index: Sequence[int] | np.ndarray,
    escalated: Sequence[bool] | np.ndarray,
    expected: Sequence[str | None],
    routes: Sequence[str],
    rule: Literal["threshold", "argmax"] = "threshold",
    quality_loss_weight: float = QUALITY_LOSS_WEIGHT,
) -> float:
    """The quality-loss-weighted error rate of routed queries (lower is better).

    Ordered routes (``threshold`` rule): a query routed to a stronger route than its
    label costs 1 (cost inflation), one routed to a cheaper route costs
    ``quality_loss_weight`` (quality loss). Unordered routes (``argmax``): every
    misrouted query costs 1. A row whose label is not a route (out of scope) costs 1
    unless it was escalated.

    Example:
        >>> weighted_error([0, 1, 0], [False] * 3, ["small", "small", "large"], ["small", "large"])
        1.0
    """
    position = {route: i for i, route in enumerate(routes)}
    costs = []
    for chosen, was_escalated, label in zip(route_index, escalated, expected):
        if label is None:
            costs.append(0.0 if was_escalated else 1.0)
            continue
        want, got = position[label], int(chosen)
        if got == want:
            costs.append(0.0)
        elif rule == "argmax" or got > want:
            costs.append(1.0)
        else:
            costs.append(quality_loss_weight)
    return float(np.mean(costs)) if costs else float("nan")


def default_grid(
    kind: Literal["scores", "labels"],
    *,
    rule: Literal["threshold", "argmax"] = "threshold",
    exemplars: int | None = None,
) -> list[dict[str, Any]]:
    """The decision settings :func:`tune_router` tries by default, simple ones first.

    Scored data (ranked by APGR): neighbour weighting (linear, power 2), ``k`` from 25
    to 200, loss weight 0.75 or 1, with or without length evidence; and the 50 nearest
    by similarity blended with up to 500 weighted by closeness of length (``local_k``,
    ``length_weight``: what wins on RouteLLM's MMLU and GSM8K). Labelled data
    (ranked by :func:`weighted_error`): ``k`` from 5 to 50, softmax / linear / power
    weighting and, for ordered routes, the dial. ``k`` values above ``exemplars`` are
    dropped (the largest that fits is kept).

    Example:
        >>> len(default_grid("labels", rule="argmax")) > 0
        True
    """
    if kind == "scores":
        weightings: list[dict[str, Any]] = [
            {"weighting": "linear"},
            {"weighting": "power", "power": 2.0},
        ]
        # all k neighbours weighted by similarity, with or without length evidence
        grid = [
            {"k": k, **weighting, "loss_weight": loss, **length}
            for k in _fitting([25, 50, 100, 200], exemplars)
            for weighting in weightings
            for loss in (1.0, 0.75)
            for length in ({"length_weight": 0.0}, {"length_weight": 0.5, "length_scale": 0.1})
        ]
        # the 50 nearest by similarity, blended with all k weighted by closeness of length
        grid += [
            {"k": k, "local_k": 50, **weighting, "loss_weight": loss, **length}
            for k in [k for k in (200, 300, 500) if exemplars is None or k <= exemplars]
            for weighting in weightings
            for loss in (1.0, 0.75)
            for length in (
                {"length_weight": 0.5, "length_scale": 0.1},
                {"length_weight": 1.0, "length_scale": 0.1},
            )
        ]
    else:
        weightings = [
            {"weighting": "softmax", "temperature": 0.05},
            {"weighting": "softmax", "temperature": 0.1},
            {"weighting": "linear"},
            {"weighting": "power", "power": 2.0},
        ]
        dials: list[dict[str, Any]] = (
            [{}] if rule == "argmax" else [{"threshold": t} for t in (0.5, 0.4, 0.6)]
        )
        grid = [
            {"k": k, **weighting, **dial}
            for k in _fitting([5, 10, 20, 50], exemplars)
            for weighting in weightings
            for dial in dials
        ]
    return grid


def _fitting(ks: list[int], exemplars: int | None) -> list[int]:
    if exemplars is None:
        return ks
    kept = [k for k in ks if k <= exemplars]
    return kept or [max(1, min(ks[0], exemplars))]


class TuningRecord(BaseModel):
    """What :func:`tune_router` chose and why; saved in the router's manifest.

    Attributes:
        metric: ``apgr`` (scored exemplars, higher is better) or ``weighted_error``
            (labelled exemplars, lower is better; see :func:`weighted_error`).
        chosen: the settings tuning set, e.g. ``{"k": 200, "weighting": "power"}``.
        validation: the chosen settings' mean over the validation folds.
        validation_sd: its standard deviation over folds.
        untuned: the figure of the settings before tuning, on the same folds.
        fixed: settings the caller fixed, kept out of the sweep.
        exemplars: how many exemplars were cross-validated.
        folds / repeats / seed: the cross-validation.
        trials: how many settings were tried.
        seconds: how long tuning took (one neighbour search per fold, then replay).
        top: the best few settings with their figures, best first.
    """

    model_config = ConfigDict(extra="forbid")

    metric: Literal["apgr", "accuracy", "weighted_error"]
    chosen: dict[str, Any]
    validation: float
    validation_sd: float
    untuned: float | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    exemplars: int
    folds: int
    repeats: int = 1
    seed: int = 0
    trials: int
    seconds: float
    top: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`validation` is better (APGR, accuracy)."""
        return self.metric != "weighted_error"

    def summary(self) -> str:
        """One line: the metric before and after, and the chosen settings.

        Example:
            >>> TuningRecord(metric="apgr", chosen={"k": 200}, validation=0.66,
            ...     validation_sd=0.01, untuned=0.6, exemplars=500, folds=5, trials=40,
            ...     seconds=1.5).summary()
            'validation apgr 0.660 (untuned 0.600) over 5 folds of 500 exemplars; chose k=200'
        """
        before = f" (untuned {self.untuned:.3f})" if self.untuned is not None else ""
        chosen = ", ".join(f"{key}={value}" for key, value in self.chosen.items()) or "defaults"
        return (
            f"validation {self.metric} {self.validation:.3f}{before} over {self.folds} folds "
            f"of {self.exemplars} exemplars; chose {chosen}"
        )


def tuning_skip_reason(router: ExemplarRouter, folds: int = DEFAULT_FOLDS) -> str | None:
    """Why :func:`build_router` would not tune ``router`` by default (None: it would).

    Tuning needs :data:`MIN_EXEMPLARS_TO_TUNE` exemplars and, for labelled exemplars,
    :data:`MIN_PER_ROUTE` per route (the fallback aside).

    Example:
        >>> tuning_skip_reason(router)  # doctest: +SKIP
        '4 exemplars: tuning needs at least 100'
    """
    count = len(router)
    if len(router.routes) < 2:
        return f"one route ({router.routes[0]!r}): nothing to choose between"
    if count < MIN_EXEMPLARS_TO_TUNE:
        return f"{count} exemplars: tuning needs at least {MIN_EXEMPLARS_TO_TUNE}"
    if router.mode == "vote":
        needed = max(MIN_PER_ROUTE, folds)
        thin = [
            route for route, n in router.counts().items() if n < needed and route != router.fallback
        ]
        if thin:
            return f"routes {thin} have fewer than {needed} exemplars each"
    return None


def _key(combo: Mapping[str, Any]) -> str:
    return json.dumps(combo, sort_keys=True, default=str)


def tune_router(
    router: ExemplarRouter,
    *,
    grid: Sequence[Mapping[str, Any]] | None = None,
    fixed: Iterable[str] = (),
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    select: Literal["best", "simplest"] = "best",
) -> TuningRecord:
    """Cross-validate ``router``'s decision settings within its exemplars; apply the best.

    Each fold of the exemplars is routed by the others over the vectors the router
    already holds (nothing is embedded again), every setting of ``grid`` (default:
    :func:`default_grid`) is replayed through the decision engine, and the setting with
    the best mean over folds is applied with :meth:`ExemplarRouter.configure`: by APGR
    when every exemplar is scored for the cheapest and the strongest route, else by
    :func:`weighted_error`. The settings before tuning compete too, so tuning never
    picks something worse on validation. The record is kept in ``router.tuning``
    (saved with the router) and returned.

    Args:
        router: a built router; its current settings are the starting point.
        grid: settings dicts to try (default: :func:`default_grid` for its data).
        fixed: setting names to keep as they are (left out of every trial).
        folds: cross-validation folds (identical texts share a fold).
        repeats: repeat the split with seeds ``seed, seed + 1, ...`` and average
            (:data:`DEFAULT_REPEATS`).
        seed: fold assignment seed.
        select: ``"best"``: the best mean over folds; ``"simplest"``: the one-standard-error
            rule (:attr:`TuningReport.simplest`).

    Raises:
        RouterConfigError: fewer than two exemplars per fold.

    Example:
        >>> record = tune_router(router)  # doctest: +SKIP
        >>> record.chosen, round(record.validation, 3)  # doctest: +SKIP
        ({'k': 200, 'weighting': 'power', ...}, 0.664)
    """
    started = time.perf_counter()
    require_two_routes(router.routes)
    rows = router.exemplars
    if len(rows) < 2 * folds:
        raise RouterConfigError(
            f"cannot tune on {len(rows)} exemplars with {folds} folds: need at least {2 * folds}"
        )
    settings = router.settings
    routes = list(settings.routes)
    pair = exemplar_score_pair(router)
    scored = pair is not None
    metric: Metric = "apgr" if scored else "weighted_error"
    fixed_names = set(fixed)
    train_size = len(rows) - len(rows) // folds - 1
    candidates = (
        grid
        if grid is not None
        else default_grid(
            "scores" if scored else "labels", rule=settings.rule, exemplars=train_size
        )
    )
    combos: dict[str, dict[str, Any]] = {_key({}): {}}  # the settings as they are
    for candidate in candidates:
        combo = {name: v for name, v in candidate.items() if name not in fixed_names}
        combos.setdefault(_key(combo), combo)
    base = settings.model_dump(exclude={"routes"})
    base["mode"] = router.mode
    report = tune(
        rows,
        list(combos.values()),
        routes=routes,
        embedder=exemplar_vectors(router),
        folds=folds,
        seed=seed,
        weak=pair[0] if pair else None,
        strong=pair[1] if pair else None,
        exclude_contaminated=False,
        base=base,
        repeats=repeats,
        metric=metric,
    )
    figure_keys = {metric, f"{metric}_sd"}
    best = report.simplest if select == "simplest" else report.best
    chosen = {name: v for name, v in best.items() if name not in figure_keys}
    untuned = next((r[metric] for r in report.results if not set(r) - figure_keys), None)
    router.configure(**chosen)
    record = TuningRecord(
        metric=metric,
        chosen=chosen,
        validation=float(best[metric]),
        validation_sd=float(best[f"{metric}_sd"]),
        untuned=untuned,
        fixed={name: getattr(settings, name) for name in sorted(fixed_names)},
        exemplars=len(rows),
        folds=folds,
        repeats=repeats,
        seed=seed,
        trials=len(combos),
        seconds=round(time.perf_counter() - started, 2),
        top=report.results[:5],
    )
    router.tuning = record.model_dump(mode="json")
    return record


def build_router(
    exemplars: Iterable[Exemplar],
    *,
    routes: Sequence[str] | None = None,
    embedder: Any = None,
    tune: bool | None = None,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    show_progress: bool = False,
    quality_target: float | None = DEFAULT_QUALITY_TARGET,
    strong_share: float | None = None,
    standard_errors: float | None = None,
    **options: Any,
) -> ExemplarRouter:
    """Build a router, tune it and set its dial for a stated target: ``langroute build``.

    The exemplars are embedded once; :func:`tune_router` then cross-validates the
    decision settings over those vectors, and
    :func:`~langroute.evaluation.calibration.calibrate_by_cross_validation` sets the dial
    (``threshold``) for the target on out-of-fold decisions: by default, keep 95% of the
    strongest route's quality. Settings passed in ``options`` are kept as given (a
    ``threshold`` given is not calibrated); tuning chooses the others.

    Args:
        exemplars: the exemplars (labelled or scored).
        routes: route names cheapest first (default: labels in order of appearance).
        embedder: as for :class:`ExemplarRouter`.
        tune: ``None`` (default): tune unless :func:`tuning_skip_reason` gives a reason;
            ``True``: always tune; ``False``: never.
        folds: cross-validation folds for tuning.
        repeats: repeat the split with other seeds and average (steadier, slower).
        seed: fold assignment seed.
        show_progress: progress bar while embedding.
        quality_target: the dial's target, as a fraction of the strongest route's
            quality (scored exemplars) or the share of queries on a route at least as
            strong as they need (labelled); ``None``: leave the dial as it is.
        strong_share: instead, a target share of queries sent to the strongest route.
        standard_errors: how far inside a quality target the dial aims, in standard
            errors of the cross-validated estimate (default:
            :data:`~langroute.evaluation.calibration.DEFAULT_STANDARD_ERRORS`).
        **options: router settings (``k``, ``threshold``, ``index``, ...).

    Example:
        >>> rows = load_exemplars("mmlu.jsonl")  # doctest: +SKIP
        >>> router = build_router(rows, routes=["weak", "strong"])  # doctest: +SKIP
        >>> router.tuning["chosen"]  # doctest: +SKIP
        {'k': 200, 'weighting': 'power', 'power': 2.0, 'loss_weight': 1.0, 'length_weight': 0.0}
    """
    router = ExemplarRouter(
        routes=routes,
        exemplars=exemplars,
        embedder=embedder,
        show_progress=show_progress,
        **options,
    )
    if tune is None:
        tune = tuning_skip_reason(router, folds) is None
    if tune:
        tune_router(
            router,
            fixed=set(options) & set(TUNED_SETTINGS),
            folds=folds,
            repeats=repeats,
            seed=seed,
        )
    if "threshold" not in options and (quality_target is not None or strong_share is not None):
        from langroute.evaluation.calibration import (
            calibrate_by_cross_validation,
            cross_validation_skip_reason,
        )

        if cross_validation_skip_reason(router, folds) is None:
            calibrate_by_cross_validation(
                router,
                target_quality=None if strong_share is not None else quality_target,
                target_strong_share=strong_share,
                folds=folds,
                seed=seed,
                **({} if standard_errors is None else {"standard_errors": standard_errors}),
            )
    return router
