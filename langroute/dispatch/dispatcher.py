r"""One dispatcher behind every entry point: from a request to a decision and its escalation.

``RoutingChatModel``, ``RouterMiddleware``, ``RoutingLLM`` and ``langroute serve`` each
read their framework's request into a :class:`RouteRequest` (the text to route on, the
conversation's turns, a forced route, a decision made earlier) and hand it to a
:class:`RouteDispatcher`, which owns every dispatch rule:

1. a decision made earlier (a batch, a pinned sub-call) is used as it is;
2. a forced route (a route name, or a route's model name) is obeyed;
3. with conversation routing (on by default for a router that routes vectors, such as
   ``ExemplarRouter``: :data:`~langroute.router.conversation.DEFAULT_CONTEXT` and a
   :class:`~langroute.router.conversation.SessionTracker`), the conversation's user
   turns are routed on, and a follow-up ("yes, do that") keeps its conversation's
   route; sessions are keyed by the caller's key within its scope, else by the
   transcript; without a visible user turn, the fallback route answers;
4. otherwise the query is routed on; no visible text (empty, whitespace, only
   zero-width or control characters) -> the fallback route, never an error;
5. the decision becomes a :class:`~langroute.dispatch.routed_call.RoutedCall` against
   the strongest route as the baseline, run by an
   :class:`~langroute.dispatch.escalation.Escalation` along the escalation order.

With ``shadow=`` (:mod:`langroute.dispatch.shadow`), a candidate router decides every
request the live router decides (rules 3 and 4), without answering; its decision rides
on the live one (``decision.shadow``) into the ledger row. With ``telemetry=``
(:mod:`langroute.telemetry`), each call's decision and attempts become OpenTelemetry spans.

Example:
    >>> from langroute import Exemplar, ExemplarRouter
    >>> from langroute.embedders import HashingEmbedder
    >>> router = ExemplarRouter(
    ...     routes=["small", "large"],
    ...     exemplars=[Exemplar(text="hi there", route="small"),
    ...                Exemplar(text="prove the theorem", route="large")],
    ...     embedder=HashingEmbedder(),
    ... )
    >>> dispatcher = RouteDispatcher(router, {"small": "gpt-4o-mini", "large": "gpt-4o"})
    >>> dispatcher.decide(RouteRequest(query="\u200b")).reason
    'no_query'
    >>> dispatcher.decide(RouteRequest(forced="gpt-4o")).route
    'large'
    >>> call = dispatcher.start(dispatcher.decide(RouteRequest(query="hi there")))
    >>> call.decision.route, call.baseline_model
    ('small', 'gpt-4o')
    >>> dispatcher.escalation(call).path
    ['small', 'large']
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langroute.dispatch.breakers import BreakerRegistry
from langroute.dispatch.equivalents import RouteEquivalents
from langroute.dispatch.escalation import (
    AttemptHook,
    Escalation,
    FailureHook,
    ModelOf,
    UsageMerge,
    UsageOf,
    escalation_path,
    sum_usage,
)
from langroute.dispatch.routed_call import RoutedCall
from langroute.dispatch.shadow import ShadowRouter, as_shadow
from langroute.embedders.base import computes_in_process
from langroute.embedders.threads import REQUESTS_IN_FLIGHT
from langroute.errors import InvalidQueryError, RouterConfigError
from langroute.protocols import Router
from langroute.router.conversation import (
    DEFAULT_CONTEXT,
    ChatTurn,
    ConversationContext,
    ConversationRouting,
    SessionTracker,
)
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.query_text import has_visible_text
from langroute.router.scoped_learning import ScopedLearning
from langroute.telemetry import TelemetryOption, resolve_telemetry

__all__ = [
    "AUTO",
    "ON_LOOP_MAX_CHARS",
    "AnswerReaders",
    "Auto",
    "RouteDispatcher",
    "RouteRequest",
    "conversation_routing",
    "routes_vectors",
]

Auto = Literal["auto"]
AUTO: Auto = "auto"
"""The default of ``context`` and ``sessions``: conversation routing with
:data:`~langroute.router.conversation.DEFAULT_CONTEXT` and sessions when the router can
route vectors (:func:`routes_vectors`), plain query routing otherwise."""


ON_LOOP_MAX_CHARS = 300
"""The most text a server decides on its event loop (see :meth:`RouteDispatcher.adecide`):
the query, or the user turns a conversation is routed on, together.

About 70 tokens, 17 ms of encoding on this project's 2-core machine: a longer query (a
RAG prompt, up to 53 ms) is decided in a thread, so that a request arriving meanwhile is
read at once."""


def routes_vectors(router: Any) -> bool:
    """Whether ``router`` can route a conversation in embedding space and keep sessions."""
    return hasattr(router, "embedder") and hasattr(router, "route_vectors")


def conversation_routing(
    router: Any,
    context: ConversationContext | Auto | None,
    sessions: bool | SessionTracker | Auto,
) -> ConversationRouting | None:
    """The conversation routing ``context`` and ``sessions`` ask for (``None``: plain).

    ``"auto"`` (the default of both) means the measured best policy where the router
    supports it: ``window:1`` and sessions (see the README, "Multi-turn chats").
    """
    capable = routes_vectors(router)
    if context == AUTO and sessions == AUTO and not capable:
        return None
    resolved_context = (DEFAULT_CONTEXT if capable else None) if context == AUTO else context
    resolved_sessions = capable if sessions == AUTO else sessions
    if resolved_context is None and resolved_sessions is False:
        return None
    return ConversationRouting(router, resolved_context, resolved_sessions)


def _no_usage(_: Any) -> None:
    return None


@dataclass(frozen=True)
class RouteRequest:
    """What an entry point read from its framework's request, for the dispatcher.

    Attributes:
        query: The text to route on without conversation routing (``None``: none found).
        turns: The conversation's turns (:class:`~langroute.router.conversation.ChatTurn`),
            used when the dispatcher routes conversations (``None``: not given).
        forced: A route name or a route's model name the caller asked for.
        decision: A decision made earlier (a batch's, a pinned sub-call's): used as is.
        session_key: The caller's conversation key, for sessions.
        session_scope: The caller's identity (an API key, a tenant): sessions, keyed or
            derived from the transcript, are never shared across scopes.
    """

    query: str | None = None
    turns: Sequence[ChatTurn] | None = None
    forced: str | None = None
    decision: RouteDecision | None = None
    session_key: str | None = None
    session_scope: str | None = None


@dataclass(frozen=True)
class AnswerReaders:
    """How a framework's answers are read while a call escalates.

    Attributes:
        usage_of: The usage a provider reported on an answer or a chunk.
        model_of: The model that served (often a dated name), from an answer or chunk.
        merge_usage: How a stream's chunk usages combine (summed, or running totals).
        delivers: Whether a chunk delivers output (a stream escalates until one does).
    """

    usage_of: UsageOf = _no_usage
    model_of: ModelOf | None = None
    merge_usage: UsageMerge = sum_usage
    delivers: Callable[[Any], bool] | None = None


class RouteDispatcher:
    """Decides a request and builds its routed call and escalation, for any entry point.

    Args:
        router: A :class:`~langroute.protocols.Router` (routes cheapest first).
        route_models: Route -> the model name that answers it (every route).
        escalation_order: Routes cheapest to strongest for escalation on errors
            (default: the router's order).
        escalate_on: Errors that move a call to the next route; others propagate.
        propagate: Errors that are signals, not failures (an agent's interrupt): they
            reach the caller at once, even when ``escalate_on`` matches them.
        context: Route conversations with this strategy (turns given in the request);
            ``"auto"`` (default): :data:`~langroute.router.conversation.DEFAULT_CONTEXT`
            when the router routes vectors; ``None`` with ``sessions=False``: plain
            query routing.
        sessions: Keep one route per conversation (``True``, ``False`` or a tracker);
            ``"auto"`` (default): on when the router routes vectors.
        readers: How the framework's answers are read (usage, served model, chunks).
        equivalents: Routes holding several equivalent models, in the order (or with the
            weights) to try them; a route not in it has the one model ``route_models``
            names. Plain data that code outside the frameworks can read too.
        breakers: Circuit breakers per model, consulted before each attempt (None: none).
        shadow: A candidate router that decides alongside this one without answering
            (a saved router's folder, a router, a decider chain or a
            :class:`~langroute.dispatch.shadow.ShadowRouter`); ``None``: none.
        telemetry: OpenTelemetry spans (see :mod:`langroute.telemetry`); ``None``
            (default): on once the application sets a global tracer provider.
        scoped: What each caller taught (:class:`~langroute.router.scoped_learning.ScopedLearning`),
            applied to the decisions of that caller only (its ``session_scope``).

    Raises:
        RouterConfigError: ``route_models`` does not name exactly the router's routes,
            or ``escalation_order`` names unknown routes.
        RouterStoreError: ``shadow`` names a folder that holds no saved router.
    """

    def __init__(
        self,
        router: Router,
        route_models: Mapping[str, str | None],
        *,
        escalation_order: Sequence[str] | None = None,
        escalate_on: tuple[type[BaseException], ...] = (Exception,),
        propagate: tuple[type[BaseException], ...] = (),
        context: ConversationContext | Auto | None = AUTO,
        sessions: bool | SessionTracker | Auto = AUTO,
        readers: AnswerReaders | None = None,
        equivalents: RouteEquivalents | None = None,
        breakers: BreakerRegistry | None = None,
        shadow: ShadowRouter | str | Any = None,
        telemetry: TelemetryOption = None,
        scoped: ScopedLearning | None = None,
    ) -> None:
        try:
            routes = list(router.routes)
        except AttributeError as exc:
            raise RouterConfigError(
                f"router must expose .routes (cheapest first); got {type(router).__name__}"
            ) from exc
        _check_routes(routes, route_models, escalation_order)
        order = list(escalation_order) if escalation_order else routes
        self.router = router
        self.routes = routes
        self.route_models = dict(route_models)
        self.escalation_order = order
        self.escalate_on = escalate_on
        self.propagate = propagate
        self.readers = readers or AnswerReaders()
        self.conversation = conversation_routing(router, context, sessions)
        self.equivalents = equivalents or RouteEquivalents({})
        self.breakers = breakers
        self.shadow = as_shadow(
            shadow, router, context=self.conversation.context if self.conversation else None
        )
        self.telemetry = resolve_telemetry(telemetry)
        self.scoped = scoped

    @property
    def strongest_route(self) -> str:
        """The strongest route: the baseline of every call's savings."""
        return self.routes[-1]

    @property
    def decides_in_process(self) -> bool:
        """Whether :meth:`decide` only computes, in this process: no I/O, no waiting.

        True for an :class:`~langroute.router.exemplar_router.ExemplarRouter` whose
        embedder computes here (:func:`~langroute.embedders.computes_in_process`) and no
        shadow router. A server with no other request under way then decides on its
        event loop (see :meth:`adecide`).
        """
        return (
            self.shadow is None
            and isinstance(self.router, ExemplarRouter)
            and computes_in_process(self.router.embedder)
        )

    @property
    def routes_conversations(self) -> bool:
        """Whether requests are routed on their conversation (turns), not a query alone."""
        return self.conversation is not None

    # ------------------------------------------------------------------ decisions
    def route_for(self, name: str) -> str:
        """The route a forced ``name`` means: a route, or the route a model name answers.

        Raises:
            RouterConfigError: ``name`` is no route and no route's model.
        """
        if name in self.route_models:
            return name
        for route, model in self.route_models.items():
            if model == name:
                return route
        for route, models in self.equivalents.routes.items():
            if any(model.name == name for model in models):
                return route
        raise RouterConfigError(
            f"model={name!r} names no route and no route model; routes: {self.route_models}"
        )

    def _settled(self, request: RouteRequest) -> RouteDecision | None:
        """A decision that needs no router call, if the request has one."""
        if request.decision is not None:
            return request.decision
        if request.forced is not None:
            return self.router.forced(self.route_for(request.forced))
        if self._on_turns(request):
            turns = request.turns or ()
            if not any(turn.role == "user" and has_visible_text(turn.text) for turn in turns):
                return self.router.fallback_decision("no_query")
            return None
        if request.query is None or not has_visible_text(str(request.query)):
            return self.router.fallback_decision("no_query")
        return None

    def _on_turns(self, request: RouteRequest) -> bool:
        return self.conversation is not None and request.turns is not None

    def decide(self, request: RouteRequest) -> RouteDecision:
        """The decision for one request (see the module docs for the rules)."""
        settled = self._settled(request)
        if settled is not None:
            return settled
        try:
            if self._on_turns(request):
                assert self.conversation is not None
                decision = self.conversation.route(
                    list(request.turns or ()), request.session_key, request.session_scope
                )
            else:
                decision = self.router.route(_query_text(request.query))
        except InvalidQueryError:  # text the router will not embed: nothing to route on
            return self.router.fallback_decision("no_query")
        if self.scoped is not None and self.scoped.has(request.session_scope):
            decision = self.scoped.adjust(request.session_scope, _taught_text(request), decision)
        if self.shadow is None:
            return decision
        shadow = self.shadow.decide(request.query, self._shadow_turns(request))
        return decision.model_copy(update={"shadow": shadow})

    def _routed_length(self, request: RouteRequest) -> int:
        """Characters a decision may embed: every user turn the conversation routes on."""
        if self._on_turns(request):
            assert self.conversation is not None
            texts = self.conversation.context.turns_routed(list(request.turns or ()))
            return sum(len(text) for text in texts)
        return len(_taught_text(request) or "")

    def _shadow_turns(self, request: RouteRequest) -> Sequence[ChatTurn] | None:
        return request.turns if self._on_turns(request) else None

    async def adecide(self, request: RouteRequest) -> RouteDecision:
        """Async :meth:`decide`: the router's work runs off the event loop.

        Except for the only request a server is handling
        (:data:`~langroute.embedders.REQUESTS_IN_FLIGHT` counts one) when the decision
        only computes (:attr:`decides_in_process`) and its query is short
        (:data:`ON_LOOP_MAX_CHARS`): the loop has nothing else to do meanwhile, so it
        decides right here, without a hand-over to a thread and back (1 to 2 ms at the
        median in ``langroute serve``, 3 to 5 at p99).
        """
        if (
            REQUESTS_IN_FLIGHT.count == 1
            and self.decides_in_process
            and self._routed_length(request) <= ON_LOOP_MAX_CHARS
        ):
            return self.decide(request)
        settled = self._settled(request)
        if settled is not None:
            return settled
        try:
            if self._on_turns(request):
                assert self.conversation is not None
                turns = list(request.turns or ())
                decision = await self.conversation.aroute(
                    turns, request.session_key, request.session_scope
                )
            else:
                decision = await self.router.aroute(_query_text(request.query))
        except InvalidQueryError:
            return self.router.fallback_decision("no_query")
        if self.scoped is not None and self.scoped.has(request.session_scope):
            decision = await asyncio.to_thread(  # it embeds the query: off the event loop
                self.scoped.adjust, request.session_scope, _taught_text(request), decision
            )
        if self.shadow is None:
            return decision
        shadow = await self.shadow.adecide(request.query, self._shadow_turns(request))
        return decision.model_copy(update={"shadow": shadow})

    def _batch_split(
        self, queries: Sequence[str | None]
    ) -> tuple[list[RouteDecision | None], list[int], list[str]]:
        decisions: list[RouteDecision | None] = [None] * len(queries)
        indices: list[int] = []
        texts: list[str] = []
        for i, query in enumerate(queries):
            if query is None or not has_visible_text(str(query)):
                decisions[i] = self.router.fallback_decision("no_query")
            else:
                indices.append(i)
                texts.append(_query_text(query))
        return decisions, indices, texts

    def decide_batch(self, queries: Sequence[str | None]) -> list[RouteDecision | None]:
        """Decide many plain queries with one batched router call.

        A query with no visible text gets the fallback decision. When the batched call
        raises, every routable query gets ``None``: the caller then decides each on its
        own (one bad query never fails its neighbours).
        """
        decisions, indices, texts = self._batch_split(queries)
        if texts:
            try:
                routed: list[RouteDecision | None] = list(self.router.route_batch(texts))
            except Exception:
                routed = [None] * len(texts)
            if self.shadow is not None:
                routed = _with_shadows(routed, self.shadow.decide_batch(texts))
            for i, decision in zip(indices, routed, strict=True):
                decisions[i] = decision
        return decisions

    async def adecide_batch(self, queries: Sequence[str | None]) -> list[RouteDecision | None]:
        """Async :meth:`decide_batch`."""
        decisions, indices, texts = self._batch_split(queries)
        if texts:
            try:
                routed: list[RouteDecision | None] = list(await self.router.aroute_batch(texts))
            except Exception:
                routed = [None] * len(texts)
            if self.shadow is not None:
                routed = _with_shadows(routed, await self.shadow.adecide_batch(texts))
            for i, decision in zip(indices, routed, strict=True):
                decisions[i] = decision
        return decisions

    # ------------------------------------------------------------------ execution
    def start(self, decision: RouteDecision, *, call_id: str | None = None) -> RoutedCall:
        """The record of a call about to run ``decision``, against the strongest route."""
        strongest = self.strongest_route
        fields: dict[str, Any] = {
            "decision": decision,
            "baseline_route": strongest,
            "baseline_model": self.route_models[strongest],
        }
        if call_id is not None:
            fields["call_id"] = call_id
        return RoutedCall(**fields)

    def escalation(
        self,
        call: RoutedCall,
        *,
        on_failure: FailureHook | None = None,
        on_attempt: AttemptHook | None = None,
        readers: AnswerReaders | None = None,
    ) -> Escalation[Any]:
        """The escalation that runs ``call``: its route, then each stronger one in order.

        Each route's equivalent models come in the order :attr:`equivalents` gives for
        this call (declared, weighted or latency-ordered), before the next route.
        With telemetry on, the call's decision span is written now and each attempt's
        span when it ends (before ``on_attempt``). ``readers``: how this call's answers
        are read, when they are not the dispatcher's framework objects (``langroute
        serve``'s fast path relays the provider's JSON).
        """
        readers = readers or self.readers
        path = escalation_path(call.decision.route, self.escalation_order)
        if self.telemetry is not None:
            on_attempt = self.telemetry.call_hook(call, self.route_models, on_attempt)
        return Escalation(
            call,
            path,
            targets=self.equivalents.attempt_order(path),
            breakers=self.breakers,
            observe_latency=getattr(self.equivalents.reorder, "observe", None),
            model_for=self.route_models.get,
            escalate_on=self.escalate_on,
            on_failure=on_failure,
            usage_of=readers.usage_of,
            model_of=readers.model_of,
            merge_usage=readers.merge_usage,
            on_attempt=on_attempt,
            propagate=self.propagate,
            delivers=readers.delivers,
        )


def _check_routes(
    routes: Sequence[str], models: Mapping[str, Any], escalation_order: Sequence[str] | None
) -> None:
    """Check that ``models`` names exactly the router's routes, and the escalation order."""
    missing = [route for route in routes if route not in models]
    unknown = [route for route in models if route not in routes]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"routes without a model: {missing}")
        if unknown:
            parts.append(f"models for unknown routes: {unknown}")
        raise RouterConfigError(
            "models must map every route of the router to a model; "
            + "; ".join(parts)
            + f" (router routes: {list(routes)})"
        )
    if escalation_order is not None:
        strays = [route for route in escalation_order if route not in routes]
        if strays or len(set(escalation_order)) != len(escalation_order):
            raise RouterConfigError(
                f"escalation_order must list distinct routes of {list(routes)}, "
                f"got {list(escalation_order)}"
            )


def _with_shadows(
    decisions: Sequence[RouteDecision | None], shadows: Sequence[Any]
) -> list[RouteDecision | None]:
    """Each live decision with the candidate's decision on the same query."""
    return [
        None if decision is None else decision.model_copy(update={"shadow": shadow})
        for decision, shadow in zip(decisions, shadows, strict=True)
    ]


def _taught_text(request: RouteRequest) -> str | None:
    """The text a caller's feedback is taught on: the query, else the last user turn."""
    if request.query is not None:
        return str(request.query)
    for turn in reversed(request.turns or ()):
        if turn.role == "user" and has_visible_text(turn.text):
            return turn.text
    return None


def _query_text(query: str | None) -> str:
    # a str subclass (a Query with attachments) is kept as it is: it carries its count
    return query if isinstance(query, str) else str(query)
