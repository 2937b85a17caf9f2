"""Dynamic batching (issue 12): concurrent single routes share encoder calls.

Behaviour only, no timing: a counting embedder holds its first call until the other
callers are queued, so the batches are known exactly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter, HashingEmbedder
from langroute.errors import InvalidQueryError
from langroute.router.batching import RequestBatcher

QUERIES = [f"please translate sentence number {i} into french" for i in range(12)] + [
    f"prove theorem {i} about prime numbers step by step" for i in range(12)
]


class GatedEmbedder:
    """Hashing vectors; counts calls; the first call waits until ``release`` is set."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder()
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(60), "the test never released the encoder"
        if any("boom" in text for text in texts):
            raise RuntimeError("the encoder choked on boom")
        return self.inner.embed_queries(texts)


def make_router(embedder: GatedEmbedder, cache_size: int = 0) -> ExemplarRouter:
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="translate this sentence into french", route="small"),
            Exemplar(text="translate a greeting into german", route="small"),
            Exemplar(text="prove the theorem about prime numbers step by step", route="large"),
            Exemplar(text="prove that the sum is finite step by step", route="large"),
        ],
        embedder=embedder,
        min_similarity=0.05,
        cache_size=cache_size,
    )
    embedder.calls.clear()
    return router


def wait_for(condition, what: str) -> None:
    """Wait (generously) for a state the test itself brings about; never a timing check."""
    for _ in range(6000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def expected(queries: Sequence[str]) -> list[str]:
    embedder = GatedEmbedder()
    embedder.release.set()
    reference = make_router(embedder)
    return [d.route for d in reference.route_batch(queries)]


def run_threads(router: ExemplarRouter, queries: Sequence[str]) -> dict[str, object]:
    results: dict[str, object] = {}

    def call(query: str) -> None:
        try:
            results[query] = router.route(query)
        except Exception as exc:
            results[query] = exc

    threads = [threading.Thread(target=call, args=(q,)) for q in queries]
    threads[0].start()
    embedder = router.embedder
    wait_for(embedder.entered.is_set, "the first call to reach the encoder")
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: router.batcher.pending() == len(queries) - 1, "the others to queue")
    embedder.release.set()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_threads_share_encoder_calls():
    embedder = GatedEmbedder()
    router = make_router(embedder)
    results = run_threads(router, QUERIES)
    assert len(embedder.calls) == 2 < len(QUERIES)  # the first alone, then all the others
    assert sorted(embedder.calls[1]) == sorted(QUERIES[1:])
    want = dict(zip(QUERIES, expected(QUERIES)))
    for query, decision in results.items():
        assert decision.query == query and decision.route == want[query]
    queued = [results[q] for q in QUERIES[1:]]
    assert all(d.timings_ms["wait"] > 0 for d in queued)
    assert "wait" not in results[QUERIES[0]].timings_ms
    assert router.batcher.stats()["largest"] == len(QUERIES) - 1


def test_one_bad_request_does_not_fail_its_batch():
    embedder = GatedEmbedder()
    router = make_router(embedder)
    queries = [*QUERIES[:6], "boom goes the encoder", *QUERIES[6:9], "   "]
    results = run_threads(router, queries[:-1])
    assert isinstance(results["boom goes the encoder"], RuntimeError)
    want = dict(zip(QUERIES, expected(QUERIES)))
    for query in [q for q in queries[:-1] if "boom" not in q]:
        assert results[query].route == want[query]
    with pytest.raises(InvalidQueryError):  # refused before it could join a batch
        router.route(queries[-1])


async def test_asyncio_tasks_share_encoder_calls():
    embedder = GatedEmbedder()
    router = make_router(embedder)
    first = asyncio.create_task(router.aroute(QUERIES[0]))
    await asyncio.to_thread(wait_for, embedder.entered.is_set, "the first call")
    others = [asyncio.create_task(router.aroute(q)) for q in QUERIES[1:]]
    await asyncio.to_thread(
        wait_for, lambda: router.batcher.pending() == len(QUERIES) - 1, "the tasks to queue"
    )
    embedder.release.set()
    decisions = await asyncio.gather(first, *others)
    assert len(embedder.calls) == 2
    assert [d.route for d in decisions] == expected(QUERIES)
    assert [d.query for d in decisions] == QUERIES


def test_cache_hits_never_wait_for_a_batch():
    embedder = GatedEmbedder()
    router = make_router(embedder, cache_size=64)
    embedder.calls.append([])  # the next call is not the gated first one
    warm = router.route(QUERIES[1])
    embedder.calls.clear()
    blocked = threading.Thread(target=router.route, args=(QUERIES[0],))
    blocked.start()
    wait_for(embedder.entered.is_set, "the encoder to be busy")
    # the encoder is held: a cached query is answered in this thread all the same
    again = router.route(QUERIES[1])
    assert again.route == warm.route and router.batcher.pending() == 0
    embedder.release.set()
    blocked.join()
    assert embedder.calls == [[QUERIES[0]]]


def test_a_lone_caller_runs_at_once():
    embedder = GatedEmbedder()
    embedder.release.set()
    router = make_router(embedder)
    for query in QUERIES[:5]:
        router.route(query)
    stats = router.batcher.stats()
    assert stats == {"batches": 5, "items": 5, "largest": 1, "queued": 0}
    assert embedder.calls == [[q] for q in QUERIES[:5]]


def test_batcher_caps_batches_and_validates():
    seen: list[int] = []
    gate = threading.Event()

    def run(items: list[int], waits: list[float]) -> list[int]:
        seen.append(len(items))
        if len(seen) == 1:
            gate.wait(60)
        return [item * 2 for item in items]

    batcher = RequestBatcher(run, max_batch=4, max_wait_ms=0)
    out: dict[int, int] = {}
    threads = [
        threading.Thread(target=lambda i=i: out.update({i: batcher.submit(i)})) for i in range(9)
    ]
    threads[0].start()
    wait_for(lambda: seen, "the first batch")
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: batcher.pending() == 8, "the others to queue")
    gate.set()
    for thread in threads:
        thread.join()
    assert out == {i: i * 2 for i in range(9)}
    assert seen == [1, 4, 4]
    with pytest.raises(ValueError, match="max_batch"):
        RequestBatcher(run, max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        RequestBatcher(run, max_wait_ms=-1)
