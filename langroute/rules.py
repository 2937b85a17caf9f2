"""Decision rules: from the k nearest neighbours to per-route evidence and a route.

Pure numpy over batches, so they are easy to test and to tune. Shapes: ``n`` queries,
``k`` neighbours, ``R`` routes ordered cheapest first.

The dial: for every boundary ``i`` (between route ``i`` and the stronger ones) an
*escalation score* ``e_i`` in [0, 1] says how strongly the evidence asks for a route
stronger than ``i``. The chosen route is the cheapest ``i`` with ``e_i < threshold``
(the strongest when there is none). Raising ``threshold`` can only move a query to a
cheaper route, so the dial moves traffic monotonically.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Weighting = Literal["softmax", "linear", "uniform"]


def neighbour_weights(
    similarities: np.ndarray,
    exemplar_weights: np.ndarray,
    weighting: Weighting = "softmax",
    temperature: float = 0.05,
) -> np.ndarray:
    """Weight of each neighbour's vote, ``(n, k)``; rows need not sum to one.

    ``softmax``: ``exp((s - s_max) / temperature)``, nearest neighbours dominate;
    ``linear``: ``max(s, 0)``; ``uniform``: 1. Each is multiplied by the exemplar weight.
    """
    if similarities.size == 0:
        return np.zeros_like(similarities)
    if weighting == "softmax":
        top = similarities.max(axis=1, keepdims=True)
        base = np.exp((similarities - top) / max(temperature, 1e-6))
    elif weighting == "linear":
        base = np.clip(similarities, 0.0, None) + 1e-6
    elif weighting == "uniform":
        base = np.ones_like(similarities)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return base * exemplar_weights


def vote(weights: np.ndarray, labels: np.ndarray, n_routes: int) -> np.ndarray:
    """Weighted share of votes per route, ``(n, R)``; ``labels`` is ``(n, k)``, -1 = no vote."""
    n = weights.shape[0]
    probabilities = np.zeros((n, n_routes), dtype=np.float64)
    valid = labels >= 0
    rows = np.repeat(np.arange(n)[:, None], labels.shape[1], axis=1)
    np.add.at(probabilities, (rows[valid], labels[valid]), weights[valid])
    totals = probabilities.sum(axis=1, keepdims=True)
    empty = totals[:, 0] == 0
    totals[empty] = 1.0
    probabilities /= totals
    probabilities[empty] = 1.0 / n_routes
    return probabilities


def estimate(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Weighted mean quality per route, ``(n, R)``; ``scores`` is ``(n, k, R)``, NaN = unknown."""
    known = ~np.isnan(scores)
    w = weights[:, :, None] * known
    totals = w.sum(axis=1)
    sums = (np.nan_to_num(scores) * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimates = np.where(totals > 0, sums / np.where(totals > 0, totals, 1.0), np.nan)
    return estimates


def escalation_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """``e_i`` = probability mass on routes stronger than ``i``; ``(n, R-1)``."""
    tail = np.cumsum(probabilities[:, ::-1], axis=1)[:, ::-1]
    return np.clip(tail[:, 1:], 0.0, 1.0)


def escalation_from_estimates(estimates: np.ndarray) -> np.ndarray:
    """``e_i`` = ``0.5 + best gain of a stronger route over i``, clipped to [0, 1]; ``(n, R-1)``.

    0.5 means no expected gain, so with ``threshold = 0.5 + tolerance`` a route is kept
    unless a stronger one is expected to beat it by ``tolerance`` or more. Unknown
    estimates count as no gain.
    """
    filled = np.nan_to_num(estimates, nan=0.0)
    best_stronger = np.maximum.accumulate(filled[:, ::-1], axis=1)[:, ::-1][:, 1:]
    gain = best_stronger - filled[:, :-1]
    return np.clip(0.5 + gain, 0.0, 1.0)


def choose_by_threshold(escalation: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the cheapest route whose escalation score is below ``threshold``."""
    boundaries = escalation.shape[1]
    below = escalation < threshold
    first = np.where(below.any(axis=1), below.argmax(axis=1), boundaries)
    return first.astype(np.int64)


def decision_margin(escalation: np.ndarray, chosen: np.ndarray, threshold: float) -> np.ndarray:
    """Distance of the deciding escalation scores from the dial, per query.

    A small margin means a slightly different neighbourhood would change the route.
    """
    n, boundaries = escalation.shape
    margin = np.full(n, np.inf)
    rows = np.arange(n)
    stay = chosen < boundaries
    margin[stay] = threshold - escalation[rows[stay], chosen[stay]]
    moved = chosen > 0
    passed = escalation[rows[moved], chosen[moved] - 1] - threshold
    margin[moved] = np.minimum(margin[moved], passed)
    return margin


def confidence_of(escalation: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Probability that the chosen route suffices (or, for the strongest, was needed)."""
    n, boundaries = escalation.shape
    rows = np.arange(n)
    if boundaries == 0:
        return np.ones(n)
    conf = np.empty(n)
    cheap = chosen < boundaries
    conf[cheap] = 1.0 - escalation[rows[cheap], chosen[cheap]]
    conf[~cheap] = escalation[rows[~cheap], boundaries - 1]
    return conf
