"""Graded scorers: token log-probabilities and the router's own confidence."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from langroute.scorers.base import (
    BaseScorer,
    ScoreResult,
    graded_verdict,
)


class MeanTokenProbabilityScorer(BaseScorer):
    """Scores an answer by its mean token probability, ``exp(mean(logprobs))``.

    The geometric mean of the token probabilities: near 1.0 when the model was sure of
    every token, lower when it hesitated. Natural-log probabilities are expected (what
    OpenAI-style ``logprobs`` return).

    When ``logprobs`` is missing or empty the scorer cannot judge: it returns
    ``missing_score`` with ``passed=None`` and says so in the reason. The default
    ``missing_score=0.0`` is biased toward escalation (a cascade then moves on to the
    stronger model rather than trust an unscored answer); set it to 1.0 to accept
    instead.

    Args:
        threshold: When given, ``passed = score >= threshold``; else ``passed=None``.
        missing_score: The score when no logprobs are available.

    Example:
        >>> import math
        >>> MeanTokenProbabilityScorer()("q", "a", logprobs=[math.log(0.9)] * 3).score
        0.9
        >>> MeanTokenProbabilityScorer()("q", "a").reason
        'token_probability: logprobs unavailable, score 0 (escalate)'
    """

    name = "token_probability"

    def __init__(self, threshold: float | None = None, *, missing_score: float = 0.0) -> None:
        if not 0.0 <= missing_score <= 1.0:
            raise ValueError("missing_score must be in [0, 1]")
        self.threshold = threshold
        self.missing_score = missing_score

    def __repr__(self) -> str:
        return (
            f"MeanTokenProbabilityScorer(threshold={self.threshold}, "
            f"missing_score={self.missing_score})"
        )

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score from ``logprobs``."""
        # positive values can only be rounding noise: treated as 0 (probability 1)
        values = [min(float(v), 0.0) for v in logprobs or () if not math.isnan(float(v))]
        if not values:
            verdict = "escalate" if self.missing_score == 0.0 else "neutral"
            return ScoreResult(
                score=self.missing_score,
                passed=None,
                reason=(
                    f"{self.name}: logprobs unavailable, score {self.missing_score:g} ({verdict})"
                ),
            )
        score = min(1.0, math.exp(math.fsum(values) / len(values)))
        passed = graded_verdict(score, self.threshold)
        return ScoreResult(
            score=score,
            passed=passed,
            reason=f"{self.name}: mean token probability {score:.3f} over {len(values)} tokens",
        )


class RouterConfidenceScorer(BaseScorer):
    """Uses the routing decision's confidence, ``metadata["confidence"]``, as the score.

    Without a confidence it returns ``missing_score`` with ``passed=None``.

    Args:
        threshold: When given, ``passed = score >= threshold``; else ``passed=None``.
        missing_score: The score when metadata has no confidence (0.0: escalate).
        key: The metadata key to read.

    Example:
        >>> RouterConfidenceScorer()("q", "a", metadata={"confidence": 0.82}).score
        0.82
    """

    name = "router_confidence"

    def __init__(
        self,
        threshold: float | None = None,
        *,
        missing_score: float = 0.0,
        key: str = "confidence",
    ) -> None:
        if not 0.0 <= missing_score <= 1.0:
            raise ValueError("missing_score must be in [0, 1]")
        self.threshold = threshold
        self.missing_score = missing_score
        self.key = key

    def __repr__(self) -> str:
        return f"RouterConfidenceScorer(threshold={self.threshold}, key={self.key!r})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Read the confidence from ``metadata``."""
        value = (metadata or {}).get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ScoreResult(
                score=self.missing_score,
                passed=None,
                reason=f"{self.name}: no {self.key!r} in metadata, score {self.missing_score:g}",
            )
        score = min(1.0, max(0.0, float(value)))
        return ScoreResult(
            score=score,
            passed=graded_verdict(score, self.threshold),
            reason=f"{self.name}: routing confidence {score:.3f}",
        )
