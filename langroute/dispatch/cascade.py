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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langroute.costs.records import LedgerRecord, new_record_id
from langroute.dispatch.escalation import AttemptHook, Escalation, UsageMerge, UsageOf, sum_usage
from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage, error_text
from langroute.errors import RouterConfigError
from langroute.router.decision import RouteDecision
from langroute.scorers import ScoreResult

__all__ = [
    "CASCADE_KEY",
    "CascadeAttempt",
    "CascadeCall",
    "CascadePolicy",
    "CascadeResult",
    "error_text",
    "failed_attempt",
    "judge_attempt",
]

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
    skipped: list[str] = Field(
        default_factory=list,
        description=(
            "Tiers not tried because the attached router expected them to fail (reason "
            '"routed_past"); their calls were saved.'
        ),
    )
    record_id: str | None = Field(
        default=None,
        description=(
            "The ledger record id of the returned answer's row: pass it to "
            "CostLedger.feedback or ExemplarRouter.learn_from_feedback."
        ),
    )

    @property
    def escalated(self) -> bool:
        """True when a cheaper tier was tried first."""
        return self.tier > 0 or len(self.attempts) > 1

    @property
    def rejected(self) -> list[CascadeAttempt]:
        """The attempts that were not accepted (low score or error)."""
        return [attempt for attempt in self.attempts if not attempt.accepted]


def failed_attempt(
    tier: int, tier_name: str, model: str, error: BaseException | str
) -> CascadeAttempt:
    """The record of a tier that raised instead of answering (never accepted).

    ``error`` is the exception or its :func:`~langroute.dispatch.routed_call.error_text`.
    """
    text = error if isinstance(error, str) else error_text(error)
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


def _names_for(models: Sequence[str]) -> list[str]:
    names: list[str] = []
    for model in models:
        seen = sum(1 for earlier in models[: len(names)] if earlier == model)
        names.append(model if seen == 0 else f"{model}#{seen + 1}")
    return names


class CascadePolicy(BaseModel):
    """A cascade's tiers, cheapest first, and the score each must reach to be accepted.

    Both integrations build one from their constructor arguments, so the same mistakes
    give the same :class:`~langroute.errors.RouterConfigError`.

    Example:
        >>> policy = CascadePolicy.build(["small", "large"], ["gpt-4o-mini", "gpt-4o"], 0.7)
        >>> policy.thresholds, policy.scored(0), policy.scored(1)
        ([0.7, 0.7], True, False)
        >>> CascadePolicy.build(None, ["gpt-4o", "gpt-4o"], 0.5).tier_names
        ['gpt-4o', 'gpt-4o#2']
    """

    model_config = ConfigDict(frozen=True)

    tier_names: list[str]
    models: list[str] = Field(description="The model name of each tier.")
    thresholds: list[float] = Field(description="Minimum score per tier.")
    score_last_tier: bool = False
    baseline: str | None = Field(default=None, description="Overrides the baseline model.")

    @classmethod
    def build(
        cls,
        tier_names: Sequence[str] | None,
        models: Sequence[str],
        threshold: float | Sequence[float],
        *,
        score_last_tier: bool = False,
        baseline_model: str | None = None,
    ) -> CascadePolicy:
        """Check the tiers and spread ``threshold`` (one value, or one per scored tier).

        Without ``tier_names`` the tiers are named for their models; a model used by
        two tiers (say, at two temperatures) names the second ``"model#2"``.
        ``baseline_model`` is what savings are measured against (default: the last
        tier's model; a routing model as last tier names its strongest route's model).

        Raises:
            RouterConfigError: Fewer than two tiers, two tiers with one name, or a
                threshold list of the wrong length or outside [0, 1].
        """
        names = list(tier_names) if tier_names is not None else _names_for(models)
        if len(models) < 2:
            raise RouterConfigError("a cascade needs at least two tiers, cheapest first")
        if len(models) != len(names):
            raise RouterConfigError(f"tier_names needs {len(models)} names, got {len(names)}")
        for name in names:
            if names.count(name) > 1:
                raise RouterConfigError(f"two tiers are named {name!r}; pass tier_names")
        scored = len(names) if score_last_tier else len(names) - 1
        if isinstance(threshold, (int, float)):
            thresholds = [float(threshold)] * len(names)
        else:
            thresholds = [float(t) for t in threshold]
            if len(thresholds) not in (scored, len(names)):
                raise RouterConfigError(
                    f"threshold needs one value or {scored} (one per scored tier), "
                    f"got {len(thresholds)}"
                )
            thresholds += [thresholds[-1]] * (len(names) - len(thresholds))
        if any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise RouterConfigError(f"thresholds must lie in [0, 1], got {thresholds}")
        return cls(
            tier_names=names,
            models=list(models),
            thresholds=thresholds,
            score_last_tier=score_last_tier,
            baseline=baseline_model,
        )

    @property
    def baseline_model(self) -> str:
        """The model savings are measured against (default: the last tier's)."""
        return self.baseline or self.models[-1]

    def tier(self, name: str) -> int:
        """The index of the tier called ``name``."""
        return self.tier_names.index(name)

    def scored(self, tier: int) -> bool:
        """Whether the tier's answer is scored (all but the last, unless ``score_last_tier``)."""
        return tier < len(self.tier_names) - 1 or self.score_last_tier

    def judge(self, tier: int, result: ScoreResult | None) -> CascadeAttempt:
        """Apply the acceptance rule to a tier's answer (``None``: returned unscored)."""
        return judge_attempt(
            tier,
            self.tier_names[tier],
            self.models[tier],
            result,
            threshold=self.thresholds[tier],
            last=tier == len(self.tier_names) - 1,
        )


class CascadeCall:
    """One cascade call: its :class:`~.routed_call.RoutedCall` and each tier's verdict.

    The integrations run the tiers with :meth:`escalation` (so errors escalate as in a
    routed call) and keep each tier's verdict with :meth:`verdict`; :meth:`attempt_for`
    turns a final attempt record into the cascade's record of it.

    Example:
        >>> policy = CascadePolicy.build(["small", "large"], ["gpt-4o-mini", "gpt-4o"], 0.5)
        >>> cascade = CascadeCall(policy)
        >>> def ask(tier):
        ...     return "Sorry, I can't." if tier == "small" else "Here is how."
        >>> def accept(tier, answer):
        ...     score = ScoreResult(score=0.0 if "Sorry" in answer else 1.0)
        ...     return cascade.verdict(tier, score if policy.scored(policy.tier(tier)) else None)
        >>> cascade.escalation().run(ask, accept=accept)
        ('large', 'Here is how.')
        >>> [a.reason for a in cascade.attempts]
        ['rejected: score 0 < 0.5 or failed ()', 'last tier: returned without scoring']
    """

    def __init__(
        self,
        policy: CascadePolicy,
        *,
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        start: RouteDecision | None = None,
        call_id: str | None = None,
    ) -> None:
        """Begin a cascade call.

        Args:
            policy: The tiers and thresholds.
            escalate_on: Errors of a tier that move on to the next tier.
            start: A router's decision to start at its route's tier instead of the
                cheapest (see :meth:`langroute.router.learning.CascadeLearner.plan`); the
                tiers before it are :attr:`skipped` and the call's reason is
                ``"routed_past"``.
            call_id: The call's identifier (default: a new one), e.g. the framework's
                run id, so that ledger rows and traces share it.
        """
        self.policy = policy
        self.escalate_on = escalate_on
        first = policy.tier(start.route) if start is not None else 0
        self.skipped: list[str] = policy.tier_names[:first]
        decision = RouteDecision(route=policy.tier_names[0], confidence=1.0, reason="cascade")
        if start is not None and first:
            decision = start.model_copy(update={"reason": "routed_past"})
        self.call = RoutedCall(
            decision=decision,
            baseline_route=policy.tier_names[-1],
            baseline_model=policy.baseline_model,
            **({"call_id": call_id} if call_id is not None else {}),
        )
        self.scores: dict[str, ScoreResult | None] = {}
        self._verdicts: dict[str, CascadeAttempt] = {}
        self._record_ids = {name: new_record_id() for name in policy.tier_names}

    def record_id(self, tier_name: str) -> str:
        """The ledger record id of ``tier_name``'s attempt in this call (made up front).

        The cost handlers write the tier's row with it, and :meth:`result` names it, so
        an application can give feedback on the answer it got.
        """
        return self._record_ids[tier_name]

    @property
    def call_id(self) -> str:
        """The identifier of the call (shared by its events and ledger rows)."""
        return self.call.call_id

    def escalation(
        self,
        *,
        usage_of: UsageOf | None = None,
        model_of: Callable[[str, Any], str | None] | None = None,
        merge_usage: UsageMerge = sum_usage,
        on_attempt: AttemptHook | None = None,
    ) -> Escalation[Any]:
        """The :class:`~langroute.dispatch.escalation.Escalation` that runs the tiers in order."""
        options: dict[str, Any] = {"usage_of": usage_of} if usage_of is not None else {}
        return Escalation(
            self.call,
            self.policy.tier_names[len(self.skipped) :],
            model_for=lambda name: self.policy.models[self.policy.tier(name)],
            escalate_on=self.escalate_on,
            model_of=model_of,
            merge_usage=merge_usage,
            on_attempt=on_attempt,
            describe=lambda attempt: self.attempt_for(attempt).reason,
            **options,
        )

    def verdict(self, tier_name: str, result: ScoreResult | None) -> bool:
        """Judge a tier's answer, keep the verdict, and say whether it is accepted."""
        attempt = self.policy.judge(self.policy.tier(tier_name), result)
        self.scores[tier_name] = result
        self._verdicts[tier_name] = attempt
        return attempt.accepted

    def attempt_for(self, attempt: Attempt) -> CascadeAttempt:
        """The cascade's record of a final attempt (a failed one, or its verdict)."""
        tier = self.policy.tier(attempt.route)
        if attempt.failed:
            model = self.policy.models[tier]
            return failed_attempt(tier, attempt.route, model, attempt.error or "")
        return self._verdicts[attempt.route]

    @property
    def attempts(self) -> list[CascadeAttempt]:
        """The cascade records of the attempts so far (an answering stream included)."""
        records = []
        for attempt in self.call.attempts:
            if attempt.failed or attempt.route in self._verdicts:
                records.append(self.attempt_for(attempt))
        return records

    def row_fields(self, attempt: Attempt) -> dict[str, Any]:
        """The cascade's own fields of a final attempt's ledger row (one place for both).

        ``record_id``, ``run_id`` (the call), ``kind="cascade"``, ``route`` (the tier's
        name), ``tier``, ``baseline_model``, ``accepted``, ``escalated`` and
        ``escalated_from`` (a tier tried after a cheaper one), ``reason`` (``"cascade"``,
        or ``"routed_past"`` when a router skipped cheaper tiers), ``confidence`` (the
        score), and ``metadata`` with the verdict (``cascade_reason``, ``score``) and the
        skipped tiers. Tokens, model, latency and error are the attempt's own.
        """
        verdict = self.attempt_for(attempt)
        first = len(self.skipped)
        metadata: dict[str, Any] = {"cascade_reason": verdict.reason}
        if verdict.score is not None:
            metadata["score"] = verdict.score
        if self.skipped:
            metadata["skipped_tiers"] = list(self.skipped)
        return {
            "record_id": self.record_id(verdict.tier_name),
            "run_id": self.call_id,
            "kind": "cascade",
            "route": verdict.tier_name,
            "tier": verdict.tier,
            "baseline_model": self.policy.baseline_model,
            "accepted": verdict.accepted and attempt.error is None,
            "escalated": verdict.tier > first,
            "escalated_from": (
                self.policy.tier_names[verdict.tier - 1] if verdict.tier > first else None
            ),
            "reason": "routed_past" if self.skipped else "cascade",
            "confidence": verdict.score,
            "metadata": metadata,
        }

    def ledger_record(
        self,
        attempt: Attempt,
        *,
        framework: str,
        usage: TokenUsage | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        """The ledger row of a final tier attempt: the twin of ``RoutedCall.ledger_records``.

        Args:
            attempt: The attempt (failed, or with its verdict kept by :meth:`verdict`).
            framework: The row's ``framework``.
            usage: The tier's usage, when the attempt did not record it.
            metadata: More row metadata (segments, the integration's own keys).
        """
        fields = self.row_fields(attempt)
        tokens = attempt.usage or usage or TokenUsage()
        return LedgerRecord(
            **{**fields, "metadata": {**(metadata or {}), **fields["metadata"]}},
            framework=framework,
            model=attempt.model or self.policy.models[fields["tier"]],
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cached_tokens=tokens.cached_tokens,
            latency_ms=attempt.latency_ms,
            error=attempt.error,
        )

    def result(self, tier_name: str) -> CascadeResult:
        """The record of an answer from ``tier_name``, with every attempt so far."""
        tier = self.policy.tier(tier_name)
        attempts = self.attempts
        if not attempts or attempts[-1].tier_name != tier_name:
            attempts.append(self._verdicts[tier_name])
        return CascadeResult(
            call_id=self.call_id,
            tier=tier,
            tier_name=tier_name,
            model=self.policy.models[tier],
            reason=self._verdicts[tier_name].reason,
            attempts=attempts,
            skipped=list(self.skipped),
            record_id=self.record_id(tier_name),
        )
