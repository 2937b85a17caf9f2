"""Equivalent models of a route: ordered (or weighted) alternatives at the same price tier.

A route may be served by several interchangeable models (``gpt-4o-mini`` at OpenAI,
``claude-haiku`` at Anthropic, a local model). When one fails with an error that
``escalate_on`` covers, the call tries the route's next equivalent before it escalates
to a stronger route. :class:`RouteEquivalents` is the plain, framework-free description
of that: route name -> ordered :class:`EquivalentModel` specs. Both integrations and
``langroute serve`` build one; code outside the frameworks (an HTTP fast path) reads it
with :meth:`RouteEquivalents.attempt_order` and consults the same
:class:`~langroute.dispatch.breakers.BreakerRegistry`.

Each attempt of a call is a :class:`RouteTarget`: a route name (a ``str``, so code that
looks a route up by name keeps working) that also says which equivalent to call.

Example:
    >>> equivalents = RouteEquivalents({
    ...     "small": [EquivalentModel(name="gpt-4o-mini"), EquivalentModel(name="claude-haiku")],
    ...     "large": [EquivalentModel(name="gpt-4o")],
    ... })
    >>> [(t, t.index, t.model) for t in equivalents.attempt_order(["small", "large"])]
    [('small', 0, 'gpt-4o-mini'), ('small', 1, 'claude-haiku'), ('large', 0, 'gpt-4o')]
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langroute.errors import RouterConfigError

__all__ = ["EquivalentModel", "RouteEquivalents", "RouteTarget", "weighted_order"]


class EquivalentModel(BaseModel):
    """One model of a route.

    Attributes:
        name: The model's name (priced by it, named in attempts and ledger rows).
        weight: Relative share of first attempts among the route's equivalents; when
            all weights are equal the declared order is kept.
        breaker_key: What its circuit breaker is keyed by (default: ``name``); give the
            provider too (``"azure/gpt-4o-mini"``) when one model name is served by two
            providers that fail independently.
        continue_streams: Whether a stream of this model that breaks after text may be
            continued on the next model (see :meth:`Escalation.stream`).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    weight: float = Field(default=1.0, gt=0)
    breaker_key: str | None = None
    continue_streams: bool = True

    @property
    def key(self) -> str:
        """The key of this model's circuit breaker."""
        return self.breaker_key or self.name


class RouteTarget(str):
    """A route name that also says which of the route's equivalent models to call.

    It compares and hashes as the route name, so ``models[target]`` and
    ``target == "small"`` behave as before; ``index`` picks the equivalent, ``model``
    names it (``None``: the route's only model).

    Example:
        >>> target = RouteTarget("small", 1, "claude-haiku")
        >>> target == "small", target.route, target.index, target.model
        (True, 'small', 1, 'claude-haiku')
    """

    index: int
    model: str | None
    spec: EquivalentModel | None

    def __new__(
        cls,
        route: str,
        index: int = 0,
        model: str | None = None,
        spec: EquivalentModel | None = None,
    ) -> RouteTarget:
        """A target of ``route``: its equivalent ``index``, named ``model``."""
        target = super().__new__(cls, route)
        target.index = index
        target.model = model
        target.spec = spec
        return target

    @property
    def route(self) -> str:
        """The route name as a plain ``str``."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return str.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RouteTarget, (self.route, self.index, self.model, self.spec))


def weighted_order(
    models: Sequence[EquivalentModel], rng: random.Random | None = None
) -> list[int]:
    """Indices of ``models`` in the order to try them.

    Equal weights keep the declared order; otherwise a weighted shuffle: each next
    model is drawn with probability proportional to its weight among those left.

    Example:
        >>> weighted_order([EquivalentModel(name="a"), EquivalentModel(name="b")])
        [0, 1]
        >>> order = weighted_order(
        ...     [EquivalentModel(name="a", weight=1), EquivalentModel(name="b", weight=3)],
        ...     random.Random(0))
        >>> sorted(order)
        [0, 1]
    """
    if len({model.weight for model in models}) <= 1:
        return list(range(len(models)))
    draw = rng or random
    left = list(range(len(models)))
    order: list[int] = []
    while left:
        pick = draw.choices(left, weights=[models[i].weight for i in left])[0]
        order.append(pick)
        left.remove(pick)
    return order


class RouteEquivalents:
    """Route name -> its ordered equivalent models: what each call may try, in order.

    Args:
        routes: Route -> its models, preferred first (a route missing here, or given an
            empty list, has one model that the integration names).
        rng: The random source of weighted orders (tests pass a seeded one).
        reorder: A policy that may reorder a route's equivalents per call (given the
            route and the indices in their weighted order), e.g.
            :class:`~langroute.dispatch.latency.LatencyPolicy`.

    Raises:
        RouterConfigError: A route lists the same model twice.
    """

    def __init__(
        self,
        routes: Mapping[str, Sequence[EquivalentModel]],
        *,
        rng: random.Random | None = None,
        reorder: Any = None,
    ) -> None:
        self.routes: dict[str, list[EquivalentModel]] = {}
        for route, models in routes.items():
            keys = [model.key for model in models]
            if len(set(keys)) != len(keys):
                raise RouterConfigError(
                    f"route {route!r} lists a model twice: {keys} (give each a distinct "
                    "breaker_key if the same model name is served by two providers)"
                )
            self.routes[route] = list(models)
        self.rng = rng
        self.reorder = reorder

    @classmethod
    def of_names(cls, routes: Mapping[str, Iterable[str]]) -> RouteEquivalents:
        """Equivalents from model names only (declared order, equal weights)."""
        return cls({r: [EquivalentModel(name=n) for n in names] for r, names in routes.items()})

    def models(self, route: str) -> list[EquivalentModel]:
        """The models of ``route`` in declared order (empty: none declared)."""
        return list(self.routes.get(route, ()))

    def has_equivalents(self) -> bool:
        """Whether any route has more than one model."""
        return any(len(models) > 1 for models in self.routes.values())

    def order(self, route: str) -> list[int]:
        """The indices of ``route``'s models in the order one call tries them."""
        models = self.routes.get(route) or []
        order = weighted_order(models, self.rng)
        if self.reorder is not None and len(order) > 1:
            order = list(self.reorder(route, models, order))
        return order

    def attempt_order(self, path: Sequence[str]) -> list[RouteTarget]:
        """Every model one call may try along ``path`` (routes cheapest first), in order."""
        targets: list[RouteTarget] = []
        for route in path:
            models = self.routes.get(route) or []
            if not models:
                targets.append(RouteTarget(route))
                continue
            for index in self.order(route):
                targets.append(RouteTarget(route, index, models[index].name, models[index]))
        return targets

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON-safe ``{route: [model spec, ...]}`` (for ``/healthz`` and reports)."""
        return {
            route: [model.model_dump(mode="json") for model in models]
            for route, models in self.routes.items()
        }
