"""Per-caller learning: one caller's feedback moves its own routing, never another's."""

from __future__ import annotations

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.dispatch.dispatcher import RouteDispatcher, RouteRequest
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
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
