"""The core dispatcher: defaults, forced routes, batches and the route check."""

from __future__ import annotations

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.dispatch.dispatcher import (
    AUTO,
    ON_LOOP_MAX_CHARS,
    RouteDispatcher,
    RouteRequest,
    conversation_routing,
)
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.router.conversation import DEFAULT_CONTEXT, ConversationContext

MODELS = {"small": "gpt-4o-mini", "large": "gpt-4o"}


@pytest.fixture
def router() -> ExemplarRouter:
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="hello there", route="small"),
            Exemplar(text="prove the theorem step by step", route="large"),
        ],
        embedder=HashingEmbedder(),
        min_similarity=0.0,
    )


class PlainRouter:
    """A Router with no embedder: it cannot route a conversation in embedding space."""

    def __init__(self, inner: ExemplarRouter) -> None:
        self.inner = inner
        self.routes = inner.routes

    def route(self, query):
        if "boom" in query:
            raise ValueError("cannot route a boom")
        return self.inner.route(query)

    def route_batch(self, queries):
        if any("boom" in q for q in queries):
            raise ValueError("cannot route a boom")
        return self.inner.route_batch(queries)

    def forced(self, route):
        return self.inner.forced(route)

    def fallback_decision(self, reason="no_query"):
        return self.inner.fallback_decision(reason)


def test_auto_routes_conversations_only_for_a_router_that_routes_vectors(router):
    routing = conversation_routing(router, AUTO, AUTO)
    assert routing is not None and routing.context == DEFAULT_CONTEXT
    assert routing.sessions is not None
    assert conversation_routing(PlainRouter(router), AUTO, AUTO) is None
    assert conversation_routing(router, None, False) is None
    only_sessions = conversation_routing(router, None, True)
    assert only_sessions is not None and only_sessions.context == ConversationContext()
    no_sessions = conversation_routing(router, AUTO, False)
    assert no_sessions is not None and no_sessions.sessions is None


def test_only_a_router_that_computes_here_may_decide_on_a_servers_event_loop(router):
    from .test_embedders import LangChainStyle

    assert RouteDispatcher(router, MODELS).decides_in_process
    # a router of unknown make, a shadow router beside it, an embedder behind an API
    assert not RouteDispatcher(PlainRouter(router), MODELS).decides_in_process
    assert not RouteDispatcher(router, MODELS, shadow=router).decides_in_process
    behind_an_api = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[Exemplar(text="hello there", route="small")],
        embedder=LangChainStyle(),
    )
    assert not RouteDispatcher(behind_an_api, MODELS).decides_in_process


@pytest.mark.parametrize("conversations", [True, False])
async def test_the_one_request_a_server_has_is_decided_on_its_event_loop(
    router, monkeypatch, conversations
):
    import asyncio

    from langroute.dispatch import dispatcher as dispatcher_module
    from langroute.embedders import RequestsInFlight
    from langroute.router.conversation import ChatTurn

    # a gauge of this test's own: what other tests' servers left under way cannot count
    gauge = RequestsInFlight()
    monkeypatch.setattr(dispatcher_module, "REQUESTS_IN_FLIGHT", gauge)

    on_loop: list[bool] = []
    embed = router.embedder.embed_queries

    def spy(texts):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return embed(texts)

    monkeypatch.setattr(router.embedder, "embed_queries", spy)
    options = {} if conversations else {"context": None, "sessions": False}
    dispatcher = RouteDispatcher(router, MODELS, **options)

    def request(text: str) -> RouteRequest:
        if conversations:
            return RouteRequest(query=text, turns=[ChatTurn(role="user", text=text)])
        return RouteRequest(query=text)

    await dispatcher.adecide(request("not in a server"))
    with gauge:
        await dispatcher.adecide(request("the one request a server has"))
        await dispatcher.adecide(request("a long one " * (ON_LOOP_MAX_CHARS // 10)))
        with gauge:
            await dispatcher.adecide(request("one of two requests"))
        if conversations:  # a short turn after a long one: both are embedded
            long_then_short = [
                ChatTurn(role="user", text="an earlier long turn " * 20),
                ChatTurn(role="assistant", text="ok"),
                ChatTurn(role="user", text="and now?"),
            ]
            await dispatcher.adecide(RouteRequest(turns=long_then_short))
    assert on_loop == [False, True, False, False] + ([False] if conversations else [])


def test_forced_by_route_or_model_name_and_an_unknown_name(router):
    dispatcher = RouteDispatcher(router, MODELS)
    assert dispatcher.decide(RouteRequest(forced="gpt-4o")).route == "large"
    assert dispatcher.decide(RouteRequest(forced="small")).reason == "forced"
    with pytest.raises(RouterConfigError, match="names no route"):
        dispatcher.decide(RouteRequest(forced="gpt-5"))


def test_a_batch_falls_back_per_query_and_one_bad_query_fails_alone(router):
    dispatcher = RouteDispatcher(PlainRouter(router), MODELS)
    decisions = dispatcher.decide_batch(["hello there", "\u200b", None])
    assert [d.route for d in decisions] == ["small", router.fallback, router.fallback]
    assert [d.reason for d in decisions[1:]] == ["no_query", "no_query"]
    # the batched call raises: routable queries get None (decided one by one later)
    assert dispatcher.decide_batch(["hello there", "boom", ""])[:2] == [None, None]


def test_models_must_match_the_routes_and_the_escalation_order(router):
    with pytest.raises(RouterConfigError, match=r"routes without a model: \['large'\]"):
        RouteDispatcher(router, {"small": "m"})
    with pytest.raises(RouterConfigError, match="escalation_order"):
        RouteDispatcher(router, MODELS, escalation_order=["large", "large"])


def test_the_call_record_and_its_escalation_follow_the_order(router):
    dispatcher = RouteDispatcher(router, MODELS, escalation_order=["small", "large"])
    call = dispatcher.start(dispatcher.decide(RouteRequest(query="hello there")), call_id="c1")
    assert (call.call_id, call.baseline_route, call.baseline_model) == ("c1", "large", "gpt-4o")
    assert dispatcher.escalation(call).path == ["small", "large"]
