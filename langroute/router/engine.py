"""The decision engine: from a query's nearest exemplars to a route.

Everything that decides a route goes through this module, so live routing
(:meth:`ExemplarRouter.route_batch`), evaluation, calibration and tuning cannot drift
apart. Three pure steps over numpy batches:

1. :class:`Neighbourhood`: the ``k`` nearest exemplars of each query, as arrays
   (:meth:`ExemplarRouter.neighbours` searches them once; :meth:`Neighbourhood.head`
   gives the first ``k`` of a deeper search, so a sweep over ``k`` searches once).
2. :func:`weigh`: neighbours and settings give the evidence: a vote share per route,
   a quality estimate per route (scores mode) and an escalation score per boundary
   between a route and the stronger ones. The evidence does not depend on the dial.
3. :func:`choose`: evidence, best similarity and the dial give a route per query, with
   the reason (plain, low confidence, out of distribution) and the confidence.

:func:`decide` runs the steps and builds the :class:`~langroute.router.decision.RouteDecision`
objects users see. Calibration replays :func:`choose` at many thresholds over one
:func:`weigh`.

Example:
    >>> import numpy as np
    >>> from langroute.router.settings import RouterSettings
    >>> settings = RouterSettings(routes=["small", "large"], min_similarity=0.0)
    >>> nb = Neighbourhood.from_arrays(
    ...     sims=[[0.9, 0.8]], labels=[[0, 1]], n_routes=2
    ... )
    >>> evidence = weigh(nb, settings.model_copy(update={"weighting": "uniform"}), "vote")
    >>> evidence.probabilities.tolist()
    [[0.5, 0.5]]
    >>> choice = choose(evidence, nb.max_similarity, settings, threshold=0.6)
    >>> int(choice.route_index[0]), bool(choice.escalated[0])
    (0, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from langroute.router import votes
from langroute.router.decision import DecisionReason, Neighbour, RouteDecision
from langroute.router.exemplars import Exemplar
from langroute.router.settings import RouterSettings

Mode = Literal["vote", "scores"]

PLAIN, LOW_CONFIDENCE, OUT_OF_DISTRIBUTION = 0, 1, 2
"""Reason codes of :attr:`Choice.reasons`."""

_MARGIN_TOLERANCE = 1e-6
"""A margin this close to ``min_margin`` counts as enough (float noise in the dial)."""
EXPLAINED_NEIGHBOURS = 10
"""How many of the ``k`` neighbours a decision lists (:attr:`RouteDecision.neighbours`).

Every neighbour counts in the decision; listing them is for explanations, and a tuned
router's ``k`` of 100 to 200 made a listed neighbour each cost more than the search.
"""


@dataclass(frozen=True)
class Neighbourhood:
    """The ``k`` nearest exemplars of ``n`` queries, as arrays (``R`` routes).

    Attributes:
        queries: the text routed on, per query (cut to ``max_query_chars``).
        truncated: whether each query was cut.
        sims: ``(n, k)`` cosine similarities, descending per row.
        labels: ``(n, k)`` route index each neighbour votes for, -1 for none.
        scores: ``(n, k, R)`` per-route quality of each neighbour, NaN where unknown.
        weights: ``(n, k)`` exemplar weights.
        lengths: ``(n, k)`` neighbours' text lengths, capped at ``max_query_chars``.
        exemplars: the neighbour exemplars themselves (for explanations).
    """

    queries: list[str]
    truncated: list[bool]
    sims: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    lengths: np.ndarray
    exemplars: list[list[Exemplar]]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def k(self) -> int:
        """Neighbours per query."""
        return int(self.sims.shape[1])

    @property
    def max_similarity(self) -> np.ndarray:
        """``(n,)`` similarity of each query's nearest exemplar (-1 when there is none)."""
        if self.sims.shape[1] == 0:
            return np.full(len(self), -1.0)
        return self.sims[:, 0]

    @property
    def query_lengths(self) -> np.ndarray:
        """``(n,)`` length of each routed text."""
        return np.array([len(q) for q in self.queries])

    def head(self, k: int) -> Neighbourhood:
        """The first ``k`` neighbours of every query."""
        return Neighbourhood(
            self.queries,
            self.truncated,
            self.sims[:, :k],
            self.labels[:, :k],
            self.scores[:, :k],
            self.weights[:, :k],
            self.lengths[:, :k],
            [row[:k] for row in self.exemplars],
        )

    def rows(self, indices: Sequence[int]) -> Neighbourhood:
        """The neighbourhoods of the queries at ``indices``."""
        picked = np.asarray(indices, dtype=np.int64)
        return Neighbourhood(
            [self.queries[i] for i in picked],
            [self.truncated[i] for i in picked],
            self.sims[picked],
            self.labels[picked],
            self.scores[picked],
            self.weights[picked],
            self.lengths[picked],
            [self.exemplars[i] for i in picked],
        )

    @classmethod
    def concat(cls, parts: Sequence[Neighbourhood]) -> Neighbourhood:
        """One neighbourhood from several searched in chunks (same ``k``)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            [q for p in parts for q in p.queries],
            [t for p in parts for t in p.truncated],
            np.concatenate([p.sims for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.weights for p in parts]),
            np.concatenate([p.lengths for p in parts]),
            [row for p in parts for row in p.exemplars],
        )

    @classmethod
    def from_arrays(
        cls,
        sims: Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[Sequence[int]] | np.ndarray,
        n_routes: int,
        *,
        scores: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        queries: Sequence[str] | None = None,
        lengths: np.ndarray | None = None,
    ) -> Neighbourhood:
        """A neighbourhood from plain arrays (tests, simulations); exemplars are synthetic."""
        sims_arr = np.asarray(sims, dtype=np.float64)
        n, k = sims_arr.shape
        labels_arr = np.asarray(labels, dtype=np.int64).reshape(n, k)
        return cls(
            queries=list(queries) if queries is not None else ["q"] * n,
            truncated=[False] * n,
            sims=sims_arr,
            labels=labels_arr,
            scores=(
                np.asarray(scores, dtype=np.float64)
                if scores is not None
                else np.full((n, k, n_routes), np.nan)
            ),
            weights=(
                np.asarray(weights, dtype=np.float64) if weights is not None else np.ones((n, k))
            ),
            lengths=np.asarray(lengths) if lengths is not None else np.ones((n, k)),
            exemplars=[
                [Exemplar(id=f"n{i}-{j}", text=f"neighbour {j}") for j in range(k)]
                for i in range(n)
            ],
        )


@dataclass(frozen=True)
class Evidence:
    """What the neighbours say, before the dial is applied (``n`` queries, ``R`` routes).

    Attributes:
        mode: ``vote`` or ``scores``.
        probabilities: ``(n, R)`` weighted vote share per route.
        estimates: ``(n, R)`` estimated quality per route (scores mode), else None.
        boundary: ``(n, R-1)`` escalation score per boundary (threshold rule): how
            strongly the evidence asks for a route stronger than ``i``.
        escalation: ``(n,)`` the scalar that ranks queries from easy to hard.
    """

    mode: Mode
    probabilities: np.ndarray
    estimates: np.ndarray | None
    boundary: np.ndarray
    escalation: np.ndarray


@dataclass(frozen=True)
class Choice:
    """The route per query at one dial setting.

    Attributes:
        route_index: ``(n,)`` index of the chosen route, after escalation.
        reasons: ``(n,)`` :data:`PLAIN`, :data:`LOW_CONFIDENCE` or
            :data:`OUT_OF_DISTRIBUTION`.
        confidence: ``(n,)`` in [0, 1].
        threshold: the dial in force.
    """

    route_index: np.ndarray
    reasons: np.ndarray
    confidence: np.ndarray
    threshold: float

    @property
    def escalated(self) -> np.ndarray:
        """``(n,)`` True where uncertainty sent the query to the fallback route."""
        return self.reasons != PLAIN


def weigh(nb: Neighbourhood, settings: RouterSettings, mode: Mode) -> Evidence:
    """The evidence of ``nb`` under ``settings`` (uses the first ``settings.k`` neighbours).

    Example:
        >>> nb = Neighbourhood.from_arrays([[0.9, 0.5]], [[1, 0]], n_routes=2)
        >>> settings = RouterSettings(routes=["a", "b"], weighting="linear")
        >>> weigh(nb, settings, "vote").probabilities.round(3).tolist()
        [[0.357, 0.643]]
    """
    cut = nb.head(settings.k) if nb.k > settings.k else nb
    n_routes = len(settings.routes)
    weights = votes.neighbour_weights(
        cut.sims, cut.weights, settings.weighting, settings.temperature, settings.power
    )
    if settings.local_k is not None:
        weights = votes.keep_nearest(weights, settings.local_k)
    by_length = None
    if settings.length_weight > 0:
        by_length = votes.length_weights(
            cut.query_lengths, cut.lengths, cut.weights, settings.length_scale
        )
    probabilities = votes.vote(weights, cut.labels, n_routes)
    estimates = votes.estimate(weights, cut.scores) if mode == "scores" else None
    if by_length is not None:
        length_vote = votes.vote(by_length, cut.labels, n_routes)
        probabilities = votes.blend(probabilities, length_vote, settings.length_weight)
        if estimates is not None:
            length_estimates = votes.estimate(by_length, cut.scores)
            estimates = votes.blend(estimates, length_estimates, settings.length_weight)
    if estimates is not None and settings.loss_weight != 1.0:
        boundary = votes.escalation_from_scores(weights, cut.scores, settings.loss_weight)
        if by_length is not None:
            length_boundary = votes.escalation_from_scores(
                by_length, cut.scores, settings.loss_weight
            )
            boundary = votes.blend(boundary, length_boundary, settings.length_weight)
    elif estimates is not None:
        boundary = votes.escalation_from_estimates(estimates)
    else:
        boundary = votes.escalation_from_probabilities(probabilities)
    if settings.rule == "argmax":
        escalation = 1.0 - probabilities[:, 0]
    elif boundary.shape[1]:
        escalation = boundary[:, 0]
    else:
        escalation = np.zeros(len(cut))
    return Evidence(mode, probabilities, estimates, boundary, escalation)


def choose(
    evidence: Evidence,
    max_similarity: np.ndarray,
    settings: RouterSettings,
    threshold: float,
) -> Choice:
    """The route per query at ``threshold``, with escalation of uncertain queries.

    Threshold rule: the cheapest route whose escalation score is below the dial; a
    decision closer than ``min_margin`` to the dial goes to the fallback when the
    fallback is stronger. Argmax rule: the route with the most evidence; a runner-up
    within ``min_margin`` sends the query to the fallback. Either way a query whose
    best neighbour is below ``min_similarity`` is out of distribution (fallback).
    """
    routes = settings.routes
    n = len(evidence.probabilities)
    if settings.rule == "argmax":
        scores = evidence.estimates if evidence.estimates is not None else evidence.probabilities
        filled = np.nan_to_num(scores, nan=-1.0)
        chosen = filled.argmax(axis=1)
        ordered = np.sort(filled, axis=1)
        margin = ordered[:, -1] - (ordered[:, -2] if len(routes) > 1 else 0.0)
        confidence = evidence.probabilities[np.arange(n), chosen]
    else:
        chosen = votes.choose_by_threshold(evidence.boundary, threshold)
        margin = votes.decision_margin(evidence.boundary, chosen, threshold)
        confidence = votes.confidence_of(evidence.boundary, chosen)
    fallback = routes.index(settings.fallback_route)
    low = margin < settings.min_margin - _MARGIN_TOLERANCE
    if settings.rule != "argmax":
        low &= fallback > chosen
    ood = np.asarray(max_similarity) < settings.min_similarity
    reasons = np.where(ood, OUT_OF_DISTRIBUTION, np.where(low, LOW_CONFIDENCE, PLAIN))
    route_index = np.where(reasons != PLAIN, fallback, chosen).astype(np.int64)
    return Choice(route_index, reasons, np.clip(confidence, 0.0, 1.0), float(threshold))


def weigh_and_choose(
    nb: Neighbourhood,
    settings: RouterSettings,
    mode: Mode,
    threshold: float | None = None,
) -> tuple[Evidence, Choice]:
    """:func:`weigh` then :func:`choose` at ``threshold`` (default: the dial in force).

    The array form of :func:`decide`, for sweeps that need no decision objects.
    """
    if threshold is None:
        threshold = settings.threshold_for(mode)
    evidence = weigh(nb, settings, mode)
    return evidence, choose(evidence, nb.max_similarity, settings, threshold)


def decide(
    nb: Neighbourhood,
    settings: RouterSettings,
    mode: Mode,
    threshold: float | None = None,
) -> list[RouteDecision]:
    """Route every query of ``nb``: the one function behind every routing decision.

    Args:
        nb: the queries' nearest exemplars (at least ``settings.k`` deep, or all there are).
        settings: the router settings.
        mode: ``vote`` or ``scores`` (``auto`` resolved by the router).
        threshold: the dial; by default the one in force for ``mode``.

    Returns:
        One :class:`RouteDecision` per query, with its neighbours.
    """
    cut = nb.head(settings.k) if nb.k > settings.k else nb
    evidence, choice = weigh_and_choose(cut, settings, mode, threshold)
    return build_decisions(cut, evidence, choice, settings)


_REASONS: dict[int, DecisionReason] = {
    LOW_CONFIDENCE: "low_confidence",
    OUT_OF_DISTRIBUTION: "out_of_distribution",
}


def build_decisions(
    nb: Neighbourhood, evidence: Evidence, choice: Choice, settings: RouterSettings
) -> list[RouteDecision]:
    """The :class:`RouteDecision` objects of a choice (validated shapes, no re-checks)."""
    routes = settings.routes
    plain: DecisionReason = "scores" if evidence.mode == "scores" else "vote"
    max_sim = nb.max_similarity
    decisions = []
    for row in range(len(nb)):
        labels = nb.labels[row]
        neighbours = [
            Neighbour.model_construct(
                id=ex.id,
                text=ex.text,
                similarity=float(nb.sims[row, col]),
                route=routes[labels[col]] if labels[col] >= 0 else None,
                scores=ex.scores,
                weight=ex.weight,
            )
            for col, ex in enumerate(nb.exemplars[row][:EXPLAINED_NEIGHBOURS])
        ]
        estimates = (
            {r: float(e) for r, e in zip(routes, evidence.estimates[row]) if not np.isnan(e)}
            if evidence.estimates is not None
            else {}
        )
        decisions.append(
            RouteDecision.model_construct(
                route=routes[int(choice.route_index[row])],
                confidence=float(choice.confidence[row]),
                reason=_REASONS.get(int(choice.reasons[row]), plain),
                mode=evidence.mode,
                probabilities={r: float(p) for r, p in zip(routes, evidence.probabilities[row])},
                estimates=estimates,
                escalation=float(evidence.escalation[row]),
                threshold=choice.threshold,
                neighbours=neighbours,
                max_similarity=float(max_sim[row]),
                query=nb.queries[row],
                truncated=nb.truncated[row],
                elapsed_ms=0.0,
                timings_ms={},
                # every field given: pydantic resolves a missing default_factory by
                # inspecting its signature, per decision (~0.2 ms, most of a decision)
                context=None,
                session=None,
                stage=None,
                stage_note=None,
                router_calls=[],
                shadow=None,
            )
        )
    return decisions
