"""Per-caller learning: one caller's feedback moves its own routing, never another's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.dispatch.dispatcher import RouteDispatcher, RouteRequest
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.router.conversation import ChatTurn
from langroute.router.decision import RouteDecision
from langroute.router.scoped_learning import ScopedLearning

MODELS = {"small": "gpt-4o-mini", "large": "gpt-4o"}


def make_router() -> ExemplarRouter:
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="hello there", route="small"),
            Exemplar(text="what time is it", route="small"),
            Exemplar(text="prove the theorem step by step", route="large"),
            Exemplar(text="design a distributed database", route="large"),
        ],
        embedder=HashingEmbedder(),
    )


@pytest.fixture
def setup():
    router = make_router()
    scoped = ScopedLearning(router)
    dispatcher = RouteDispatcher(router, MODELS, context=None, sessions=False, scoped=scoped)
    return router, scoped, dispatcher


def decide(dispatcher: RouteDispatcher, query: str, scope: str | None):
    return dispatcher.decide(RouteRequest(query=query, session_scope=scope))


def test_a_callers_thumbs_down_moves_its_own_routing_only(setup):
    _, scoped, dispatcher = setup
    query = "hello there my friend"
    assert decide(dispatcher, query, "key-a").route == "small"
    assert scoped.learn("key-a", query, "small", good=False) == "large"
    moved = decide(dispatcher, query, "key-a")
    assert moved.route == "large" and moved.reason == "scoped_learned"
    assert "this caller's feedback" in (moved.stage_note or "")
    assert decide(dispatcher, query, "key-b").route == "small"  # another caller
    assert decide(dispatcher, query, None).route == "small"  # no caller named


async def test_the_async_path_applies_it_too(setup):
    _, scoped, dispatcher = setup
    scoped.learn("key-a", "hello there my friend", "small", good=False)
    request = RouteRequest(query="hello there my friend", session_scope="key-a")
    assert (await dispatcher.adecide(request)).route == "large"


def test_a_taught_query_applies_only_when_near_and_nearer_than_the_shared_exemplars(setup):
    router, scoped, dispatcher = setup
    scoped.learn("key-a", "hello there my friend", "small", good=False)
    # unrelated text: far from what the caller taught
    assert decide(dispatcher, "what time is it", "key-a").reason != "scoped_learned"
    # near what the caller taught, but a shared exemplar is nearer still
    scoped.learn("key-a", "what time is it today", "small", good=False)
    taught, similarity = scoped.nearest("key-a", "what time is it now")
    shared = decide(dispatcher, "what time is it now", "key-a")
    assert taught.text == "what time is it today" and similarity < shared.max_similarity
    assert shared.route == "small" and shared.reason == "vote"
    # below min_similarity nothing applies, however far the shared exemplars are
    strict = ScopedLearning(router, min_similarity=1.0)
    strict.learn("key-a", "hello there my friend", "small", good=False)
    near = router.route("hello there my good friend")
    assert strict.adjust("key-a", "hello there my good friend", near).route == near.route


def test_later_outcomes_update_the_label_like_the_shared_router(setup):
    _, scoped, _ = setup
    query = "summarise this paragraph"
    assert scoped.learn("key-a", query, "small", good=False) == "large"
    assert scoped.learn("key-a", query, "small", good=True) == "large"  # a tie: quality first
    assert scoped.learn("key-a", query, "small", good=True) == "small"
    [taught] = scoped.taught("key-a")
    assert taught.outcomes == {"small": [2, 1]}


def test_what_is_kept_is_bounded_per_caller_and_in_callers(setup):
    router, _, _ = setup
    scoped = ScopedLearning(router, max_per_scope=2, max_scopes=2, max_chars=60)
    for i in range(3):
        scoped.learn("key-a", f"question number {i}", "small", good=False)
    assert [t.text for t in scoped.taught("key-a")] == ["question number 1", "question number 2"]
    scoped.learn("key-b", "x" * 50, "small", good=False)
    assert [t.text for t in scoped.taught("key-b")] == ["x" * 50]
    scoped.learn("key-c", "another question", "small", good=False)
    assert not scoped.has("key-a") and scoped.has("key-b") and scoped.has("key-c")
    scoped.learn("key-c", "y" * 100, "small", good=False)  # cut to 60 characters, and
    assert [t.text for t in scoped.taught("key-c")] == ["y" * 60]  # the older text goes
    scoped.forget(["key-b"])
    assert not scoped.has("key-b")


def test_bad_input_is_refused_with_a_clear_error(setup):
    router, scoped, _ = setup
    with pytest.raises(RouterConfigError, match="unknown route 'medium'"):
        scoped.learn("key-a", "a question", "medium", good=False)
    assert scoped.learn("key-a", "\u200b  ", "small", good=False) is None  # no text
    with pytest.raises(ValueError, match="min_similarity"):
        ScopedLearning(router, min_similarity=2.0)
    with pytest.raises(RouterConfigError, match="embedder"):
        ScopedLearning(object())


class CountingEmbedder(HashingEmbedder):
    """The real hashing embedder, keeping every text it is asked to embed as a query."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return super().embed_queries(texts)


def counted_router(cache_size: int) -> tuple[ExemplarRouter, CountingEmbedder]:
    counting = CountingEmbedder()
    router = make_router()
    return (
        ExemplarRouter(
            routes=router.routes,
            exemplars=router.exemplars,
            embedder=counting,
            cache_size=cache_size,
        ),
        counting,
    )


@pytest.mark.parametrize("cache_size", [0, 4096], ids=["no-cache", "cache"])
async def test_a_query_of_a_caller_that_taught_is_embedded_once(cache_size):
    router, counting = counted_router(cache_size)
    scoped = ScopedLearning(router)
    dispatcher = RouteDispatcher(router, MODELS, context=None, sessions=False, scoped=scoped)
    scoped.learn("key-a", "hello there my friend", "small", good=False)
    counting.queries.clear()
    moved = decide(dispatcher, "hello there my friend please", "key-a")
    assert moved.route == "large" and moved.reason == "scoped_learned"
    assert decide(dispatcher, "hello there my friend today", "key-b").route == "small"
    request = RouteRequest(query="hello there my friend again", session_scope="key-a")
    assert (await dispatcher.adecide(request)).reason == "scoped_learned"
    long = "hello there my friend " * 200  # cut by the router: the cut text, once
    assert decide(dispatcher, long, "key-a").truncated
    assert counting.queries == [
        "hello there my friend please",
        "hello there my friend today",
        "hello there my friend again",
        router.settings.prepare(long)[0],
    ]


def test_a_conversation_turn_of_a_caller_that_taught_is_embedded_once():
    router, counting = counted_router(0)
    scoped = ScopedLearning(router)
    dispatcher = RouteDispatcher(router, MODELS, scoped=scoped)  # window:1, sessions
    scoped.learn("key-a", "hello there my friend", "small", good=False)
    counting.queries.clear()
    turns = [
        ChatTurn(role="user", text="hello there my friend today"),
        ChatTurn(role="assistant", text="hi"),
        ChatTurn(role="user", text="hello there my friend please"),
    ]
    decision = dispatcher.decide(RouteRequest(turns=turns, session_scope="key-a"))
    assert decision.reason == "scoped_learned" and decision.session is not None
    # the window's two user turns, each once: routing, the session and the overlay share them
    assert counting.queries == ["hello there my friend today", "hello there my friend please"]


def test_a_decision_carries_the_vector_of_its_query_and_compares_without_it():
    router, _ = counted_router(0)
    decision = router.route("hello there my friend")
    assert decision.query_vector is not None
    expected = HashingEmbedder().embed_queries(["hello there my friend"])[0]
    assert np.allclose(decision.query_vector, expected)
    assert decision.model_copy(update={"route": "large"}).query_vector is not None
    assert "vector" not in decision.model_dump_json() and "vector" not in repr(decision)
    assert decision == decision.model_copy(update={})  # equality: fields only
    bare = RouteDecision(**decision.model_dump())
    assert bare.query_vector is None and bare == decision
    assert all(d.query_vector is None for d in router.route_batch(["hello", "prove it"]))
