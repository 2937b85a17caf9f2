"""Latency-aware choice among a route's equivalent models (an optional policy).

:class:`LatencyPolicy` keeps each model's recent latencies (time to the answer, or to a
stream's first delivered chunk) and, per call, tries a route's equivalents fastest
first by a moving percentile. It never reorders across price tiers: models are grouped
by price (``price_of``), the groups keep their declared order, and only models of one
group are sorted. A model with fewer than ``min_samples`` latencies comes first in its
group, so a new or recovered model is measured before it is judged.

Example:
    >>> from langroute.dispatch.equivalents import EquivalentModel, RouteEquivalents
    >>> policy = LatencyPolicy(percentile=50, min_samples=1)
    >>> equivalents = RouteEquivalents.of_names({"small": ["slow", "fast"]})
    >>> equivalents.reorder = policy
    >>> policy.observe("slow", 900.0); policy.observe("fast", 120.0)
    >>> [t.model for t in equivalents.attempt_order(["small"])]
    ['fast', 'slow']
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from langroute.dispatch.equivalents import EquivalentModel

__all__ = ["LatencyPolicy"]


class LatencyPolicy:
    """Prefer the equivalent with the lowest recent latency percentile, within a price tier.

    Args:
        percentile: Which percentile of the recent latencies ranks a model (50: median).
        window: How many recent latencies per model are kept.
        min_samples: Latencies needed before a model is ranked by them.
        price_of: Model name -> a comparable price (e.g. USD per million output tokens);
            models of different prices are never swapped. ``None``: every equivalent of a
            route is taken to cost the same.
    """

    def __init__(
        self,
        *,
        percentile: float = 90.0,
        window: int = 50,
        min_samples: int = 5,
        price_of: Callable[[str], float | None] | None = None,
    ) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be at least 1")
        self.percentile = percentile
        self.window = window
        self.min_samples = min_samples
        self.price_of = price_of
        self._latencies: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def observe(self, key: str, latency_ms: float) -> None:
        """Record one latency of the model ``key`` (its breaker key, usually its name)."""
        with self._lock:
            samples = self._latencies.get(key)
            if samples is None:
                samples = self._latencies[key] = deque(maxlen=self.window)
            samples.append(latency_ms)

    def latency(self, key: str) -> float | None:
        """The model's latency percentile (None: fewer than ``min_samples`` latencies)."""
        with self._lock:
            samples = sorted(self._latencies.get(key, ()))
        if len(samples) < self.min_samples:
            return None
        rank = max(0, min(len(samples) - 1, round(self.percentile / 100 * len(samples)) - 1))
        return samples[rank]

    def __call__(
        self, route: str, models: Sequence[EquivalentModel], order: Sequence[int]
    ) -> list[int]:
        """``order`` with each price tier's models sorted fastest first (tiers stay put)."""
        tiers: list[float | None] = []
        for index in order:
            price = self.price_of(models[index].name) if self.price_of is not None else None
            if price not in tiers:
                tiers.append(price)

        def rank(position: int) -> tuple[int, float, int]:
            index = order[position]
            price = self.price_of(models[index].name) if self.price_of is not None else None
            latency = self.latency(models[index].key)
            return (tiers.index(price), -1.0 if latency is None else latency, position)

        return [order[position] for position in sorted(range(len(order)), key=rank)]
