"""The decision rules against small hand-computed cases.

Every expected number below was worked out by hand (the arithmetic is in the comments),
never by calling the function under test, so a change to the maths fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.router import votes

nan = float("nan")


def close(actual, expected, rel=1e-9, abs=1e-12) -> None:
    """Same shape, same NaNs, and equal values up to float rounding."""
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected, dtype=np.float64), rtol=rel, atol=abs, strict=True
    )


def approx(value, rel=1e-9):
    return pytest.approx(value, rel=rel)


def a(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# -- neighbour_weights ------------------------------------------------------------------


def test_softmax_weights_are_relative_to_each_rows_nearest():
    sims = a([[0.9, 0.8, 0.5], [0.3, 0.2, -0.1]])
    weights = votes.neighbour_weights(sims, np.ones((2, 3)), "softmax", temperature=0.1)
    # exp((s - s_max) / 0.1): exp(0), exp(-1), exp(-4) in both rows
    expected = [[1.0, 0.36787944117144233, 0.01831563888873418]] * 2
    close(weights, expected)


def test_softmax_temperature_changes_the_tilt():
    sims = a([[0.9, 0.85]])
    # default temperature 0.05: exp(-0.05 / 0.05) = exp(-1)
    close(votes.neighbour_weights(sims, np.ones((1, 2))), [[1.0, 0.36787944117144233]])
    # temperature 0.025: exp(-2)
    warm = votes.neighbour_weights(sims, np.ones((1, 2)), "softmax", temperature=0.025)
    close(warm, [[1.0, 0.1353352832366127]])
    # temperature 0 is floored at 1e-6: the runner-up gets exp(-50000), i.e. 0
    cold = votes.neighbour_weights(sims, np.ones((1, 2)), "softmax", temperature=0.0)
    assert cold.tolist() == [[1.0, 0.0]]


def test_linear_weights_clip_negative_similarities():
    sims = a([[0.5, 0.25, -0.3]])
    weights = votes.neighbour_weights(sims, np.ones((1, 3)), "linear")
    # max(s, 0) + 1e-6
    close(weights, [[0.500001, 0.250001, 0.000001]])


def test_uniform_weights_are_the_exemplar_weights():
    sims = a([[0.9, -0.2, 0.1]])
    weights = votes.neighbour_weights(sims, a([[2.0, 0.5, 1.0]]), "uniform")
    assert weights.tolist() == [[2.0, 0.5, 1.0]]


@pytest.mark.parametrize(
    ("power", "expected"),
    [
        (2.0, [0.25, 0.04, 0.0]),  # 0.5**2, 0.2**2, max(-0.1, 0)**2
        (3.0, [0.125, 0.008, 0.0]),  # 0.5**3, 0.2**3
        (0.5, [0.7071067811865476, 0.4472135954999579, 0.0]),  # square roots
        (1.0, [0.5, 0.2, 0.0]),
    ],
)
def test_power_weights(power, expected):
    sims = a([[0.5, 0.2, -0.1]])
    weights = votes.neighbour_weights(sims, np.ones((1, 3)), "power", power=power)
    # plus 1e-12, so no weight is exactly zero
    close(weights, [[e + 1e-12 for e in expected]], rel=1e-9, abs=1e-15)


def test_exemplar_weights_multiply_every_weighting():
    sims = a([[0.9, 0.8, 0.5]])
    ex = a([[1.0, 2.0, 0.5]])
    softmax = votes.neighbour_weights(sims, ex, "softmax", temperature=0.1)
    # [1, e^-1, e^-4] * [1, 2, 0.5]
    close(softmax, [[1.0, 0.7357588823428847, 0.00915781944436709]])
    linear = votes.neighbour_weights(sims, ex, "linear")
    close(linear, [[0.900001, 1.600002, 0.2500005]])
    power = votes.neighbour_weights(sims, ex, "power", power=2.0)
    # [0.81, 0.64, 0.25] * [1, 2, 0.5]
    close(power, [[0.81, 1.28, 0.125]], rel=1e-9)
    zero = votes.neighbour_weights(sims, a([[0.0, 1.0, 0.0]]), "uniform")
    assert zero.tolist() == [[0.0, 1.0, 0.0]]


def test_neighbour_weights_edge_cases():
    empty = votes.neighbour_weights(np.zeros((2, 0)), np.zeros((2, 0)), "power")
    assert empty.shape == (2, 0)
    with pytest.raises(ValueError, match="unknown weighting 'cubic'"):
        votes.neighbour_weights(a([[0.5]]), a([[1.0]]), "cubic")  # type: ignore[arg-type]


# -- keep_nearest -----------------------------------------------------------------------


def test_keep_nearest_keeps_exactly_count_columns():
    weights = a([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert votes.keep_nearest(weights, 1).tolist() == [[1, 0, 0, 0], [5, 0, 0, 0]]
    assert votes.keep_nearest(weights, 2).tolist() == [[1, 2, 0, 0], [5, 6, 0, 0]]
    assert votes.keep_nearest(weights, 3).tolist() == [[1, 2, 3, 0], [5, 6, 7, 0]]
    assert votes.keep_nearest(weights, 4).tolist() == weights.tolist()
    assert votes.keep_nearest(weights, 10).tolist() == weights.tolist()
    assert weights.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the input is not modified


# -- length_weights ---------------------------------------------------------------------


def test_length_weights():
    # exp(-|log(100 / n)| / 1): n = 100 -> 1, 200 -> 1/2, 50 -> 1/2, 0 (as 1) -> 1/100
    weights = votes.length_weights(
        np.array([100]), np.array([[100, 200, 50, 0]]), a([[1.0, 1.0, 2.0, 1.0]]), 1.0
    )
    close(weights, [[1.0, 0.5, 1.0, 0.01]])
    # scale 0.5 doubles the exponent: 200 -> 1/4
    halved = votes.length_weights(np.array([100]), np.array([[200]]), a([[1.0]]), 0.5)
    close(halved, [[0.25]])
    # an empty query counts as length 1; one row per query
    rows = votes.length_weights(np.array([0, 10]), np.array([[1, 10], [10, 1]]), np.ones((2, 2)), 1)
    close(rows, [[1.0, 0.1], [1.0, 0.1]])


# -- blend ------------------------------------------------------------------------------


def test_blend():
    evidence = a([0.2, 0.6, 0.1])
    other = a([0.8, nan, 0.4])
    # (0.2 + 0.5 * 0.8) / 1.5 = 0.4; NaN keeps 0.6; (0.1 + 0.5 * 0.4) / 1.5 = 0.2
    close(votes.blend(evidence, other, 0.5), [0.4, 0.6, 0.2])
    # (0.2 + 3 * 0.8) / 4 = 0.65; (0.1 + 3 * 0.4) / 4 = 0.325
    close(votes.blend(evidence, other, 3.0), [0.65, 0.6, 0.325])
    close(votes.blend(evidence, other, 0.0), [0.2, 0.6, 0.1])
    two_d = votes.blend(a([[0.5, 0.5], [1.0, 0.0]]), a([[nan, 1.0], [0.0, nan]]), 1.0)
    close(two_d, [[0.5, 0.75], [0.5, 0.0]])


# -- vote -------------------------------------------------------------------------------


def test_vote_shares():
    weights = a([[1.0, 2.0, 3.0], [0.5, 0.5, 0.0]])
    labels = np.array([[0, 1, 1], [1, -1, 0]])
    # row 0: route 0 gets 1, route 1 gets 2 + 3, of 6; row 1: the -1 label and the
    # zero-weight vote do not count, so route 1 has everything
    close(votes.vote(weights, labels, 3), [[1 / 6, 5 / 6, 0.0], [0.0, 1.0, 0.0]])


def test_vote_with_no_votes_is_uniform():
    weights = a([[1.0, 1.0], [0.0, 0.0], [2.0, 1.0]])
    labels = np.array([[-1, -1], [0, 1], [-1, 1]])
    # row 0: only unlabelled neighbours; row 1: only zero weights; row 2: 1 of 1
    close(votes.vote(weights, labels, 4), [[0.25] * 4, [0.25] * 4, [0.0, 1.0, 0.0, 0.0]])
    no_neighbours = votes.vote(np.zeros((2, 0)), np.zeros((2, 0), dtype=np.int64), 2)
    assert no_neighbours.tolist() == [[0.5, 0.5], [0.5, 0.5]]


# -- estimate ---------------------------------------------------------------------------


def test_estimate_is_the_weighted_mean_of_known_scores():
    weights = a([[1.0, 3.0], [0.0, 0.0]])
    scores = a([[[1.0, 0.0, nan], [0.5, nan, nan]], [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    # route 0: (1 * 1 + 3 * 0.5) / 4 = 0.625; route 1: only neighbour 0 knows it: 0 / 1;
    # route 2: nobody knows it; row 1: all weights are zero
    close(votes.estimate(weights, scores), [[0.625, 0.0, nan], [nan, nan, nan]])


# -- escalation scores ------------------------------------------------------------------


def test_escalation_from_probabilities_is_the_stronger_tail():
    probabilities = a([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # e_0 = p1 + p2, e_1 = p2
    close(votes.escalation_from_probabilities(probabilities), [[0.5, 0.2], [0.0, 0.0], [1.0, 1.0]])
    assert votes.escalation_from_probabilities(a([[1.0]])).shape == (1, 0)


def test_escalation_from_estimates():
    estimates = a(
        [[0.6, 0.7, 0.65], [0.6, 0.5, 0.9], [0.3, 0.2, 0.1], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    )
    expected = [
        [0.6, 0.45],  # 0.5 + max(0.7, 0.65) - 0.6; 0.5 + 0.65 - 0.7
        [0.8, 0.9],  # 0.5 + max(0.5, 0.9) - 0.6: the strongest, not the next, is best
        [0.4, 0.4],  # 0.5 + 0.2 - 0.3; 0.5 + 0.1 - 0.2
        [1.0, 0.0],  # 0.5 + 1 clipped to 1; 0.5 - 1 clipped to 0
        [0.0, 0.5],  # 0.5 - 1 clipped; 0.5 + 0 - 0
    ]
    close(votes.escalation_from_estimates(estimates), expected)


def test_unknown_stronger_estimate_is_no_gain():
    # the strong route's estimate is unknown: 0.5 + max(0 (unknown), 0.4) - 0.2 = 0.7
    estimates = a([[0.2, 0.4, nan]])
    close(votes.escalation_from_estimates(estimates), [[0.7, 0.1]])


def test_escalation_from_scores_loss_weight_one():
    weights = a([[1.0, 1.0, 2.0, 10.0]])
    scores = a([[[0.0, 1.0], [1.0, 0.0], [0.5, 0.75], [nan, 1.0]]])
    # differences s_1 - s_0: +1, -1, +0.25 (weight 2); the NaN neighbour does not count.
    # (1 - 1 + 2 * 0.25) / 4 = 0.125 -> e = 0.625
    close(votes.escalation_from_scores(weights, scores, 1.0), [[0.625]])
    # the same as the gain of the mean estimates: 0.5 + (2.5 / 4 - 2 / 4)
    no_nan = a([[[0.0, 1.0], [1.0, 0.0], [0.5, 0.75]]])
    via_estimates = votes.escalation_from_estimates(votes.estimate(weights[:, :3], no_nan))
    close(via_estimates, [[0.625]])


@pytest.mark.parametrize(
    ("loss_weight", "expected"),
    [
        (0.5, 0.75),  # (1 - 0.5 * 1 + 2 * 0.25) / 4 = 0.25
        (2.0, 0.375),  # (1 - 2 * 1 + 2 * 0.25) / 4 = -0.125
        (0.0, 0.875),  # (1 + 0.5) / 4 = 0.375
    ],
)
def test_escalation_from_scores_loss_weight(loss_weight, expected):
    weights = a([[1.0, 1.0, 2.0]])
    scores = a([[[0.0, 1.0], [1.0, 0.0], [0.5, 0.75]]])
    close(votes.escalation_from_scores(weights, scores, loss_weight), [[expected]])


def test_escalation_from_scores_three_routes_takes_the_best_stronger_route():
    weights = a([[1.0, 1.0]])
    scores = a([[[0.2, 0.4, 0.9], [0.6, 0.5, 0.7]]])
    # boundary 0: route 1 gains (0.2 - 0.1) / 2 = 0.05, route 2 gains (0.7 + 0.1) / 2 = 0.4
    # boundary 1: route 2 gains (0.5 + 0.2) / 2 = 0.35
    close(votes.escalation_from_scores(weights, scores, 1.0), [[0.9, 0.85]])
    # loss weight 0.5: route 1 at boundary 0 gains (0.2 - 0.05) / 2 = 0.075 < 0.4
    close(votes.escalation_from_scores(weights, scores, 0.5), [[0.9, 0.85]])
    # loss weight 3 with one loss: boundary 0, route 1: (0.2 - 0.3) / 2 = -0.05;
    # route 2 has no loss: 0.4 still wins
    close(votes.escalation_from_scores(weights, scores, 3.0), [[0.9, 0.85]])


def test_escalation_from_scores_next_route_may_be_the_best():
    weights = a([[1.0, 1.0]])
    scores = a([[[0.2, 0.9, 0.4], [0.6, 0.8, 0.5]]])
    # boundary 0: route 1 gains (0.7 + 0.2) / 2 = 0.45, route 2 (0.2 - 0.1) / 2 = 0.05
    # boundary 1: route 2 gains (-0.5 - 0.3) / 2 = -0.4
    close(votes.escalation_from_scores(weights, scores, 1.0), [[0.95, 0.1]])


def test_escalation_from_scores_edge_cases():
    # no neighbour knows both scores: no gain
    unknown = a([[[nan, 1.0], [0.0, nan]]])
    assert votes.escalation_from_scores(np.ones((1, 2)), unknown).tolist() == [[0.5]]
    # clipped to [0, 1]
    win = a([[[0.0, 1.0]]])
    assert votes.escalation_from_scores(np.ones((1, 1)), win).tolist() == [[1.0]]
    loss = a([[[1.0, 0.0]]])
    assert votes.escalation_from_scores(np.ones((1, 1)), loss, 2.0).tolist() == [[0.0]]
    # a single route has no boundary
    assert votes.escalation_from_scores(np.ones((1, 1)), a([[[0.5]]])).shape == (1, 0)


# -- choosing a route -------------------------------------------------------------------

ESCALATION = a([[0.3, 0.8], [0.6, 0.2], [0.7, 0.9], [0.5, 0.5], [0.55, 0.52], [0.9, 0.45]])


def test_choose_by_threshold():
    # the cheapest boundary with e < 0.5; none -> the strongest (index 2)
    chosen = votes.choose_by_threshold(ESCALATION, 0.5)
    assert chosen.tolist() == [0, 1, 2, 2, 2, 1]
    assert chosen.dtype == np.int64
    # strict "<": 0.5 is not below 0.5, but it is below 0.51
    assert votes.choose_by_threshold(ESCALATION, 0.51).tolist() == [0, 1, 2, 0, 2, 1]
    assert votes.choose_by_threshold(ESCALATION, 0.53).tolist() == [0, 1, 2, 0, 1, 1]
    # the ends of the dial: 0 sends everything to the strongest, 1 to the first e < 1
    assert votes.choose_by_threshold(ESCALATION, 0.0).tolist() == [2, 2, 2, 2, 2, 2]
    assert votes.choose_by_threshold(a([[1.0, 0.99], [0.2, 1.0]]), 1.0).tolist() == [1, 0]
    assert votes.choose_by_threshold(np.zeros((3, 0)), 0.5).tolist() == [0, 0, 0]


def test_decision_margin():
    chosen = np.array([0, 1, 2, 2, 2, 1])
    margin = votes.decision_margin(ESCALATION, chosen, 0.5)
    expected = [
        0.2,  # kept route 0: 0.5 - 0.3
        0.1,  # route 1: min(0.5 - 0.2 kept, 0.6 - 0.5 passed)
        0.4,  # strongest: 0.9 - 0.5 passed
        0.0,  # strongest: 0.5 - 0.5
        0.02,  # strongest: 0.52 - 0.5
        0.05,  # route 1: min(0.5 - 0.45 kept, 0.9 - 0.5 passed)
    ]
    close(margin, expected)
    assert votes.decision_margin(np.zeros((2, 0)), np.array([0, 0]), 0.5).tolist() == [
        math.inf,
        math.inf,
    ]


def test_confidence_of():
    chosen = np.array([0, 1, 2, 2, 2, 1])
    # a cheaper route: 1 - e at its boundary; the strongest: e at the last boundary
    close(votes.confidence_of(ESCALATION, chosen), [0.7, 0.8, 0.9, 0.5, 0.52, 0.55])
    assert votes.confidence_of(np.zeros((2, 0)), np.array([0, 0])).tolist() == [1.0, 1.0]


# -- end to end: a router over fixed vectors ---------------------------------------------


class FixedEmbedder:
    """Unit vectors given per text: similarities are known exactly."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    @property
    def fingerprint(self) -> str:
        return "fixed-test-vectors"

    @property
    def dimension(self) -> int:
        return 3

    def embed_documents(self, texts):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)

    def embed_queries(self, texts):
        return self.embed_documents(texts)


SQRT_075 = math.sqrt(0.75)
VECTORS = {
    "query": [1.0, 0.0, 0.0],
    "a": [0.8, 0.6, 0.0],  # similarity 0.8, small
    "b": [0.6, 0.8, 0.0],  # 0.6, large
    "c": [0.5, 0.0, SQRT_075],  # 0.5, large
    "d": [0.0, 1.0, 0.0],  # 0.0, small
}


def fixed_router(**options) -> ExemplarRouter:
    exemplars = [
        Exemplar(text="a", route="small"),
        Exemplar(text="b", route="large"),
        Exemplar(text="c", route="large"),
        Exemplar(text="d", route="small"),
    ]
    options = {"k": 3, "min_margin": 0.0, **options}
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=FixedEmbedder(VECTORS),
        **options,
    )


def test_fixed_vectors_give_the_expected_neighbours():
    decision = fixed_router(weighting="uniform").route("query")
    assert [n.text for n in decision.neighbours] == ["a", "b", "c"]
    assert [n.similarity for n in decision.neighbours] == approx([0.8, 0.6, 0.5], rel=1e-6)
    # uniform: 1 small vote, 2 large of 3
    assert decision.probabilities == approx({"small": 1 / 3, "large": 2 / 3}, rel=1e-6)


@pytest.mark.parametrize(
    ("power", "small_share"),
    [
        (2.0, 0.64 / 1.25),  # 0.8^2 / (0.64 + 0.36 + 0.25) = 0.512
        (3.0, 0.512 / 0.853),  # 0.512 / (0.512 + 0.216 + 0.125) = 0.6002...
        (1.0, 0.8 / 1.9),  # 0.8 / (0.8 + 0.6 + 0.5) = 0.42...
    ],
)
def test_router_power_weighting(power, small_share):
    decision = fixed_router(weighting="power", power=power).route("query")
    large_share = 1.0 - small_share
    assert decision.probabilities == approx({"small": small_share, "large": large_share}, rel=1e-6)
    assert decision.escalation == approx(large_share, rel=1e-6)
    # the dial (0.5) against the share of the large route
    route = "small" if large_share < 0.5 else "large"
    assert decision.route == route
    confidence = 1.0 - large_share if route == "small" else large_share
    assert decision.confidence == approx(confidence, rel=1e-6)


def test_router_power_weighting_decision_literals():
    decision = fixed_router(weighting="power", power=2.0).route("query")
    assert (decision.route, decision.reason) == ("small", "vote")
    assert decision.probabilities == approx({"small": 0.512, "large": 0.488}, rel=1e-6)
    assert decision.confidence == approx(0.512, rel=1e-6)


@pytest.mark.parametrize(
    ("local_k", "weighting", "small_share"),
    [
        (1, "uniform", 1.0),  # only "a" votes
        (2, "uniform", 0.5),  # "a" and "b"
        (3, "uniform", 1 / 3),  # all three
        (2, "power", 0.64),  # 0.64 / (0.64 + 0.36)
        (1, "power", 1.0),
    ],
)
def test_router_local_k(local_k, weighting, small_share):
    decision = fixed_router(weighting=weighting, local_k=local_k).route("query")
    assert decision.probabilities == approx(
        {"small": small_share, "large": 1.0 - small_share}, rel=1e-6
    )
    # all k neighbours are still reported
    assert [n.text for n in decision.neighbours] == ["a", "b", "c"]


def test_router_local_k_decides_with_the_local_evidence():
    decision = fixed_router(weighting="power", local_k=2).route("query")
    # escalation 0.36 < 0.5: small, with confidence 1 - 0.36
    assert (decision.route, decision.escalation) == ("small", approx(0.36, rel=1e-6))
    assert decision.confidence == approx(0.64, rel=1e-6)
    uniform = fixed_router(weighting="uniform", local_k=2).route("query")
    # escalation 0.5 is not below the dial 0.5: the strongest route, confidence 0.5
    assert (uniform.route, uniform.confidence) == ("large", approx(0.5, rel=1e-6))


def test_a_single_route_router_sends_everything_to_it():
    router = ExemplarRouter(
        routes=["only"],
        exemplars=[Exemplar(text="a", route="only"), Exemplar(text="b", route="only")],
        embedder=FixedEmbedder(VECTORS),
        k=2,
    )
    decision = router.route("query")
    assert (decision.route, decision.reason) == ("only", "vote")
    assert decision.probabilities == {"only": 1.0}
    assert (decision.confidence, decision.escalation) == (1.0, 0.0)
