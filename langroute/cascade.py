"""The cascade policy, shared by the LangChain and LlamaIndex cascades.

A cascade tries tiers from cheapest to strongest. Each answer is scored; it is
accepted when ``score >= threshold`` and the scorer did not say ``passed=False``;
otherwise the next tier runs. The last tier's answer is returned whatever its score.
This module holds the rule and the record of what happened; the integrations run the
models.

Example:
    >>> from langroute.scorers import ScoreResult
    >>> attempt = judge_attempt(0, "small", "gpt-4o-mini", ScoreResult(score=0.2, reason="x"),
    ...                         threshold=0.5, last=False)
    >>> attempt.accepted, attempt.reason
    (False, 'rejected: score 0.2 < 0.5 or failed (x)')
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from langroute.scorers import ScoreResult

CASCADE_KEY = "langroute_cascade"
"""Key of the cascade result in an answer's metadata (both integrations)."""


class CascadeAttempt(BaseModel):
    """One tier's attempt: its answer's score and whether it was accepted."""

    model_config = ConfigDict(frozen=True)

    tier: int = Field(description="Tier index, 0 = cheapest.")
    tier_name: str
    model: str
    accepted: bool
    score: float | None = Field(
        default=None, description="None when the answer was not scored (last tier, error)."
    )
    passed: bool | None = Field(default=None, description="The scorer's own verdict, if any.")
    reason: str = Field(description="Why the answer was accepted or rejected.")
    error: str | None = Field(default=None, description='"ErrorType: message" if the tier raised.')


class CascadeResult(BaseModel):
    """Which tier answered a cascade call, and why the earlier tiers were rejected."""

    model_config = ConfigDict(frozen=True)

    call_id: str | None = Field(
        default=None, description="Identifier shared by the call's events and ledger rows."
    )
    tier: int = Field(description="The tier whose answer was returned (0 = cheapest).")
    tier_name: str
    model: str
    reason: str = Field(description="Why this answer was returned.")
    attempts: list[CascadeAttempt] = Field(default_factory=list)

    @property
    def escalated(self) -> bool:
        """True when a cheaper tier was tried first."""
        return self.tier > 0 or len(self.attempts) > 1

    @property
    def rejected(self) -> list[CascadeAttempt]:
        """The attempts that were not accepted (low score or error)."""
        return [attempt for attempt in self.attempts if not attempt.accepted]


def error_text(error: BaseException) -> str:
    """``"ErrorType: message"``, the form errors take in records and reasons."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def failed_attempt(tier: int, tier_name: str, model: str, error: BaseException) -> CascadeAttempt:
    """The record of a tier that raised instead of answering (never accepted)."""
    text = error_text(error)
    return CascadeAttempt(
        tier=tier,
        tier_name=tier_name,
        model=model,
        accepted=False,
        reason=f"error: {text}",
        error=text,
    )


def judge_attempt(
    tier: int,
    tier_name: str,
    model: str,
    result: ScoreResult | None,
    *,
    threshold: float,
    last: bool,
) -> CascadeAttempt:
    """Apply the acceptance rule to one tier's scored answer.

    ``result`` is ``None`` for a last tier returned without scoring. The last tier is
    always accepted; its reason says whether it would have passed.
    """
    if result is None:
        return CascadeAttempt(
            tier=tier,
            tier_name=tier_name,
            model=model,
            accepted=True,
            reason="last tier: returned without scoring",
        )
    good = result.score >= threshold and result.passed is not False
    if good:
        reason = f"accepted: score {result.score:.3g} >= {threshold:g} ({result.reason})"
    elif last:
        reason = (
            f"last tier: returned although score {result.score:.3g} < {threshold:g} "
            f"or failed ({result.reason})"
        )
    else:
        reason = f"rejected: score {result.score:.3g} < {threshold:g} or failed ({result.reason})"
    return CascadeAttempt(
        tier=tier,
        tier_name=tier_name,
        model=model,
        accepted=good or last,
        score=result.score,
        passed=result.passed,
        reason=reason,
    )
