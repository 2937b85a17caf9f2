"""Learned exemplars: provenance, dedup, bounds, hand-made precedence, persistence, feedback."""

from __future__ import annotations

from pathlib import Path

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.costs import CostLedger, LedgerFormatError, LedgerRecord, ModelPrice, Pricer
from langroute.dispatch.cascade import CascadeCall, CascadePolicy
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.router.learning import CascadeLearner, is_learned
from langroute.scorers import ScoreResult

PRICER = Pricer(overrides={"m": ModelPrice(input_per_mtok=1.0, output_per_mtok=1.0)})
HAND = [
    Exemplar(text="hello there how are you", route="small"),
    Exemplar(text="what time is it", route="small"),
    Exemplar(text="prove the riemann hypothesis rigorously", route="large"),
    Exemplar(text="design a distributed consensus protocol", route="large"),
]


def make_router(**options: object) -> ExemplarRouter:
    options = {"min_similarity": 0.0, "min_margin": 0.0, **options}
    return ExemplarRouter(
        routes=["small", "large"], exemplars=HAND, embedder=HashingEmbedder(), **options
    )


def test_learned_exemplar_carries_provenance() -> None:
    router = make_router()
    ex = router.learn(
        "summarise this email", "small", good=True, source="cascade", scorer="Judge", score=0.9
    )
    assert ex is not None and ex.route == "small"
    meta = router.learned_exemplars[0].metadata
    assert meta["learned"] is True and meta["source"] == "cascade"
    assert meta["scorer"] == "Judge" and meta["score"] == 0.9
    assert meta["learned_at"] == meta["updated_at"] and meta["learned_at"].endswith("+00:00")
    assert meta["confirmations"] == 1 and meta["outcomes"] == {"small": [1, 0]}
    # a bad answer from the cheap route labels the query with the next stronger one
    bad = router.learn("write a compiler in rust", "small", good=False, source="cascade")
    assert bad is not None and bad.route == "large"


def test_repeated_outcome_updates_one_exemplar() -> None:
    router = make_router()
    first = router.learn("translate a haiku", "small", good=True, source="cascade")
    again = router.learn("translate a haiku", "small", good=False, source="feedback")
    assert first is not None and again is not None and first.id == again.id
    assert len(router.learned_exemplars) == 1 and len(router) == len(HAND) + 1
    meta = again.metadata
    assert meta["confirmations"] == 2 and meta["outcomes"] == {"small": [1, 1]}
    assert meta["learned_at"] == first.metadata["learned_at"] and meta["source"] == "feedback"
    assert again.route == "large"  # a tie is not good enough
    third = router.learn("translate a haiku", "small", good=True)
    assert third is not None and third.route == "small"  # 2 good, 1 bad


def test_hand_made_exemplar_is_never_overridden() -> None:
    router = make_router()
    assert router.learn("what time is it", "small", good=False, source="cascade") is None
    hand = next(ex for ex in router.exemplars if ex.text == "what time is it")
    assert hand.route == "small" and not is_learned(hand)
    assert router.learned_exemplars == []
    # a hand-made exemplar added later (even with its own id) replaces the learned one
    router.learn("explain recursion", "small", good=False)
    router.add_exemplars(Exemplar(text="explain recursion", route="small", id="mine"))
    same = [ex for ex in router.exemplars if ex.text == "explain recursion"]
    assert [(ex.id, ex.route) for ex in same] == [("mine", "small")]
    assert router.learn("explain recursion", "small", good=False) is None


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("oldest", {"q3", "q4", "q5"}), ("least_confirmed", {"q1", "q4", "q5"})],
)
def test_learned_exemplars_are_bounded(policy: str, kept: set[str]) -> None:
    router = make_router(max_learned=3, learned_eviction=policy)
    router.learn("q1", "small", good=True)
    router.learn("q1", "small", good=True)  # confirmed twice
    for text in ("q2", "q3", "q4", "q5"):
        router.learn(text, "small", good=False)
    assert {ex.text for ex in router.learned_exemplars} == kept
    assert len(router) == len(HAND) + 3  # hand-made ones are never evicted


def test_list_and_remove_by_source() -> None:
    router = make_router()
    router.learn("sort a list in python", "small", good=True, source="cascade")
    router.learn("prove a lemma about graphs", "small", good=False, source="cascade")
    router.learn("write a sonnet", "small", good=True, source="feedback")
    assert [ex.text for ex in router.exemplars_by_source("feedback")] == ["write a sonnet"]
    assert len(router.exemplars_by_source("cascade")) == 2
    assert router.remove_exemplars(source="cascade") == 2
    assert router.exemplars_by_source("cascade") == []
    assert len(router) == len(HAND) + 1
    # the same text can be learned again after removal
    assert router.learn("sort a list in python", "small", good=True) is not None


def test_learned_exemplars_survive_save_and_load(tmp_path: Path) -> None:
    router = make_router(max_learned=2, learned_eviction="oldest")
    router.learn("parse a csv file", "small", good=True, source="cascade", scorer="S", score=1.0)
    router.learn("derive the kalman filter", "small", good=False, source="feedback")
    loaded = ExemplarRouter.load(router.save(tmp_path / "r"), embedder=HashingEmbedder())
    assert loaded.settings.max_learned == 2 and loaded.settings.learned_eviction == "oldest"
    assert [ex.model_dump() for ex in loaded.learned_exemplars] == [
        ex.model_dump() for ex in router.learned_exemplars
    ]
    # after loading, a repeated outcome still updates the same exemplar and the cap holds
    again = loaded.learn("parse a csv file", "small", good=True)
    assert again is not None and again.metadata["confirmations"] == 2
    loaded.learn("a third learned query", "small", good=True)
    assert {ex.text for ex in loaded.learned_exemplars} == {
        "derive the kalman filter",
        "a third learned query",
    }


def test_scores_mode_learns_the_observed_acceptance_rate() -> None:
    scored = [
        Exemplar(text="hi", scores={"small": 1.0, "large": 1.0}),
        Exemplar(text="prove it", scores={"small": 0.0, "large": 1.0}),
    ]
    router = ExemplarRouter(routes=["small", "large"], exemplars=scored, embedder=HashingEmbedder())
    for good in (True, True, False):
        ex = router.learn("rename a variable", "small", good=good, source="cascade")
    assert ex is not None and ex.scores == pytest.approx({"small": 2 / 3, "large": 1.0})
    assert ex.route == "small" and router.mode == "scores"
    # a vote-mode router is not switched to scores mode by learning
    vote = make_router()
    vote.learn("rename a variable", "small", good=True)
    assert vote.mode == "vote" and vote.learned_exemplars[0].scores is None


def test_learn_from_feedback_by_record_id() -> None:
    router = make_router()
    ledger = CostLedger(pricer=PRICER)
    bad = ledger.record(LedgerRecord(route="small", model="m", query="plan a product launch"))
    good = ledger.record(LedgerRecord(route="small", model="m", query="say hi to bob"))
    learned = router.learn_from_feedback(ledger, bad.record_id, "bad")
    assert learned is not None and learned.route == "large"
    assert learned.metadata["source"] == "feedback" and learned.metadata["judge"] == "user"
    assert learned.metadata["record_id"] == bad.record_id
    assert router.learn_from_feedback(ledger, good.record_id, "good").route == "small"
    verdicts = [(r.feedback_for, r.verdict) for r in ledger.records() if r.is_feedback]
    assert verdicts == [(bad.record_id, "bad"), (good.record_id, "good")]


def test_feedback_without_query_text_says_to_store_queries() -> None:
    router = make_router()
    ledger = CostLedger(pricer=PRICER)
    rec = ledger.record(LedgerRecord(route="small", model="m"))
    with pytest.raises(ValueError, match="store_queries=True"):
        router.learn_from_feedback(ledger, rec.record_id, "bad")
    assert not any(r.is_feedback for r in ledger.records())  # nothing half-done
    other = ledger.record(LedgerRecord(route="judge", model="m", query="x"))
    with pytest.raises(RouterConfigError, match="'judge'"):
        router.learn_from_feedback(ledger, other.record_id, "good")


def _run(cascade: CascadeCall, scores: dict[str, float]) -> str:
    policy = cascade.policy

    def accept(tier: str, answer: str) -> bool:
        scored = policy.scored(policy.tier(tier))
        return cascade.verdict(tier, ScoreResult(score=scores[tier]) if scored else None)

    name, _ = cascade.escalation().run(lambda tier: f"answer of {tier}", accept=accept)
    return name


def test_route_then_cascade_skips_the_cheap_tier_the_router_expects_to_fail() -> None:
    router = make_router()
    policy = CascadePolicy.build(["small", "large"], ["mini", "big"], 0.5)
    learner = CascadeLearner(router, policy.tier_names, route_past=True, route_past_at=0.8)
    hard = "prove the riemann hypothesis rigorously please"
    decision = learner.plan(hard)
    assert decision is not None and decision.route == "large" and decision.escalation >= 0.8
    cascade = CascadeCall(policy, start=decision)
    assert _run(cascade, {"small": 1.0, "large": 1.0}) == "large"
    assert [a.route for a in cascade.call.attempts] == ["large"]
    assert cascade.call.decision.reason == "routed_past"
    assert cascade.result("large").skipped == ["small"]
    # an easy query starts at the cheapest tier
    assert learner.plan("hello there how are you doing") is None
    assert learner.stats.calls == 2 and learner.stats.routed_past == 1
    assert learner.stats.calls_saved == 1
    # a threshold above every estimate never skips
    never = CascadeLearner(router, policy.tier_names, route_past=True, route_past_at=1.0)
    never_decision = never.plan(hard)
    assert never_decision is None or never_decision.escalation >= 1.0


def test_cascade_outcomes_become_learned_exemplars() -> None:
    router = make_router()
    policy = CascadePolicy.build(["small", "large"], ["mini", "big"], 0.5)
    learner = CascadeLearner(router, policy.tier_names, route_past_at=1.0)
    rejected = CascadeCall(policy)
    assert _run(rejected, {"small": 0.1}) == "large"
    ex = learner.learn("write a ray tracer", rejected, "MyScorer")
    assert ex is not None and ex.route == "large" and ex.metadata["source"] == "cascade"
    assert ex.metadata["scorer"] == "MyScorer" and ex.metadata["score"] == 0.1
    accepted = CascadeCall(policy)
    _run(accepted, {"small": 0.9})
    ex = learner.learn("say thanks", accepted, "MyScorer")
    assert ex is not None and ex.route == "small"
    assert learner.stats.learned == 2
    # a tier that raised says nothing about quality
    failed = CascadeCall(policy)

    def ask(tier: str) -> str:
        if tier == "small":
            raise TimeoutError("slow")
        return "ok"

    failed.escalation().run(ask, accept=lambda tier, _: failed.verdict(tier, None))
    assert learner.learn("another query", failed, "MyScorer") is None
    with pytest.raises(RouterConfigError, match="not tiers"):
        CascadeLearner(router, ["mini", "big"])


def test_learn_from_feedback_on_a_jsonl_ledger_does_not_reread_it_per_verdict(tmp_path) -> None:
    """Lookups by id go through the sink's index: lines read once are not parsed again.

    An early line is damaged in place after the first verdict: a reread of the whole
    file would fail on it, an indexed lookup of later records does not.
    """
    path = tmp_path / "costs.jsonl"
    ledger = CostLedger(path, pricer=PRICER)
    filler = [ledger.record(LedgerRecord(route="small", model="m")) for _ in range(50)]
    calls = [
        ledger.record(LedgerRecord(route="small", model="m", query=f"plan launch number {i}"))
        for i in range(5)
    ]
    ledger.flush()
    router = make_router()
    assert router.learn_from_feedback(ledger, calls[0].record_id, "bad").route == "large"
    text = path.read_bytes()
    start = text.index(filler[1].record_id.encode()) - 1  # its opening quote too
    path.write_bytes(text[:start] + b"#" * 32 + text[start + 32 :])  # same size, same file
    for call in calls[1:]:
        assert router.learn_from_feedback(ledger, call.record_id, "good").route == "small"
    with pytest.raises(LedgerFormatError, match=r"costs\.jsonl:2"):
        ledger.records()  # the damage is real: a full read names it


@pytest.mark.parametrize("options", [{"min_margin": 0.0}, {"min_margin": 0.1, "threshold": 0.9}])
def test_a_thumbs_down_never_moves_a_query_to_a_cheaper_route(options: dict) -> None:
    # scores mode with labelled exemplars (labels count as scores): a bad verdict on the
    # strongest route once stored 0 for every route, and the tie went to the cheapest
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[*HAND, Exemplar(text="hi there", route="small")],
        embedder=HashingEmbedder(),
        mode="scores",
        **options,
    )
    query = "prove the riemann hypothesis rigorously please"
    before = router.route(query)
    assert before.route == "large"
    learned = router.learn(query, "large", good=False, source="feedback")
    assert learned is not None and learned.route == "large"
    assert learned.scores == {"small": 0.0, "large": 1.0}
    assert router.route(query).route == "large"
    # a bad verdict on the cheap route of a query sends it up, never down
    cheap = "what time is it in tokyo now"
    router.learn(cheap, "small", good=False, source="feedback")
    assert router.route(cheap).route == "large"


def test_mixed_labels_and_scores_need_an_explicit_mode(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"text": "reset my password please", "route": "small"}\n'
        '{"text": "why does our kafka consumer lag grow", "route": "large"}\n'
        '{"prompt": "What is 17 * 23?", "scores": {"small": 1.0, "large": 1.0}}\n'
    )
    with pytest.raises(ValueError, match=r"mixed\.jsonl:3: field 'scores': carries scores.*mode="):
        ExemplarRouter.from_file(path, routes=["small", "large"], embedder=HashingEmbedder())
    scores = ExemplarRouter.from_file(
        path, routes=["small", "large"], embedder=HashingEmbedder(), mode="scores"
    )
    assert scores.mode == "scores" and scores.mode_reason == "set explicitly"
    vote = ExemplarRouter.from_file(
        path, routes=["small", "large"], embedder=HashingEmbedder(), mode="vote"
    )
    assert vote.mode == "vote"
    # at run time, one scored exemplar cannot silently switch a labelled router
    router = make_router()
    assert router.mode_reason == "auto: no exemplar carries scores"
    with pytest.raises(RouterConfigError, match=r"carries scores.*\(4 labelled only, 1 scored\)"):
        router.add_exemplars([Exemplar(text="2 + 2", scores={"small": 1.0, "large": 1.0})])
    assert router.mode == "vote" and len(router) == 4  # nothing was added
    # labelled exemplars joining a scored router keep it in scores mode
    scored = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[Exemplar(text="hi", scores={"small": 1.0, "large": 1.0})],
        embedder=HashingEmbedder(),
    )
    scored.add_exemplars([Exemplar(text="prove it", route="large")])
    assert scored.mode == "scores"
    assert scored.mode_reason == "auto: 1 of 2 exemplars carry scores (labels count as scores)"
