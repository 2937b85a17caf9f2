"""What the integrations need from a router: the :class:`Router` protocol.

:class:`~langroute.router.ExemplarRouter` implements it; so can anything else (a rules
router, a remote router) that the integrations should drive.

Example:
    >>> from langroute import Exemplar, ExemplarRouter
    >>> from langroute.embedders import HashingEmbedder
    >>> router = ExemplarRouter(
    ...     routes=["small", "large"],
    ...     exemplars=[Exemplar(text="hi", route="small")],
    ...     embedder=HashingEmbedder(),
    ... )
    >>> isinstance(router, Router)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from langroute.router.decision import DecisionReason, RouteDecision

__all__ = ["Router"]


@runtime_checkable
class Router(Protocol):
    """A router the integrations can drive: routes cheapest first, and decisions."""

    @property
    def routes(self) -> list[str]:
        """Route names, cheapest first."""
        ...

    def route(self, query: str) -> RouteDecision:
        """Decide one query."""
        ...

    def route_batch(self, queries: Sequence[str]) -> list[RouteDecision]:
        """Decide many queries at once."""
        ...

    async def aroute(self, query: str) -> RouteDecision:
        """Async :meth:`route`."""
        ...

    async def aroute_batch(self, queries: Sequence[str]) -> list[RouteDecision]:
        """Async :meth:`route_batch`."""
        ...

    def forced(self, route: str) -> RouteDecision:
        """A decision for a route named by the caller."""
        ...

    def fallback_decision(self, reason: DecisionReason = "no_query") -> RouteDecision:
        """A decision for the fallback route, when there is nothing to route on."""
        ...
