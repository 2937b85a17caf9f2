from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from langroute import (
    Exemplar,
    ExemplarRouter,
    HashingEmbedder,
    InvalidQueryError,
    RouterConfigError,
)
from langroute.router import votes

EASY = [
    "say hello to my friend",
    "hello how are you today",
    "thanks a lot for the help",
    "translate good morning into french",
    "what time is it in tokyo",
    "what is the capital of france",
]
HARD = [
    "prove the theorem about prime numbers step by step",
    "design a distributed database migration plan with rollback",
    "debug this concurrency bug in the python scheduler code",
    "derive the gradient of the loss function step by step",
    "compare microservice architecture trade offs for a bank",
    "write a python compiler pass for loop unrolling",
]


def make_router(**options) -> ExemplarRouter:
    exemplars = [Exemplar(text=t, route="small") for t in EASY] + [
        Exemplar(text=t, route="large") for t in HARD
    ]
    options.setdefault("min_similarity", 0.05)
    options.setdefault("k", 5)
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(), **options
    )


def test_routes_easy_and_hard_queries():
    router = make_router()
    easy = router.route("hello how are you my friend")
    hard = router.route("prove this theorem step by step")
    assert (easy.route, easy.reason) == ("small", "vote")
    assert (hard.route, hard.reason) == ("large", "vote")
    assert easy.probabilities["small"] > 0.5 > easy.probabilities["large"]
    assert easy.neighbours[0].text == "hello how are you today"
    assert easy.neighbours[0].route == "small"
    assert len(easy.neighbours) == 5
    assert easy.elapsed_ms > 0 and set(easy.timings_ms) == {"embed", "search", "decide"}
    assert 0.0 <= easy.confidence <= 1.0


def test_out_of_distribution_goes_to_fallback():
    router = make_router(min_similarity=0.5)
    decision = router.route("zebra quantum banana")
    assert decision.route == "large"
    assert decision.reason == "out_of_distribution"
    assert decision.escalated


def test_configured_fallback_route():
    router = make_router(min_similarity=0.9, fallback="small")
    assert router.route("zebra quantum banana").route == "small"


def test_low_margin_vote_escalates():
    exemplars = [
        Exemplar(text="alpha beta", route="small"),
        Exemplar(text="alpha gamma", route="large"),
    ]
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        weighting="uniform",
        min_similarity=0.0,
        min_margin=0.1,
        threshold=0.55,
    )
    decision = router.route("alpha")
    # an even split sits 0.05 below the dial: too close, so it escalates
    assert decision.probabilities == pytest.approx({"small": 0.5, "large": 0.5})
    assert (decision.route, decision.reason) == ("large", "low_confidence")
    router.configure(min_margin=0.0)
    assert router.route("alpha").route == "small"


def test_dial_moves_traffic_monotonically():
    router = make_router(min_margin=0.0, weighting="linear")
    queries = EASY + HARD + ["what is the gradient of hello", "translate the theorem"]
    shares = []
    for threshold in np.linspace(0.0, 1.0, 11):
        router.threshold = float(threshold)
        decisions = router.route_batch(queries)
        shares.append(sum(d.route == "large" for d in decisions))
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == len(queries) and shares[-1] < len(queries)


def test_threshold_rule_on_three_routes():
    probabilities = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    escalation = votes.escalation_from_probabilities(probabilities)
    assert escalation == pytest.approx(np.array([[0.8, 0.3], [0.3, 0.1], [0.9, 0.8]]))
    chosen = votes.choose_by_threshold(escalation, 0.5)
    assert chosen.tolist() == [1, 0, 2]
    assert votes.confidence_of(escalation, chosen) == pytest.approx([0.7, 0.7, 0.8])
    # a higher dial never picks a stronger route
    for low, high in [(0.1, 0.4), (0.4, 0.85), (0.85, 0.95)]:
        assert np.all(
            votes.choose_by_threshold(escalation, high)
            <= votes.choose_by_threshold(escalation, low)
        )


def test_scores_mode_picks_cheapest_close_to_best():
    exemplars = [
        Exemplar(text="easy arithmetic sum", scores={"weak": 1.0, "strong": 1.0}),
        Exemplar(text="easy arithmetic sums", scores={"weak": 1.0, "strong": 1.0}),
        Exemplar(text="hard olympiad geometry", scores={"weak": 0.0, "strong": 1.0}),
        Exemplar(text="hard olympiad geometry proof", scores={"weak": 0.2, "strong": 0.9}),
    ]
    router = ExemplarRouter(
        routes=["weak", "strong"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        min_similarity=0.1,
    )
    assert router.mode == "scores"
    easy = router.route("easy arithmetic")
    hard = router.route("hard olympiad geometry")
    assert (easy.route, easy.reason) == ("weak", "scores")
    assert hard.route == "strong"
    assert hard.estimates["strong"] > hard.estimates["weak"]
    assert easy.escalation < hard.escalation
    assert easy.threshold == 0.6  # the scores-mode default: tolerance 0.1


def test_escalation_from_estimates_maps_gain_onto_the_dial():
    estimates = np.array([[0.9, 0.95], [0.5, 0.9], [0.8, 0.6]])
    escalation = votes.escalation_from_estimates(estimates)
    assert escalation[:, 0] == pytest.approx([0.55, 0.9, 0.3])
    # threshold 0.5 + tolerance: keep the weak route when the gain is below 0.1
    assert votes.choose_by_threshold(escalation, 0.6).tolist() == [0, 1, 0]


def test_argmax_rule_for_unordered_labels():
    exemplars = [
        Exemplar(text="book a flight to paris", route="travel"),
        Exemplar(text="what is my account balance", route="banking"),
        Exemplar(text="play some jazz music", route="music"),
    ]
    router = ExemplarRouter(
        routes=["travel", "banking", "music"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        rule="argmax",
        min_similarity=0.1,
        k=3,
    )
    assert router.route("play jazz").route == "music"
    assert router.route("account balance please").route == "banking"


def test_batch_matches_single_and_embeds_once():
    router = make_router()
    calls = []
    inner = router.embedder.inner
    original = inner.embed_queries

    def counting(texts):
        calls.append(len(texts))
        return original(texts)

    inner.embed_queries = counting
    queries = ["hello friend", "prove the lemma step by step", "translate this to french"]
    batch = router.route_batch(queries)
    assert calls == [3]
    singles = [router.route(q) for q in queries]  # served from the cache
    assert calls == [3]
    assert [d.route for d in batch] == [d.route for d in singles]
    assert router.embedder.cache_info()["hits"] == 3


async def test_async_routing():
    router = make_router()
    decision = await router.aroute("hello there")
    batch = await router.aroute_batch(["hello there", "prove the theorem step by step"])
    assert decision.route == "small"
    assert [d.route for d in batch] == ["small", "large"]


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_empty_query_is_an_error(query):
    with pytest.raises(InvalidQueryError, match="empty"):
        make_router().route(query)


def test_non_string_query_is_an_error():
    with pytest.raises(InvalidQueryError, match="string"):
        make_router().route(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["\u200b", "\x00", "\u200b\u200d \x00\ufeff", "\ud800"])
def test_query_of_invisible_characters_is_empty(query):
    router = make_router()
    with pytest.raises(InvalidQueryError, match="no visible characters"):
        router.route(query)
    with pytest.raises(InvalidQueryError, match="no visible characters"):
        router.route_batch(["hello how are you", query])


def test_lone_surrogate_is_replaced_before_embedding():
    seen: list[str] = []

    class StrictEmbedder(HashingEmbedder):
        """Refuses text that is not valid Unicode, as real tokenizers do."""

        def embed_queries(self, texts):
            for text in texts:
                text.encode("utf-8")  # raises on a lone surrogate
            seen.extend(texts)
            return super().embed_queries(texts)

    exemplars = [Exemplar(text=t, route="small") for t in EASY] + [
        Exemplar(text=t, route="large") for t in HARD
    ]
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=StrictEmbedder(),
        min_similarity=0.05,
        k=5,
    )
    decision = router.route("hello how are you \ud800")
    assert decision.route == "small" and decision.query == "hello how are you \ufffd"
    batch = router.route_batch(["prove the theorem \udcff step by step", "\ud83d\ude00 hello"])
    assert [d.route for d in batch] == ["large", "small"]
    assert batch[1].query == "\U0001f600 hello"  # a surrogate pair is joined, not replaced
    assert all(text.encode("utf-8") for text in seen)


@pytest.mark.slow
def test_lone_surrogate_routes_with_the_real_tokenizer(starter_router):
    decision = starter_router.route("Translate 'good night' into German \ud800")
    assert decision.route == "small" and "\ufffd" in decision.query


def test_huge_query_is_truncated_and_still_routed():
    router = make_router()
    query = "prove the theorem step by step " + "lorem ipsum " * 9000 + " derive the gradient"
    assert len(query) > 100_000
    decision = router.route(query)
    assert decision.truncated
    assert len(decision.query) <= router.settings.max_query_chars
    assert decision.query.startswith("prove the theorem")
    assert decision.query.endswith("derive the gradient")


def test_configuration_errors():
    embedder = HashingEmbedder()
    with pytest.raises(RouterConfigError, match="not one of the routes"):
        ExemplarRouter(
            routes=["small", "large"],
            exemplars=[Exemplar(text="x", route="medium")],
            embedder=embedder,
        )
    with pytest.raises(RouterConfigError, match=r"routes \['small'\] have no exemplars"):
        ExemplarRouter(
            routes=["small", "large"],
            exemplars=[Exemplar(text="x", route="large")],
            embedder=embedder,
        )
    with pytest.raises(RouterConfigError, match="unique"):
        ExemplarRouter(routes=["a", "a"], embedder=embedder)
    with pytest.raises(RouterConfigError, match="fallback"):
        ExemplarRouter(routes=["a", "b"], fallback="c", embedder=embedder)
    with pytest.raises(RouterConfigError, match="no scores for every route"):
        ExemplarRouter(
            routes=["weak", "strong"],
            exemplars=[Exemplar(text="x", scores={"weak": 1.0})],
            embedder=embedder,
        )
    with pytest.raises(RouterConfigError, match="threshold"):
        make_router().threshold = 1.5
    empty = ExemplarRouter(routes=["small", "large"], embedder=embedder)
    with pytest.raises(RouterConfigError, match="no exemplars"):
        empty.route("hello")


def test_only_the_fallback_may_lack_exemplars():
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[Exemplar(text="hello", route="small")],
        embedder=HashingEmbedder(),
        min_similarity=0.5,
    )
    assert router.route("hello").route == "small"
    assert router.route("zebra").route == "large"


def test_add_remove_and_feedback():
    router = make_router(min_similarity=0.3)
    assert router.route("quantum chromodynamics lattice").route == "large"  # OOD -> fallback
    exemplar = router.feedback("quantum chromodynamics lattice", "small")
    assert exemplar.metadata["source"] == "feedback"
    decision = router.route("quantum chromodynamics lattice")
    assert (decision.route, decision.neighbours[0].id) == ("small", exemplar.id)
    assert router.remove_exemplars([exemplar.id, "unknown"]) == 1
    assert router.route("quantum chromodynamics lattice").neighbours[0].id != exemplar.id
    with pytest.raises(RouterConfigError, match="unknown route"):
        router.feedback("x", "medium")


def test_removing_the_last_exemplar_of_a_route_is_refused():
    router = make_router()
    small_ids = [ex.id for ex in router.exemplars if ex.route == "small"]
    before = len(router)
    with pytest.raises(RouterConfigError, match="no exemplars"):
        router.remove_exemplars(small_ids)
    assert len(router) == before  # nothing was removed


def test_same_text_replaces_earlier_exemplar():
    router = make_router()
    before = len(router)
    router.add_exemplars([Exemplar(text=EASY[0], route="large")])
    assert len(router) == before
    assert router.route(EASY[0]).neighbours[0].route == "large"


def test_routing_while_exemplars_are_added_concurrently():
    router = make_router()
    errors: list[BaseException] = []

    def add() -> None:
        for i in range(30):
            router.add_exemplars(
                [Exemplar(text=f"filler request number {i} about cooking", route="small")]
            )

    def route() -> None:
        try:
            for _ in range(60):
                assert (
                    router.route("prove the theorem about prime numbers step by step").route
                    == "large"
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add), threading.Thread(target=route)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(router) == 12 + 30


def test_exemplar_weight_counts_in_the_vote():
    exemplars = [
        Exemplar(text="alpha beta", route="small", weight=1.0),
        Exemplar(text="alpha gamma", route="large", weight=3.0),
    ]
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        weighting="uniform",
        min_similarity=0.0,
        min_margin=0.0,
    )
    assert router.route("alpha").probabilities["large"] == pytest.approx(0.75)


@pytest.mark.slow
def test_starter_router_with_real_embeddings(starter_router):
    easy = [
        "hey, good morning!",
        "What's the capital of Australia?",
        "Translate 'where is the train station' into Spanish",
        "Fix the capitalisation: the quick brown fox met john smith in paris",
    ]
    hard = [
        "Implement a thread-safe LRU cache in Rust with generics and write unit tests for it",
        "Prove that there are infinitely many primes of the form 4k+3",
        "Compare event sourcing and CRUD for an accounting system: trade-offs, failure modes",
        "Plan a 6-month migration of our monolith to Kubernetes with milestones and risks",
    ]
    decisions = starter_router.route_batch(easy + hard)
    assert [d.route for d in decisions] == ["small"] * 4 + ["large"] * 4
    for decision in decisions:
        assert decision.neighbours and decision.max_similarity > 0.3


@pytest.mark.slow
def test_starter_router_sends_gibberish_to_the_strong_route(starter_router):
    decision = starter_router.route("lorem ipsum dolor")
    assert decision.route == "large"
    assert decision.reason in ("out_of_distribution", "low_confidence")


@pytest.mark.slow
def test_real_embedder_vectors_are_normalised(minilm_embedder):
    vectors = minilm_embedder.embed_queries(["hello world", "a much longer sentence about routing"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    asyncio.run(asyncio.sleep(0))


def test_default_router_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGROUTE_CACHE_DIR", str(tmp_path))
    first = ExemplarRouter.default(embedder=HashingEmbedder())
    assert len(list((tmp_path / "starter").iterdir())) == 1

    class NoEmbedding(HashingEmbedder):
        def embed_documents(self, texts):
            raise AssertionError("the cached starter pack must not be embedded again")

        def embed_queries(self, texts):
            return HashingEmbedder.embed_documents(self, texts)

    second = ExemplarRouter.default(embedder=NoEmbedding(), k=5)
    assert second.exemplars == first.exemplars
    assert second.settings.k == 5
    assert second.route("hello there").route == first.route("hello there").route
    # another embedder gets its own copy
    ExemplarRouter.default(embedder=HashingEmbedder(dimension=64))
    assert len(list((tmp_path / "starter").iterdir())) == 2
    # a damaged copy is rebuilt, not trusted
    from langroute.router.exemplar_router import _starter_cache_path

    cached = _starter_cache_path(HashingEmbedder())
    (cached / "index.faiss").write_bytes(b"garbage")
    rebuilt = ExemplarRouter.default(embedder=HashingEmbedder())
    assert rebuilt.exemplars == first.exemplars
    assert ExemplarRouter.load(cached, embedder=HashingEmbedder()).exemplars == first.exemplars


def test_a_decision_lists_its_ten_nearest_neighbours_and_weighs_all_k():
    """The explanation lists 10 neighbours; the vote counts every one of the k."""
    query = "alpha beta gamma delta"
    # the 10 nearest vote small; the 20 a little further all vote large
    near = [Exemplar(text=f"{query} epsilon{i}", route="small") for i in range(10)]
    far = [Exemplar(text=f"{query} zeta eta theta{i}", route="large") for i in range(20)]
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=near + far,
        embedder=HashingEmbedder(),
        k=30,
        weighting="uniform",
        min_similarity=0.0,
    )
    decision = router.route(query)
    assert [n.route for n in decision.neighbours] == ["small"] * 10
    sims = [n.similarity for n in decision.neighbours]
    assert sims == sorted(sims, reverse=True)
    assert decision.probabilities["large"] == pytest.approx(20 / 30)
    assert decision.route == "large"
