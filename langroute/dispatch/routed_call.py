"""The record of a routed call: the decision, then every attempt, in order.

Both integrations describe a routed request with one :class:`RoutedCall`: the router's
decision, each route that was tried (its model, error, token usage and latency) and
the strongest route that savings are measured against. They put
:meth:`RoutedCall.metadata` on the answer (LangChain ``response_metadata["langroute"]``,
LlamaIndex ``additional_kwargs["langroute"]``) and turn the call into ledger rows with
:meth:`RoutedCall.ledger_records`: one row per paid attempt, priced by the ledger.

Example:
    >>> from langroute.router.decision import DecisionReason, RouteDecision, SessionInfo
    >>> call = RoutedCall(
    ...     decision=RouteDecision(route="small", confidence=0.9, reason="vote"),
    ...     baseline_route="large",
    ...     baseline_model="gpt-4o",
    ... )
    >>> call.add_attempt(Attempt(route="small", model="gpt-4o-mini", error="RateLimitError: 429"))
    >>> call.add_attempt(Attempt(route="large", model="gpt-4o", usage=TokenUsage(input_tokens=9)))
    >>> call.route, call.escalated, call.escalated_from
    ('large', True, 'small')
    >>> [(r.route, r.error is None) for r in call.ledger_records(framework="core")]
    [('small', False), ('large', True)]
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from langroute.costs.records import new_record_id
from langroute.router.decision import (
    DecisionReason,
    DecisionStage,
    RouteDecision,
    RouterCall,
    SessionInfo,
    ShadowDecision,
)

__all__ = ["ROUTE_KEY", "Attempt", "RouteMetadata", "RoutedCall", "TokenUsage", "error_text"]


ROUTE_KEY = "langroute"
"""Key of :meth:`RoutedCall.metadata` in an answer's metadata (both integrations)."""


def error_text(error: BaseException) -> str:
    """``"ErrorType: message"``, the one form errors take in records, reasons and messages.

    Example:
        >>> error_text(TimeoutError("read timed out"))
        'TimeoutError: read timed out'
    """
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class TokenUsage(BaseModel):
    """Token counts of one model call. ``input_tokens`` includes the cached ones.

    Example:
        >>> TokenUsage(input_tokens=1200, output_tokens=80, cached_tokens=1000).input_tokens
        1200
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class Attempt(BaseModel):
    """One route tried for a call: the model that was asked and what came of it."""

    model_config = ConfigDict(frozen=True)

    route: str
    model: str | None = Field(default=None, description="The model that served (or failed).")
    error: str | None = Field(default=None, description='"ErrorType: message" if it failed.')
    usage: TokenUsage | None = Field(
        default=None, description="Tokens the provider reported; None when it reported none."
    )
    latency_ms: float | None = None
    rejected: bool = Field(
        default=False,
        description="True when the route answered but the answer was not accepted (a cascade).",
    )
    partial: bool = Field(
        default=False,
        description="A stream that broke after output reached the caller: paid for, "
        "though its provider usually reported no usage.",
    )

    @property
    def failed(self) -> bool:
        """True when this attempt raised."""
        return self.error is not None

    @property
    def passed_over(self) -> bool:
        """True when the call moved on from this attempt (it raised or was rejected)."""
        return self.failed or self.rejected

    @property
    def measured(self) -> bool:
        """False when the attempt produced output but its provider reported no usage.

        Its cost is unknown (not zero): the ledger leaves it unpriced and counts it as
        unmeasured. An attempt that failed before any output (a 429, a timeout) is
        measured: it produced nothing to pay for that langroute could see.
        """
        return self.usage is not None or (self.failed and not self.partial)


class RouteMetadata(BaseModel):
    """The routing record on an answer, typed: what :meth:`RoutedCall.metadata` writes.

    Read it back from an answer's metadata mapping with :meth:`from_metadata`.

    Example:
        >>> meta = RouteMetadata.from_metadata({"langroute": {
        ...     "call_id": "c1", "route": "small", "model": "gpt-4o-mini", "confidence": 0.9,
        ...     "reason": "vote", "decided_route": "small", "baseline_route": "large"}})
        >>> meta.route, meta.escalated
        ('small', False)
    """

    model_config = ConfigDict(frozen=True)

    call_id: str
    route: str | None = Field(description="The route that answered.")
    model: str | None = Field(description="The model that answered (as the provider named it).")
    confidence: float
    reason: DecisionReason = Field(description='The decision\'s reason ("vote", "forced", ...).')
    decided_route: str = Field(description="The router's choice (differs after escalation).")
    escalated: bool = False
    escalated_from: str | None = None
    attempts: list[Attempt] = Field(
        default_factory=list,
        description="The routes passed over (failed or rejected), in order, with their errors.",
    )
    baseline_route: str
    baseline_model: str | None = None
    routing_ms: float = 0.0
    encoder_ms: float = Field(
        default=0.0,
        description="The encoder's part of routing_ms: embedding the query (0: its vector was "
        "cached).",
    )
    router_load_ms: float = Field(
        default=0.0,
        description="The router's one-time encoder load this call waited for (not in routing_ms).",
    )
    max_similarity: float | None = Field(
        default=None, description="Similarity of the nearest exemplar (None: not routed)."
    )
    context: str | None = Field(
        default=None, description="The conversation strategy routed on (None: the query alone)."
    )
    session: SessionInfo | None = Field(
        default=None, description="What the conversation's session did (sticky, topic shift)."
    )
    record_id: str | None = Field(
        default=None,
        description=(
            "The ledger record id of the answer: pass it to CostLedger.feedback or "
            "ExemplarRouter.learn_from_feedback."
        ),
    )
    stage: DecisionStage | None = Field(
        default=None, description="Decider chains: the stage that decided."
    )
    stage_note: str | None = None
    router_calls: list[RouterCall] = Field(
        default_factory=list, description="Model calls made to decide (an LLM router)."
    )
    shadow: ShadowDecision | None = Field(
        default=None, description="Shadow evaluation: the candidate router's decision."
    )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> RouteMetadata | None:
        """The record under :data:`ROUTE_KEY` of an answer's metadata (None if absent)."""
        data = (metadata or {}).get(ROUTE_KEY)
        if data is None:
            return None
        if isinstance(data, RouteMetadata):
            return data
        return cls.model_validate(data)

    def to_call(self, last: Attempt | None = None) -> RoutedCall:
        """The routed call this record describes: the routes passed over, then ``last``.

        A cost handler that sees only the answer (its metadata) rebuilds the call with
        the attempt that answered, to write its ledger rows.
        """
        decision = RouteDecision(
            route=self.decided_route,
            confidence=self.confidence,
            reason=self.reason,
            elapsed_ms=self.routing_ms,
            timings_ms={
                **({"embed": self.encoder_ms} if self.encoder_ms else {}),
                **({"load": self.router_load_ms} if self.router_load_ms else {}),
            },
            max_similarity=self.max_similarity,
            context=self.context,
            session=self.session,
            stage=self.stage,
            stage_note=self.stage_note,
            router_calls=self.router_calls,
            shadow=self.shadow,
        )
        return RoutedCall(
            call_id=self.call_id,
            decision=decision,
            attempts=[*self.attempts, *([last] if last is not None else [])],
            baseline_route=self.baseline_route,
            baseline_model=self.baseline_model,
            **({"record_id": self.record_id} if self.record_id else {}),
        )


class RoutedCall(BaseModel):
    """One routed request: the decision, then every attempt, in order.

    Attributes:
        call_id: Identifier shared by the call's events, metadata and ledger rows.
        decision: The router's decision (``forced`` or ``no_query`` ones included).
        attempts: Every route tried, in order; all but the last failed unless the call
            is still running or every route failed.
        baseline_route: The strongest route, for savings.
        baseline_model: That route's model.
        record_id: The ledger record id the answering attempt's row will have; made at
            routing time, so the answer's metadata names it before the ledger write.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    call_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    decision: RouteDecision
    attempts: list[Attempt] = Field(default_factory=list)
    baseline_route: str
    baseline_model: str | None = None
    record_id: str = Field(default_factory=new_record_id, min_length=1)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def add_attempt(self, attempt: Attempt) -> None:
        """Append an attempt (thread-safe)."""
        with self._lock:
            self.attempts.append(attempt)

    def complete_attempt(self, attempt: Attempt) -> None:
        """Replace the last attempt (a stream's provisional record) with its final record."""
        with self._lock:
            if not self.attempts or self.attempts[-1].route != attempt.route:
                raise ValueError(f"the last attempt is not one of route {attempt.route!r}")
            self.attempts[-1] = attempt

    def snapshot(self) -> RoutedCall:
        """A copy of the call as it stands now (later attempts do not change it)."""
        with self._lock:
            return self.model_copy(update={"attempts": list(self.attempts)})

    @property
    def failed_attempts(self) -> list[Attempt]:
        """The attempts that raised, in order."""
        return [a for a in self.attempts if a.failed]

    @property
    def passed_over(self) -> list[Attempt]:
        """The attempts the call moved on from (raised or rejected), in order."""
        return [a for a in self.attempts if a.passed_over]

    @property
    def answered(self) -> Attempt | None:
        """The attempt that answered (the last one, when it was neither failed nor rejected)."""
        if self.attempts and not self.attempts[-1].passed_over:
            return self.attempts[-1]
        return None

    @property
    def route(self) -> str | None:
        """The route that answered (None while none has)."""
        answered = self.answered
        return answered.route if answered is not None else None

    @property
    def model(self) -> str | None:
        """The model that answered."""
        answered = self.answered
        return answered.model if answered is not None else None

    @property
    def escalated(self) -> bool:
        """True when a stronger route answered than the first one tried (or all failed).

        A route's equivalent model answering after another one of the same route failed
        is a failover, not an escalation (:attr:`failed_over`).
        """
        answered = self.answered
        if answered is None:
            return bool(self.passed_over)
        return answered.route != self.attempts[0].route

    @property
    def failed_over(self) -> bool:
        """True when an equivalent model of the answering route took over from another."""
        answered = self.answered
        return answered is not None and any(a.route == answered.route for a in self.passed_over)

    @property
    def escalated_from(self) -> str | None:
        """The first route tried, when it failed."""
        return self.attempts[0].route if self.escalated else None

    def metadata(self) -> dict[str, Any]:
        """The record put on an answer under :data:`ROUTE_KEY` (JSON-safe).

        Keys: ``call_id``, ``route`` and ``model`` (what answered), ``confidence``,
        ``reason``, ``decided_route`` (the router's choice), ``escalated``,
        ``escalated_from``, ``attempts`` (the routes passed over, with ``route``, ``model``,
        ``error``, ``rejected``), ``baseline_route``, ``baseline_model``, ``routing_ms``,
        ``encoder_ms`` (its part spent embedding the query), ``router_load_ms`` (the
        encoder's one-time load, kept out of ``routing_ms``),
        ``max_similarity``, ``context`` (the conversation strategy), ``session``
        (:class:`~langroute.router.decision.SessionInfo`: stickiness or a topic shift),
        ``record_id`` (the answer's ledger record id, for feedback), and for decider chains
        ``stage``, ``stage_note`` and ``router_calls`` (the LLM router's calls), and with
        shadow evaluation ``shadow`` (:class:`~langroute.router.decision.ShadowDecision`).
        """
        return self.route_metadata().model_dump(mode="json", exclude_none=False)

    def route_metadata(self) -> RouteMetadata:
        """The record of :meth:`metadata`, as the model (no JSON round trip)."""
        decision = self.decision
        return RouteMetadata(
            call_id=self.call_id,
            route=self.route,
            model=self.model,
            confidence=decision.confidence,
            reason=decision.reason,
            decided_route=decision.route,
            escalated=self.escalated,
            escalated_from=self.escalated_from,
            attempts=self.passed_over,
            baseline_route=self.baseline_route,
            baseline_model=self.baseline_model,
            routing_ms=decision.elapsed_ms,
            encoder_ms=decision.timings_ms.get("embed", 0.0),
            router_load_ms=decision.timings_ms.get("load", 0.0),
            max_similarity=decision.max_similarity,
            context=decision.context,
            session=decision.session,
            record_id=self.record_id,
            stage=decision.stage,
            stage_note=decision.stage_note,
            router_calls=decision.router_calls,
            shadow=decision.shadow,
        )

    def ledger_records(
        self,
        *,
        framework: str,
        metadata: Mapping[str, Any] | None = None,
        query: str | None = None,
        attempt: int | None = None,
    ) -> list[Any]:
        """One :class:`~langroute.costs.LedgerRecord` per attempt, unpriced.

        The answering attempt's record has :attr:`record_id`; ``query`` (the routed text,
        kept only when the caller asks) goes on every record.

        The ledger prices them (:meth:`CostLedger.record`), so prices live in one place.
        A failed attempt carries its error and the tokens the provider reported, if any.
        An attempt that is not :attr:`Attempt.measured` is marked unmeasured
        (:attr:`~langroute.costs.LedgerRecord.measured`): the ledger does not price it.
        The decision's own model calls (an LLM router's, :attr:`RouteDecision.router_calls`)
        come first, as records of role ``"router"`` (route ``"router"``) in the same request.
        With shadow evaluation, the first attempt's record (the decided route's, the one
        with ``escalated`` false) carries the candidate's decision in its ``shadow_*``
        fields, so each request counts once.

        Args:
            framework: The framework that made the call (``"langchain"``, ...).
            metadata: Extra metadata for every record.
            query: The routed text, kept on every record when the caller asks.
            attempt: Only the records of this attempt (an index; ``-1``: the last), for a
                handler that writes each attempt as it ends; the router's calls come
                with the first attempt.
        """
        from langroute.costs.records import ROLE_KEY, UNMEASURED_KEY, LedgerRecord

        first = self.attempts[0].route if self.attempts else None
        extra = dict(metadata or {})
        decision = self.decision
        shared = {
            **extra,
            "decided_route": decision.route,
            "routing_ms": decision.elapsed_ms,
            **(
                {"router_load_ms": decision.timings_ms["load"]}
                if "load" in decision.timings_ms
                else {}
            ),
            "max_similarity": decision.max_similarity,
            **({"context": decision.context} if decision.context is not None else {}),
            **(
                {"session": decision.session.model_dump(mode="json")}
                if decision.session is not None
                else {}
            ),
            **({"stage": decision.stage} if decision.stage is not None else {}),
        }
        indices = range(len(self.attempts))
        if attempt is not None:
            index = attempt if attempt >= 0 else len(self.attempts) + attempt
            indices = range(index, index + 1) if 0 <= index < len(self.attempts) else range(0)
        records = []
        if 0 in indices or (attempt is None and not self.attempts):
            for call in decision.router_calls:
                records.append(
                    LedgerRecord(
                        framework=framework,
                        run_id=self.call_id,
                        kind="route",
                        route="router",
                        model=call.model,
                        input_tokens=call.input_tokens,
                        output_tokens=call.output_tokens,
                        cached_tokens=call.cached_tokens,
                        latency_ms=call.latency_ms,
                        error=call.error,
                        reason=decision.reason,
                        query=query,
                        metadata={
                            **shared,
                            ROLE_KEY: "router",
                            "usage_reported": call.usage_reported,
                            **(
                                {UNMEASURED_KEY: True}
                                if not call.usage_reported and call.error is None
                                else {}
                            ),
                        },
                    )
                )
        answered = self.answered
        for index in indices:
            attempt_ = self.attempts[index]
            usage = attempt_.usage or TokenUsage()
            own = {"record_id": self.record_id} if attempt_ is answered else {}
            if index == 0 and decision.shadow is not None:
                own |= _shadow_fields(decision.shadow)
            records.append(
                LedgerRecord(
                    **own,
                    query=query,
                    framework=framework,
                    run_id=self.call_id,
                    kind="route",
                    route=attempt_.route,
                    model=attempt_.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cached_tokens=usage.cached_tokens,
                    baseline_model=self.baseline_model,
                    latency_ms=attempt_.latency_ms,
                    escalated=attempt_.route != first,
                    escalated_from=first if attempt_.route != first else None,
                    error=attempt_.error,
                    reason=decision.reason,
                    confidence=decision.confidence,
                    metadata={
                        **shared,
                        "usage_reported": attempt_.usage is not None,
                        **({"rejected": True} if attempt_.rejected else {}),
                        **({UNMEASURED_KEY: True} if not attempt_.measured else {}),
                    },
                )
            )
        return records


def _shadow_fields(shadow: ShadowDecision) -> dict[str, Any]:
    """The ledger fields of a candidate's decision (see :class:`LedgerRecord`)."""
    return {
        "shadow_router": shadow.router,
        "shadow_route": shadow.route,
        "shadow_reason": shadow.reason,
        "shadow_confidence": shadow.confidence,
        "shadow_error": shadow.error,
    }
