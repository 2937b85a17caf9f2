"""Routing metrics in pure numpy: cost-quality curves, PGR, APGR, CPT and label metrics.

Notation (RouteLLM, arXiv 2406.18665): ``n`` queries with weak quality ``w`` and strong
quality ``s``; ``W = mean(w)``, ``S = mean(s)``. A router gives every query a score
``z`` (higher = more in need of the strong model). Sending the queries with the highest
scores to the strong model traces the cost-quality curve.

Two readings of the same curve are provided:

* **exact** (:func:`cost_quality_curve`): one point per distinct score. Queries with
  equal scores form a block that moves to the strong model together, so ties are
  never split by input order; the straight segment across a block is the expected
  curve when the tie is broken at random. APGR is the trapezoid area under this
  curve, CPT(x) the first strong-call share where it reaches PGR ``x``.
* **RouteLLM's 11-point protocol** (:func:`routellm_protocol`): thresholds at the 0%,
  10%, ..., 100% quantiles of the scores, strong if ``z >= t`` (``z > t`` at the top
  edge), trapezoid over those points, CPT by linear interpolation.

Example:
    >>> import numpy as np
    >>> from langroute.evaluation.metrics import cost_quality_curve
    >>> curve = cost_quality_curve(
    ...     np.array([0.9, 0.1]), weak=np.array([0.0, 1.0]), strong=np.array([1.0, 1.0])
    ... )
    >>> round(curve.apgr, 3), curve.cpt(0.5)
    (0.75, 0.25)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# numpy >= 2 renamed trapz to trapezoid.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined]

__all__ = [
    "CostQualityCurve",
    "LabelMetrics",
    "PointMetrics",
    "cost_quality_curve",
    "label_metrics",
    "oracle_curve",
    "oracle_scores",
    "random_baseline",
    "routellm_protocol",
]


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _check(
    scores: Sequence[float] | np.ndarray,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, w, s = _as_1d(scores, "scores"), _as_1d(weak, "weak"), _as_1d(strong, "strong")
    if not len(z) == len(w) == len(s):
        raise ValueError(f"lengths differ: scores {len(z)}, weak {len(w)}, strong {len(s)}")
    if len(z) == 0:
        raise ValueError("no queries to evaluate")
    return z, w, s


def _first_crossing(share: np.ndarray, values: np.ndarray, target: float) -> float:
    """First ``share`` where the piecewise-linear ``values`` reach ``target`` (NaN if never)."""
    reached = np.nonzero(values >= target - 1e-12)[0]
    if len(reached) == 0:
        return float("nan")
    j = int(reached[0])
    if j == 0:
        return float(share[0])
    x0, x1, y0, y1 = share[j - 1], share[j], values[j - 1], values[j]
    if y1 == y0:
        return float(x1)
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def _interp(share: np.ndarray, values: np.ndarray, at: float) -> float:
    return float(np.interp(at, share, values))


@dataclass(frozen=True)
class CostQualityCurve:
    """A router's cost-quality curve: strong-call share against routed quality.

    Attributes:
        share: strong-call fraction at each point, increasing from 0 to 1.
        quality: mean routed quality at each point.
        thresholds: the score threshold of each point (strong if ``z >= t``);
            ``+inf`` for the all-weak point.
        weak_quality: ``W``, the all-weak quality.
        strong_quality: ``S``, the all-strong quality.
    """

    share: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray
    weak_quality: float
    strong_quality: float

    @property
    def gap(self) -> float:
        """``S - W``: the quality the router can recover."""
        return self.strong_quality - self.weak_quality

    @property
    def pgr(self) -> np.ndarray:
        """Performance gap recovered at each point, ``(r - W) / (S - W)`` (NaN if S == W)."""
        if self.gap == 0:
            return np.full_like(self.quality, np.nan)
        return (self.quality - self.weak_quality) / self.gap

    @property
    def apgr(self) -> float:
        """Average PGR: trapezoid area under PGR against the strong-call share."""
        return float(_trapezoid(self.pgr, self.share))

    @property
    def max_pgr(self) -> float:
        """The highest PGR on the curve (above 1 when the weak model sometimes wins)."""
        return float(np.max(self.pgr))

    def cpt(self, x: float) -> float:
        """CPT(x): the smallest strong-call share at which PGR reaches ``x`` (NaN if never).

        Example:
            >>> curve.cpt(0.5)  # doctest: +SKIP
            0.354
        """
        return _first_crossing(self.share, self.pgr, x)

    def share_for_quality(self, fraction_of_strong: float = 0.95) -> float:
        """Smallest strong-call share whose quality reaches ``fraction_of_strong * S``."""
        return _first_crossing(self.share, self.quality, fraction_of_strong * self.strong_quality)

    def quality_at(self, share: float) -> float:
        """Routed quality at a strong-call share (linear between points)."""
        return _interp(self.share, self.quality, share)

    def pgr_at(self, share: float) -> float:
        """PGR at a strong-call share (linear between points)."""
        return _interp(self.share, self.pgr, share)


def cost_quality_curve(
    scores: Sequence[float] | np.ndarray,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
) -> CostQualityCurve:
    """The exact cost-quality curve of a router's scores, ties moved as one block.

    Queries are sent to the strong model in order of decreasing score. Equal scores
    form a block that crosses together: the curve has one point per distinct score
    (plus the all-weak start), so the result never depends on input order.

    Args:
        scores: ``z`` per query; higher means more in need of the strong model.
        weak: weak-model quality per query.
        strong: strong-model quality per query.

    Returns:
        The curve; read APGR, CPT, PGR from it.

    Example:
        >>> curve = cost_quality_curve([1.0, 1.0, 0.0], [0, 1, 1], [1, 1, 1])
        >>> curve.share.round(3).tolist(), curve.quality.round(3).tolist()
        ([0.0, 0.667, 1.0], [0.667, 1.0, 1.0])
    """
    z, w, s = _check(scores, weak, strong)
    n = len(z)
    order = np.argsort(-z, kind="stable")
    sorted_z = z[order]
    gains = (s - w)[order]
    cumulative = np.concatenate([[0.0], np.cumsum(gains)])
    # The last index of each block of equal scores.
    ends = np.nonzero(np.diff(sorted_z) != 0)[0] + 1
    ends = np.concatenate([ends, [n]])
    counts = np.concatenate([[0], ends])
    weak_quality = float(w.mean())
    strong_quality = float(s.mean())
    share = counts / n
    quality = weak_quality + cumulative[counts] / n
    thresholds = np.concatenate([[np.inf], sorted_z[ends - 1]])
    # Pin the end points exactly (no rounding drift from the running sum).
    quality[-1] = strong_quality
    return CostQualityCurve(
        share=np.round(share, 15),
        quality=quality,
        thresholds=thresholds,
        weak_quality=weak_quality,
        strong_quality=strong_quality,
    )


@dataclass(frozen=True)
class PointMetrics:
    """APGR, CPT(50%), CPT(80%) and friends, as one comparable record.

    Example:
        >>> m = PointMetrics(apgr=0.6, cpt50=0.35, cpt80=0.7, share_for_95=0.5, max_pgr=1.1)
        >>> m.as_dict()["cpt50"]
        0.35
    """

    apgr: float
    cpt50: float
    cpt80: float
    share_for_95: float
    max_pgr: float

    @classmethod
    def of(cls, curve: CostQualityCurve) -> PointMetrics:
        """Read the metrics off an exact curve."""
        return cls(
            apgr=curve.apgr,
            cpt50=curve.cpt(0.5),
            cpt80=curve.cpt(0.8),
            share_for_95=curve.share_for_quality(0.95),
            max_pgr=curve.max_pgr,
        )

    def as_dict(self) -> dict[str, float]:
        """The metrics as a plain dict."""
        return {
            "apgr": self.apgr,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "share_for_95": self.share_for_95,
            "max_pgr": self.max_pgr,
        }


@dataclass(frozen=True)
class RouteLLMResult:
    """RouteLLM's 11-point reading: the points and the metrics read off them."""

    share: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray
    thresholds: np.ndarray
    apgr: float
    cpt50: float
    cpt80: float


def routellm_protocol(
    scores: Sequence[float] | np.ndarray,
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    points: int = 11,
) -> RouteLLMResult:
    """RouteLLM's evaluation: thresholds at score quantiles, trapezoid APGR, interpolated CPT.

    Thresholds are the ``0, 1/(points-1), ..., 1`` quantiles of the scores (numpy's
    linear quantiles, as ``pandas.qcut`` uses). At each a query goes strong if
    ``z >= t``, at the last one only if ``z > t`` (0% strong). Points are sorted by
    strong share (stable), APGR is the trapezoid over them, CPT(x) the first share
    where PGR reaches ``x`` by linear interpolation between points.

    Example:
        >>> r = routellm_protocol([0.9, 0.1], weak=[0, 1], strong=[1, 1])
        >>> round(r.apgr, 2)
        0.75
    """
    z, w, s = _check(scores, weak, strong)
    if points < 2:
        raise ValueError("points must be at least 2")
    thresholds = np.quantile(z, np.linspace(0.0, 1.0, points))
    weak_quality, strong_quality = float(w.mean()), float(s.mean())
    shares, qualities = [], []
    for i, t in enumerate(thresholds):
        chosen = z >= t if i != len(thresholds) - 1 else z > t
        shares.append(chosen.mean())
        qualities.append(np.where(chosen, s, w).mean())
    share = np.asarray(shares)
    quality = np.asarray(qualities)
    order = np.argsort(share, kind="stable")
    share, quality, thresholds = share[order], quality[order], thresholds[order]
    gap = strong_quality - weak_quality
    pgr = (quality - weak_quality) / gap if gap != 0 else np.full_like(quality, np.nan)
    return RouteLLMResult(
        share=share,
        quality=quality,
        pgr=pgr,
        thresholds=thresholds,
        apgr=float(_trapezoid(pgr, share)),
        cpt50=_first_crossing(share, pgr, 0.5),
        cpt80=_first_crossing(share, pgr, 0.8),
    )


def oracle_scores(
    weak: Sequence[float] | np.ndarray, strong: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Scores of the oracle router: the strong model's gain ``s - w`` per query.

    Example:
        >>> oracle_scores([1, 0], [1, 1]).tolist()
        [0.0, 1.0]
    """
    return _as_1d(strong, "strong") - _as_1d(weak, "weak")


def oracle_curve(
    weak: Sequence[float] | np.ndarray, strong: Sequence[float] | np.ndarray
) -> CostQualityCurve:
    """The oracle as RouteLLM defines it: the best quality with *at most* ``c`` strong calls.

    Queries go strong in order of decreasing gain ``s - w``, and only while the gain is
    positive (RouteLLM's ``get_optimal_accuracy``): past that point the curve stays
    flat at its maximum, so its APGR is the upper bound any router can reach.

    Example:
        >>> curve = oracle_curve([0, 1, 0, 1], [1, 0, 1, 1])
        >>> round(curve.apgr, 3), round(curve.max_pgr, 3)
        (1.5, 2.0)
    """
    w, s = _as_1d(weak, "weak"), _as_1d(strong, "strong")
    gains = np.maximum(s - w, 0.0)
    base = cost_quality_curve(gains, w, w + gains)
    return CostQualityCurve(
        share=base.share,
        quality=base.quality,
        thresholds=base.thresholds,
        weak_quality=float(w.mean()),
        strong_quality=float(s.mean()),
    )


def random_baseline(
    weak: Sequence[float] | np.ndarray,
    strong: Sequence[float] | np.ndarray,
    seeds: int = 10,
    points: int = 11,
) -> tuple[PointMetrics, dict[str, float]]:
    """Random routing averaged over ``seeds`` runs: exact metrics and 11-point metrics.

    Returns:
        (exact metrics averaged, ``{"apgr", "cpt50", "cpt80", "apgr_sd"}`` of the 11-point
        protocol averaged).

    Example:
        >>> exact, protocol = random_baseline([0, 1, 0, 1], [1, 1, 1, 0], seeds=3)
        >>> 0.0 < exact.apgr < 1.5
        True
    """
    w, s = _as_1d(weak, "weak"), _as_1d(strong, "strong")
    exact: list[PointMetrics] = []
    protocol: list[RouteLLMResult] = []
    for seed in range(seeds):
        z = np.random.default_rng(seed).random(len(w))
        exact.append(PointMetrics.of(cost_quality_curve(z, w, s)))
        protocol.append(routellm_protocol(z, w, s, points))

    def mean(values: list[float]) -> float:
        return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")

    averaged = PointMetrics(
        apgr=mean([m.apgr for m in exact]),
        cpt50=mean([m.cpt50 for m in exact]),
        cpt80=mean([m.cpt80 for m in exact]),
        share_for_95=mean([m.share_for_95 for m in exact]),
        max_pgr=mean([m.max_pgr for m in exact]),
    )
    return averaged, {
        "apgr": mean([r.apgr for r in protocol]),
        "cpt50": mean([r.cpt50 for r in protocol]),
        "cpt80": mean([r.cpt80 for r in protocol]),
        "apgr_sd": float(np.std([r.apgr for r in protocol])),
    }


@dataclass(frozen=True)
class LabelMetrics:
    """Metrics of predicted routes against expected routes.

    Attributes:
        accuracy: share of queries routed to their expected route.
        precision / recall / support: per route.
        confusion: ``confusion[i][j]`` = queries expected on route ``i`` routed to ``j``.
        cost_inflation: share sent to a stronger route than needed (ordered routes).
        quality_loss: share sent to a cheaper route than needed (ordered routes).
    """

    routes: list[str]
    accuracy: float
    precision: dict[str, float]
    recall: dict[str, float]
    support: dict[str, int]
    confusion: list[list[int]]
    cost_inflation: float
    quality_loss: float


def label_metrics(
    expected: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    routes: Sequence[str],
) -> LabelMetrics:
    """Accuracy, per-route precision and recall, confusion matrix, inflation and loss.

    Routes are indices into ``routes`` (cheapest first). Cost inflation and quality
    loss compare positions, so they are meaningful for ordered routes only. Precision
    of a route never predicted is NaN; recall of a route never expected is NaN.

    Example:
        >>> m = label_metrics([0, 1, 1], [0, 0, 1], ["small", "large"])
        >>> round(m.accuracy, 3), m.quality_loss > 0, m.confusion
        (0.667, True, [[1, 0], [1, 1]])
    """
    e = np.asarray(expected, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if e.shape != p.shape or e.ndim != 1:
        raise ValueError("expected and predicted must be 1-D and of equal length")
    size = len(routes)
    if len(e) and (e.min() < 0 or p.min() < 0 or e.max() >= size or p.max() >= size):
        raise ValueError("route indices out of range")
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion, (e, p), 1)
    predicted_totals = confusion.sum(axis=0)
    expected_totals = confusion.sum(axis=1)
    diagonal = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted_totals > 0, diagonal / predicted_totals, np.nan)
        recall = np.where(expected_totals > 0, diagonal / expected_totals, np.nan)
    n = max(len(e), 1)
    return LabelMetrics(
        routes=list(routes),
        accuracy=float((e == p).sum() / n) if len(e) else float("nan"),
        precision={r: float(v) for r, v in zip(routes, precision)},
        recall={r: float(v) for r, v in zip(routes, recall)},
        support={r: int(v) for r, v in zip(routes, expected_totals)},
        confusion=confusion.tolist(),
        cost_inflation=float((p > e).sum() / n),
        quality_loss=float((p < e).sum() / n),
    )
