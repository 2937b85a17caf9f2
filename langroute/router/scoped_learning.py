"""What one caller taught, applied to that caller's routing only.

A shared router that learns from every caller's feedback lets one tenant re-route the
others. :class:`ScopedLearning` keeps each caller's (an API key's, a tenant's) learned
outcomes apart, as an overlay on the shared router: a decision for that caller moves to
the route its own feedback taught when the query is near a query it taught on, nearer
than any exemplar of the shared router. Other callers never see it; promotion to the
shared router is the server's business (an admin key, or a quorum of keys that agree).

The label of a taught query follows the shared router's rule
(:func:`~langroute.router.learning.learned_label`): a good answer labels it the route
that gave it, a bad one the next stronger route, and later outcomes on the same text
update its counts.

A query is embedded once: the overlay uses the vector the shared router made for its
decision (:attr:`~langroute.router.decision.RouteDecision.query_vector`) and embeds the
query itself only when the decision carries none (a router that keeps no vectors).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langroute.errors import RouterConfigError

if TYPE_CHECKING:
    import numpy as np

    from langroute.router.decision import RouteDecision

__all__ = ["DEFAULT_SCOPED_SIMILARITY", "ScopedLearning", "TaughtQuery"]

DEFAULT_SCOPED_SIMILARITY = 0.8
"""Cosine similarity a query needs to a caller's taught query for it to count."""


@dataclass
class TaughtQuery:
    """One query a caller taught: its outcomes per route and the label they give."""

    text: str
    route: str
    outcomes: dict[str, list[int]] = field(default_factory=dict)  # route -> [good, bad]


@dataclass
class _Scope:
    taught: OrderedDict[str, TaughtQuery] = field(default_factory=OrderedDict)
    vectors: dict[str, Any] = field(default_factory=dict)
    matrix: Any = None  # the vectors stacked in ``taught`` order (rebuilt after a change)
    chars: int = 0


class ScopedLearning:
    """Per-caller learned outcomes, as an overlay on a shared router (thread-safe).

    Args:
        router: The shared router (its ``routes``, cheapest first, and its ``embedder``).
        min_similarity: Cosine similarity to a taught query needed for it to apply.
        max_per_scope: Taught queries kept per caller (the least recently taught go).
        max_scopes: Callers kept (the least recently teaching go).
        max_chars: Characters of taught text kept per caller (and of one query).

    Example:
        >>> scoped = ScopedLearning(router)  # doctest: +SKIP
        >>> scoped.learn("key-a", "capital of France?", "small", good=False)  # doctest: +SKIP
        'large'
        >>> scoped.adjust("key-a", "capital of France?", decision).route  # doctest: +SKIP
        'large'
        >>> scoped.adjust("key-b", "capital of France?", decision).route  # doctest: +SKIP
        'small'
    """

    def __init__(
        self,
        router: Any,
        *,
        min_similarity: float = DEFAULT_SCOPED_SIMILARITY,
        max_per_scope: int = 200,
        max_scopes: int = 10_000,
        max_chars: int = 200_000,
    ) -> None:
        if not hasattr(router, "embedder"):
            raise RouterConfigError(
                f"scoped learning needs a router with an embedder; got {type(router).__name__}"
            )
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {min_similarity!r}")
        if max_per_scope < 1 or max_scopes < 1 or max_chars < 1:
            raise ValueError("max_per_scope, max_scopes and max_chars must be at least 1")
        self.router = router
        self.min_similarity = min_similarity
        self.max_per_scope = max_per_scope
        self.max_scopes = max_scopes
        self.max_chars = max_chars
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def routes(self) -> list[str]:
        """The shared router's routes, cheapest first."""
        return list(self.router.routes)

    def has(self, scope: str | None) -> bool:
        """Whether ``scope`` taught anything (an overlay costs nothing otherwise)."""
        if scope is None:
            return False
        with self._lock:
            return scope in self._scopes

    def taught(self, scope: str) -> list[TaughtQuery]:
        """What ``scope`` taught, oldest first."""
        with self._lock:
            found = self._scopes.get(scope)
            return list(found.taught.values()) if found is not None else []

    def _embedded_text(self, query: str) -> str:
        """What the router embeds for ``query`` (cleaned, and cut as its settings cut it).

        Raises:
            InvalidQueryError: ``query`` has no visible text.
        """
        from langroute.router.query_text import clean_query

        text = clean_query(query[: self.max_chars])
        settings = getattr(self.router, "settings", None)
        return settings.prepare(text)[0] if hasattr(settings, "prepare") else text

    @staticmethod
    def _unit(vector: Any) -> np.ndarray:
        import numpy as np

        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _vector(self, query: str) -> np.ndarray:
        vector = self.router.embedder.embed_queries([self._embedded_text(query)])
        return self._unit(vector)

    def learn(self, scope: str, query: str, route: str, *, good: bool) -> str | None:
        """Teach ``scope``'s routing one outcome: ``route``'s answer to ``query`` was good or bad.

        Returns:
            The route ``query`` is now labelled for ``scope``; ``None`` for a query with
            no text to route on.

        Raises:
            RouterConfigError: ``route`` is not a route of the router.
        """
        from langroute.router.learning import learned_label
        from langroute.router.query_text import has_visible_text

        routes = self.routes
        if route not in routes:
            raise RouterConfigError(f"unknown route {route!r}; routes are {routes}")
        text = query[: self.max_chars]
        if not has_visible_text(text):
            return None
        vector = self._vector(text)
        with self._lock:
            found = self._scopes.pop(scope, None) or _Scope()
            self._scopes[scope] = found  # the most recent teacher last
            entry = found.taught.pop(text, None)
            if entry is None:
                entry = TaughtQuery(text=text, route=route)
                found.chars += len(text)
            pair = entry.outcomes.setdefault(route, [0, 0])
            pair[0 if good else 1] += 1
            entry.outcomes = {
                name: entry.outcomes[name] for name in routes if name in entry.outcomes
            }
            entry.route = learned_label(entry.outcomes, routes)
            found.taught[text] = entry
            found.vectors[text] = vector
            while len(found.taught) > self.max_per_scope or found.chars > self.max_chars:
                oldest, _ = found.taught.popitem(last=False)
                found.vectors.pop(oldest, None)
                found.chars -= len(oldest)
            found.matrix = None
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)
            return entry.route

    def nearest(
        self, scope: str | None, query: str, *, vector: Any = None
    ) -> tuple[TaughtQuery, float] | None:
        """``scope``'s taught query nearest to ``query`` and its similarity (``None``: none).

        Args:
            scope: The caller.
            query: The query.
            vector: ``query``'s embedding, when the router already made it (else it is
                embedded here).
        """
        import numpy as np

        if not self.has(scope) or not query:
            return None
        vector = self._vector(query) if vector is None else self._unit(vector)
        with self._lock:
            found = self._scopes.get(scope) if scope is not None else None
            if found is None or not found.taught:
                return None
            if found.matrix is None:
                found.matrix = np.stack([found.vectors[text] for text in found.taught])
            similarities = found.matrix @ vector
            best = int(np.argmax(similarities))
            entry = list(found.taught.values())[best]
            return entry, float(similarities[best])

    def adjust(
        self, scope: str | None, query: str | None, decision: RouteDecision
    ) -> RouteDecision:
        """``decision`` for ``scope``, moved to what ``scope`` taught if it applies.

        It applies when ``query`` is within ``min_similarity`` of a query ``scope``
        taught and at least as near to it as to the shared router's nearest exemplar;
        the decision then takes the taught label, with reason ``"scoped_learned"`` and a
        ``stage_note`` naming the taught query. The decision's ``query_vector`` is used
        when it is the embedding of ``query`` (no second embedding).
        """
        from langroute.errors import InvalidQueryError

        if query is None or decision.route not in self.routes or not self.has(scope):
            return decision
        try:
            text = self._embedded_text(query)
        except InvalidQueryError:
            return decision
        vector = decision.query_vector if decision.query == text else None
        near = self.nearest(scope, query, vector=vector)
        if near is None:
            return decision
        entry, similarity = near
        shared = decision.max_similarity if decision.max_similarity is not None else -1.0
        if similarity < self.min_similarity or similarity < shared:
            return decision
        if entry.route == decision.route:
            return decision
        shown = entry.text if len(entry.text) <= 80 else entry.text[:77] + "..."
        return decision.model_copy(
            update={
                "route": entry.route,
                "reason": "scoped_learned",
                "stage_note": (
                    f"this caller's feedback on {shown!r} (similarity {similarity:.3f}) "
                    f"moved {decision.route!r} to {entry.route!r}"
                ),
            }
        )

    def forget(self, scopes: Sequence[str] | None = None) -> None:
        """Drop what ``scopes`` (default: every caller) taught."""
        with self._lock:
            if scopes is None:
                self._scopes.clear()
            for scope in scopes or ():
                self._scopes.pop(scope, None)
