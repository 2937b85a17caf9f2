"""What an evaluation reports: the cost-quality curve, label metrics, baselines.

Plain pydantic models, so a report serialises to JSON (``EvalReport.to_json_dict``)
and crosses process boundaries unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BaselineResult",
    "CurveReport",
    "EvalReport",
    "LabelReport",
    "Misrouted",
    "ScoreReport",
    "finite_json",
    "optional_float",
]


class CurveReport(BaseModel):
    """A cost-quality curve as lists (strong-call share, quality, PGR, threshold)."""

    share: list[float]
    quality: list[float]
    pgr: list[float]
    thresholds: list[float | None] = Field(
        default_factory=list, description="Score threshold per point; None for +inf."
    )


class BaselineResult(BaseModel):
    """One baseline router on the same data."""

    name: str
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    share_for_95: float | None = None
    strong_share: float | None = None
    quality: float | None = None
    pgr: float | None = None
    routellm: dict[str, float] = Field(default_factory=dict)
    accuracy: float | None = None


class ScoreReport(BaseModel):
    """Evaluation on scored data: the curve as the dial moves, and the dial's own point."""

    weak: str
    strong: str
    weak_quality: float
    strong_quality: float
    apgr: float
    cpt50: float | None
    cpt80: float | None
    share_for_95: float | None = Field(
        description="Smallest strong-call share reaching 95% of the strong quality."
    )
    max_pgr: float
    routellm: dict[str, float] = Field(
        description="APGR, CPT(50%), CPT(80%) by RouteLLM's 11-point protocol."
    )
    routellm_points: CurveReport
    curve: CurveReport
    oracle_curve: CurveReport | None = None
    strong_share: float = Field(description="Strong-call share at the router's threshold.")
    quality: float = Field(description="Routed quality at the router's threshold.")
    pgr: float = Field(description="PGR at the router's threshold.")


class Misrouted(BaseModel):
    """A query sent to the wrong route, with the nearest exemplars that decided it."""

    text: str
    expected: str | None
    predicted: str
    reason: str
    confidence: float
    neighbours: list[dict[str, Any]]


class LabelReport(BaseModel):
    """Evaluation against expected routes."""

    routes: list[str]
    n: int
    accuracy: float
    precision: dict[str, float | None]
    recall: dict[str, float | None]
    support: dict[str, int]
    confusion: list[list[int]] = Field(description="Rows: expected route; columns: predicted.")
    escalation_rate: float = Field(
        description="Share of queries sent to the fallback because of uncertainty."
    )
    cost_inflation: float = Field(description="Share sent to a stronger route than needed.")
    quality_loss: float = Field(description="Share sent to a cheaper route than needed.")
    in_scope_accuracy: float | None = Field(
        default=None, description="Accuracy when an escalated in-scope query counts as wrong."
    )
    out_of_scope: int = 0
    oos_recall: float | None = Field(
        default=None, description="Share of out-of-scope rows rejected (escalated)."
    )
    misrouted: list[Misrouted] = Field(default_factory=list)


class EvalReport(BaseModel):
    """Everything :func:`evaluate` or :func:`cross_validate` measured.

    Example:
        >>> report.to_json_dict()["apgr"]  # doctest: +SKIP
        0.68
    """

    kind: Literal["scores", "labels"]
    n: int
    excluded_contaminated: int = 0
    overlap_with_exemplars: int = 0
    folds: int | None = None
    threshold: float
    settings: dict[str, Any]
    scores: ScoreReport | None = None
    labels: LabelReport | None = None
    baselines: list[BaselineResult] = Field(default_factory=list)
    fold_metrics: list[dict[str, float]] = Field(default_factory=list)
    calibration: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = Field(
        default=None, description="The evaluated router's tuning record, if it was tuned."
    )
    fold_tuning: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Cross-validation with tuning: the settings chosen in each fold.",
    )

    @property
    def apgr(self) -> float | None:
        """The router's APGR (exact curve), scored data only."""
        return self.scores.apgr if self.scores else None

    @property
    def cpt50(self) -> float | None:
        """The router's CPT(50%), scored data only."""
        return self.scores.cpt50 if self.scores else None

    @property
    def cpt80(self) -> float | None:
        """The router's CPT(80%), scored data only."""
        return self.scores.cpt80 if self.scores else None

    @property
    def accuracy(self) -> float | None:
        """The router's accuracy against expected routes."""
        return self.labels.accuracy if self.labels else None

    def to_json_dict(self) -> dict[str, Any]:
        """All figures; the headline ones on top: ``apgr``, ``cpt50``, ``cpt80``, ``accuracy``."""
        head: dict[str, Any] = {}
        if self.scores is not None:
            head = {"apgr": self.apgr, "cpt50": self.cpt50, "cpt80": self.cpt80}
        if self.labels is not None:
            head["accuracy"] = self.accuracy
            if self.labels.oos_recall is not None:
                head["in_scope_accuracy"] = self.labels.in_scope_accuracy
                head["oos_recall"] = self.labels.oos_recall
        return finite_json(head | self.model_dump(mode="json"))


def finite_json(value: Any) -> Any:
    """``value`` (nested dicts and lists) with NaN and infinities as None: standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


def optional_float(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite."""
    return float(value) if math.isfinite(value) else None
