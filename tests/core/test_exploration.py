"""Exploration: a router attached to a cascade revisits what it learned to skip."""

from __future__ import annotations

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.dispatch.cascade import CascadeCall, CascadePolicy
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.router.learning import CascadeLearner, Exploration
from langroute.scorers import ScoreResult

HAND = [
    Exemplar(text="hello there how are you", route="small"),
    Exemplar(text="what time is it", route="small"),
    Exemplar(text="prove the riemann hypothesis rigorously", route="large"),
    Exemplar(text="design a distributed consensus protocol", route="large"),
]
POLICY = CascadePolicy.build(["small", "large"], ["mini", "big"], 0.5)
QUERY = "translate this short poem into latin verse"


def make_router() -> ExemplarRouter:
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=HAND,
        embedder=HashingEmbedder(),
        min_similarity=0.0,
        min_margin=0.0,
    )


def serve(learner: CascadeLearner, query: str, cheap_is_good: bool) -> list[str]:
    """One cascade call as the integrations run it: plan, run the tiers, learn; tiers tried."""
    cascade = CascadeCall(POLICY, start=learner.plan(query))

    def accept(tier: str, answer: str) -> bool:
        if not POLICY.scored(POLICY.tier(tier)):
            return cascade.verdict(tier, None)
        return cascade.verdict(tier, ScoreResult(score=1.0 if cheap_is_good else 0.0))

    cascade.escalation().run(lambda tier: f"answer of {tier}", accept=accept)
    learner.learn(query, cascade, scorer="test")
    return [attempt.route for attempt in cascade.call.attempts]


def wrongly_learned_router() -> ExemplarRouter:
    """A router that learned, from one unlucky rejection, to route QUERY past the cheap tier."""
    router = make_router()
    learned = router.learn(QUERY, "small", good=False, source="cascade")
    assert learned is not None and learned.route == "large"
    return router


def test_without_exploration_a_wrong_route_past_is_never_revisited() -> None:
    router = wrongly_learned_router()
    learner = CascadeLearner(router, POLICY.tier_names, route_past=True, route_past_at=0.8)
    tried = [serve(learner, QUERY, cheap_is_good=True) for _ in range(50)]
    assert all(attempts == ["large"] for attempts in tried)
    assert learner.stats.routed_past == 50 and learner.stats.explored == 0
    learned = router.learned_exemplars[0]
    assert learned.route == "large" and learned.metadata["outcomes"] == {"small": [0, 1]}


def test_exploration_revisits_and_unlearns_a_wrong_route_past() -> None:
    router = wrongly_learned_router()
    learner = CascadeLearner(
        router,
        POLICY.tier_names,
        route_past=True,
        route_past_at=0.8,
        explore=Exploration(share=0.5, half_life=50, seed=3),
    )
    tried = [serve(learner, QUERY, cheap_is_good=True) for _ in range(60)]
    learned = router.learned_exemplars[0]
    good, bad = learned.metadata["outcomes"]["small"]
    assert good > bad and learned.route == "small"  # relabelled from what exploration saw
    assert learner.stats.explored >= 2
    # once unlearned, the query starts at the cheap tier again without exploring
    assert tried[-1] == ["small"] and learner.plan(QUERY) is None
    first_small = next(i for i, attempts in enumerate(tried) if attempts == ["small"])
    assert all(attempts == ["large"] for attempts in tried[:first_small])


def test_exploration_keeps_a_right_route_past() -> None:
    router = wrongly_learned_router()  # here the cheap tier really fails on the query
    learner = CascadeLearner(
        router, POLICY.tier_names, route_past=True, explore=Exploration(share=0.5, seed=1)
    )
    tried = [serve(learner, QUERY, cheap_is_good=False) for _ in range(40)]
    assert router.learned_exemplars[0].route == "large"
    explored = [attempts for attempts in tried if attempts[0] == "small"]
    assert explored and all(attempts == ["small", "large"] for attempts in explored)
    assert learner.stats.explored == len(explored)
    assert learner.stats.routed_past == len(tried) - len(explored)


def test_exploration_share_is_bounded_and_decays() -> None:
    plan = Exploration(share=0.3, half_life=100, seed=7)
    chances = [plan.probability(n) for n in range(0, 5000, 100)]
    assert chances[0] == pytest.approx(0.3) and chances[1] == pytest.approx(0.15)
    assert all(later < earlier for earlier, later in zip(chances, chances[1:]))
    learner = CascadeLearner(
        wrongly_learned_router(), POLICY.tier_names, route_past=True, explore=plan
    )
    explored_early = explored_late = 0
    for i in range(4000):
        skipped = learner.plan(QUERY) is not None
        if i < 400:
            explored_early += not skipped
        elif i >= 3600:
            explored_late += not skipped
    # never above the starting share, and far fewer explorations late than early
    assert learner.stats.explored <= 0.3 * 4000
    assert explored_early / 400 <= 0.3 and explored_late < explored_early / 3
    assert learner.stats.explored + learner.stats.routed_past == 4000


def test_exploration_is_reproducible_and_validated() -> None:
    def explored(seed: int) -> list[bool]:
        learner = CascadeLearner(
            wrongly_learned_router(),
            POLICY.tier_names,
            route_past=True,
            explore=Exploration(share=0.4, seed=seed),
        )
        return [learner.plan(QUERY) is None for _ in range(100)]

    assert explored(5) == explored(5)
    with pytest.raises(RouterConfigError, match="exploration"):
        CascadeLearner(make_router(), POLICY.tier_names, route_past=True, explore=0.9)
    off = CascadeLearner(make_router(), POLICY.tier_names, route_past=True, explore=0.0)
    assert off.exploration is None
