"""Every knob of a router, validated; saved in a router's manifest.

Example:
    >>> settings = RouterSettings(routes=["small", "large"], k=20)
    >>> settings.threshold_for("vote"), settings.fallback_route
    (0.5, 'large')
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langroute.router.index import IndexKind
from langroute.router.votes import Weighting


class RouterSettings(BaseModel):
    """Every knob of a router; saved in the manifest.

    Attributes:
        routes: route names ordered from cheapest to strongest.
        k: how many nearest exemplars decide.
        threshold: the dial. Higher sends more traffic to cheaper routes. In vote
            mode a route is kept while the vote share of stronger routes is below it;
            in scores mode it is ``0.5 + tolerance``: a stronger route is taken when it
            is expected to beat the cheaper one by at least ``tolerance``. Default:
            0.5 (vote) or 0.6 (scores).
        min_similarity: below this best similarity the query is out of distribution.
        min_margin: a decision closer than this to the dial escalates to the fallback.
        fallback: route for uncertain queries (default: the strongest).
        mode: ``vote`` on labels, ``scores`` on per-route quality, ``auto`` picks
            ``scores`` when any exemplar carries scores.
        rule: ``threshold`` (ordered routes, the dial) or ``argmax`` (unordered
            labels, e.g. intent classification: the most voted route wins).
        weighting / temperature: how neighbours' votes are weighted by similarity.
        power: exponent of ``weighting="power"`` (weight ``max(similarity, 0) ** power``).
        loss_weight: scores mode: how much a neighbour where the cheaper route scored
            higher counts against escalating, relative to one where the stronger route
            did (1: the plain difference of mean scores).
        local_k: only the ``local_k`` nearest of the ``k`` neighbours give the
            similarity-weighted evidence (None: all ``k``).
        length_weight / length_scale: blend in evidence from all ``k`` neighbours
            weighted by closeness of text length (``exp(-|log ratio| / length_scale)``),
            with this weight relative to the similarity-weighted evidence (0: off).
        score_keys: route -> key in ``Exemplar.scores`` when they differ.
        max_query_chars: longer queries are cut (head and tail kept) before embedding.
        index: ``flat`` (exact), ``hnsw`` (approximate) or ``auto`` (the default: flat,
            HNSW from 50k exemplars, with 8-bit vector codes from 200k).
        cache_size: LRU cache of query embeddings (0 disables).
        max_learned: the most learned exemplars (from cascade outcomes and feedback,
            see :mod:`langroute.router.learning`) kept; past it one is evicted per new one.
        learned_eviction: which learned exemplar goes first: ``least_confirmed`` (the
            fewest observed outcomes, the oldest among equals) or ``oldest``.
        max_learned_bytes: the most UTF-8 bytes of text the learned exemplars hold
            together; past it the first in ``learned_eviction`` order go. A learned
            exemplar keeps the query as it is routed on (cut to ``max_query_chars``).
        near_duplicate_similarity: an outcome on a query at least this similar to a
            hand-made exemplar is refused (recorded in ``ExemplarRouter.refused_outcomes``),
            so variants of it (case, spacing, invisible characters) cannot outvote it.
    """

    model_config = ConfigDict(extra="forbid")

    routes: list[str]
    k: int = Field(default=10, ge=1)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    min_similarity: float = Field(default=0.3, ge=-1.0, le=1.0)
    min_margin: float = Field(default=0.1, ge=0.0, le=1.0)
    fallback: str | None = None
    mode: Literal["auto", "vote", "scores"] = "auto"
    rule: Literal["threshold", "argmax"] = "threshold"
    weighting: Weighting = "softmax"
    temperature: float = Field(default=0.05, gt=0.0)
    power: float = Field(default=2.0, ge=0.0)
    loss_weight: float = Field(default=1.0, ge=0.0)
    local_k: int | None = Field(default=None, ge=1)
    length_weight: float = Field(default=0.0, ge=0.0)
    length_scale: float = Field(default=0.1, gt=0.0)
    score_keys: dict[str, str] = Field(default_factory=dict)
    max_query_chars: int = Field(default=1000, ge=50)
    index: IndexKind = "auto"
    cache_size: int = Field(default=4096, ge=0)
    max_learned: int = Field(default=10_000, ge=1)
    learned_eviction: Literal["least_confirmed", "oldest"] = "least_confirmed"
    max_learned_bytes: int = Field(default=32 * 2**20, ge=1)
    near_duplicate_similarity: float = Field(default=0.98, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_routes(self) -> RouterSettings:
        if not self.routes:
            raise ValueError("at least one route is required")
        if len(set(self.routes)) != len(self.routes):
            raise ValueError(f"route names must be unique: {self.routes}")
        if any(not route.strip() for route in self.routes):
            raise ValueError("route names must not be empty")
        if self.fallback is not None and self.fallback not in self.routes:
            raise ValueError(f"fallback {self.fallback!r} is not one of the routes {self.routes}")
        unknown = set(self.score_keys) - set(self.routes)
        if unknown:
            raise ValueError(f"score_keys name unknown routes: {sorted(unknown)}")
        return self

    def threshold_for(self, mode: Literal["vote", "scores"]) -> float:
        """The dial in force for ``mode`` (the per-mode default when unset)."""
        if self.threshold is not None:
            return self.threshold
        return 0.6 if mode == "scores" else 0.5

    @property
    def fallback_route(self) -> str:
        """The configured fallback, or the strongest route."""
        return self.fallback if self.fallback is not None else self.routes[-1]

    def prepare(self, query: str) -> tuple[str, bool]:
        """Cut a very long query to what the encoder can use: the head and the tail.

        Returns the text to embed and whether it was cut.

        Example:
            >>> RouterSettings(routes=["a"], max_query_chars=50).prepare("x" * 80)[1]
            True
        """
        limit = self.max_query_chars
        if len(query) <= limit:
            return query, False
        head = (limit * 3) // 5
        tail = limit - head - 3
        return f"{query[:head]} … {query[-tail:]}", True
