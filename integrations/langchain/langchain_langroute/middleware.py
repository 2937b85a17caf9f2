"""RouterMiddleware: per-call model routing for LangChain v1 agents (``create_agent``).

The agent-side twin of :class:`~langchain_langroute.chat_models.RoutingChatModel`: before
each model call of the agent loop it routes the user's question (by default the last
human message, so every step of one turn goes to the same route) and swaps the request's
model for the chosen route's model. The route's model runs as the agent's ordinary model
run, so usage is counted once under its own name.

Requires the ``langchain`` package (``pip install "langchain-langroute[agents]"``); the
rest of ``langchain_langroute`` works without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langgraph.errors import GraphBubbleUp
from langroute.dispatch.dispatcher import AUTO, Auto, RouteDispatcher, RouteRequest
from langroute.dispatch.routed_call import ROUTE_KEY, RoutedCall
from langroute.protocols import Router
from langroute.router.conversation import (
    ConversationContext,
    SessionTracker,
    session_key_from,
    session_scope_from,
)

from langchain_langroute.events import ROUTE_EVENT
from langchain_langroute.query import chat_turns, last_human_message
from langchain_langroute.route_models import (
    READERS,
    check_chat_models,
    model_name_of,
    route_event_data,
)

__all__ = ["RouterMiddleware"]


class RouterMiddleware(AgentMiddleware):
    """Route each model call of a LangChain v1 agent to the cheapest adequate model.

    Before every model call the router sees the user's question and the request's model is
    replaced by the chosen route's model (tools and response format reach it unchanged;
    the agent binds them in that model's own format). When that model raises, the call
    escalates to the next stronger route; when all fail, ``AllRoutesFailedError`` is
    raised with the attempts attached. The decision is added to the answer's
    ``response_metadata["langroute"]``, emitted as the ``"langroute_route"`` custom event,
    and put in the model run's metadata (``metadata["langroute"]``) so that a
    :class:`~langchain_langroute.callbacks.CostCallbackHandler` can record the call.

    Setup:
        .. code-block:: bash

            pip install "langchain-langroute[agents]" langchain-openai

    Instantiate:
        .. code-block:: python

            from langchain.agents import create_agent
            from langchain_openai import ChatOpenAI
            from langroute import ExemplarRouter
            from langchain_langroute.middleware import RouterMiddleware

            small, large = ChatOpenAI(model="gpt-4o-mini"), ChatOpenAI(model="gpt-4o")
            agent = create_agent(
                model=small,  # replaced per call by the routed model
                tools=[get_weather],
                middleware=[
                    RouterMiddleware(ExemplarRouter.default(), {"small": small, "large": large})
                ],
            )

    Invoke:
        .. code-block:: python

            state = agent.invoke({"messages": [("user", "Weather in Paris?")]})
            state["messages"][-1].response_metadata["langroute"]["route"]  # 'small'
    """

    def __init__(
        self,
        router: Router,
        models: dict[str, BaseChatModel],
        *,
        query_extractor: Callable[[Sequence[BaseMessage]], str | None] | None = None,
        escalation_order: Sequence[str] | None = None,
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        emit_events: bool = True,
        context: ConversationContext | Auto | None = AUTO,
        sessions: bool | SessionTracker | Auto = AUTO,
        shadow: Any = None,
        telemetry: Any = None,
    ) -> None:
        """Create the middleware.

        Args:
            router: A :class:`langroute.protocols.Router` (``ExemplarRouter`` or compatible).
            models: Route name -> the chat model for that route (every route needs one).
            query_extractor: Messages -> the text to route on (it returns ``None``: the
                fallback route). Default: the last human message. Given, and ``context``
                and ``sessions`` left at ``"auto"``, it decides what is routed.
            escalation_order: Routes cheapest to strongest for escalation on errors
                (default: the router's order).
            escalate_on: Errors that trigger escalation; others propagate.
            emit_events: Dispatch the ``"langroute_route"`` custom event.
            context: Route on the conversation's user turns
                (:class:`langroute.router.conversation.ConversationContext`); tool results
                and AI turns are never routed on. Default ``"auto"``: ``window:1`` for a
                router that routes vectors; ``None`` with ``sessions=False``: plain.
            sessions: Keep one route per conversation (no downgrade within a topic):
                ``True``, ``False`` or a :class:`langroute.router.conversation.SessionTracker`;
                default ``"auto"``: on with ``context``'s default. The key is the run's
                ``thread_id``/``session_id`` (config metadata or ``configurable``) within
                the caller's scope (``api_key``, ``tenant_id``, ``tenant``, ``user_id``),
                else derived from the transcript.
            shadow: A candidate router that decides each model call beside ``router``
                without answering (:mod:`langroute.dispatch.shadow`).
            telemetry: OpenTelemetry spans (:mod:`langroute.telemetry`): ``None`` (on
                once a global tracer provider is set), ``False``, ``True`` or a provider.

        Raises:
            RouterConfigError: ``models`` does not match the router's routes.
        """
        super().__init__()
        check_chat_models(models)
        self.router = router
        self.models = dict(models)
        if query_extractor is not None and context == AUTO and sessions == AUTO:
            context, sessions = None, False  # the caller's extractor decides what is routed
        self.query_extractor = query_extractor or last_human_message
        self.emit_events = emit_events
        self.route_models = {route: model_name_of(model) for route, model in self.models.items()}
        # an interrupt is the agent pausing, not a failed route: it passes through
        self.dispatcher = RouteDispatcher(
            router,
            self.route_models,
            escalation_order=escalation_order,
            escalate_on=escalate_on,
            propagate=(GraphBubbleUp,),
            context=context,
            sessions=sessions,
            readers=READERS,
            shadow=shadow,
            telemetry=telemetry,
        )
        self.routes = self.dispatcher.routes

    # ------------------------------------------------------------------ helpers
    def _request(self, request: ModelRequest) -> RouteRequest:
        """What the dispatcher decides on: the agent's messages read into a request."""
        if self.dispatcher.routes_conversations:
            config = ensure_config()
            sources = (config.get("metadata"), config.get("configurable"))
            return RouteRequest(
                turns=chat_turns(request.messages),
                session_key=session_key_from(*sources),
                session_scope=session_scope_from(*sources),
            )
        return RouteRequest(query=self.query_extractor(request.messages))

    def _attempt_record(self, call: RoutedCall, route: str) -> dict[str, Any]:
        """The call's record as it stands while ``route`` is being tried."""
        return {**call.metadata(), "route": route, "model": self.route_models[route]}

    @contextmanager
    def _run_metadata(self, record: dict[str, Any]) -> Iterator[None]:
        """Give the model run below this call ``metadata["langroute"]`` (for cost records).

        The agent invokes the model without an explicit config, so it inherits the
        current runnable config. ``source: "middleware"`` tells the cost handler that the
        earlier (failed) attempts listed in the record were model runs of their own.
        """
        config = ensure_config()
        config["metadata"] = {
            **(config.get("metadata") or {}),
            ROUTE_KEY: {**record, "source": "middleware"},
        }
        token = var_child_runnable_config.set(config)
        try:
            yield
        finally:
            var_child_runnable_config.reset(token)

    @staticmethod
    def _annotate(response: Any, call: RoutedCall) -> Any:
        messages = [response] if isinstance(response, AIMessage) else response.result
        for message in messages:
            if isinstance(message, AIMessage):
                message.response_metadata = {
                    **(message.response_metadata or {}),
                    ROUTE_KEY: call.metadata(),
                }
                break
        return response

    def _emit(self, call: RoutedCall) -> None:
        if not self.emit_events:
            return
        # RuntimeError: no parent run (the agent runs outside any callbacks context).
        with suppress(RuntimeError):
            dispatch_custom_event(ROUTE_EVENT, route_event_data(call, self.route_models))

    async def _aemit(self, call: RoutedCall) -> None:
        if not self.emit_events:
            return
        with suppress(RuntimeError):
            await adispatch_custom_event(ROUTE_EVENT, route_event_data(call, self.route_models))

    # ------------------------------------------------------------------ hooks
    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        """Route the call, run it on the chosen route's model, escalate on errors."""
        call = self.dispatcher.start(self.dispatcher.decide(self._request(request)))
        self._emit(call)

        def model_call(route: str) -> ModelResponse:
            with self._run_metadata(self._attempt_record(call, route)):
                return handler(request.override(model=self.models[route]))

        _, response = self.dispatcher.escalation(call).run(model_call)
        return self._annotate(response, call)

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        """Async :meth:`wrap_model_call`."""
        call = self.dispatcher.start(await self.dispatcher.adecide(self._request(request)))
        await self._aemit(call)

        async def model_call(route: str) -> ModelResponse:
            with self._run_metadata(self._attempt_record(call, route)):
                return await handler(request.override(model=self.models[route]))

        _, response = await self.dispatcher.escalation(call).arun(model_call)
        return self._annotate(response, call)
