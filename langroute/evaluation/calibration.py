"""Calibrate a router's dial on held-out rows: a target strong-call share or quality.

The threshold is chosen by replaying the router's own decision engine
(:func:`langroute.router.engine.choose`) at every candidate threshold over one search of the
rows' neighbours, so the calibrated router decides exactly as replayed.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from langroute.errors import RouterConfigError
from langroute.evaluation.batches import neighbourhood
from langroute.evaluation.datasets import (
    EvalData,
    expected_routes,
    load_eval_set,
    score_pair,
    split_contaminated,
)
from langroute.router import engine
from langroute.router.exemplar_router import ExemplarRouter

__all__ = ["CalibrationResult", "calibrate"]


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
    if (target_strong_share is None) == (target_quality is None):
        raise RouterConfigError("give exactly one of target_strong_share= or target_quality=")
    target = target_strong_share if target_strong_share is not None else target_quality
    if target is None or not 0.0 <= target <= 1.0:
        raise RouterConfigError(f"the target must be in [0, 1], got {target}")
    settings = router.settings
    if settings.rule == "argmax":
        raise RouterConfigError("an argmax router has no dial to calibrate (use rule='threshold')")
    rows, excluded = split_contaminated(load_eval_set(data), exclude_contaminated)
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
    shares, qualities = [], []

    def routed_at(threshold: float) -> np.ndarray:
        choice = engine.choose(evidence, nb.max_similarity, settings, threshold)
        return choice.route_index[keep]

    for t in candidates:
        chosen = routed_at(float(t))
        shares.append(float((chosen == strongest).mean()))
        if pair is not None:
            qualities.append(float(np.where(chosen == strongest, s, w).mean()))
        else:
            qualities.append(float((chosen >= expected_idx).mean()))
    share_arr, quality_arr = np.array(shares), np.array(qualities)
    strong_quality = float(s.mean()) if pair is not None else 1.0
    if target_strong_share is not None:
        distance = np.abs(share_arr - target_strong_share)
        best = np.nonzero(distance <= distance.min() + 1e-12)[0]
        pick = int(best[np.argmax(quality_arr[best])])
        reached = bool(distance[pick] <= max(0.02, 1.0 / len(share_arr)))
    else:
        goal = (target_quality or 0.0) * strong_quality
        ok = np.nonzero(quality_arr >= goal - 1e-12)[0]
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
        data=str(data) if isinstance(data, (str, Path)) else None,
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
