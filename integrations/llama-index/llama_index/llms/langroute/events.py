"""Instrumentation events emitted by :class:`RoutingLLM` and :class:`CascadeLLM`.

They are ordinary LlamaIndex instrumentation events: any handler added to the root
dispatcher (``llama_index.core.instrumentation.get_dispatcher()``) receives them next to
LlamaIndex's own ``LLMChatStartEvent`` / ``LLMChatEndEvent``, which only the chosen
child LLM emits (the routing LLM emits no LLM events of its own, so nothing is counted
twice).

Order for one routed call::

    RouteSelectedEvent            the decision, before any model is called
    LLMChat*Event ...             the chosen child's own events
    RouteAttemptFailedEvent       only if that route raised; the next route follows
    RouteCompletedEvent           the route that answered, its response and latency

A cascade emits one :class:`CascadeTierEvent` per tier it tried.

Example:
    >>> from llama_index.core.instrumentation import get_dispatcher
    >>> from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    >>> class PrintRoutes(BaseEventHandler):
    ...     def handle(self, event, **kwargs):
    ...         if isinstance(event, RouteSelectedEvent):
    ...             print(event.route, event.decision.reason)
    >>> get_dispatcher().add_event_handler(PrintRoutes())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.base.llms.types import ChatResponse, CompletionResponse
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events import BaseEvent

from langroute.costs.records import LedgerRecord
from langroute.dispatch.routed_call import RoutedCall, TokenUsage
from langroute.router.decision import RouteDecision

__all__ = [
    "CallKind",
    "CascadeTierEvent",
    "RouteAttemptFailedEvent",
    "RouteCompletedEvent",
    "RouteSelectedEvent",
    "dispatcher",
]

dispatcher = get_dispatcher(__name__)

CallKind = Literal["chat", "complete", "stream_chat", "stream_complete"]
"""Which child method served the call (async calls report the same kinds)."""

Response = ChatResponse | CompletionResponse


FRAMEWORK = "llama_index"
"""The ``framework`` of the ledger rows this integration writes."""


class RouteSelectedEvent(BaseEvent):
    """The router chose a route; emitted once per routed call, before the model runs.

    Attributes:
        call_id: Identifier shared by every event of this call.
        route: The chosen route.
        model: The model name of the chosen route's LLM (``metadata.model_name``).
        decision: The full :class:`~langroute.RouteDecision` (scores, neighbours, reason).
        query: The text that was routed on (``None`` when there was none).
        source: Where the text came from: ``"prompt"`` (a template's ``query_str``),
            ``"messages"``, ``"completion"``, ``"forced"`` or ``"none"``.
    """

    call_id: str
    route: str
    model: str
    decision: RouteDecision
    query: str | None = None
    source: str = "messages"

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RouteSelectedEvent"


class RouteAttemptFailedEvent(BaseEvent):
    """A route raised a provider error; the call escalates to ``next_route`` (if any).

    Attributes:
        call_id: Identifier shared by every event of this call.
        route: The route that failed.
        model: Its model name.
        error: ``"ErrorType: message"``.
        exception: The exception itself.
        latency_ms: Time spent on the failed attempt.
        next_route: The route tried next, or ``None`` when none is left.
        decision: The decision of the call.
        call: The routed call up to this attempt (its last attempt is this one); the
            cost handler turns it into the ledger row.
    """

    call_id: str
    route: str
    model: str
    error: str
    exception: BaseException | None = Field(default=None, exclude=True)
    latency_ms: float
    next_route: str | None = None
    decision: RouteDecision
    call: RoutedCall = Field(exclude=True)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RouteAttemptFailedEvent"


class RouteCompletedEvent(BaseEvent):
    """A route answered (for streams: the stream ended or was closed).

    Attributes:
        call_id: Identifier shared by every event of this call.
        kind: The child method that served the call.
        route: The route that answered.
        model: The model that answered (from the response when the provider names it,
            else the LLM's ``metadata.model_name``).
        baseline_model: The strongest route's model, to price the same tokens at.
        decision: The decision of the call.
        response: The child's final response (for streams: the last chunk), untouched.
        usage: The tokens the provider reported (for streams: combined over the chunks),
            ``None`` when it reported none.
        latency_ms: Wall time of the successful attempt (streams: until the last chunk).
        escalated_from: The first route that was tried, when it failed.
        failed_routes: Routes that raised before this one answered, in order.
        error: Set when a stream broke after its first chunk.
        streamed: True for streaming calls.
        call: The routed call, every attempt included (its last attempt is the one that
            answered); the cost handler turns it into the ledger row.
    """

    call_id: str
    kind: CallKind
    route: str
    model: str
    baseline_model: str
    decision: RouteDecision
    response: Response | None = None
    usage: TokenUsage | None = None
    latency_ms: float
    escalated_from: str | None = None
    failed_routes: list[str] = Field(default_factory=list)
    error: str | None = None
    streamed: bool = False
    call: RoutedCall = Field(exclude=True)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RouteCompletedEvent"


class CascadeTierEvent(BaseEvent):
    """One tier of a cascade answered (or failed) and was accepted or rejected.

    Attributes:
        call_id: Identifier shared by every tier of this cascade call.
        tier: The tier's position (0 = cheapest).
        tier_name: The tier's name.
        model: The tier's model.
        baseline_model: The last (strongest) tier's model.
        response: The tier's response, untouched (``None`` when it raised).
        usage: The tokens the provider reported (streams: combined over the chunks).
        latency_ms: Wall time of this tier.
        accepted: Whether the cascade stopped here.
        score: The scorer's score in [0, 1] (``None`` when not scored).
        reason: Why the answer was accepted or rejected.
        error: ``"ErrorType: message"`` when the tier raised.
        query: The text the answer was scored against.
        metadata: The scorer's result as a dict, the previous tier's name.
        record_id: The ledger record id of this tier's row (the cascade result of the
            answer names it, for feedback).
        record: The tier's ledger row, as the core builds it
            (:meth:`langroute.dispatch.cascade.CascadeCall.ledger_record`); a cost handler
            stores it.
    """

    call_id: str
    record_id: str | None = None
    tier: int
    tier_name: str
    model: str
    baseline_model: str
    response: Response | None = None
    usage: TokenUsage | None = None
    latency_ms: float
    accepted: bool
    score: float | None = None
    reason: str = ""
    error: str | None = None
    query: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    record: LedgerRecord | None = None

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "CascadeTierEvent"
