"""RoutingChatModel: one LangChain chat model that sends each call to the cheapest route.

Design (see the repository guide, LangChain section):

- The routing model is the only model run. It calls the chosen delegate's ``_generate`` /
  ``_agenerate`` / ``_stream`` / ``_astream`` directly, passing its own run manager, so a
  call's usage is counted once, under the delegate's ``response_metadata["model_name"]``.
- The decision rides on exactly one message or chunk, in
  ``response_metadata["langroute"]``, and is dispatched as the custom event
  ``"langroute_route"`` on the model run (visible in ``astream_events(version="v2")``).
- Tools are bound once in OpenAI format; at call time the chosen delegate's own
  ``bind_tools`` turns them into its provider's format.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import (
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list, get_executor_for_config
from langchain_core.runnables.utils import gather_with_concurrency
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langroute.dispatch.breakers import BreakerRegistry
from langroute.dispatch.dispatcher import AUTO, Auto, RouteDispatcher, RouteRequest
from langroute.dispatch.equivalents import RouteEquivalents
from langroute.dispatch.escalation import Escalation
from langroute.dispatch.latency import LatencyPolicy
from langroute.dispatch.routed_call import ROUTE_KEY, RoutedCall
from langroute.protocols import Router
from langroute.router.conversation import (
    ConversationContext,
    SessionTracker,
    session_key_from,
    session_scope_from,
)
from langroute.router.decision import RouteDecision
from langroute.router.scoped_learning import ScopedLearning
from langroute.router.warmup import WarmUp, start_warm_up
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_langroute.events import (
    BREAKER_EVENT,
    CALL_CONTINUED_EVENT,
    CALL_FAILED_EVENT,
    ROUTE_EVENT,
    EventTarget,
    adispatch,
    dispatch,
    run_target,
)
from langchain_langroute.query import chat_turns, last_human_message
from langchain_langroute.route_models import (
    READERS,
    STANDARD_PARAMS,
    StreamedModelName,
    adelegate_stream,
    check_chat_models,
    delegate_stream,
    model_name_of,
    route_event_data,
    stream_usage_kwargs,
    usage_of_message,
    with_route_settings,
)
from langchain_langroute.routes import (
    continuation_messages,
    delivered_text,
    route_equivalents,
    routes_of,
)

__all__ = [
    "CALL_FAILED_EVENT",
    "ROUTE_EVENT",
    "ROUTE_KEY",
    "ROUTING_LLM_TYPE",
    "RoutingChatModel",
    "usage_of_message",
]

ROUTING_LLM_TYPE = "langroute-routing-chat-model"
"""``_llm_type`` of :class:`RoutingChatModel` (``invocation_params["_type"]`` in callbacks)."""

_CALL_KEY = "_langroute_call"
_TOOL_KWARGS_KEY = "_langroute_tool_kwargs"
_PRIVATE_KEYS = (_CALL_KEY, _TOOL_KWARGS_KEY)


@dataclass
class _CallContext:
    """What travels from ``stream``/``batch`` to ``_stream``/``_generate`` for one call."""

    decision: RouteDecision | None = None
    run_id: uuid.UUID | None = None
    callbacks: Callbacks = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class RoutingChatModel(BaseChatModel):
    """A chat model that routes each call to the cheapest route able to answer it.

    Every route of the router must have a chat model. The router sees the user's question
    (by default the text of the last human message) and picks a route; the route's model
    answers. When that model raises (timeout, rate limit, provider error) the call
    escalates to the next stronger route; when all fail, ``AllRoutesFailedError`` is
    raised with the attempts attached. While streaming, escalation is possible until the
    first chunk with text or a tool call has been yielded (an empty stream escalates too).
    The answer names the model the provider served (``model_name``, often a dated name);
    on a stream, the chunk that names it may come last.

    Setup:
        .. code-block:: bash

            pip install langchain-langroute langchain-openai

    Instantiate:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from langroute import ExemplarRouter
            from langchain_langroute import RoutingChatModel

            llm = RoutingChatModel(
                router=ExemplarRouter.default(),  # routes ["small", "large"]
                models={
                    "small": ChatOpenAI(model="gpt-4o-mini"),
                    "large": ChatOpenAI(model="gpt-4o"),
                },
            )

    Invoke:
        .. code-block:: python

            msg = llm.invoke("What is the capital of France?")
            msg.response_metadata["model_name"]  # 'gpt-4o-mini-2024-07-18'
            msg.response_metadata["langroute"]  # RoutedCall.metadata()
            # {'call_id': '3f2a...', 'route': 'small', 'model': 'gpt-4o-mini-2024-07-18',
            #  'confidence': 0.93, 'reason': 'vote', 'escalated': False, 'attempts': [], ...}
            RouteMetadata.from_metadata(msg.response_metadata).route  # 'small'

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Prove that there are infinitely many primes."):
                print(chunk.content, end="")
            # the first chunk carries response_metadata["langroute"]

    Force a route, tools, structured output:
        .. code-block:: python

            llm.invoke("hi", model="large")  # a route name or a route's model name
            llm.bind_tools([get_weather]).invoke("Weather in Paris?")
            llm.with_structured_output(Answer).invoke("...")

    Batch (one batched routing call for all inputs):
        .. code-block:: python

            llm.batch(["hi", "Prove Fermat's little theorem."])
    """

    router: Router
    """A :class:`langroute.protocols.Router` (``ExemplarRouter`` or anything with the same
    routing methods)."""
    models: dict[str, Any]
    """Route name -> the chat model (a ``BaseChatModel``) that answers that route, a list
    of equivalent chat models (tried in order before escalating), or a
    :class:`~langchain_langroute.routes.Route` (weights, options). After construction it
    holds each route's first model; :attr:`route_equivalents` lists them all."""
    query_extractor: Callable[[Sequence[BaseMessage]], str | None] = Field(
        default=last_human_message
    )
    """Messages -> the text to route on (``None``: use the router's fallback decision)."""
    context: ConversationContext | Auto | None = AUTO
    """Route on the conversation, not the last human message alone: the current user turn
    and earlier ones (:class:`langroute.router.conversation.ConversationContext`); tool
    results and AI turns are never routed on. Default ``"auto"``: ``window:1`` for a router
    that routes vectors (``ExemplarRouter``) unless a ``query_extractor`` is given; ``None``
    with ``sessions=False``: the last human message alone, via ``query_extractor``."""
    sessions: bool | SessionTracker | Auto = AUTO
    """Keep one route per conversation: no downgrade within a topic, upgrades always
    (:class:`langroute.router.conversation.SessionTracker`); default ``"auto"``: on with
    ``context``'s default. The session key is read from the call's ``config["metadata"]``
    or ``config["configurable"]`` (``session_id``, ``thread_id`` or ``conversation_id``)
    and kept apart per caller (``api_key``, ``tenant_id``, ``tenant`` or ``user_id``);
    without one, from the transcript, which never joins two callers' conversations."""
    scoped_learning: ScopedLearning | None = None
    """What each caller taught (:class:`langroute.router.scoped_learning.ScopedLearning`),
    applied to that caller's calls only; the caller is read like a session's scope
    (``api_key``, ``tenant_id``, ``tenant`` or ``user_id`` in the run's metadata)."""
    escalation_order: list[str] | None = None
    """Routes from cheapest to strongest for escalation on errors (default: the router's
    order). After route ``r`` fails, the routes that follow ``r`` here are tried in turn."""
    escalate_on: tuple[type[BaseException], ...] = (Exception,)
    """Errors that trigger escalation; anything else propagates unchanged."""
    emit_events: bool = True
    """Dispatch the ``"langroute_route"`` custom event with each decision."""
    temperature: float | None = None
    """Default temperature, pushed to route models that have a ``temperature`` field and
    did not set it themselves."""
    max_tokens: int | None = None
    """Default output-token cap, pushed down like ``temperature``."""
    timeout: float | None = None
    """Default request timeout in seconds, for route models that did not set their own.

    It reaches the provider's SDK client: the model's timeout field is found by name or
    alias (``ChatOpenAI.request_timeout``, ``ChatAnthropic.default_request_timeout``) and
    the model is rebuilt so that its client is created with it. A model without such a
    field is named in a warning. A route that times out escalates."""
    max_retries: int | None = None
    """Default retry count of the provider's SDK client, applied like ``timeout``.

    ``0`` makes a rate-limited or failing route escalate after its first request."""
    stop: list[str] | None = None
    """Default stop sequences, passed to the chosen model when a call gives none."""
    streaming: bool = False
    """Stream from the chosen model even on ``invoke`` (callbacks see tokens)."""
    breakers: BreakerRegistry | None = None
    """Circuit breakers per model (:class:`langroute.dispatch.breakers.BreakerRegistry`):
    a model that keeps failing is skipped at once until a probe after its cool-down
    succeeds. Share one registry between routing models of a process. ``None``: off."""
    latency_policy: LatencyPolicy | None = None
    """Try each route's equivalents fastest first by a moving latency percentile, never
    across price tiers (:class:`langroute.dispatch.latency.LatencyPolicy`). ``None``:
    the declared (or weighted) order."""
    continue_streams: bool = True
    """Continue a stream that breaks after text on the next model (equivalent, else
    stronger), in the same stream; a route given as a ``Route`` decides for itself."""
    warm_up: WarmUp = False
    """Load the router's encoder at construction, so the first request does not pay for
    it: ``True`` before the constructor returns, ``"background"`` in a daemon thread
    (a request that arrives first waits for that load, recorded apart from its routing
    time). Needs a router with a ``warm_up()`` method, such as ``ExemplarRouter``."""
    shadow: Any = None
    """Shadow evaluation: a candidate router (a saved router's folder, a router, a decider
    chain or a :class:`langroute.dispatch.shadow.ShadowRouter`) that decides each call
    next to ``router`` without answering; its decision goes into the call's ledger row
    and ``response_metadata["langroute"]["shadow"]`` (``langroute compare --ledger``)."""
    telemetry: Any = None
    """OpenTelemetry spans for decisions and model calls (:mod:`langroute.telemetry`):
    ``None`` (default): on once a global tracer provider is set; ``False``: off; ``True``:
    the global provider; or a ``TracerProvider``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _model_names: dict[str, str] = PrivateAttr(default_factory=dict)
    _members: dict[str, list[BaseChatModel]] = PrivateAttr(default_factory=dict)
    _dispatcher: RouteDispatcher = PrivateAttr()

    # ------------------------------------------------------------------ validation
    def __init__(self, **kwargs: Any) -> None:
        """Create the routing model; see the class docstring for the fields.

        Raises:
            RouterConfigError: ``models`` does not map exactly the router's routes to
                chat models, ``escalation_order`` names unknown routes, or ``warm_up``
                is asked of a router without ``warm_up()``.
        """
        super().__init__(**kwargs)
        routes = routes_of(self.models, self.continue_streams)
        check_chat_models(
            {
                f"{r}[{i}]" if len(s.models) > 1 else r: m
                for r, s in routes.items()
                for i, m in enumerate(s.models)
            }
        )
        updates = {
            name: getattr(self, name) for name in STANDARD_PARAMS if getattr(self, name) is not None
        }
        if updates:
            for route, spec in routes.items():
                spec.models = [with_route_settings(route, model, updates) for model in spec.models]
        self._members = {route: list(spec.models) for route, spec in routes.items()}
        self.models = {route: members[0] for route, members in self._members.items()}
        names = {
            route: [model_name_of(m) for m in members] for route, members in self._members.items()
        }
        self._model_names = {route: route_names[0] for route, route_names in names.items()}
        context, sessions = self.context, self.sessions
        if "query_extractor" in self.model_fields_set and context == AUTO and sessions == AUTO:
            context, sessions = None, False  # the caller's extractor decides what is routed
        self._dispatcher = RouteDispatcher(
            self.router,
            self._model_names,
            escalation_order=self.escalation_order,
            escalate_on=self.escalate_on,
            context=context,
            sessions=sessions,
            readers=READERS,
            equivalents=route_equivalents(routes, names, self.latency_policy),
            breakers=self.breakers,
            shadow=self.shadow,
            telemetry=self.telemetry,
            scoped=self.scoped_learning,
        )
        start_warm_up(self.router, self.warm_up)

    @property
    def dispatcher(self) -> RouteDispatcher:
        """The core dispatcher that decides each call (forced routes, fallback, sessions)."""
        return self._dispatcher

    # ------------------------------------------------------------------ LangChain metadata
    @property
    def _llm_type(self) -> str:
        return ROUTING_LLM_TYPE

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "router": type(self.router).__name__,
            "routes": self.route_models,
        }

    @property
    def route_models(self) -> dict[str, str]:
        """Route name -> the model name of that route's chat model."""
        return dict(self._model_names)

    @property
    def route_equivalents(self) -> RouteEquivalents:
        """Route -> its ordered equivalent models (plain data; also for code outside LangChain)."""
        return self._dispatcher.equivalents

    @property
    def strongest_route(self) -> str:
        """The last route of the router (the baseline for savings)."""
        return self._dispatcher.strongest_route

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        public = {k: v for k, v in kwargs.items() if k not in _PRIVATE_KEYS}
        return super()._get_invocation_params(stop=stop, **public)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        call: _CallContext | None = kwargs.get(_CALL_KEY)
        if kwargs.get("model"):
            name = str(kwargs["model"])
        elif call is not None and call.decision is not None:
            name = self._model_names[call.decision.route]
        else:
            name = "langroute[" + ",".join(self._dispatcher.routes) + "]"
        params = LangSmithParams(ls_provider="langroute", ls_model_name=name, ls_model_type="chat")
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; at call time the chosen route's model binds them in its own format.

        Args:
            tools: LangChain tools, functions, pydantic classes or JSON/OpenAI schemas;
                converted to OpenAI format here and handed to the chosen model's
                ``bind_tools``.
            tool_choice: Passed unchanged to the chosen model's ``bind_tools``
                (``"any"``, a tool name, ``"auto"``, ...).
            **kwargs: Further ``bind_tools`` options (``strict``, ``parallel_tool_calls``,
                ...) passed to the chosen model's ``bind_tools``;
                ``ls_structured_output_format`` is kept for tracing.

        Returns:
            A ``RunnableBinding`` of this routing model.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        bound: dict[str, Any] = {"tools": formatted}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        for key in ("ls_structured_output_format", "structured_output_format"):
            if key in kwargs:
                bound[key] = kwargs.pop(key)
        if kwargs:
            bound[_TOOL_KWARGS_KEY] = kwargs
        return self.bind(**bound)

    def _delegate_call(
        self, route: str, kwargs: dict[str, Any]
    ) -> tuple[BaseChatModel, dict[str, Any]]:
        """The model to call for ``route`` and the kwargs for its ``_generate``/``_stream``.

        ``route`` may be a :class:`~langroute.dispatch.equivalents.RouteTarget` naming one
        of the route's equivalent models.
        """
        delegate = self._members[route][getattr(route, "index", 0)]
        call_kwargs = dict(kwargs)
        tools = call_kwargs.pop("tools", None)
        tool_choice = call_kwargs.pop("tool_choice", None)
        tool_kwargs = call_kwargs.pop(_TOOL_KWARGS_KEY, None) or {}
        if tools is None:
            if tool_choice is not None:
                call_kwargs["tool_choice"] = tool_choice
            return delegate, call_kwargs
        options = dict(tool_kwargs)
        if tool_choice is not None:
            options["tool_choice"] = tool_choice
        binding = delegate.bind_tools(tools, **options)
        target: Any = binding
        bound_kwargs: dict[str, Any] = {}
        while isinstance(target, RunnableBinding):
            bound_kwargs = {**target.kwargs, **bound_kwargs}
            target = target.bound
        if not isinstance(target, BaseChatModel):
            raise TypeError(
                f"models[{route!r}].bind_tools returned {type(binding).__name__} that does not "
                "wrap a chat model; the routing model cannot pass the tools on"
            )
        return target, {**bound_kwargs, **call_kwargs}

    # ------------------------------------------------------------------ decisions
    @staticmethod
    def _session(
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> tuple[str | None, str | None]:
        """The caller's session key and scope: run metadata, then the config's own."""
        config = ensure_config()
        sources = (
            run_manager.metadata if run_manager is not None else None,
            call.metadata if call is not None else None,
            config.get("metadata"),
            config.get("configurable"),
        )
        return session_key_from(*sources), session_scope_from(*sources)

    def _request(
        self,
        messages: Sequence[BaseMessage],
        call: _CallContext | None,
        kwargs: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    ) -> RouteRequest:
        """What the dispatcher decides on: LangChain's messages read into a request."""
        forced = kwargs.pop("model", None)
        if call is not None and call.decision is not None:
            return RouteRequest(decision=call.decision)
        if forced:
            return RouteRequest(forced=str(forced))
        if self._dispatcher.routes_conversations:
            key, scope = self._session(run_manager, call)
            return RouteRequest(turns=chat_turns(messages), session_key=key, session_scope=scope)
        scope = self._session(run_manager, call)[1] if self.scoped_learning is not None else None
        return RouteRequest(query=self.query_extractor(messages), session_scope=scope)

    def _decide(
        self,
        messages: Sequence[BaseMessage],
        call: _CallContext | None,
        kwargs: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | None = None,
    ) -> RoutedCall:
        request = self._request(messages, call, kwargs, run_manager)
        return self._dispatcher.start(self._dispatcher.decide(request))

    async def _adecide(
        self,
        messages: Sequence[BaseMessage],
        call: _CallContext | None,
        kwargs: dict[str, Any],
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
    ) -> RoutedCall:
        request = self._request(messages, call, kwargs, run_manager)
        return self._dispatcher.start(await self._dispatcher.adecide(request))

    def _escalation(self, call: RoutedCall) -> Escalation[Any]:
        return self._dispatcher.escalation(call)

    def _resume(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        opener: Callable[..., Any] = delegate_stream,
    ) -> Callable[[list[Any]], Callable[[str], Any] | None]:
        """Continues a stream that broke after text, on a target (None: a tool call broke).

        ``opener`` opens the continuation's stream: ``delegate_stream``, or
        ``adelegate_stream`` for an async stream.
        """

        def resume(so_far: list[Any]) -> Callable[[str], Any] | None:
            text = delivered_text(so_far)
            if text is None:
                return None

            def open_continuation(target: str) -> Any:
                delegate, call_kwargs = self._delegate_call(target, kwargs)
                return opener(delegate, continuation_messages(messages, text), stop, call_kwargs)

            return open_continuation

        return resume

    def _breaker_events(
        self,
        escalation: Escalation[Any],
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Announce the breaker state changes a call caused (``"langroute_breaker"``)."""
        if self.emit_events and escalation.breaker_changes:
            target = self._event_target(run_manager, call)
            for change in escalation.breaker_changes:
                dispatch(BREAKER_EVENT, change.model_dump(mode="json"), target)

    async def _abreaker_events(
        self,
        escalation: Escalation[Any],
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Async :meth:`_breaker_events`."""
        if self.emit_events and escalation.breaker_changes:
            target = self._event_target(run_manager, call, asynchronous=True)
            for change in escalation.breaker_changes:
                await adispatch(BREAKER_EVENT, change.model_dump(mode="json"), target)

    # ------------------------------------------------------------------ custom events
    def _event_target(
        self,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
        *,
        asynchronous: bool = False,
    ) -> EventTarget | None:
        """Where this call's events go: its model run, else the run ``stream`` started."""
        if run_manager is not None:
            return run_target(run_manager, asynchronous=asynchronous)
        if call is not None and call.run_id is not None:
            manager_type = AsyncCallbackManager if asynchronous else CallbackManager
            manager = manager_type.configure(
                call.callbacks,
                self.callbacks,
                self.verbose,
                call.tags,
                self.tags,
                call.metadata,
                self.metadata,
            )
            return manager, call.run_id
        return None

    def _emit(
        self,
        routed: RoutedCall,
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        if self.emit_events:
            data = route_event_data(routed, self._model_names)
            dispatch(ROUTE_EVENT, data, self._event_target(run_manager, call))

    def _emit_failure(
        self,
        routed: RoutedCall,
        run_manager: CallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Report every attempt of a call that ends in an error (for cost records)."""
        if routed.attempts:
            data = {"call": routed.model_dump(mode="json")}
            dispatch(CALL_FAILED_EVENT, data, self._event_target(run_manager, call))

    async def _aemit(
        self,
        routed: RoutedCall,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        if self.emit_events:
            data = route_event_data(routed, self._model_names)
            target = self._event_target(run_manager, call, asynchronous=True)
            await adispatch(ROUTE_EVENT, data, target)

    async def _aemit_failure(
        self,
        routed: RoutedCall,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        call: _CallContext | None,
    ) -> None:
        """Async :meth:`_emit_failure`."""
        if routed.attempts:
            data = {"call": routed.model_dump(mode="json")}
            target = self._event_target(run_manager, call, asynchronous=True)
            await adispatch(CALL_FAILED_EVENT, data, target)

    # ------------------------------------------------------------------ annotation
    @staticmethod
    def _annotate(generation: ChatGeneration, call: RoutedCall, model_name: str | None) -> None:
        """Put the call's record on an answer, and ``model_name`` if it names no model.

        ``model_name`` is the model that served (as the provider named it, dated); a
        streamed first chunk gets none, as the name may come on a later chunk.
        """
        message = generation.message
        metadata = dict(message.response_metadata or {})
        info = generation.generation_info or {}
        if model_name and not (metadata.get("model_name") or info.get("model_name")):
            metadata["model_name"] = model_name
        metadata[ROUTE_KEY] = call.metadata()
        message.response_metadata = metadata

    @staticmethod
    def _pop_private(kwargs: dict[str, Any]) -> _CallContext | None:
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("structured_output_format", None)
        kwargs.pop("stream", None)
        return kwargs.pop(_CALL_KEY, None)

    # ------------------------------------------------------------------ streaming choice
    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        # On the invoke path (a run manager is given) ``_generate`` decides itself, so that
        # it keeps the run manager for the route event; ``stream()`` asks without one.
        if run_manager is not None:
            return False
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    # ------------------------------------------------------------------ generation
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if super()._should_stream(async_api=False, run_manager=run_manager, **kwargs):
            chunks = []
            for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                chunks.append(chunk)
            return generate_from_stream(iter(chunks))
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._decide(messages, call, kwargs, run_manager)
        self._emit(routed, run_manager, call)

        def generate(route: str) -> ChatResult:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            if delegate.rate_limiter is not None:
                delegate.rate_limiter.acquire(blocking=True)
            if delegate._should_stream(async_api=False, **call_kwargs):  # streaming=True
                call_kwargs = {**call_kwargs, **stream_usage_kwargs(delegate, call_kwargs)}
                chunks = delegate._stream(
                    messages, stop=stop, run_manager=run_manager, **call_kwargs
                )
                return generate_from_stream(chunks)
            return delegate._generate(messages, stop=stop, run_manager=run_manager, **call_kwargs)

        escalation = self._escalation(routed)
        try:
            _, result = escalation.run(generate)
        except Exception:
            self._emit_failure(routed, run_manager, call)
            raise
        finally:
            self._breaker_events(escalation, run_manager, call)
        if result.generations:
            self._annotate(result.generations[0], routed, routed.model)
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if super()._should_stream(async_api=True, run_manager=run_manager, **kwargs):

            async def relay() -> AsyncIterator[ChatGenerationChunk]:
                async for chunk in self._astream(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                ):
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk

            return await agenerate_from_stream(relay())
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = await self._adecide(messages, call, kwargs, run_manager)
        await self._aemit(routed, run_manager, call)

        async def agenerate(route: str) -> ChatResult:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            if delegate.rate_limiter is not None:
                await delegate.rate_limiter.aacquire(blocking=True)
            if delegate._should_stream(async_api=True, **call_kwargs):  # streaming=True
                call_kwargs = {**call_kwargs, **stream_usage_kwargs(delegate, call_kwargs)}
                chunks = delegate._astream(
                    messages, stop=stop, run_manager=run_manager, **call_kwargs
                )
                return await agenerate_from_stream(chunks)
            return await delegate._agenerate(
                messages, stop=stop, run_manager=run_manager, **call_kwargs
            )

        escalation = self._escalation(routed)
        try:
            _, result = await escalation.arun(agenerate)
        except Exception:
            await self._aemit_failure(routed, run_manager, call)
            raise
        finally:
            await self._abreaker_events(escalation, run_manager, call)
        if result.generations:
            self._annotate(result.generations[0], routed, routed.model)
        return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = self._decide(messages, call, kwargs, run_manager)
        self._emit(routed, run_manager, call)

        def open_stream(route: str) -> Iterator[ChatGenerationChunk]:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            return delegate_stream(delegate, messages, stop, call_kwargs)

        names = StreamedModelName()
        escalation = self._escalation(routed)
        resume = self._resume(messages, stop, kwargs)
        try:
            for _, chunk in escalation.stream(open_stream, resume=resume):
                if names.first:
                    self._annotate(chunk, routed, None)
                yield names.pass_on(chunk)
        except Exception:
            self._emit_failure(routed, run_manager, call)
            raise
        finally:
            self._breaker_events(escalation, run_manager, call)
        if any(attempt.partial for attempt in routed.attempts):
            data = {"call": routed.model_dump(mode="json")}
            dispatch(CALL_CONTINUED_EVENT, data, self._event_target(run_manager, call))
        closing = names.closing(routed)
        if closing is not None:
            yield closing

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._pop_private(kwargs)
        stop = stop or self.stop or None
        routed = await self._adecide(messages, call, kwargs, run_manager)
        await self._aemit(routed, run_manager, call)

        def open_stream(route: str) -> AsyncIterator[ChatGenerationChunk]:
            delegate, call_kwargs = self._delegate_call(route, kwargs)
            return adelegate_stream(delegate, messages, stop, call_kwargs)

        names = StreamedModelName()
        escalation = self._escalation(routed)
        resume = self._resume(messages, stop, kwargs, adelegate_stream)
        try:
            async for _, chunk in escalation.astream(open_stream, resume=resume):
                if names.first:
                    self._annotate(chunk, routed, None)
                yield names.pass_on(chunk)
        except Exception:
            await self._aemit_failure(routed, run_manager, call)
            raise
        finally:
            await self._abreaker_events(escalation, run_manager, call)
        if any(attempt.partial for attempt in routed.attempts):
            data = {"call": routed.model_dump(mode="json")}
            target = self._event_target(run_manager, call, asynchronous=True)
            await adispatch(CALL_CONTINUED_EVENT, data, target)
        closing = names.closing(routed)
        if closing is not None:
            yield closing

    # ------------------------------------------------------------------ stream / batch
    @staticmethod
    def _stream_context(config: RunnableConfig) -> _CallContext:
        if config.get("run_id") is None:
            config["run_id"] = uuid.uuid4()
        return _CallContext(
            run_id=config["run_id"],
            callbacks=config.get("callbacks"),
            tags=list(config.get("tags") or []),
            metadata=dict(config.get("metadata") or {}),
        )

    def _with_session(self, config: RunnableConfig | None) -> RunnableConfig | None:
        """``config`` with a ``configurable`` session key copied into its metadata.

        The model run sees only the metadata; with sessions, a key given as
        ``configurable={"session_id": ...}`` must reach it.
        """
        if not self._dispatcher.routes_conversations or config is None:
            return config
        configurable = config.get("configurable") or {}
        key = session_key_from(configurable)
        metadata = dict(config.get("metadata") or {})
        if key is None or session_key_from(metadata) is not None:
            return config
        return {**config, "metadata": {**metadata, "session_id": key}}

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer one input on the chosen route (see the class docstring)."""
        return super().invoke(input, self._with_session(config), stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Async :meth:`invoke`."""
        return await super().ainvoke(input, self._with_session(config), stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the chosen model's answer; the first chunk carries the decision.

        The model run's id is fixed up front so that the route event can be attached to
        it (``BaseChatModel.stream`` gives ``_stream`` no run manager).
        """
        config = ensure_config(self._with_session(config))
        call = kwargs.pop(_CALL_KEY, None) or self._stream_context(config)
        if call.run_id is None:
            call.run_id = self._stream_context(config).run_id
        yield from super().stream(input, config, stop=stop, **{_CALL_KEY: call, **kwargs})

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""
        config = ensure_config(self._with_session(config))
        call = kwargs.pop(_CALL_KEY, None) or self._stream_context(config)
        if call.run_id is None:
            call.run_id = self._stream_context(config).run_id
        async for chunk in super().astream(input, config, stop=stop, **{_CALL_KEY: call, **kwargs}):
            yield chunk

    def _batch_queries(
        self, inputs: Sequence[LanguageModelInput], kwargs: dict[str, Any]
    ) -> list[str | None] | None:
        """The query of each input, to decide them in one call (``None``: decide each apart).

        With conversation routing, a batch of one-turn conversations is still decided in
        one call (on one user turn every context routes the turn alone); a batch holding
        a longer conversation is decided input by input, each with its session.
        """
        if kwargs.get("model"):
            return None
        messages = [self._convert_input(item).to_messages() for item in inputs]
        if not self._dispatcher.routes_conversations:
            return [self.query_extractor(item) for item in messages]
        queries: list[str | None] = []
        for item in messages:
            users = [t.text for t in chat_turns(item) if t.role == "user"]
            if len(users) > 1:
                return None
            queries.append(users[0] if users else None)
        return queries

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage | Exception]:  # type: ignore[override]
        """Answer many inputs; all of them are routed with one ``route_batch`` call."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        queries = self._batch_queries(inputs, kwargs)
        decisions = (
            self._dispatcher.decide_batch(queries) if queries is not None else [None] * len(inputs)
        )

        def invoke(i: int) -> Any:
            call_kwargs = {**kwargs}
            if decisions[i] is not None:
                call_kwargs[_CALL_KEY] = _CallContext(decision=decisions[i])
            try:
                return self.invoke(inputs[i], configs[i], **call_kwargs)
            except Exception as error:
                if return_exceptions:
                    return error
                raise

        if len(inputs) == 1:
            return [invoke(0)]
        with get_executor_for_config(configs[0]) as executor:
            return list(executor.map(invoke, range(len(inputs))))

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage | Exception]:  # type: ignore[override]
        """Async :meth:`batch` (one ``aroute_batch`` call for all inputs)."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        queries = self._batch_queries(inputs, kwargs)
        decisions = (
            await self._dispatcher.adecide_batch(queries)
            if queries is not None
            else [None] * len(inputs)
        )

        async def ainvoke(i: int) -> Any:
            call_kwargs = {**kwargs}
            if decisions[i] is not None:
                call_kwargs[_CALL_KEY] = _CallContext(decision=decisions[i])
            try:
                return await self.ainvoke(inputs[i], configs[i], **call_kwargs)
            except Exception as error:
                if return_exceptions:
                    return error
                raise

        return await gather_with_concurrency(
            configs[0].get("max_concurrency"), *(ainvoke(i) for i in range(len(inputs)))
        )
