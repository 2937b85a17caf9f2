"""``RoutingLLM``: one LlamaIndex LLM that sends each request to the cheapest adequate route."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.instrumentation.dispatcher import active_instrument_tags
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection
from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
from llama_index.core.types import Model, TokenAsyncGen, TokenGen
from llama_index.llms.langroute.continuation import (
    acontinued,
    continuation_messages,
    continued,
    delivered_text,
)
from llama_index.llms.langroute.events import (
    CallKind,
    RouteSelectedEvent,
    dispatcher,
)
from llama_index.llms.langroute.query import QueryExtractor, QueryExtractorProtocol, chat_turns
from llama_index.llms.langroute.route_llms import (
    stream_usage_kwargs,
    with_route_limits,
)
from llama_index.llms.langroute.route_targets import as_route_llm
from llama_index.llms.langroute.routed_run import (
    PINNED,
    READERS,
    RoutedRun,
    Routing,
    ToolRequest,
    annotate,
    apinned_iter,
    pinned_iter,
)

from langroute.dispatch.breakers import BreakerRegistry
from langroute.dispatch.dispatcher import AUTO, Auto, RouteDispatcher, RouteRequest
from langroute.dispatch.equivalents import EquivalentModel, RouteEquivalents
from langroute.dispatch.escalation import Resume
from langroute.dispatch.latency import LatencyPolicy
from langroute.dispatch.routed_call import ROUTE_KEY, RouteMetadata
from langroute.errors import InvalidQueryError, RouterConfigError
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

__all__ = ["ROUTE_KEY", "RouteMetadata", "RoutingLLM"]

_TOOL_REQUEST_KEY = "_langroute_tool_request"
_SESSION_KEY: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "langroute_session_key", default=(None, None)
)

R = TypeVar("R", ChatResponse, CompletionResponse)
T = TypeVar("T")


class RoutingLLM(FunctionCallingLLM):
    """A LlamaIndex LLM that routes each request to one of several LLMs.

    An :class:`~langroute.ExemplarRouter` picks the cheapest route that can handle the
    user's question, and the request goes to that route's LLM. Inside a query engine the
    router sees the question (the template's ``query_str``), not the filled prompt full
    of retrieved context; in chat engines and agents, the last user message.

    The routing LLM emits no LLM events of its own: the chosen LLM emits them, so token
    counters see each call once. It emits a :class:`RouteSelectedEvent` with the decision
    and a :class:`RouteCompletedEvent` with the answer (see
    :class:`~llama_index.llms.langroute.costs.CostCallbackHandler` for costs per route). Every
    response keeps the chosen LLM's ``raw`` untouched and gains
    ``additional_kwargs["langroute"]``: the core routing record
    (:meth:`langroute.dispatch.routed_call.RoutedCall.metadata`, the keys the LangChain
    integration puts in ``response_metadata["langroute"]``); read it typed with
    ``RouteMetadata.from_metadata(response.additional_kwargs)``.

    When a route raises (a provider error: rate limit, outage, timeout), the call is
    retried on the next stronger route; when every route has failed,
    :class:`~langroute.errors.AllRoutesFailedError` lists the attempts. Streams escalate
    until their first chunk with text or a tool call (an empty stream escalates too).

    Tools pass through: ``chat_with_tools`` and agents (``FunctionAgent``,
    ``ReActAgent``) work when every route's LLM supports function calling, each route
    converting the tools into its own provider format.

    Args:
        router: The router (a :class:`langroute.protocols.Router`, such as an
            :class:`~langroute.ExemplarRouter`); its ``routes`` are ordered cheapest to
            strongest.
        models: One LLM per route name (route -> LLM), like the LangChain ``RoutingChatModel``,
            or a list of equivalent LLMs (tried in order: a failure that ``escalate_on``
            covers moves to the route's next LLM before the call escalates). After
            construction ``models`` holds each route's first LLM. A route may also be a
            query engine (``index.as_query_engine(llm=...)``): it is wrapped in a
            :class:`~llama_index.llms.langroute.route_targets.QueryEngineRoute`, which
            answers by querying it with the routed text.
        breakers: Circuit breakers per model
            (:class:`langroute.dispatch.breakers.BreakerRegistry`): a model that keeps
            failing is skipped at once until a probe after its cool-down succeeds.
        latency_policy: Try a route's equivalents fastest first, never across price
            tiers (:class:`langroute.dispatch.latency.LatencyPolicy`).
        query_extractor: Where to find the text to route on (default:
            :class:`~llama_index.llms.langroute.query.QueryExtractor`).
        escalate_on: Exception types that send a call on to the next stronger route;
            ``()`` turns escalation off.
        timeout: Request timeout in seconds for every route's LLM (replacing its own),
            so that a hanging route escalates. It reaches the LLM's SDK client.
        max_retries: Retry count for every route's LLM (replacing its own); ``0`` makes a
            rate-limited route escalate after its first request (llama-index's
            ``OpenAI`` otherwise retries a 429 a dozen times before raising).
        scoped_learning: What each caller taught
            (:class:`langroute.router.scoped_learning.ScopedLearning`), applied to that
            caller's calls only. The caller is named with ``llm.session(None,
            scope="key-a")`` (or a session key and a scope), or with LlamaIndex's
            instrumentation tags, ``instrument_tags({"tenant": "key-a"})`` (``api_key``,
            ``tenant_id``, ``tenant`` or ``user_id``; ``session_id``, ``thread_id`` or
            ``conversation_id`` name the session), which LlamaIndex also puts on every
            event of the run.
        warm_up: Load the router's encoder at construction, so the first query does not
            pay for it: ``True`` before returning, ``"background"`` in a daemon thread (a
            query that arrives first waits for that load, recorded apart from its
            routing time), ``False`` (the default) on first use. Needs a router with a
            ``warm_up()`` method, such as ``ExemplarRouter``.
        callback_manager: Shared with every route's LLM (also when reassigned later, as
            ``Settings.llm`` and response synthesizers do).

    Raises:
        RouterConfigError: A route has no LLM, or an LLM has no route; ``warm_up`` is
            asked of a router without ``warm_up()``.

    Example:
        Setup::

            pip install llama-index-llms-langroute llama-index-llms-openai

        Instantiate::

            from langroute import ExemplarRouter
            from llama_index.llms.langroute import RoutingLLM
            from llama_index.llms.openai import OpenAI

            llm = RoutingLLM(
                router=ExemplarRouter.default(),  # routes "small" and "large"
                models={"small": OpenAI(model="gpt-4o-mini"), "large": OpenAI(model="gpt-4o")},
            )

        Use it in a RAG pipeline::

            query_engine = index.as_query_engine(llm=llm)
            print(query_engine.query("What does the contract say about renewals?"))

        Chat and stream::

            from llama_index.core.llms import ChatMessage

            response = llm.chat([ChatMessage(role="user", content="hi!")])
            print(response.additional_kwargs["langroute"]["route"])  # "small"
            for chunk in llm.stream_complete("Prove that sqrt(2) is irrational."):
                print(chunk.delta, end="")

        Force a route::

            with llm.force_route("large"):
                query_engine.query("...")
            llm.complete("...", route="small")

        Learning per caller (one tenant's feedback re-routes that tenant only)::

            from langroute.router.scoped_learning import ScopedLearning

            scoped = ScopedLearning(router)
            llm = RoutingLLM(router=router, models=models, scoped_learning=scoped)
            scoped.learn("key-a", "capital of France?", "small", good=False)
            with llm.session(None, scope="key-a"):
                query_engine.query("capital of France?")  # -> "large" for key-a only
    """

    router: Router = Field(exclude=True, description="The router (langroute.protocols.Router).")
    models: dict[str, LLM] = Field(exclude=True, description="One LLM per route name.")
    query_extractor: Any = Field(
        default_factory=QueryExtractor,
        exclude=True,
        description="Finds the text to route on (see QueryExtractorProtocol).",
    )
    escalate_on: tuple[type[BaseException], ...] = Field(
        default=(Exception,),
        exclude=True,
        description="Exception types that send a call on to the next stronger route.",
    )
    timeout: float | None = Field(
        default=None, description="Request timeout (s) given to every route's LLM."
    )
    max_retries: int | None = Field(
        default=None, ge=0, description="Retry count given to every route's LLM."
    )
    context: ConversationContext | Auto | None = Field(
        default=AUTO,
        exclude=True,
        description="Route chat calls on the conversation's user turns "
        "(langroute.router.conversation.ConversationContext). 'auto' (default): window:1 for "
        "a router that routes vectors, unless a query_extractor is given; None with "
        "sessions=False: the query extractor.",
    )
    sessions: bool | SessionTracker | Auto = Field(
        default=AUTO,
        exclude=True,
        description="Keep one route per conversation (no downgrade within a topic): True, "
        "False or a langroute.router.conversation.SessionTracker; 'auto' (default): on with "
        "the context's default. Keys: RoutingLLM.session(key, scope), else the transcript.",
    )
    scoped_learning: Any = Field(
        default=None,
        exclude=True,
        description="What each caller taught (langroute.router.scoped_learning."
        "ScopedLearning), applied to that caller's calls only; the caller: "
        "RoutingLLM.session(key, scope) or instrument_tags({'tenant': ...}).",
    )
    _dispatcher: RouteDispatcher = PrivateAttr()
    _members: dict[str, list[LLM]] = PrivateAttr(default_factory=dict)
    warm_up: WarmUp = Field(
        default=False,
        exclude=True,
        description="Load the router's encoder at construction: True (before returning), "
        "'background' (in a daemon thread) or False.",
    )
    shadow: Any = Field(
        default=None,
        exclude=True,
        description="Shadow evaluation: a candidate router (a saved router's folder, a "
        "router or a decider chain) that decides each call without answering; its decision "
        "goes into the ledger row (langroute compare --ledger).",
    )
    telemetry: Any = Field(
        default=None,
        exclude=True,
        description="OpenTelemetry spans (langroute.telemetry): None (on once a global "
        "tracer provider is set), False, True (the global provider) or a TracerProvider.",
    )

    def __init__(
        self,
        router: Router,
        models: Mapping[str, LLM | Sequence[LLM] | Any],
        *,
        query_extractor: QueryExtractorProtocol | None = None,
        escalate_on: Sequence[type[BaseException]] = (Exception,),
        timeout: float | None = None,
        max_retries: int | None = None,
        warm_up: WarmUp = False,
        context: ConversationContext | Auto | None = AUTO,
        sessions: bool | SessionTracker | Auto = AUTO,
        callback_manager: CallbackManager | None = None,
        breakers: BreakerRegistry | None = None,
        latency_policy: LatencyPolicy | None = None,
        shadow: Any = None,
        telemetry: Any = None,
        scoped_learning: ScopedLearning | None = None,
        **kwargs: Any,
    ) -> None:
        if query_extractor is not None and not isinstance(query_extractor, QueryExtractorProtocol):
            raise TypeError(
                "query_extractor must have from_prompt, from_messages and from_completion"
            )
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        limits = {
            name: value
            for name, value in (("timeout", timeout), ("max_retries", max_retries))
            if value is not None
        }
        members = {
            route: [
                with_route_limits(route, as_route_llm(route, target), limits)
                for target in _as_list(route, value)
            ]
            for route, value in models.items()
        }
        super().__init__(
            router=router,
            models={route: llms[0] for route, llms in members.items()},
            query_extractor=query_extractor or QueryExtractor(),
            escalate_on=tuple(escalate_on),
            timeout=timeout,
            max_retries=max_retries,
            warm_up=warm_up,
            context=context,
            sessions=sessions,
            shadow=shadow,
            telemetry=telemetry,
            scoped_learning=scoped_learning,
            **kwargs,
        )
        if query_extractor is not None and context == AUTO and sessions == AUTO:
            context, sessions = None, False  # the caller's extractor decides what is routed
        self._members = members
        self._dispatcher = RouteDispatcher(
            router,
            {route: self.model_for(route) for route in self.models},
            escalate_on=self.escalate_on,
            context=context,
            sessions=sessions,
            readers=READERS,
            equivalents=RouteEquivalents(
                {
                    r: [EquivalentModel(name=llm.metadata.model_name) for llm in llms]
                    for r, llms in members.items()
                },
                reorder=latency_policy,
            ),
            breakers=breakers,
            shadow=shadow,
            telemetry=telemetry,
            scoped=scoped_learning,
        )
        if callback_manager is not None:
            self._share_callback_manager()
        start_warm_up(router, warm_up)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "RoutingLLM"

    # ------------------------------------------------------------------ configuration

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "callback_manager":
            self._share_callback_manager()

    def _share_callback_manager(self) -> None:
        """Give every route's LLM this LLM's callback manager."""
        models = self.__dict__.get("models")
        if not models:
            return
        members = getattr(self, "_members", None) or {r: [m] for r, m in models.items()}
        for llms in members.values():
            for llm in llms:
                llm.callback_manager = self.callback_manager

    @property
    def routes(self) -> list[str]:
        """Route names, cheapest first."""
        return list(self.router.routes)

    @property
    def route_equivalents(self) -> RouteEquivalents:
        """Route -> its ordered equivalent models (plain data, also for code outside LlamaIndex)."""
        return self._dispatcher.equivalents

    def _llm_for(self, route: str) -> LLM:
        """The LLM an attempt calls: the route's equivalent a ``RouteTarget`` names."""
        return self._members[route][getattr(route, "index", 0)]

    @property
    def dispatcher(self) -> RouteDispatcher:
        """The core dispatcher that decides each call (forced routes, fallback, sessions)."""
        return self._dispatcher

    def model_for(self, route: str) -> str:
        """The model name of a route's LLM (``metadata.model_name``)."""
        return self.models[route].metadata.model_name

    @property
    def baseline_model(self) -> str:
        """The strongest route's model: what every call would cost without routing."""
        return self.model_for(self.routes[-1])

    @property
    def metadata(self) -> LLMMetadata:
        """Limits every route can honour.

        The smallest context window and output limit among the routes (so prompts built
        for this LLM fit whichever route is chosen); chat and function calling only when
        every route supports them.
        """
        metas = [self.models[route].metadata for route in self.routes]
        roles = {meta.system_role for meta in metas}
        return LLMMetadata(
            context_window=min(meta.context_window for meta in metas),
            num_output=min(meta.num_output for meta in metas),
            is_chat_model=all(meta.is_chat_model for meta in metas),
            is_function_calling_model=all(meta.is_function_calling_model for meta in metas),
            model_name="langroute("
            + ",".join(f"{route}={meta.model_name}" for route, meta in zip(self.routes, metas))
            + ")",
            system_role=roles.pop() if len(roles) == 1 else MessageRole.SYSTEM,
        )

    @contextlib.contextmanager
    def force_route(self, route: str) -> Iterator[RouteDecision]:
        """Send every call made inside the block to ``route`` (escalation still applies).

        Raises:
            RouterConfigError: ``route`` is not one of the routes.

        Example:
            >>> from langroute import Exemplar, ExemplarRouter
            >>> from langroute.embedders import HashingEmbedder
            >>> from llama_index.llms.langroute.testing import MockProviderLLM
            >>> router = ExemplarRouter(
            ...     routes=["small", "large"],
            ...     exemplars=[Exemplar(text="hello", route="small")],
            ...     embedder=HashingEmbedder(),
            ... )
            >>> llm = RoutingLLM(
            ...     router=router,
            ...     models={
            ...         "small": MockProviderLLM(model="gpt-4o-mini"),
            ...         "large": MockProviderLLM(model="gpt-4o"),
            ...     },
            ... )
            >>> with llm.force_route("large"):
            ...     llm.complete("hello").text
            'Answer from gpt-4o.'
        """
        decision = self.router.forced(route)
        token = PINNED.set((id(self), Routing("", decision, per_call=True)))
        try:
            yield decision
        finally:
            PINNED.reset(token)

    @contextlib.contextmanager
    def session(self, key: str | None, scope: str | None = None) -> Iterator[None]:
        """Route chat calls made inside the block as the conversation ``key`` (sessions).

        ``scope`` names the caller (an API key, a tenant, a user): sessions never cross
        it, and with ``scoped_learning`` what that caller taught applies (to chat,
        completion and prompt calls alike). Without a key, the session is derived from
        the transcript, which never joins two callers' different conversations. Outside
        a block, LlamaIndex's ``instrument_tags`` can name both (``session_id`` /
        ``thread_id`` / ``conversation_id``, ``api_key`` / ``tenant_id`` / ``tenant`` /
        ``user_id``).

        Example:
            >>> with llm.session("thread-42", scope="user-7"):  # doctest: +SKIP
            ...     chat_engine.chat("and now in Rust?")
        """
        token = _SESSION_KEY.set((key, scope))
        try:
            yield
        finally:
            _SESSION_KEY.reset(token)

    # ------------------------------------------------------------------ deciding

    @staticmethod
    def _caller() -> tuple[str | None, str | None]:
        """The caller's session key and scope: :meth:`session`, then instrumentation tags."""
        key, scope = _SESSION_KEY.get()
        if key is not None and scope is not None:
            return key, scope
        tags = active_instrument_tags.get()
        return key or session_key_from(tags), scope or session_scope_from(tags)

    def _scope(self) -> str | None:
        """The caller a plain query is decided for (only read with ``scoped_learning``)."""
        return self._caller()[1] if self.scoped_learning is not None else None

    def _pinned(self) -> Routing | None:
        pinned = PINNED.get()
        if pinned is None or pinned[0] != id(self):
            return None
        routing = pinned[1]
        if routing.per_call:
            fresh = Routing(uuid.uuid4().hex, routing.decision)
            return self._emit_selected(fresh, None, "forced")
        return routing

    def _emit_selected(self, routing: Routing, query: str | None, source: str) -> Routing:
        route = routing.decision.route
        dispatcher.event(
            RouteSelectedEvent(
                call_id=routing.call_id,
                route=route,
                model=self.model_for(route),
                decision=routing.decision,
                query=query,
                source=source if query is not None or source == "forced" else "none",
            )
        )
        return routing

    def _select(self, query: str | None, source: str, forced: str | None = None) -> Routing:
        """Decide (sync) and announce the decision."""
        request = RouteRequest(query=query, forced=forced, session_scope=self._scope())
        decision = self._dispatcher.decide(request)
        return self._emit_selected(Routing(uuid.uuid4().hex, decision), query, source)

    async def _aselect(self, query: str | None, source: str, forced: str | None = None) -> Routing:
        """Decide (async) and announce the decision."""
        request = RouteRequest(query=query, forced=forced, session_scope=self._scope())
        decision = await self._dispatcher.adecide(request)
        return self._emit_selected(Routing(uuid.uuid4().hex, decision), query, source)

    def _routing(
        self,
        kwargs: dict[str, Any],
        source: str,
        text: Callable[[], str | None],
    ) -> Routing:
        forced = kwargs.pop("route", None)
        if forced is not None:
            return self._select(None, "forced", forced=forced)
        pinned = self._pinned()
        if pinned is not None:
            return pinned
        return self._select(text(), source)

    async def _arouting(
        self,
        kwargs: dict[str, Any],
        source: str,
        text: Callable[[], str | None],
    ) -> Routing:
        forced = kwargs.pop("route", None)
        if forced is not None:
            return await self._aselect(None, "forced", forced=forced)
        pinned = self._pinned()
        if pinned is not None:
            return pinned
        return await self._aselect(text(), source)

    def _prompt_routing(self, prompt: BasePromptTemplate, prompt_args: dict[str, Any]) -> Routing:
        pinned = self._pinned()
        if pinned is not None:
            return pinned
        return self._select(self.query_extractor.from_prompt(prompt, prompt_args), "prompt")

    async def _aprompt_routing(
        self, prompt: BasePromptTemplate, prompt_args: dict[str, Any]
    ) -> Routing:
        pinned = self._pinned()
        if pinned is not None:
            return pinned
        return await self._aselect(self.query_extractor.from_prompt(prompt, prompt_args), "prompt")

    @contextlib.contextmanager
    def _pin(self, routing: Routing) -> Iterator[None]:
        token = PINNED.set((id(self), routing))
        try:
            yield
        finally:
            PINNED.reset(token)

    # ------------------------------------------------------------------ calling routes

    def _escalation(self, routing: Routing, kind: CallKind) -> RoutedRun:
        """The routed call's record and the escalation that runs it, with its events."""
        call = self._dispatcher.start(routing.decision, call_id=routing.call_id)
        return RoutedRun(self._dispatcher, routing, kind, call)

    def _call(self, routing: Routing, kind: CallKind, invoke: Callable[[str, LLM], R]) -> R:
        run = self._escalation(routing, kind)
        _, response = run.escalation.run(lambda route: invoke(route, self._llm_for(route)))
        run.completed(response)
        return annotate(response, run.call.metadata())

    async def _acall(
        self, routing: Routing, kind: CallKind, invoke: Callable[[str, LLM], Awaitable[R]]
    ) -> R:
        run = self._escalation(routing, kind)
        _, response = await run.escalation.arun(lambda route: invoke(route, self._llm_for(route)))
        run.completed(response)
        return annotate(response, run.call.metadata())

    def _stream(
        self,
        routing: Routing,
        kind: CallKind,
        invoke: Callable[[str, LLM], Iterator[R]],
        resume: Resume | None = None,
    ) -> Generator[R, None, None]:
        """Stream from the chosen route, escalating until the first chunk arrives.

        ``resume`` continues a stream that broke after text on the next model.
        """
        run = self._escalation(routing, kind)
        chunks = run.escalation.stream(
            lambda route: invoke(route, self._llm_for(route)), resume=resume
        )
        last: R | None = None
        info: dict[str, Any] | None = None
        attempts = 0
        try:
            for _, chunk in chunks:
                last = chunk
                if info is None or len(run.call.attempts) != attempts:  # a continuation began
                    info, attempts = run.call.metadata(), len(run.call.attempts)
                yield annotate(chunk, info)
        finally:
            chunks.close()
            run.stream_ended(last)

    async def _astream(
        self,
        routing: Routing,
        kind: CallKind,
        invoke: Callable[[str, LLM], Awaitable[AsyncIterator[R]]],
        resume: Resume | None = None,
    ) -> AsyncGenerator[R, None]:
        """Async :meth:`_stream`."""
        run = self._escalation(routing, kind)
        chunks = run.escalation.astream(
            lambda route: invoke(route, self._llm_for(route)), resume=resume
        )
        last: R | None = None
        info: dict[str, Any] | None = None
        attempts = 0
        try:
            async for _, chunk in chunks:
                last = chunk
                if info is None or len(run.call.attempts) != attempts:  # a continuation began
                    info, attempts = run.call.metadata(), len(run.call.attempts)
                yield annotate(chunk, info)
        finally:
            await chunks.aclose()
            run.stream_ended(last)

    # ------------------------------------------------------------------ chat

    def _chat_request(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> tuple[Routing | None, RouteRequest, str | None]:
        """A pinned routing, else the request to decide and the query to announce."""
        forced = kwargs.pop("route", None)
        if forced is not None:
            return None, RouteRequest(forced=forced), None
        pinned = self._pinned()
        if pinned is not None:
            return pinned, RouteRequest(), None
        tool_request: ToolRequest | None = kwargs.get(_TOOL_REQUEST_KEY)
        source = tool_request.messages() if tool_request is not None else messages
        query = self.query_extractor.from_messages(source)
        if self._dispatcher.routes_conversations:
            turns = chat_turns(source)
            key, scope = self._caller()
            request = RouteRequest(turns=turns, session_key=key, session_scope=scope)
            return None, request, query
        return None, RouteRequest(query=query, session_scope=self._scope()), query

    def _chat_routing(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Routing:
        pinned, request, query = self._chat_request(messages, kwargs)
        if pinned is not None:
            return pinned
        decision = self._dispatcher.decide(request)
        source = "forced" if request.forced is not None else "messages"
        return self._emit_selected(Routing(uuid.uuid4().hex, decision), query, source)

    async def _achat_routing(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> Routing:
        pinned, request, query = self._chat_request(messages, kwargs)
        if pinned is not None:
            return pinned
        decision = await self._dispatcher.adecide(request)
        source = "forced" if request.forced is not None else "messages"
        return self._emit_selected(Routing(uuid.uuid4().hex, decision), query, source)

    @staticmethod
    def _chat_args(
        route: str,
        llm: LLM,
        messages: Sequence[ChatMessage],
        kwargs: dict[str, Any],
        stream: bool = False,
    ) -> dict[str, Any]:
        """The child's call arguments: its own tool format when tools are involved.

        A stream also asks for usage where the child would not (OpenAI-family LLMs).
        """
        extra = dict(kwargs)
        request: ToolRequest | None = extra.pop(_TOOL_REQUEST_KEY, None)
        args = {"messages": messages, **extra} if request is None else request.prepare(route, llm)
        if stream:
            args.update(stream_usage_kwargs(llm, args))
        return args

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat with the route chosen for the last user message.

        Args:
            messages: The conversation.
            **kwargs: Passed to the chosen LLM; ``route="name"`` forces a route.
        """
        routing = self._chat_routing(messages, kwargs)
        return self._call(
            routing,
            "chat",
            lambda route, llm: llm.chat(**self._chat_args(route, llm, messages, kwargs)),
        )

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        routing = await self._achat_routing(messages, kwargs)

        async def invoke(route: str, llm: LLM) -> ChatResponse:
            return await llm.achat(**self._chat_args(route, llm, messages, kwargs))

        return await self._acall(routing, "chat", invoke)

    def _chat_resume(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], asynchronous: bool
    ) -> Resume | None:
        """Continues a chat stream that broke after text (not one with tools) on a target."""
        if _TOOL_REQUEST_KEY in kwargs:
            return None

        def resume(so_far: list[Any]) -> Callable[[str], Any] | None:
            text = delivered_text(so_far)
            if text is None:
                return None
            followed = continuation_messages(messages, text)

            def open_continuation(route: str) -> Any:
                llm = self._llm_for(route)
                args = self._chat_args(route, llm, followed, kwargs, stream=True)
                if asynchronous:
                    return acontinued(llm.astream_chat(**args), text)
                return continued(llm.stream_chat(**args), text)

            return open_continuation

        return resume

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat from the chosen route (escalating until the first chunk).

        A stream that breaks after text is continued on the next model (equivalent or
        stronger) in the same stream, unless that model's route opted out.
        """
        routing = self._chat_routing(messages, kwargs)
        return self._stream(
            routing,
            "stream_chat",
            lambda route, llm: llm.stream_chat(
                **self._chat_args(route, llm, messages, kwargs, stream=True)
            ),
            resume=self._chat_resume(messages, kwargs, asynchronous=False),
        )

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        routing = await self._achat_routing(messages, kwargs)

        async def invoke(route: str, llm: LLM) -> ChatResponseAsyncGen:
            return await llm.astream_chat(
                **self._chat_args(route, llm, messages, kwargs, stream=True)
            )

        resume = self._chat_resume(messages, kwargs, asynchronous=True)
        return self._astream(routing, "stream_chat", invoke, resume=resume)

    # ------------------------------------------------------------------ complete

    @staticmethod
    def _check_prompt(prompt: object) -> None:
        if not isinstance(prompt, str):
            raise InvalidQueryError(
                f"RoutingLLM: the prompt must be a string, got {type(prompt).__name__}"
            )

    def _complete_routing(self, prompt: str, kwargs: dict[str, Any]) -> Routing:
        self._check_prompt(prompt)
        return self._routing(
            kwargs, "completion", lambda: self.query_extractor.from_completion(prompt)
        )

    async def _acomplete_routing(self, prompt: str, kwargs: dict[str, Any]) -> Routing:
        self._check_prompt(prompt)
        return await self._arouting(
            kwargs, "completion", lambda: self.query_extractor.from_completion(prompt)
        )

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete the prompt on the chosen route.

        Args:
            prompt: The prompt (routed on as is, unless called from ``predict``).
            formatted: Passed to the chosen LLM.
            **kwargs: Passed to the chosen LLM; ``route="name"`` forces a route.

        Raises:
            InvalidQueryError: ``prompt`` is not a string.
        """
        routing = self._complete_routing(prompt, kwargs)
        return self._call(
            routing,
            "complete",
            lambda route, llm: llm.complete(prompt, formatted=formatted, **kwargs),
        )

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        routing = await self._acomplete_routing(prompt, kwargs)

        async def invoke(route: str, llm: LLM) -> CompletionResponse:
            return await llm.acomplete(prompt, formatted=formatted, **kwargs)

        return await self._acall(routing, "complete", invoke)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream a completion from the chosen route (escalating until the first chunk)."""
        routing = self._complete_routing(prompt, kwargs)
        return self._stream(
            routing,
            "stream_complete",
            lambda route, llm: llm.stream_complete(
                prompt, formatted=formatted, **kwargs, **stream_usage_kwargs(llm, kwargs)
            ),
        )

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        routing = await self._acomplete_routing(prompt, kwargs)

        async def invoke(route: str, llm: LLM) -> CompletionResponseAsyncGen:
            return await llm.astream_complete(
                prompt, formatted=formatted, **kwargs, **stream_usage_kwargs(llm, kwargs)
            )

        return self._astream(routing, "stream_complete", invoke)

    # ------------------------------------------------------------------ prompts

    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """Predict, routing on the template's question (``query_str``), not the filled prompt."""
        with self._pin(self._prompt_routing(prompt, prompt_args)):
            return super().predict(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        """Async :meth:`predict`."""
        with self._pin(await self._aprompt_routing(prompt, prompt_args)):
            return await super().apredict(prompt, **prompt_args)

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenGen:
        """Stream tokens, routing on the template's question."""
        routing = self._prompt_routing(prompt, prompt_args)
        with self._pin(routing):
            tokens = super().stream(prompt, **prompt_args)
        return pinned_iter(tokens, id(self), routing)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> TokenAsyncGen:
        """Async :meth:`stream`."""
        routing = await self._aprompt_routing(prompt, prompt_args)
        with self._pin(routing):
            tokens = await super().astream(prompt, **prompt_args)
        return apinned_iter(tokens, id(self), routing)

    def structured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Structured prediction on the route chosen for the template's question."""
        with self._pin(self._prompt_routing(prompt, prompt_args)):
            return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    async def astructured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Model:
        """Async :meth:`structured_predict`."""
        with self._pin(await self._aprompt_routing(prompt, prompt_args)):
            return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    def stream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Generator[Any, None, None]:
        """Stream partial structured outputs from the route chosen for the question."""
        routing = self._prompt_routing(prompt, prompt_args)
        with self._pin(routing):
            partials = super().stream_structured_predict(
                output_cls, prompt, llm_kwargs, **prompt_args
            )
        return pinned_iter(partials, id(self), routing)

    async def astream_structured_predict(
        self,
        output_cls: type[Model],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> AsyncGenerator[Any, None]:
        """Async :meth:`stream_structured_predict`."""
        routing = await self._aprompt_routing(prompt, prompt_args)
        with self._pin(routing):
            partials = await super().astream_structured_predict(
                output_cls, prompt, llm_kwargs, **prompt_args
            )
        return apinned_iter(partials, id(self), routing)

    # ------------------------------------------------------------------ tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Keep the tool call's arguments until the route is chosen.

        The chosen route's own LLM converts the tools (its provider format) when the call
        is made; a ``route="name"`` keyword forces a route.
        """
        forced = kwargs.pop("route", None)
        request = ToolRequest(
            tools=list(tools),
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            kwargs=kwargs,
        )
        prepared: dict[str, Any] = {"messages": request.messages(), _TOOL_REQUEST_KEY: request}
        if forced is not None:
            prepared["route"] = forced
        return prepared

    def _llm_for_response(self, response: ChatResponse) -> LLM:
        record = RouteMetadata.from_metadata(response.additional_kwargs)
        if record is not None and record.route in self.models:
            served = record.model or ""
            for llm in self._members.get(record.route, []):  # the equivalent that answered
                name = llm.metadata.model_name
                if served == name or served.startswith(f"{name}-"):
                    return llm
            return self.models[record.route]
        return self.models[getattr(self.router, "fallback", self.routes[-1])]

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[Any],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Let the LLM that answered validate its response."""
        kwargs.pop("route", None)
        llm = self._llm_for_response(response)
        if isinstance(llm, FunctionCallingLLM):
            return llm._validate_chat_with_tools_response(
                response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
            )
        return response

    def get_tool_calls_from_response(
        self,
        response: ChatResponse,
        error_on_no_tool_call: bool = True,
        **kwargs: Any,
    ) -> list[ToolSelection]:
        """Read tool calls with the LLM that answered (each provider stores them its way)."""
        llm = self._llm_for_response(response)
        if not isinstance(llm, FunctionCallingLLM):
            raise TypeError(f"{type(llm).__name__} does not support function calling")
        return llm.get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )


def _as_list(route: str, value: LLM | Sequence[LLM]) -> list[LLM]:
    """A route's LLMs: one, or a list of equivalents (never an empty one)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise RouterConfigError(f"models[{route!r}] is an empty list; give an LLM")
        return list(value)
    return [value]  # type: ignore[list-item]
