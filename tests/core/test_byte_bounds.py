"""Bounds by bytes as well as counts (issue 28, part 5).

Each test is an attempt from the issue: learned queries of a megabyte, a session of very
many turns, an embedding cache of large texts, near-identical variants of a hand-made
exemplar learned beside it. Memory is checked by what is held (bytes of text, traced
allocations), never by time.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langroute.embedders.cache import CachedEmbedder
from langroute.router.conversation import SessionTracker
from langroute.router.decision import RouteDecision

HAND_MADE = "Summarise this contract for me"


def router(**options) -> ExemplarRouter:
    exemplars = [
        Exemplar(text=HAND_MADE, route="large"),
        Exemplar(text="hello there", route="small"),
    ]
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(), **options
    )


def held_bytes(r: ExemplarRouter) -> int:
    return sum(len(ex.text.encode("utf-8")) for ex in r.learned_exemplars)


def test_learned_megabyte_queries_keep_only_what_is_routed_on():
    r = router(max_learned=50)
    for i in range(100):
        r.learn(f"query {i} " + "x" * 1_000_000, "small", good=False, source="user")
    learned = r.learned_exemplars
    assert len(learned) == 50
    limit = r.settings.max_query_chars
    assert all(len(ex.text) <= limit for ex in learned)
    assert held_bytes(r) <= 50 * (limit + 2)  # head … tail; before: 50 MB of text
    # the same long query again updates its exemplar (it is found by what is kept)
    again = r.learn("query 99 " + "x" * 1_000_000, "large", good=True, source="user")
    assert again is not None and again.metadata["confirmations"] == 2


def test_learned_exemplars_are_bounded_by_bytes_newest_kept():
    r = router(max_learned=10_000, max_learned_bytes=20_000)
    last = None
    for i in range(60):
        words = " ".join(f"w{i}x{j}" for j in range(150))  # ~1 kB, unlike anything else
        last = r.learn(words, "small", good=False, source="user")
    assert last is not None
    assert 0 < held_bytes(r) <= 20_000
    assert last.id in {ex.id for ex in r.learned_exemplars}
    assert len(r.learned_exemplars) < 60


@pytest.mark.parametrize(
    "variant",
    [
        HAND_MADE + " ",  # trailing space
        HAND_MADE.lower(),  # lower case
        HAND_MADE + "\u200b",  # zero-width space
    ],
)
def test_near_identical_variants_of_a_hand_made_exemplar_are_refused(variant):
    r = router()
    for _ in range(3):  # repeated outcomes cannot outvote it either
        assert r.learn(variant, "small", good=True, source="user") is None
    assert r.learned_exemplars == []
    assert r.route(HAND_MADE).route == "large"
    refused = r.refused_outcomes
    assert len(refused) == 3 and r.refused_count == 3
    hand_made_id = Exemplar(text=HAND_MADE, route="large").id
    assert refused[0].exemplar_id == hand_made_id and refused[0].route == "small"
    assert refused[0].reason.startswith("a near-duplicate (similarity 1.0000) of hand-made")
    assert refused[0].similarity is not None and refused[0].similarity >= 0.98


def test_the_near_duplicate_radius_is_a_setting():
    wordier = HAND_MADE + " please"  # similarity 0.90 with the hashing embedder
    assert router().learn(wordier, "small", good=True, source="user") is not None
    strict = router(near_duplicate_similarity=0.85)
    assert strict.learn(wordier, "small", good=True, source="user") is None
    assert strict.refused_outcomes[0].reason.startswith("a near-duplicate (similarity 0.90")


def test_a_long_session_holds_a_bounded_memory():
    tracker = SessionTracker()
    decision = RouteDecision(route="small", confidence=1.0, reason="vote")
    vector = np.full(8, 1 / np.sqrt(8), dtype=np.float32)

    def turns(start: int, stop: int) -> None:
        for i in range(start, stop):
            tracker.apply("s", decision, ["small", "large"], f"turn {i}", vector)

    turns(0, 5_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        turns(5_000, 25_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000  # before: ~3 MB for 20,000 more turns (a hex digest each)
    # a recent turn sent again is still recognised: not a new turn
    counted = tracker.apply("s", decision, ["small", "large"], "turn 24999", vector)
    assert counted.session is not None and counted.session.turn == 25_000


def test_the_embedding_cache_is_bounded_by_bytes():
    cache = CachedEmbedder(HashingEmbedder(), max_size=4096, max_bytes=2_000_000)
    texts = [f"text {i} " + "y" * 100_000 for i in range(100)]
    cache.embed_queries(texts)
    info = cache.cache_info()
    assert 0 < info["bytes"] <= 2_000_000 and info["size"] < 100
    huge = "z" * 3_000_000
    assert cache.embed_queries([huge]).shape == (1, cache.dimension)
    assert cache.lookup(huge) is None  # embedded, not kept
    assert cache.cache_info()["bytes"] <= 2_000_000
