"""Measure a router on held-out rows, or by k-fold cross-validation on one file.

Two kinds of evaluation data, both read like exemplar files (JSONL or CSV):

* **scored**: every row has per-model quality (``scores``), e.g. RouteLLM's weak and
  strong correctness. The report gives the whole cost-quality curve as the dial moves
  (APGR, CPT(50%), CPT(80%), share for 95% of the strong quality), RouteLLM's
  11-point reading, and baselines (random, always-cheap, always-strong, oracle).
* **labelled**: every row names the route it should take (``route`` or ``label``).
  The report gives accuracy, per-route precision and recall, the confusion matrix,
  the escalation rate, cost inflation and quality loss, and the misrouted examples
  with their neighbours. Rows whose label is not a route (e.g. CLINC150's ``oos``)
  measure rejection: out-of-scope recall.

Rows are routed by the router itself (:meth:`ExemplarRouter.route_batch`), so an
evaluation runs exactly the code that routes live traffic.

Example:
    >>> from langroute.evaluation import evaluate
    >>> report = evaluate(router, "eval.jsonl")  # doctest: +SKIP
    >>> report.apgr, report.cpt50  # doctest: +SKIP
    (0.68, 0.31)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from langroute.embedders import as_embedder
from langroute.errors import RouterConfigError
from langroute.evaluation import metrics as m
from langroute.evaluation.batches import (
    KEEP_NEIGHBOURS,
    in_chunks,
    neighbourhood,
    route_all,
    settings_for,
)
from langroute.evaluation.datasets import (
    EvalData,
    PrecomputedEmbedder,
    assign_folds,
    default_routes,
    expected_routes,
    is_contaminated,
    load_eval_set,
    require_two_routes,
    score_pair,
    split_contaminated,
)
from langroute.evaluation.reports import (
    BaselineResult,
    CurveReport,
    EvalReport,
    LabelReport,
    Misrouted,
    ScoreReport,
    optional_float,
)
from langroute.router.conversation import ConversationContext
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.exemplars import Exemplar
from langroute.router.settings import RouterSettings

__all__ = [
    "Evaluated",
    "cross_validate",
    "evaluate",
    "evaluate_decisions",
    "in_chunks",
    "neighbourhood",
    "route_all",
    "settings_for",
]


def route_rows(
    router: ExemplarRouter,
    rows: Sequence[Exemplar],
    context: ConversationContext | None = None,
    show_progress: bool = False,
) -> list[RouteDecision]:
    """Route evaluation rows: their text, or (``messages`` rows) with ``context``.

    Rows given as conversations are routed with the conversation strategy (default
    ``current_only``: the last user turn); a plain row counts as a one-turn conversation.
    """
    if context is None and not any(row.messages for row in rows):
        return route_all(router, [row.text for row in rows], show_progress)
    from langroute.router.conversation import route_conversations

    conversations = [row.messages or [{"role": "user", "content": row.text}] for row in rows]
    indices = list(range(len(rows)))

    def run(chunk: list[int]) -> list[RouteDecision]:
        decisions = route_conversations(router, [conversations[i] for i in chunk], context)
        return [
            d.model_copy(update={"neighbours": d.neighbours[:KEEP_NEIGHBOURS]}) for d in decisions
        ]

    return [d for part in in_chunks(indices, run, show_progress=show_progress) for d in part]


def _curve_report(
    share: np.ndarray, quality: np.ndarray, pgr: np.ndarray, thresholds: np.ndarray
) -> CurveReport:
    return CurveReport(
        share=[float(x) for x in share],
        quality=[float(x) for x in quality],
        pgr=[float(x) for x in pgr],
        thresholds=[float(t) if math.isfinite(t) else None for t in thresholds],
    )


def _score_report(
    z: np.ndarray,
    routed: np.ndarray,
    w: np.ndarray,
    s: np.ndarray,
    weak: str,
    strong: str,
    seeds: int,
) -> tuple[ScoreReport, list[BaselineResult]]:
    curve = m.cost_quality_curve(z, w, s)
    point = m.PointMetrics.of(curve)
    protocol = m.routellm_protocol(z, w, s)
    gap = curve.gap
    quality = float(np.where(routed, s, w).mean())
    report = ScoreReport(
        weak=weak,
        strong=strong,
        weak_quality=curve.weak_quality,
        strong_quality=curve.strong_quality,
        apgr=point.apgr,
        cpt50=optional_float(point.cpt50),
        cpt80=optional_float(point.cpt80),
        share_for_95=optional_float(point.share_for_95),
        max_pgr=point.max_pgr,
        routellm={"apgr": protocol.apgr, "cpt50": protocol.cpt50, "cpt80": protocol.cpt80},
        routellm_points=_curve_report(
            protocol.share, protocol.quality, protocol.pgr, protocol.thresholds
        ),
        curve=_curve_report(curve.share, curve.quality, curve.pgr, curve.thresholds),
        strong_share=float(routed.mean()),
        quality=quality,
        pgr=(quality - curve.weak_quality) / gap if gap else float("nan"),
    )
    random_exact, random_protocol = m.random_baseline(w, s, seeds=seeds)
    oracle_z = m.oracle_scores(w, s)
    oracle_curve = m.oracle_curve(w, s)
    oracle_point = m.PointMetrics.of(oracle_curve)
    oracle_protocol = m.routellm_protocol(oracle_z, w, s)
    report.oracle_curve = _curve_report(
        oracle_curve.share, oracle_curve.quality, oracle_curve.pgr, oracle_curve.thresholds
    )
    baselines = [
        BaselineResult(
            name=f"random ({seeds} seeds)",
            apgr=random_exact.apgr,
            cpt50=optional_float(random_exact.cpt50),
            cpt80=optional_float(random_exact.cpt80),
            share_for_95=optional_float(random_exact.share_for_95),
            routellm=random_protocol,
        ),
        BaselineResult(name="always-cheap", strong_share=0.0, quality=curve.weak_quality, pgr=0.0),
        BaselineResult(
            name="always-strong", strong_share=1.0, quality=curve.strong_quality, pgr=1.0
        ),
        BaselineResult(
            name="oracle",
            apgr=oracle_point.apgr,
            cpt50=optional_float(oracle_point.cpt50),
            cpt80=optional_float(oracle_point.cpt80),
            share_for_95=optional_float(oracle_point.share_for_95),
            routellm={
                "apgr": oracle_protocol.apgr,
                "cpt50": oracle_protocol.cpt50,
                "cpt80": oracle_protocol.cpt80,
            },
        ),
    ]
    return report, baselines


def _label_report(
    routes: list[str],
    expected: list[str | None],
    decisions: Sequence[RouteDecision],
    max_misrouted: int,
) -> LabelReport:
    index = {r: i for i, r in enumerate(routes)}
    in_scope = [i for i, e in enumerate(expected) if e is not None]
    oos = [i for i, e in enumerate(expected) if e is None]
    e_idx = np.array([index[expected[i]] for i in in_scope], dtype=np.int64)  # type: ignore[index]
    p_idx = np.array([index[decisions[i].route] for i in in_scope], dtype=np.int64)
    lm = m.label_metrics(e_idx, p_idx, routes)
    escalated = np.array([d.escalated for d in decisions], dtype=bool)
    in_scope_accuracy = None
    oos_recall = None
    if oos:
        ok = (e_idx == p_idx) & ~escalated[in_scope]
        in_scope_accuracy = float(ok.mean()) if len(ok) else float("nan")
        oos_recall = float(escalated[oos].mean())
    wrong = [i for i in in_scope if decisions[i].route != expected[i]]
    wrong += [i for i in oos if not decisions[i].escalated]
    misrouted = [
        Misrouted(
            text=decisions[i].query,
            expected=expected[i],
            predicted=decisions[i].route,
            reason=decisions[i].reason,
            confidence=decisions[i].confidence,
            neighbours=[
                {"text": nb.text, "route": nb.route, "similarity": round(nb.similarity, 4)}
                for nb in decisions[i].neighbours[:3]
            ],
        )
        for i in wrong[:max_misrouted]
    ]
    return LabelReport(
        routes=routes,
        n=len(in_scope),
        accuracy=lm.accuracy,
        precision={r: optional_float(v) for r, v in lm.precision.items()},
        recall={r: optional_float(v) for r, v in lm.recall.items()},
        support=lm.support,
        confusion=lm.confusion,
        escalation_rate=float(escalated[in_scope].mean()) if in_scope else 0.0,
        cost_inflation=lm.cost_inflation,
        quality_loss=lm.quality_loss,
        in_scope_accuracy=in_scope_accuracy,
        out_of_scope=len(oos),
        oos_recall=oos_recall,
        misrouted=misrouted,
    )


def _build_report(
    settings: RouterSettings,
    rows: Sequence[Exemplar],
    decisions: Sequence[RouteDecision],
    pair: tuple[str, str] | None,
    *,
    excluded: int,
    overlap: int,
    seeds: int,
    max_misrouted: int,
    threshold: float,
    folds: int | None = None,
) -> EvalReport:
    routes = list(settings.routes)
    strongest = routes[-1]
    score_report = None
    baselines: list[BaselineResult] = []
    if pair is not None:
        weak, strong = pair
        w = np.array([r.scores[weak] for r in rows])  # type: ignore[index]
        s = np.array([r.scores[strong] for r in rows])  # type: ignore[index]
        z = np.array([d.escalation for d in decisions])
        routed = np.array([d.route == strongest for d in decisions])
        score_report, baselines = _score_report(z, routed, w, s, weak, strong, seeds)
    expected = expected_routes(rows, routes, settings.score_keys)
    label_report = None
    has_labels = any(r.route is not None for r in rows)
    if has_labels or pair is not None:
        label_report = _label_report(routes, expected, decisions, max_misrouted)
        if pair is None:
            baselines = _label_baselines(routes, expected, settings)
    return EvalReport(
        kind="scores" if pair is not None else "labels",
        n=len(rows),
        excluded_contaminated=excluded,
        overlap_with_exemplars=overlap,
        folds=folds,
        threshold=threshold,
        settings=settings.model_dump(mode="json"),
        scores=score_report,
        labels=label_report,
        baselines=baselines,
    )


def _label_baselines(
    routes: list[str], expected: list[str | None], settings: RouterSettings
) -> list[BaselineResult]:
    known = [e for e in expected if e is not None]
    if not known:
        return []
    counts = {r: known.count(r) for r in routes}
    majority = max(routes, key=lambda r: counts[r])
    out = [
        BaselineResult(name="random (uniform)", accuracy=1.0 / len(routes)),
        BaselineResult(name=f"majority ({majority})", accuracy=counts[majority] / len(known)),
    ]
    if settings.rule == "threshold" and len(routes) > 1:
        out.append(BaselineResult(name="always-cheap", accuracy=counts[routes[0]] / len(known)))
        out.append(BaselineResult(name="always-strong", accuracy=counts[routes[-1]] / len(known)))
    out.append(BaselineResult(name="oracle", accuracy=1.0))
    return out


@dataclass(frozen=True)
class Evaluated:
    """An evaluation with what it was computed from: the rows and each decision.

    Attributes:
        report: the :class:`EvalReport`.
        rows: the evaluated rows (contaminated ones left out when asked).
        decisions: the router's decision per row (nearest few neighbours kept).
        pair: the (weak, strong) score keys of scored data, else None.
    """

    report: EvalReport
    rows: list[Exemplar]
    decisions: list[RouteDecision]
    pair: tuple[str, str] | None


def evaluate_decisions(
    router: ExemplarRouter,
    eval_set: EvalData,
    *,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    seeds: int = 10,
    max_misrouted: int = 50,
    show_progress: bool = False,
    context: ConversationContext | None = None,
) -> Evaluated:
    """:func:`evaluate`, keeping the rows and the decisions (to compare two routers)."""
    settings = router.settings
    require_two_routes(settings.routes)
    rows, excluded = split_contaminated(
        load_eval_set(eval_set, settings.routes), exclude_contaminated
    )
    if not rows:
        raise RouterConfigError("the evaluation set has no rows")
    pair = score_pair(rows, settings.routes, settings.score_keys, weak, strong)
    known = {ex.text for ex in router.exemplars}
    overlap = sum(1 for r in rows if r.text in known)
    decisions = route_rows(router, rows, context, show_progress)
    report = _build_report(
        settings,
        rows,
        decisions,
        pair,
        excluded=excluded,
        overlap=overlap,
        seeds=seeds,
        max_misrouted=max_misrouted,
        threshold=router.threshold,
    )
    report.calibration = router.calibration
    report.tuning = router.tuning
    return Evaluated(report, rows, decisions, pair)


def evaluate(
    router: ExemplarRouter,
    eval_set: EvalData,
    *,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    seeds: int = 10,
    max_misrouted: int = 50,
    show_progress: bool = False,
    context: ConversationContext | None = None,
) -> EvalReport:
    """Measure ``router`` on labelled or scored rows it was not built from.

    Args:
        router: the router to measure (its threshold gives the report's own point).
        eval_set: a JSONL/CSV path or exemplars, with ``scores`` or route labels.
        weak: score key of the weak model (scored data); by default the score key
            of the cheapest route.
        strong: score key of the strong model; by default that of the strongest route.
        exclude_contaminated: leave out rows marked ``contaminated``.
        seeds: random-baseline runs to average.
        max_misrouted: how many misrouted examples to keep in the report.
        show_progress: rich progress bar while routing large files.
        context: how rows given as ``messages`` are routed (default: the last user
            turn); see :class:`~langroute.router.conversation.ConversationContext`.

    Returns:
        An :class:`EvalReport`; ``report.apgr`` / ``report.accuracy`` and friends.

    Example:
        >>> report = evaluate(router, "heldout.jsonl")  # doctest: +SKIP
        >>> print(f"APGR {report.apgr:.3f}")  # doctest: +SKIP
    """
    return evaluate_decisions(
        router,
        eval_set,
        weak=weak,
        strong=strong,
        exclude_contaminated=exclude_contaminated,
        seeds=seeds,
        max_misrouted=max_misrouted,
        show_progress=show_progress,
        context=context,
    ).report


def cross_validate(
    data: EvalData,
    *,
    routes: Sequence[str] | None = None,
    embedder: Any = None,
    folds: int = 5,
    seed: int = 0,
    weak: str | None = None,
    strong: str | None = None,
    out_of_scope: Sequence[str] = (),
    exclude_contaminated: bool = True,
    seeds: int = 10,
    max_misrouted: int = 50,
    show_progress: bool = False,
    tune: bool | None = False,
    **options: Any,
) -> EvalReport:
    """k-fold cross-validation on one file: each fold is routed by the other folds.

    Identical texts stay in one fold, so no query finds itself. Every row is embedded
    once. Out-of-fold decisions are pooled into one report; ``fold_metrics`` has the
    per-fold figures. Contaminated rows serve as exemplars but are not scored.

    Args:
        data: a JSONL/CSV path or exemplars with route labels or scores.
        routes: route names cheapest first; by default ``[weak, strong]`` for scored
            data, else the labels in order of first appearance.
        embedder: as for :class:`ExemplarRouter` (default: bundled MiniLM).
        folds: number of folds (at least 2).
        seed: fold assignment seed.
        weak: score key of the weak model (scored data).
        strong: score key of the strong model (scored data).
        out_of_scope: labels that are never routes (e.g. ``"oos"``): such rows are not
            exemplars; they measure rejection.
        exclude_contaminated: do not score rows marked ``contaminated``.
        seeds: random-baseline runs.
        max_misrouted: misrouted examples kept.
        show_progress: progress bars.
        tune: tune each fold's router within its own training folds, as ``langroute
            build`` would (:func:`~langroute.evaluation.tuning.build_router`): ``None``
            when there are enough exemplars, ``True`` always, ``False`` never. The
            settings in ``options`` are kept; the choice per fold is in
            ``report.fold_tuning``.
        **options: router settings (``k``, ``rule``, ``weighting``, ...).

    Example:
        >>> report = cross_validate("mmlu.dev.jsonl", folds=5, k=100)  # doctest: +SKIP
    """
    oos = set(out_of_scope)
    rows = load_eval_set(
        data,
        routes,
        out_of_scope=sorted(oos),
        infer_routes=routes is None and not (weak and strong),
    )
    if not rows:
        raise RouterConfigError("no rows to cross-validate")
    route_list = default_routes(rows, routes, weak, strong, oos)
    require_two_routes(route_list)
    if weak and strong and weak in route_list and strong in route_list:
        options.setdefault("mode", "scores")
    settings = settings_for(route_list, options)
    prepared = [settings.prepare(r.text)[0] for r in rows]
    base = as_embedder(embedder)
    cache = PrecomputedEmbedder(base, prepared, show_progress=show_progress)
    fold_of = assign_folds([r.text for r in rows], folds, seed)
    decisions: list[RouteDecision | None] = [None] * len(rows)
    fold_metrics: list[dict[str, float]] = []
    fold_tuning: list[dict[str, Any]] = []
    pair_all = (
        score_pair(rows, route_list, settings.score_keys, weak, strong)
        if all(r.scores for r in rows)
        else None
    )
    threshold_in_force = settings.threshold_for("scores" if pair_all else "vote")
    for f in range(folds):
        train = [r for r, g in zip(rows, fold_of) if g != f and r.route not in oos]
        test = [i for i, g in enumerate(fold_of) if g == f]
        if not test:
            continue
        router = ExemplarRouter(routes=route_list, exemplars=train, embedder=cache, **options)
        if tune is not False:
            from langroute.evaluation.tuning import TUNED_SETTINGS, tune_router, tuning_skip_reason

            if tune or tuning_skip_reason(router) is None:
                fixed = set(options) & set(TUNED_SETTINGS)
                fold_tuning.append(tune_router(router, fixed=fixed, seed=seed).chosen)
        threshold_in_force = router.threshold
        fold_decisions = route_all(router, [rows[i].text for i in test], False)
        for i, d in zip(test, fold_decisions):
            decisions[i] = d
        fold_rows = [(rows[i], d) for i, d in zip(test, fold_decisions)]
        fold_rows = [
            (r, d) for r, d in fold_rows if not (exclude_contaminated and is_contaminated(r))
        ]
        if fold_rows:
            fold_metrics.append(_quick_metrics(fold_rows, settings, pair_all))
    scored = [
        (r, d)
        for r, d in zip(rows, decisions)
        if d is not None and not (exclude_contaminated and is_contaminated(r))
    ]
    report = _build_report(
        settings,
        [r for r, _ in scored],
        [d for _, d in scored],  # type: ignore[misc]
        pair_all,
        excluded=len(rows) - len(scored),
        overlap=0,
        seeds=seeds,
        max_misrouted=max_misrouted,
        threshold=threshold_in_force,
        folds=folds,
    )
    report.fold_metrics = fold_metrics
    report.fold_tuning = fold_tuning
    return report


def _quick_metrics(
    pairs: list[tuple[Exemplar, RouteDecision]],
    settings: RouterSettings,
    pair: tuple[str, str] | None,
) -> dict[str, float]:
    if pair is not None:
        w = np.array([r.scores[pair[0]] for r, _ in pairs])  # type: ignore[index]
        s = np.array([r.scores[pair[1]] for r, _ in pairs])  # type: ignore[index]
        z = np.array([d.escalation for _, d in pairs])
        curve = m.cost_quality_curve(z, w, s)
        return {
            "n": float(len(pairs)),
            "apgr": curve.apgr,
            "cpt50": curve.cpt(0.5),
            "cpt80": curve.cpt(0.8),
        }
    expected = expected_routes([r for r, _ in pairs], settings.routes, settings.score_keys)
    hits = [d.route == e for (_, d), e in zip(pairs, expected) if e is not None]
    return {"n": float(len(pairs)), "accuracy": float(np.mean(hits)) if hits else float("nan")}
