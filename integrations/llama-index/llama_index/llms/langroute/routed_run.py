"""One routed LlamaIndex call on its way: its decision, tool request, record and events.

:class:`~llama_index.llms.langroute.base.RoutingLLM` makes a :class:`Routing` (the
decision) for each request, pins it for the calls a ``predict``/``stream`` makes, and
runs the routes through a :class:`RoutedRun`, which emits the integration's events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from llama_index.llms.langroute.events import (
    CallKind,
    RouteAttemptFailedEvent,
    RouteCompletedEvent,
    dispatcher,
)
from llama_index.llms.langroute.route_llms import delivers, served_model
from llama_index.llms.langroute.usage import extract_usage

from langroute.dispatch.dispatcher import AnswerReaders, RouteDispatcher
from langroute.dispatch.escalation import Escalation, max_usage
from langroute.dispatch.routed_call import ROUTE_KEY, Attempt, RoutedCall
from langroute.router.decision import RouteDecision

READERS = AnswerReaders(
    usage_of=extract_usage, model_of=served_model, merge_usage=max_usage, delivers=delivers
)
"""How the dispatcher reads LlamaIndex answers: ``raw`` usage (running totals on a
stream), the served model, and whether a chunk delivers text or a tool call."""

__all__ = [
    "PINNED",
    "READERS",
    "RoutedRun",
    "Routing",
    "ToolRequest",
    "annotate",
    "apinned_iter",
    "pinned_iter",
]

R = TypeVar("R", ChatResponse, CompletionResponse)
T = TypeVar("T")


@dataclass(frozen=True)
class Routing:
    """A decision made for one call, and the id that ties its events together.

    ``per_call``: pinned by ``force_route``, the decision applies to every call in the
    block, but each call is its own request (its own id and selection event).
    """

    call_id: str
    decision: RouteDecision
    per_call: bool = False


# The routing of the call in progress, set by predict/stream/structured_predict (which see
# the user's question) for the chat/complete calls they make. Keyed by the RoutingLLM's id
# so that a RoutingLLM used as a route of another one is not affected.
PINNED: ContextVar[tuple[int, Routing] | None] = ContextVar("langroute_pinned", default=None)


@dataclass
class ToolRequest:
    """The arguments of a ``chat_with_tools`` call, kept until the route is known.

    Tools are converted by the chosen route's own LLM (its provider format), at call
    time, and again for each route escalated to.
    """

    tools: Sequence[Any]
    user_msg: str | ChatMessage | None
    chat_history: list[ChatMessage] | None
    verbose: bool
    allow_parallel_tool_calls: bool
    tool_required: bool
    kwargs: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[ChatMessage]:
        """The conversation the tools are offered in."""
        messages = list(self.chat_history or [])
        if isinstance(self.user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=self.user_msg))
        elif self.user_msg is not None:
            messages.append(self.user_msg)
        return messages

    def prepare(self, route: str, llm: LLM) -> dict[str, Any]:
        """The chat arguments in the provider format of ``route``'s LLM."""
        if not isinstance(llm, FunctionCallingLLM):
            raise TypeError(
                f"route {route!r} ({type(llm).__name__}) does not support function calling"
            )
        return llm._prepare_chat_with_tools_compat(
            self.tools,
            user_msg=self.user_msg,
            chat_history=self.chat_history,
            verbose=self.verbose,
            allow_parallel_tool_calls=self.allow_parallel_tool_calls,
            tool_required=self.tool_required,
            **self.kwargs,
        )


def pinned_iter(iterator: Iterator[T], owner: int, routing: Routing) -> Generator[T, None, None]:
    """Re-pin the routing around each step of a lazy iterator."""
    while True:
        token = PINNED.set((owner, routing))
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            PINNED.reset(token)
        yield item


async def apinned_iter(
    iterator: AsyncIterator[T], owner: int, routing: Routing
) -> AsyncGenerator[T, None]:
    """Async :func:`pinned_iter`."""
    while True:
        token = PINNED.set((owner, routing))
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        finally:
            PINNED.reset(token)
        yield item


def annotate(response: R, record: dict[str, Any]) -> R:
    """The child's response (its ``raw`` untouched) with the routing record added."""
    return response.model_copy(
        update={"additional_kwargs": {**response.additional_kwargs, ROUTE_KEY: record}}
    )


class RoutedRun:
    """One routed call on its way: its record, its escalation, and the events it emits.

    The :class:`~langroute.dispatch.escalation.Escalation` tries the routes and records every
    attempt in :attr:`call`; this object turns those attempts into the integration's
    events: a :class:`RouteAttemptFailedEvent` per route that raised an error listed in
    ``escalate_on``, and one :class:`RouteCompletedEvent` for the route that answered
    (for streams: once the stream ended, broke or was closed).
    """

    def __init__(
        self, dispatcher: RouteDispatcher, routing: Routing, kind: CallKind, call: RoutedCall
    ):
        self.dispatcher = dispatcher
        self.routing = routing
        self.kind = kind
        self.call = call
        self.failures = 0
        self.escalation: Escalation[Any] = dispatcher.escalation(call, on_failure=self.failed)

    def model_for(self, route: str) -> str:
        """The model name of a route's LLM."""
        return self.dispatcher.route_models[route] or route

    def failed(self, attempt: Attempt, next_route: str | None, error: BaseException) -> None:
        """Announce a route that raised (an error that escalates)."""
        self.failures += 1
        if not isinstance(error, self.dispatcher.escalate_on):
            return  # not an escalation: the error reaches the caller, as before
        dispatcher.event(
            RouteAttemptFailedEvent(
                call_id=self.call.call_id,
                route=attempt.route,
                model=attempt.model or self.model_for(attempt.route),
                error=attempt.error or "",
                exception=error,
                latency_ms=attempt.latency_ms or 0.0,
                next_route=next_route,
                decision=self.routing.decision,
                call=self.call.snapshot(),
            )
        )

    def completed(
        self, response: ChatResponse | CompletionResponse | None, streamed: bool = False
    ) -> None:
        """Announce the route that answered."""
        attempt = self.call.attempts[-1]
        failed = self.call.attempts[: self.failures]
        dispatcher.event(
            RouteCompletedEvent(
                call_id=self.call.call_id,
                kind=self.kind,
                route=attempt.route,
                model=attempt.model or self.model_for(attempt.route),
                baseline_model=self.call.baseline_model or self.call.baseline_route,
                decision=self.routing.decision,
                response=response,
                usage=attempt.usage,
                latency_ms=attempt.latency_ms or 0.0,
                escalated_from=failed[0].route if failed else None,
                failed_routes=[a.route for a in failed],
                error=attempt.error,
                streamed=streamed,
                call=self.call.snapshot(),
            )
        )

    def stream_ended(self, last: ChatResponse | CompletionResponse | None) -> None:
        """Announce the answering route, if a stream was opened (ended, broke or closed)."""
        if len(self.call.attempts) > self.failures:
            self.completed(last, streamed=True)
