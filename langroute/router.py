"""The exemplar nearest-neighbour router."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langroute import rules
from langroute.decision import DecisionReason, Neighbour, RouteDecision
from langroute.embedders import CachedEmbedder, Embedder, as_embedder
from langroute.errors import InvalidQueryError, RouterConfigError
from langroute.exemplars import Exemplar, load_exemplars
from langroute.index import IndexKind, VectorIndex

STARTER_EXEMPLARS = Path(__file__).parent / "data" / "starter_exemplars.jsonl"


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
    weighting: rules.Weighting = "softmax"
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


class ExemplarRouter:
    """Routes queries by their nearest labelled exemplars.

    Routes are ordered cheapest first. Each query's ``k`` nearest exemplars vote (or
    estimate per-route quality from their scores); the ``threshold`` dial picks the
    cheapest route the evidence allows. A query far from every exemplar, or a decision
    too close to the dial, goes to the fallback route (the strongest by default).

    Example:
        >>> from langroute import Exemplar, ExemplarRouter
        >>> from langroute.embedders import HashingEmbedder
        >>> router = ExemplarRouter(
        ...     routes=["small", "large"],
        ...     exemplars=[
        ...         Exemplar(text="hello there", route="small"),
        ...         Exemplar(text="prove the theorem step by step", route="large"),
        ...     ],
        ...     embedder=HashingEmbedder(),
        ...     min_similarity=0.1,
        ... )
        >>> router.route("hello there friend").route
        'small'
    """

    def __init__(
        self,
        routes: Sequence[str] | None = None,
        exemplars: Iterable[Exemplar] = (),
        *,
        embedder: Any = None,
        settings: RouterSettings | None = None,
        show_progress: bool = False,
        **options: Any,
    ) -> None:
        exemplar_list = list(exemplars)
        if settings is None:
            if routes is None:
                routes = _routes_from_labels(exemplar_list)
            try:
                settings = RouterSettings(routes=list(routes), **options)
            except ValueError as exc:
                raise RouterConfigError(f"invalid router settings: {exc}") from exc
        elif routes is not None or options:
            raise RouterConfigError("pass either settings= or routes/options, not both")
        self.settings = settings
        base = as_embedder(embedder)
        self.embedder: Embedder = (
            CachedEmbedder(base, settings.cache_size)
            if settings.cache_size and not isinstance(base, CachedEmbedder)
            else base
        )
        self._lock = threading.RLock()
        self._exemplars: dict[str, Exemplar] = {}
        self._labels: dict[str, int] = {}  # exemplar id -> route index (-1: none)
        self._scores: dict[str, np.ndarray] = {}  # exemplar id -> scores in route order
        self._index: VectorIndex | None = None
        self._scored = 0  # exemplars carrying explicit scores (decides "auto" mode)
        if exemplar_list:
            self._check_exemplars(exemplar_list)
            self._check_coverage(exemplar_list)
            self.add_exemplars(exemplar_list, show_progress=show_progress)

    # -- construction helpers ---------------------------------------------------------

    @classmethod
    def default(cls, *, embedder: Any = None, cache: bool = True, **options: Any) -> ExemplarRouter:
        """The starter router: two routes, ``small`` and ``large``, from the bundled pack.

        The pack is a starting point; add your own exemplars to tune it. The embedded
        pack is cached on disk (under ``LANGROUTE_CACHE_DIR``, else
        ``~/.cache/langroute``), keyed by the pack's content and the embedder, so later
        calls load it instead of embedding 476 texts again; ``cache=False`` skips that.
        Changes you make to the returned router are not written back to the cache.

        Example:
            >>> router = ExemplarRouter.default()  # doctest: +SKIP
            >>> router.route("Write a distributed rate limiter in Go").route  # doctest: +SKIP
            'large'
        """
        resolved = as_embedder(embedder)
        # Settings fixed at build time cannot be applied to a cached copy.
        cacheable = cache and not {"routes", "index", "score_keys", "settings"} & set(options)
        path = _starter_cache_path(resolved) if cacheable else None
        if path is not None and path.is_dir():
            from langroute.errors import RouterStoreError

            try:
                router = cls.load(path, embedder=resolved)
            except RouterStoreError:
                pass  # stale or damaged copy: rebuild and replace it below
            else:
                if options:
                    router.configure(**options)
                return router
        router = cls(
            routes=["small", "large"],
            exemplars=load_exemplars(STARTER_EXEMPLARS),
            embedder=resolved,
            **options,
        )
        if path is not None:
            try:
                router.save(path)
            except OSError as exc:  # a read-only home must not stop routing
                warnings.warn(f"could not cache the starter router at {path}: {exc}", stacklevel=2)
        return router

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        routes: Sequence[str] | None = None,
        *,
        embedder: Any = None,
        **options: Any,
    ) -> ExemplarRouter:
        """Build a router from a JSONL or CSV exemplar file.

        Example:
            >>> router = ExemplarRouter.from_file("ex.jsonl", routes=["small", "large"])
        """
        return cls(routes=routes, exemplars=load_exemplars(path), embedder=embedder, **options)

    @property
    def routes(self) -> list[str]:
        """Route names, cheapest first."""
        return list(self.settings.routes)

    @property
    def fallback(self) -> str:
        """The route uncertain queries go to."""
        return self.settings.fallback_route

    @property
    def threshold(self) -> float:
        """The dial: higher sends more traffic to cheaper routes."""
        return self.settings.threshold_for(self.mode)

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise RouterConfigError(f"threshold must be in [0, 1], got {value}")
        self.settings = self.settings.model_copy(update={"threshold": float(value)})

    def configure(self, **changes: Any) -> None:
        """Change settings (validated) without rebuilding, e.g. ``configure(k=20)``.

        Routes and the index kind cannot change on a built router.
        """
        frozen = {"routes", "index", "score_keys"} & set(changes)
        if frozen and self._exemplars:
            raise RouterConfigError(f"cannot change {sorted(frozen)} on a router with exemplars")
        try:
            self.settings = RouterSettings.model_validate(self.settings.model_dump() | changes)
        except ValueError as exc:
            raise RouterConfigError(f"invalid router settings: {exc}") from exc

    @property
    def mode(self) -> Literal["vote", "scores"]:
        """The mode in force (``auto`` resolved)."""
        if self.settings.mode != "auto":
            return self.settings.mode
        return "scores" if self._scored else "vote"

    def __len__(self) -> int:
        return len(self._exemplars)

    @property
    def exemplars(self) -> list[Exemplar]:
        """All exemplars, in insertion order."""
        with self._lock:
            return list(self._exemplars.values())

    def counts(self) -> dict[str, int]:
        """How many exemplars vote for each route."""
        with self._lock:
            counts = dict.fromkeys(self.settings.routes, 0)
            for label in self._labels.values():
                if label >= 0:
                    counts[self.settings.routes[label]] += 1
            return counts

    # -- tuning at run time --------------------------------------------------------------

    def _check_exemplars(self, exemplars: Sequence[Exemplar]) -> None:
        routes = self.settings.routes
        for ex in exemplars:
            if ex.route is not None and ex.route not in routes:
                raise RouterConfigError(
                    f"exemplar {ex.id} ({ex.text[:60]!r}) has route {ex.route!r}, "
                    f"which is not one of the routes {routes}"
                )
            if ex.route is None and ex.route_scores(routes, self.settings.score_keys) is None:
                keys = [self.settings.score_keys.get(r, r) for r in routes]
                raise RouterConfigError(
                    f"exemplar {ex.id} ({ex.text[:60]!r}) has no route and no scores for "
                    f"every route (expected score keys {keys})"
                )

    def _check_coverage(self, exemplars: Sequence[Exemplar]) -> None:
        """In vote mode every route but the fallback needs at least one exemplar."""
        if self.settings.mode == "scores" or any(ex.scores for ex in exemplars):
            return
        labelled = {
            ex.label_for(self.settings.routes, self.settings.score_keys) for ex in exemplars
        }
        empty = [r for r in self.settings.routes if r not in labelled and r != self.fallback]
        if empty:
            raise RouterConfigError(
                f"routes {empty} have no exemplars, so no query could ever reach them; "
                "add exemplars for them or remove the routes"
            )

    def add_exemplars(
        self, exemplars: Iterable[Exemplar] | Exemplar, *, show_progress: bool = False
    ) -> list[str]:
        """Embed and add exemplars; an existing id is replaced. Returns the ids.

        Safe while other threads route: they see the set before or after the batch.

        Example:
            >>> router.add_exemplars([Exemplar(text="summarise this", route="small")])
        """
        batch = [exemplars] if isinstance(exemplars, Exemplar) else list(exemplars)
        if not batch:
            return []
        self._check_exemplars(batch)
        unique: dict[str, Exemplar] = {}
        for ex in batch:  # the same id twice in one batch: the later wins
            unique[ex.id] = ex
        batch = list(unique.values())
        vectors = self._embed_documents([self._prepare(ex.text)[0] for ex in batch], show_progress)
        routes, keys = self.settings.routes, self.settings.score_keys
        with self._lock:
            if self._index is None:
                self._index = VectorIndex(vectors.shape[1], self.settings.index)
            self._index.add([ex.id for ex in batch], vectors)
            for ex in batch:
                previous = self._exemplars.get(ex.id)
                self._scored += bool(ex.scores) - bool(previous is not None and previous.scores)
                self._exemplars[ex.id] = ex
                label = ex.label_for(routes, keys)
                self._labels[ex.id] = routes.index(label) if label in routes else -1
                scores = ex.route_scores(routes, keys)
                self._scores[ex.id] = (
                    np.asarray(scores, dtype=np.float64)
                    if scores is not None
                    else np.full(len(routes), np.nan)
                )
        return [ex.id for ex in batch]

    def _embed_documents(self, texts: list[str], show_progress: bool) -> np.ndarray:
        if not show_progress or len(texts) <= 256:
            return self.embedder.embed_documents(texts)
        from rich.progress import Progress

        parts = []
        with Progress(transient=True) as progress:
            task = progress.add_task("Embedding exemplars", total=len(texts))
            for start in range(0, len(texts), 256):
                chunk = texts[start : start + 256]
                parts.append(self.embedder.embed_documents(chunk))
                progress.advance(task, len(chunk))
        return np.concatenate(parts)

    def remove_exemplars(self, ids: Iterable[str]) -> int:
        """Remove exemplars by id; unknown ids are ignored. Returns how many were removed.

        Refuses (and removes nothing) if a route other than the fallback would be left
        without exemplars in vote mode.
        """
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            present = [i for i in wanted if i in self._exemplars]
            gone = set(present)
            remaining = [ex for key, ex in self._exemplars.items() if key not in gone]
            if present and remaining:
                self._check_coverage(remaining)
            if present and self._index is not None:
                self._index.remove(present)
            for key in present:
                self._scored -= bool(self._exemplars[key].scores)
                del self._exemplars[key]
                del self._labels[key]
                del self._scores[key]
            return len(present)

    def feedback(
        self,
        query: str,
        route: str,
        *,
        weight: float = 1.0,
        metadata: Mapping[str, Any] | None = None,
    ) -> Exemplar:
        """Record that ``route`` was right for ``query``: adds (or replaces) a labelled exemplar.

        Example:
            >>> router.feedback("Draft a 3-year hiring plan", "large")  # doctest: +SKIP
        """
        if route not in self.settings.routes:
            raise RouterConfigError(f"unknown route {route!r}; routes are {self.settings.routes}")
        exemplar = Exemplar(
            text=self._check_query(query),
            route=route,
            weight=weight,
            metadata={"source": "feedback", **(metadata or {})},
        )
        self.add_exemplars([exemplar])
        return exemplar

    # -- routing ---------------------------------------------------------------------------

    @staticmethod
    def _check_query(query: Any) -> str:
        if not isinstance(query, str):
            raise InvalidQueryError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise InvalidQueryError("query is empty or whitespace")
        return query

    def _prepare(self, query: str) -> tuple[str, bool]:
        """Cut very long text to what the encoder can use: the head and the tail."""
        limit = self.settings.max_query_chars
        if len(query) <= limit:
            return query, False
        head = (limit * 3) // 5
        tail = limit - head - 3
        return f"{query[:head]} … {query[-tail:]}", True

    def route(self, query: str) -> RouteDecision:
        """Route one query.

        Raises:
            InvalidQueryError: for an empty or whitespace query.
            RouterConfigError: when the router has no exemplars.

        Example:
            >>> decision = router.route("Translate 'thank you' into Japanese")  # doctest: +SKIP
            >>> decision.route, decision.reason  # doctest: +SKIP
            ('small', 'vote')
        """
        return self.route_batch([query])[0]

    def route_batch(self, queries: Sequence[str]) -> list[RouteDecision]:
        """Route many queries with one batched embedding call and one index search."""
        if isinstance(queries, str):
            raise TypeError("route_batch takes a sequence of queries, not a string")
        start = time.perf_counter()
        prepared = [self._prepare(self._check_query(q)) for q in queries]
        if not prepared:
            return []
        if not self._exemplars:
            raise RouterConfigError("the router has no exemplars: add some before routing")
        vectors = self.embedder.embed_queries([text for text, _ in prepared])
        embedded = time.perf_counter()
        settings = self.settings
        with self._lock:
            if self._index is None:  # pragma: no cover - guarded above
                raise RouterConfigError("the router has no exemplars")
            sims, keys = self._index.search(vectors, settings.k)
            exemplars = [[self._exemplars[key] for key in row] for row in keys]
            labels = np.array([[self._labels[key] for key in row] for row in keys], dtype=np.int64)
            n_routes = len(settings.routes)
            scores = (
                np.stack([np.stack([self._scores[key] for key in row]) for row in keys])
                if keys and keys[0]
                else np.zeros((len(keys), 0, n_routes))
            )
        searched = time.perf_counter()
        labels = labels.reshape(len(keys), -1)
        decisions = self._decide(sims, exemplars, labels, scores, prepared, settings)
        done = time.perf_counter()
        n = len(decisions)
        timings = {
            "embed": (embedded - start) * 1000 / n,
            "search": (searched - embedded) * 1000 / n,
            "decide": (done - searched) * 1000 / n,
        }
        elapsed = (done - start) * 1000 / n
        return [
            d.model_copy(update={"elapsed_ms": elapsed, "timings_ms": timings}) for d in decisions
        ]

    def _decide(
        self,
        sims: np.ndarray,
        exemplars: list[list[Exemplar]],
        labels: np.ndarray,
        scores: np.ndarray,
        prepared: list[tuple[str, bool]],
        settings: RouterSettings,
    ) -> list[RouteDecision]:
        routes = settings.routes
        mode = self.mode
        threshold = settings.threshold_for(mode)
        sims64 = sims.astype(np.float64)
        ex_weights = np.array([[ex.weight for ex in row] for row in exemplars], dtype=np.float64)
        ex_weights = ex_weights.reshape(sims.shape)
        weights = rules.neighbour_weights(
            sims64, ex_weights, settings.weighting, settings.temperature, settings.power
        )
        if settings.local_k is not None:
            weights = rules.keep_nearest(weights, settings.local_k)
        by_length = None
        if settings.length_weight > 0:
            limit = settings.max_query_chars
            by_length = rules.length_weights(
                np.array([len(text) for text, _ in prepared]),
                np.array([[min(len(ex.text), limit) for ex in row] for row in exemplars]).reshape(
                    sims.shape
                ),
                ex_weights,
                settings.length_scale,
            )
        probabilities = rules.vote(weights, labels, len(routes))
        estimates = rules.estimate(weights, scores) if mode == "scores" else None
        if by_length is not None:
            length_vote = rules.vote(by_length, labels, len(routes))
            probabilities = rules.blend(probabilities, length_vote, settings.length_weight)
            if estimates is not None:
                length_estimates = rules.estimate(by_length, scores)
                estimates = rules.blend(estimates, length_estimates, settings.length_weight)
        if settings.rule == "argmax":
            evidence = estimates if estimates is not None else probabilities
            filled = np.nan_to_num(evidence, nan=-1.0)
            chosen = filled.argmax(axis=1)
            ordered = np.sort(filled, axis=1)
            margin = ordered[:, -1] - (ordered[:, -2] if len(routes) > 1 else 0.0)
            confidence = probabilities[np.arange(len(chosen)), chosen]
            escalation = 1.0 - probabilities[:, 0]
        else:
            if estimates is not None and settings.loss_weight != 1.0:
                boundary = rules.escalation_from_scores(weights, scores, settings.loss_weight)
                if by_length is not None:
                    length_boundary = rules.escalation_from_scores(
                        by_length, scores, settings.loss_weight
                    )
                    boundary = rules.blend(boundary, length_boundary, settings.length_weight)
            elif estimates is not None:
                boundary = rules.escalation_from_estimates(estimates)
            else:
                boundary = rules.escalation_from_probabilities(probabilities)
            chosen = rules.choose_by_threshold(boundary, threshold)
            margin = rules.decision_margin(boundary, chosen, threshold)
            confidence = rules.confidence_of(boundary, chosen)
            escalation = boundary[:, 0] if boundary.shape[1] else np.zeros(len(chosen))
        fallback = settings.fallback_route
        fallback_index = routes.index(fallback)
        decisions = []
        for row, (text, truncated) in enumerate(prepared):
            max_sim = float(sims[row, 0]) if sims.shape[1] else -1.0
            route_index = int(chosen[row])
            reason: DecisionReason = "scores" if mode == "scores" else "vote"
            if max_sim < settings.min_similarity:
                route_index, reason = fallback_index, "out_of_distribution"
            elif margin[row] < settings.min_margin - 1e-6 and (
                settings.rule == "argmax" or fallback_index > route_index
            ):
                route_index, reason = fallback_index, "low_confidence"
            neighbours = [
                Neighbour.model_construct(
                    id=ex.id,
                    text=ex.text,
                    similarity=float(sims[row, col]),
                    route=routes[labels[row, col]] if labels[row, col] >= 0 else None,
                    scores=ex.scores,
                    weight=ex.weight,
                )
                for col, ex in enumerate(exemplars[row])
            ]
            decisions.append(
                RouteDecision.model_construct(
                    route=routes[route_index],
                    confidence=float(np.clip(confidence[row], 0.0, 1.0)),
                    reason=reason,
                    mode=mode,
                    probabilities={r: float(p) for r, p in zip(routes, probabilities[row])},
                    estimates=(
                        {r: float(e) for r, e in zip(routes, estimates[row]) if not np.isnan(e)}
                        if estimates is not None
                        else {}
                    ),
                    escalation=float(escalation[row]),
                    threshold=threshold,
                    neighbours=neighbours,
                    max_similarity=max_sim,
                    query=text,
                    truncated=truncated,
                    elapsed_ms=0.0,
                    timings_ms={},
                )
            )
        return decisions

    async def aroute(self, query: str) -> RouteDecision:
        """Async :meth:`route` (runs in a worker thread; the event loop is not blocked)."""
        return await asyncio.to_thread(self.route, query)

    async def aroute_batch(self, queries: Sequence[str]) -> list[RouteDecision]:
        """Async :meth:`route_batch`."""
        return await asyncio.to_thread(self.route_batch, list(queries))

    def forced(self, route: str) -> RouteDecision:
        """A decision for a route named by the caller (``reason="forced"``)."""
        if route not in self.settings.routes:
            raise RouterConfigError(f"unknown route {route!r}; routes are {self.settings.routes}")
        return RouteDecision(route=route, confidence=1.0, reason="forced", threshold=self.threshold)

    def fallback_decision(self, reason: DecisionReason = "no_query") -> RouteDecision:
        """A decision for the fallback route, when there is nothing to route on."""
        return RouteDecision(
            route=self.fallback, confidence=0.0, reason=reason, threshold=self.threshold
        )

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save to a directory: FAISS index, exemplars JSONL and a manifest; atomic.

        Example:
            >>> router.save("routers/support")  # doctest: +SKIP
        """
        from langroute.store import save_router

        return save_router(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, *, embedder: Any = None) -> ExemplarRouter:
        """Load a saved router without re-embedding; the embedder must match the saved one.

        Example:
            >>> router = ExemplarRouter.load("routers/support")  # doctest: +SKIP
        """
        from langroute.store import load_router

        return load_router(cls, Path(path), embedder)

    def _restore(
        self, exemplars: list[Exemplar], index: VectorIndex
    ) -> None:  # used by langroute.store
        routes, keys = self.settings.routes, self.settings.score_keys
        self._check_exemplars(exemplars)
        with self._lock:
            self._index = index
            self._exemplars = {ex.id: ex for ex in exemplars}
            self._scored = sum(bool(ex.scores) for ex in exemplars)
            for ex in exemplars:
                label = ex.label_for(routes, keys)
                self._labels[ex.id] = routes.index(label) if label in routes else -1
                scores = ex.route_scores(routes, keys)
                self._scores[ex.id] = (
                    np.asarray(scores, dtype=np.float64)
                    if scores is not None
                    else np.full(len(routes), np.nan)
                )

    def __repr__(self) -> str:
        return (
            f"ExemplarRouter(routes={self.routes}, exemplars={len(self)}, mode={self.mode!r}, "
            f"k={self.settings.k}, threshold={self.threshold})"
        )


def _starter_cache_path(embedder: Embedder) -> Path:
    """Cache folder of the embedded starter pack for one embedder."""
    import hashlib

    from langroute.embedders import cache_dir
    from langroute.store import FORMAT_VERSION

    digest = hashlib.sha256(STARTER_EXEMPLARS.read_bytes())
    digest.update(f"|{embedder.fingerprint}|{embedder.dimension}|{FORMAT_VERSION}".encode())
    return cache_dir() / "starter" / digest.hexdigest()[:16]


def _routes_from_labels(exemplars: Sequence[Exemplar]) -> list[str]:
    routes = list(dict.fromkeys(ex.route for ex in exemplars if ex.route is not None))
    if not routes:
        raise RouterConfigError(
            "no routes given and no exemplar has a route label: pass routes=[...] cheapest first"
        )
    if len(routes) > 1:
        warnings.warn(
            f"routes inferred from labels in order of first appearance: {routes}; pass "
            "routes=[...] cheapest first to make the order explicit",
            stacklevel=3,
        )
    return routes
