"""Calibrate a router's dial on held-out rows: a target strong-call share or quality.

The threshold is chosen by replaying the router's own decision engine
(:func:`langroute.router.engine.choose`) at every candidate threshold over one search of the
rows' neighbours, so the calibrated router decides exactly as replayed.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from langroute.errors import RouterConfigError
from langroute.evaluation.batches import neighbourhood
from langroute.evaluation.datasets import (
    EvalData,
    expected_routes,
    load_eval_set,
    require_two_routes,
    score_pair,
    split_contaminated,
)
from langroute.router import engine
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.exemplars import Exemplar

__all__ = [
    "DEFAULT_QUALITY_TARGET",
    "CalibrationResult",
    "calibrate",
    "calibrate_by_cross_validation",
    "cross_validation_skip_reason",
]


class CalibrationResult(BaseModel):
    """What :func:`calibrate` chose; stored as ``router.calibration`` (saved in the manifest)."""

    threshold: float
    target_strong_share: float | None = None
    target_quality: float | None = None
    strong_share: float = Field(description="Share sent to the strongest route at the threshold.")
    quality: float = Field(description="Routed quality (scored) or 1 - quality loss (labelled).")
    quality_fraction_of_strong: float | None = None
    pgr: float | None = None
    reached: bool = Field(description="Whether the target was met exactly enough.")
    n: int
    excluded_contaminated: int = 0
    overlap_with_exemplars: int = 0
    weak: str | None = None
    strong: str | None = None
    previous_threshold: float
    calibrated_at: str
    data: str | None = None
    method: str = Field(
        default="held-out rows",
        description='"held-out rows" (calibrate) or "cross-validation" (within the exemplars).',
    )
    folds: int | None = None
    strong_share_sd: float | None = Field(
        default=None, description="Spread of the strong share over the folds (standard deviation)."
    )
    quality_fraction_sd: float | None = Field(
        default=None, description="Spread over the folds of the quality as a fraction of strong."
    )
    standard_errors: float = Field(
        default=0.0,
        description=(
            "Quality target: how many standard errors of the quality estimate the chosen "
            "point lies inside the target (0: the point estimate just reaches it)."
        ),
    )
    quality_lower_bound: float | None = Field(
        default=None,
        description=(
            "Quality target: the estimate less that many standard errors, in the target's "
            "terms (a fraction of the strongest route's quality, or the labelled share)."
        ),
    )

    def summary(self) -> str:
        """One line: the target, the threshold and the expected operating point."""
        target = (
            f"keep {self.target_quality:.0%} of the strongest route's quality"
            if self.target_quality is not None
            else f"send {self.target_strong_share:.0%} to the strongest route"
        )
        if self.standard_errors and self.quality_lower_bound is not None:
            errors = "error" if self.standard_errors == 1 else "errors"
            target += (
                f" with {self.standard_errors:g} standard {errors} to spare "
                f"(lower bound {self.quality_lower_bound:.1%})"
            )
        spread = (
            f" (± {self.strong_share_sd:.1%} over {self.folds} folds)"
            if self.strong_share_sd is not None and self.folds
            else ""
        )
        if self.quality_fraction_of_strong is not None:
            quality = f"{self.quality_fraction_of_strong:.1%} of the strongest route's quality"
            if self.quality_fraction_sd is not None:
                quality += f" (± {self.quality_fraction_sd:.1%})"
        else:
            quality = f"{self.quality:.1%} of queries on a route good enough for them"
        reached = "" if self.reached else "; target NOT reached"
        return (
            f"target: {target}; threshold {self.threshold:.3g} ({self.method}); expected: "
            f"{self.strong_share:.1%} sent to the strongest route{spread}, {quality}{reached}"
        )


def calibrate(
    router: ExemplarRouter,
    data: EvalData,
    *,
    target_strong_share: float | None = None,
    target_quality: float | None = None,
    weak: str | None = None,
    strong: str | None = None,
    exclude_contaminated: bool = True,
    show_progress: bool = False,
) -> CalibrationResult:
    """Set the router's dial from held-out data and record it in ``router.calibration``.

    The threshold is chosen by replaying the router's own decision (dial, low-margin
    escalation and out-of-distribution fallback) at every candidate threshold.

    * ``target_strong_share``: the strong-call share closest to the target.
    * ``target_quality``: the cheapest threshold whose quality reaches the target, as
      a fraction of the always-strong quality (scored data; e.g. 0.95), or as the
      share of queries not sent to a cheaper route than needed (labelled data).

    ``router.save()`` then stores the threshold and the calibration record.

    Raises:
        RouterConfigError: neither or both targets, a target outside [0, 1], or an
            ``argmax`` router (it has no dial).

    Example:
        >>> result = calibrate(router, "heldout.jsonl", target_strong_share=0.3)  # doctest: +SKIP
        >>> router.threshold == result.threshold  # doctest: +SKIP
        True
    """
    _check_target(target_strong_share, target_quality)
    settings = router.settings
    if settings.rule == "argmax":
        raise RouterConfigError("an argmax router has no dial to calibrate (use rule='threshold')")
    require_two_routes(settings.routes)
    rows, excluded = split_contaminated(load_eval_set(data, settings.routes), exclude_contaminated)
    if not rows:
        raise RouterConfigError("the calibration set has no rows")
    routes = list(settings.routes)
    pair = score_pair(rows, routes, settings.score_keys, weak, strong)
    known = {ex.text for ex in router.exemplars}
    overlap = sum(1 for r in rows if r.text in known)
    if overlap:
        warnings.warn(
            f"{overlap} calibration rows are also exemplars of the router: they find "
            "themselves, which makes the router look better; calibrate on held-out rows",
            stacklevel=2,
        )
    nb = neighbourhood(router, [r.text for r in rows], show_progress)
    return _calibrate_on(
        router,
        rows,
        nb,
        pair,
        target_strong_share=target_strong_share,
        target_quality=target_quality,
        excluded=excluded,
        overlap=overlap,
        data=str(data) if isinstance(data, (str, Path)) else None,
        method="held-out rows",
    )


def _check_target(target_strong_share: float | None, target_quality: float | None) -> None:
    if (target_strong_share is None) == (target_quality is None):
        raise RouterConfigError("give exactly one of target_strong_share= or target_quality=")
    target = target_strong_share if target_strong_share is not None else target_quality
    if target is None or not 0.0 <= target <= 1.0:
        raise RouterConfigError(f"the target must be in [0, 1], got {target}")


def _calibrate_on(
    router: ExemplarRouter,
    rows: list[Exemplar],
    nb: engine.Neighbourhood,
    pair: tuple[str, str] | None,
    *,
    target_strong_share: float | None,
    target_quality: float | None,
    excluded: int = 0,
    overlap: int = 0,
    data: str | None = None,
    method: str,
    folds: np.ndarray | None = None,
    standard_errors: float = 0.0,
) -> CalibrationResult:
    """Choose the threshold from ``rows`` routed through ``nb``, set it, record it.

    A quality target is met when the quality estimate, less ``standard_errors`` of its
    standard errors, reaches it (see :func:`_quality_margin`).
    """
    settings = router.settings
    routes = list(settings.routes)
    evidence = engine.weigh(nb, settings, router.mode)
    candidates = _candidate_thresholds(evidence.boundary, settings.min_margin)
    keep = np.arange(len(rows))
    strongest = len(routes) - 1
    if pair is not None:
        w = np.array([r.scores[pair[0]] for r in rows])  # type: ignore[index]
        s = np.array([r.scores[pair[1]] for r in rows])  # type: ignore[index]
        expected_idx = None
    else:
        expected = expected_routes(rows, routes, settings.score_keys)
        keep = np.array([i for i, e in enumerate(expected) if e is not None], dtype=np.int64)
        expected_idx = np.array([routes.index(expected[i]) for i in keep])  # type: ignore[arg-type]
        if not len(keep):
            raise RouterConfigError("no calibration row has a route label of this router")
    shares, qualities, margins = [], [], []

    def routed_at(threshold: float) -> np.ndarray:
        choice = engine.choose(evidence, nb.max_similarity, settings, threshold)
        return choice.route_index[keep]

    for t in candidates:
        chosen = routed_at(float(t))
        shares.append(float((chosen == strongest).mean()))
        if pair is not None:
            routed = np.where(chosen == strongest, s, w)
        else:
            routed = (chosen >= expected_idx).astype(np.float64)
        qualities.append(float(routed.mean()))
        if target_quality is not None:
            margins.append(_quality_margin(routed, s if pair is not None else None, target_quality))
    share_arr, quality_arr = np.array(shares), np.array(qualities)
    strong_quality = float(s.mean()) if pair is not None else 1.0
    if target_strong_share is not None:
        distance = np.abs(share_arr - target_strong_share)
        best = np.nonzero(distance <= distance.min() + 1e-12)[0]
        pick = int(best[np.argmax(quality_arr[best])])
        reached = bool(distance[pick] <= max(0.02, 1.0 / len(share_arr)))
    else:
        goal = (target_quality or 0.0) * strong_quality
        inside = quality_arr - standard_errors * np.array(margins)
        ok = np.nonzero(inside >= goal - 1e-12)[0]
        if len(ok):
            pick = int(ok[np.lexsort((-quality_arr[ok], share_arr[ok]))[0]])
            reached = True
        else:
            pick = int(np.argmax(quality_arr))
            reached = False
    # Among thresholds giving the same decisions, take the middle one (robust to drift).
    same = np.nonzero((share_arr == share_arr[pick]) & (quality_arr == quality_arr[pick]))[0]
    contiguous = _run_around(same, pick)
    threshold = float(np.median(candidates[contiguous]))
    chosen = routed_at(threshold)
    if float((chosen == strongest).mean()) != share_arr[pick]:
        threshold = float(candidates[pick])
    spread = _fold_spread(chosen, keep, strongest, pair, folds, rows, expected_idx)
    previous = router.threshold
    router.threshold = threshold
    weak_quality = float(w.mean()) if pair is not None else None
    pgr = None
    if pair is not None and weak_quality is not None and strong_quality != weak_quality:
        pgr = (quality_arr[pick] - weak_quality) / (strong_quality - weak_quality)
    result = CalibrationResult(
        threshold=threshold,
        target_strong_share=target_strong_share,
        target_quality=target_quality,
        strong_share=float(share_arr[pick]),
        quality=float(quality_arr[pick]),
        quality_fraction_of_strong=(
            float(quality_arr[pick] / strong_quality)
            if pair is not None and strong_quality
            else None
        ),
        pgr=pgr,
        reached=reached,
        n=len(rows),
        excluded_contaminated=excluded,
        overlap_with_exemplars=overlap,
        weak=pair[0] if pair else None,
        strong=pair[1] if pair else None,
        previous_threshold=previous,
        calibrated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data=data,
        method=method,
        standard_errors=standard_errors if target_quality is not None else 0.0,
        quality_lower_bound=(
            float((quality_arr[pick] - standard_errors * margins[pick]) / strong_quality)
            if target_quality is not None and strong_quality
            else None
        ),
        **spread,
    )
    router.calibration = result.model_dump(mode="json")
    if not reached:
        floor = float(share_arr.min())
        if target_strong_share is not None and target_strong_share < floor:
            why = (
                f"out-of-distribution queries (below min_similarity={settings.min_similarity}) "
                f"and low-margin votes (min_margin={settings.min_margin}) always escalate, so "
                f"no threshold sends fewer than {floor:.1%} of these rows to the strongest "
                "route; lower those settings (or add exemplars) to go further"
            )
        elif target_strong_share is not None:
            why = "queries with equal escalation scores move together, so shares come in steps"
        else:
            why = "no threshold reaches that quality on these rows; the best one was kept"
        warnings.warn(
            f"calibration target not reached: closest strong share {result.strong_share:.1%} "
            f"at quality {result.quality:.3f}: {why}",
            stacklevel=2,
        )
    return result


def _quality_margin(routed: np.ndarray, strong: np.ndarray | None, target: float) -> float:
    """The standard error of "routed quality minus ``target`` times strong quality".

    Scored rows: per row ``routed_i - target * strong_i`` (paired, so the spread of the
    strong model's own quality on these rows cancels); labelled rows: the binomial
    standard error of the share on a good enough route.
    """
    n = len(routed)
    if n < 2:
        return 0.0
    diff = routed - target * strong if strong is not None else routed
    return float(np.std(diff, ddof=1) / np.sqrt(n))


def _run_around(indices: np.ndarray, pick: int) -> np.ndarray:
    """The contiguous run of ``indices`` (sorted) that contains ``pick``."""
    pos = int(np.searchsorted(indices, pick))
    lo = hi = pos
    while lo > 0 and indices[lo - 1] == indices[lo] - 1:
        lo -= 1
    while hi + 1 < len(indices) and indices[hi + 1] == indices[hi] + 1:
        hi += 1
    return indices[lo : hi + 1]


def _candidate_thresholds(boundary: np.ndarray, min_margin: float) -> np.ndarray:
    values = np.unique(boundary)
    mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else values
    edges = np.concatenate([[0.0, 1.0], values, values + 1e-9, mids, mids + min_margin])
    return np.unique(np.clip(edges, 0.0, 1.0))


def _fold_spread(
    chosen: np.ndarray,
    keep: np.ndarray,
    strongest: int,
    pair: tuple[str, str] | None,
    folds: np.ndarray | None,
    rows: list[Exemplar],
    expected_idx: np.ndarray | None,
) -> dict[str, Any]:
    """Standard deviation over the folds of the strong share and the quality fraction."""
    if folds is None:
        return {}
    fold_of = folds[keep]
    shares, fractions = [], []
    for f in np.unique(fold_of):
        mask = fold_of == f
        picked = chosen[mask]
        shares.append(float((picked == strongest).mean()))
        if pair is not None:
            part = [rows[i] for i in keep[mask]]
            w = np.array([r.scores[pair[0]] for r in part])  # type: ignore[index]
            s = np.array([r.scores[pair[1]] for r in part])  # type: ignore[index]
            strong = float(s.mean())
            if strong > 0:
                fractions.append(float(np.where(picked == strongest, s, w).mean()) / strong)
        elif expected_idx is not None:
            fractions.append(float((picked >= expected_idx[mask]).mean()))
    return {
        "folds": len(shares),
        "strong_share_sd": float(np.std(shares)) if len(shares) > 1 else None,
        "quality_fraction_sd": float(np.std(fractions)) if len(fractions) > 1 else None,
    }


DEFAULT_QUALITY_TARGET = 0.95
"""The dial's default target: keep 95% of the strongest route's quality (scored
exemplars), or send 95% of queries to a route at least as strong as they need (labelled
exemplars); see :func:`calibrate_by_cross_validation`."""


DEFAULT_STANDARD_ERRORS = 1.0
"""How far inside a quality target the cross-validated dial aims, in standard errors of
the out-of-fold quality estimate (see :func:`calibrate_by_cross_validation`).

One, so that "keep 95% of the strongest route's quality" holds on the traffic the
exemplars stand for with about 84% confidence, not half the time: measured on RouteLLM's
halves, the estimate itself (0) kept 94.98-96.7% (one direction of four under 95%), one
standard error inside kept 96.1-98.6% (all four), for 5 more points of MMLU sent to the
strongest route. A held-out set as large as the exemplars adds its own sampling noise:
there expect about 76% (over five half splits of each set, 14 of 20 directions kept 95%;
``benchmarks/apgr_ceiling.py``)."""


def cross_validation_skip_reason(router: ExemplarRouter, folds: int = 5) -> str | None:
    """Why the dial cannot be calibrated within ``router``'s exemplars (``None``: it can)."""
    if router.settings.rule == "argmax":
        return "an argmax router has no dial"
    if len(router.routes) < 2:
        return "one route: nothing to choose"
    if len(router.exemplars) < 4 * folds:
        return f"{len(router.exemplars)} exemplars: too few for {folds}-fold cross-validation"
    return None


def calibrate_by_cross_validation(
    router: ExemplarRouter,
    *,
    target_quality: float | None = DEFAULT_QUALITY_TARGET,
    target_strong_share: float | None = None,
    folds: int = 5,
    seed: int = 0,
    standard_errors: float = DEFAULT_STANDARD_ERRORS,
) -> CalibrationResult:
    """Set the dial for a stated target by cross-validation within the router's exemplars.

    Each fold of the exemplars is routed by the others (over the vectors the router
    holds: nothing is embedded again) with the router's settings; the threshold is then
    chosen on these out-of-fold decisions as :func:`calibrate` chooses it on held-out
    rows, and the expected operating point (share sent to the strongest route, quality
    as a fraction of always-strongest) is recorded with its spread over the folds.

    With ``standard_errors`` above 0 a quality target is met only when the out-of-fold
    estimate less that many of its standard errors reaches it (1: the target holds with
    about 84% confidence on data like the exemplars, for more traffic to the strongest
    route); the record keeps that lower bound.

    Raises:
        RouterConfigError: see :func:`cross_validation_skip_reason`; a target outside
            [0, 1]; neither or both targets; a negative ``standard_errors``.

    Example:
        >>> result = calibrate_by_cross_validation(router)  # doctest: +SKIP
        >>> result.summary()  # doctest: +SKIP
        "target: keep 95% of the strongest route's quality; threshold 0.41 ..."
    """
    from langroute.evaluation.datasets import (
        assign_folds,
        exemplar_score_pair,
        exemplar_vectors,
    )

    _check_target(target_strong_share, target_quality)
    if not standard_errors >= 0.0:
        raise RouterConfigError(f"standard_errors must be 0 or more, got {standard_errors}")
    reason = cross_validation_skip_reason(router, folds)
    if reason is not None:
        raise RouterConfigError(f"cannot calibrate by cross-validation: {reason}")
    rows = list(router.exemplars)
    settings = router.settings
    routes = list(settings.routes)
    pair = exemplar_score_pair(router)
    cache = exemplar_vectors(router)
    fold_of = np.asarray(assign_folds([r.text for r in rows], folds, seed))
    options = settings.model_dump(exclude={"routes"})
    options["mode"] = router.mode
    parts, order = [], []
    for f in range(folds):
        train = [r for r, g in zip(rows, fold_of) if g != f]
        test = [i for i, g in enumerate(fold_of) if g == f]
        if not test or not train:
            continue
        fold_router = ExemplarRouter(routes=routes, exemplars=train, embedder=cache, **options)
        parts.append(neighbourhood(fold_router, [rows[i].text for i in test], k=settings.k))
        order.extend(test)
    ordered = [rows[i] for i in order]
    return _calibrate_on(
        router,
        ordered,
        engine.Neighbourhood.concat(parts),
        pair,
        target_strong_share=target_strong_share,
        target_quality=target_quality,
        method="cross-validation",
        folds=fold_of[np.asarray(order)],
        standard_errors=standard_errors,
    )
