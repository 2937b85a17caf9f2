"""The exemplar nearest-neighbour router."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from langroute.embedders import (
    CachedEmbedder,
    Embedder,
    as_embedder,
    embed_documents,
    load_encoder,
)
from langroute.errors import RouterConfigError
from langroute.router import engine
from langroute.router.batching import RequestBatcher
from langroute.router.decision import DecisionReason, RouteDecision
from langroute.router.exemplars import (
    Exemplar,
    check_one_kind,
    first_of_other_kind,
    load_exemplar_rows,
    load_exemplars,
    mixed_kinds_message,
)
from langroute.router.index import VectorIndex
from langroute.router.learning import RefusedOutcome, is_learned
from langroute.router.query_text import clean_query
from langroute.router.settings import RouterSettings

if TYPE_CHECKING:
    from langroute.costs import CostLedger
    from langroute.router.store import IndexSnapshot

__all__ = ["STARTER_EXEMPLARS", "ExemplarRouter", "RouterSettings"]

STARTER_EXEMPLARS = Path(__file__).parent.parent / "data" / "starter_exemplars.jsonl"
_NEAR_DUPLICATE_NEIGHBOURS = 16
"""Neighbours of a new learned text searched for a hand-made near-duplicate."""
_REFUSED_KEPT = 1000
"""Refused outcomes kept for inspection (the count goes on)."""
_REFUSED_TEXT_CHARS = 300
_Prepared = tuple[str, bool]  # the text routed on, and whether it was truncated


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
        self._text_ids: dict[str, set[str]] = {}  # exemplar text -> ids (dedup by text)
        self._learn_lock = threading.Lock()  # learning reads, then writes, one exemplar
        self._refused: deque[RefusedOutcome] = deque(maxlen=_REFUSED_KEPT)
        self.refused_count = 0
        """Outcomes refused by :meth:`learn` so far (the latest are in ``refused_outcomes``)."""
        self.batcher: RequestBatcher[tuple[_Prepared, float], RouteDecision] = RequestBatcher(
            self._route_queued
        )
        """Concurrent :meth:`route`/:meth:`aroute` calls share encoder batches through it
        (``router.batcher.max_wait_ms`` and ``max_batch`` are its knobs)."""
        self.calibration: dict[str, Any] | None = None
        """The record of the last :func:`langroute.evaluation.calibrate` (saved with it)."""
        self.tuning: dict[str, Any] | None = None
        """The record of the last :func:`langroute.evaluation.tune_router`: the settings
        it chose and their validation figures (saved with the router)."""
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
            >>> from langroute.embedders import HashingEmbedder
            >>> router = ExemplarRouter.from_file(
            ...     "ex.jsonl", routes=["small", "large"], embedder=HashingEmbedder()
            ... )
            >>> len(router)
            4
        """
        rows = load_exemplar_rows(path, routes=routes)
        check_one_kind(rows, path, options.get("mode", "auto"))
        exemplars = [ex for _, ex in rows]
        return cls(routes=routes, exemplars=exemplars, embedder=embedder, **options)

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

    @property
    def mode_reason(self) -> str:
        """Why the router is in its :attr:`mode`, in words (``langroute info`` shows it).

        Example:
            >>> router.mode, router.mode_reason
            ('vote', 'auto: no exemplar carries scores')
        """
        if self.settings.mode != "auto":
            return "set explicitly"
        with self._lock:
            scored, total = self._scored, len(self._exemplars)
        if not scored:
            return "auto: no exemplar carries scores"
        if scored == total:
            return "auto: every exemplar carries scores"
        return f"auto: {scored} of {total} exemplars carry scores (labels count as scores)"

    def __len__(self) -> int:
        return len(self._exemplars)

    def describe_index(self) -> str:
        """The FAISS structure in use, e.g. ``flat`` or ``hnsw-sq8(M=32,ef=128)``."""
        with self._lock:
            return self._index.describe() if self._index is not None else "empty"

    @property
    def exemplars(self) -> list[Exemplar]:
        """All exemplars, in insertion order."""
        with self._lock:
            return list(self._exemplars.values())

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Stored vectors of exemplars: of ``ids``, or of all in :attr:`exemplars` order.

        What tuning replays settings over, so a sweep never embeds again.

        Example:
            >>> router.vectors().shape[0] == len(router)
            True
        """
        with self._lock:
            if self._index is None:
                return np.zeros((0, self.embedder.dimension), dtype=np.float32)
            keys = list(self._exemplars) if ids is None else list(ids)
            return self._index.vectors(keys)

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

    def _check_one_kind(self, batch: Sequence[Exemplar]) -> None:
        """In mode ``auto``, refuse what would silently switch a labelled router to scores.

        A batch mixing labelled and scored exemplars, or scored exemplars joining a router
        whose exemplars are all labelled, is an error; labelled exemplars joining a scored
        router are fine (they count as scores, and the mode stays).
        """
        if self.settings.mode != "auto":
            return
        with self._lock:
            labelled = 0 if self._scored else len(self._exemplars)
        odd = first_of_other_kind(batch)
        if odd is None and labelled and batch[0].scores:
            odd = 0
        if odd is not None:
            scored = sum(bool(ex.scores) for ex in batch)
            raise RouterConfigError(
                f"exemplar {batch[odd].id} ({batch[odd].text[:60]!r}) "
                + mixed_kinds_message(batch[odd], labelled + len(batch) - scored, scored)
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
            >>> ids = router.add_exemplars([Exemplar(text="summarise this", route="small")])
            >>> len(ids)
            1
        """
        batch = [exemplars] if isinstance(exemplars, Exemplar) else list(exemplars)
        if not batch:
            return []
        self._check_exemplars(batch)
        self._check_one_kind(batch)
        unique: dict[str, Exemplar] = {}
        for ex in batch:  # the same id twice in one batch: the later wins
            unique[ex.id] = ex
        batch = list(unique.values())
        vectors = embed_documents(
            self.embedder,
            [self.settings.prepare(ex.text)[0] for ex in batch],
            show_progress=show_progress,
            label="Embedding exemplars",
        )
        return self.add_embedded(batch, vectors)

    def add_embedded(self, exemplars: Sequence[Exemplar], vectors: np.ndarray) -> list[str]:
        """Add exemplars whose vectors were embedded already (by this router's embedder).

        What a replica following a shared store uses: the vectors come with the
        exemplars, so nothing is embedded again. An existing id is replaced (within the
        batch, the later one wins). Returns the ids.

        Raises:
            RouterConfigError: A route unknown to the router, or not one vector of
                ``embedder.dimension`` values per exemplar.

        Example:
            >>> ex = Exemplar(text="say hi", route="small")
            >>> router.add_embedded([ex], router.embedder.embed_documents(["say hi"]))
            ['53eae7058490affd']
        """
        batch = list(exemplars)
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape != (len(batch), self.embedder.dimension):
            raise RouterConfigError(
                f"expected {len(batch)} vectors of {self.embedder.dimension} values, "
                f"got an array of shape {array.shape}"
            )
        if not batch:
            return []
        self._check_exemplars(batch)
        last = {ex.id: row for row, ex in enumerate(batch)}  # the same id twice: the later wins
        if len(last) < len(batch):
            batch = [batch[row] for row in last.values()]
            array = array[list(last.values())]
        with self._lock:
            if self._index is None:
                self._index = VectorIndex(array.shape[1], self.settings.index)
            self._index.add([ex.id for ex in batch], array)
            for ex in batch:
                self._remember(ex)
            # a hand-made exemplar replaces learned ones of the same text
            stale = [
                other
                for ex in batch
                if not is_learned(ex)
                for other in self._text_ids.get(ex.text, ())
                if other != ex.id and is_learned(self._exemplars[other])
            ]
            if stale:
                self._drop(stale)
        return [ex.id for ex in batch]

    def _remember(self, ex: Exemplar) -> None:
        """Keep ``ex`` and its label and scores in route order (call under the lock)."""
        routes, keys = self.settings.routes, self.settings.score_keys
        previous = self._exemplars.get(ex.id)
        self._scored += bool(ex.scores) - bool(previous is not None and previous.scores)
        if previous is not None:
            self._forget_text(previous)
        self._text_ids.setdefault(ex.text, set()).add(ex.id)
        self._exemplars[ex.id] = ex
        label = ex.label_for(routes, keys)
        self._labels[ex.id] = routes.index(label) if label in routes else -1
        scores = ex.route_scores(routes, keys)
        self._scores[ex.id] = (
            np.asarray(scores, dtype=np.float64)
            if scores is not None
            else np.full(len(routes), np.nan)
        )

    def _forget_text(self, ex: Exemplar) -> None:
        """Drop ``ex`` from the text -> ids map (call under the lock)."""
        ids = self._text_ids.get(ex.text)
        if ids is not None:
            ids.discard(ex.id)
            if not ids:
                del self._text_ids[ex.text]

    def _drop(self, ids: Sequence[str]) -> None:
        """Remove present exemplars without the coverage check (call under the lock)."""
        if ids and self._index is not None:
            self._index.remove(list(ids))
        for key in ids:
            ex = self._exemplars.pop(key)
            self._scored -= bool(ex.scores)
            self._forget_text(ex)
            del self._labels[key]
            del self._scores[key]

    def remove_exemplars(self, ids: Iterable[str] = (), *, source: str | None = None) -> int:
        """Remove exemplars by id, or all of one ``source``; returns how many were removed.

        Unknown ids are ignored. ``source`` matches ``metadata["source"]`` (learned
        exemplars have ``"cascade"``, ``"feedback"``, ...; see
        :meth:`exemplars_by_source`). Refuses (and removes nothing) if a route other
        than the fallback would be left without exemplars in vote mode.

        Example:
            >>> router.remove_exemplars(source="cascade")
            0
        """
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            if source is not None:
                wanted += [ex.id for ex in self.exemplars_by_source(source)]
            present = list(dict.fromkeys(i for i in wanted if i in self._exemplars))
            gone = set(present)
            remaining = [ex for key, ex in self._exemplars.items() if key not in gone]
            if present and remaining:
                self._check_coverage(remaining)
            self._drop(present)
            return len(present)

    def exemplars_by_source(self, source: str) -> list[Exemplar]:
        """The exemplars whose ``metadata["source"]`` is ``source``, in insertion order.

        Example:
            >>> [ex.route for ex in router.exemplars_by_source("cascade")]
            []
        """
        with self._lock:
            return [ex for ex in self._exemplars.values() if ex.metadata.get("source") == source]

    @property
    def learned_exemplars(self) -> list[Exemplar]:
        """The exemplars learned from outcomes (see :mod:`langroute.router.learning`)."""
        with self._lock:
            return [ex for ex in self._exemplars.values() if is_learned(ex)]

    @property
    def refused_outcomes(self) -> list[RefusedOutcome]:
        """The latest outcomes :meth:`learn` refused, and why (oldest first, bounded).

        Example:
            >>> router.refused_outcomes
            []
        """
        with self._lock:
            return list(self._refused)

    def _refuse(
        self, text: str, route: str, good: bool, source: str, near: Exemplar, similarity: float
    ) -> None:
        reason = (
            "a hand-made exemplar has this text"
            if similarity >= 1.0 and near.text == text
            else f"a near-duplicate (similarity {similarity:.4f}) of hand-made exemplar {near.id}"
        )
        refusal = RefusedOutcome(
            text=text[:_REFUSED_TEXT_CHARS],
            route=route,
            good=good,
            source=source,
            reason=reason,
            exemplar_id=near.id,
            similarity=similarity,
        )
        with self._lock:
            self._refused.append(refusal)
            self.refused_count += 1

    def _hand_made_near(self, vector: np.ndarray) -> tuple[Exemplar, float] | None:
        """The hand-made exemplar within the near-duplicate radius of ``vector``, if any."""
        if self._index is None:
            return None
        with self._lock:
            if self._index is None:
                return None
            sims, keys = self._index.search(vector, _NEAR_DUPLICATE_NEIGHBOURS)
            for similarity, key in zip(sims[0], keys[0]):
                exemplar = self._exemplars.get(key)
                if similarity < self.settings.near_duplicate_similarity:
                    break  # sorted: nothing further is near enough
                if exemplar is not None and not is_learned(exemplar):
                    return exemplar, float(similarity)
        return None

    def _evict_learned(self, keep: str) -> None:
        """Drop learned exemplars past ``max_learned`` or ``max_learned_bytes`` (not ``keep``)."""
        from langroute.router.learning import eviction_order, text_bytes

        with self._lock:
            learned = [ex for ex in self._exemplars.values() if is_learned(ex)]
            excess = len(learned) - self.settings.max_learned
            limit = self.settings.max_learned_bytes
            # at most 4 bytes a character: count exactly only when that bound is too much
            held = sum(len(ex.text) for ex in learned) * 4
            if held > limit:
                held = sum(text_bytes(ex.text) for ex in learned)
            if excess <= 0 and held <= limit:
                return
            candidates = [ex for ex in learned if ex.id != keep]
            dropped = []
            for exemplar in eviction_order(candidates, self.settings.learned_eviction):
                if excess <= 0 and held <= limit:
                    break
                dropped.append(exemplar.id)
                excess -= 1
                held -= text_bytes(exemplar.text)
            self._drop(dropped)

    def learn(
        self,
        query: str,
        route: str,
        *,
        good: bool,
        source: str = "user",
        scorer: str | None = None,
        score: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Exemplar | None:
        """Learn from one observed outcome: ``route``'s answer to ``query`` was good or bad.

        Adds or updates the learned exemplar of the query's text (see
        :mod:`langroute.router.learning` for the label, provenance and guard rails): a good
        answer labels it ``route``, a bad one the next stronger route. The text kept is
        the one routed on (cut to ``settings.max_query_chars``). Past
        ``settings.max_learned`` learned exemplars, or ``settings.max_learned_bytes`` of
        their text, the first in ``settings.learned_eviction`` order are evicted.

        Returns:
            The learned exemplar, or ``None`` when the outcome is refused: a hand-made
            exemplar has the same text, or one is within the near-duplicate radius
            (``settings.near_duplicate_similarity``) of it; it is never overridden or
            outvoted. A refusal is recorded in :attr:`refused_outcomes`.

        Raises:
            InvalidQueryError: For a query with no visible text.
            RouterConfigError: For an unknown route.

        Example:
            >>> router.learn("Prove Fermat's little theorem", "small", good=False).route
            'large'
        """
        from langroute.router.learning import learned_exemplar

        text, _ = self.settings.prepare(self._check_query(query))
        if route not in self.settings.routes:
            raise RouterConfigError(f"unknown route {route!r}; routes are {self.settings.routes}")
        with self._learn_lock:
            with self._lock:
                same = [self._exemplars[i] for i in self._text_ids.get(text, ())]
            hand_made = next((ex for ex in same if not is_learned(ex)), None)
            if hand_made is not None:
                self._refuse(text, route, good, source, hand_made, 1.0)
                return None
            # one embedding per outcome: a text learned before keeps its stored vector
            vector = (
                self.vectors([same[0].id])
                if same
                else embed_documents(self.embedder, [self.settings.prepare(text)[0]])
            )
            near = None if same else self._hand_made_near(vector)
            if near is not None:
                self._refuse(text, route, good, source, *near)
                return None
            exemplar = learned_exemplar(
                same[0] if same else None,
                text,
                route,
                good,
                routes=self.settings.routes,
                source=source,
                score_keys=self.settings.score_keys,
                with_scores=self.mode == "scores",
                scorer=scorer,
                score=score,
                metadata=metadata,
            )
            self.add_embedded([exemplar], vector)
            self._evict_learned(keep=exemplar.id)
            return exemplar

    def learn_from_feedback(
        self,
        ledger: CostLedger,
        record_id: str,
        verdict: Literal["good", "bad"],
        *,
        source: str = "user",
        metadata: Mapping[str, Any] | None = None,
    ) -> Exemplar | None:
        """Store a thumbs up/down on a routed answer (by ledger record id) and learn from it.

        See :func:`langroute.router.learning.learn_from_feedback`: the ledger gets a feedback
        record; a good answer labels the query with the route that answered, a bad one
        with the next stronger route. The record must hold the query text (the cost
        handler's ``store_queries=True``).

        Example:
            >>> record_id = answer.response_metadata["langroute"]["record_id"]  # doctest: +SKIP
            >>> router.learn_from_feedback(ledger, record_id, "bad").route  # doctest: +SKIP
            'large'
        """
        from langroute.router.learning import learn_from_feedback

        return learn_from_feedback(
            self, ledger, record_id, verdict, source=source, metadata=metadata
        )

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
            >>> router.feedback("Draft a 3-year hiring plan", "large").metadata
            {'source': 'feedback'}
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
        return clean_query(query)

    def route(self, query: str) -> RouteDecision:
        """Route one query.

        Concurrent calls (threads, or :meth:`aroute` tasks) share encoder batches: a query
        that arrives while another batch is being embedded joins the next one (see
        :mod:`langroute.router.batching`); a lone call runs at once, and a query whose vector is
        cached never waits. ``elapsed_ms`` is this call's own time (queue wait included,
        the encoder's one-time load excluded: that is ``timings_ms["load"]``).

        Raises:
            InvalidQueryError: for a query with no visible text (empty, whitespace,
                zero-width or control characters only; see
                :func:`langroute.router.query_text.clean_query`).
            RouterConfigError: when the router has no exemplars.

        Example:
            >>> decision = router.route("Translate 'thank you' into Japanese")  # doctest: +SKIP
            >>> decision.route, decision.reason  # doctest: +SKIP
            ('small', 'vote')
        """
        start = time.perf_counter()
        prepared = self._prepare_one(query)
        cached = self._cached_vector(prepared[0])
        if cached is not None:
            return self._route_vectors([prepared], cached, start, per_query=False, keep=True)[0]
        return self.batcher.submit((prepared, start))

    async def aroute(self, query: str) -> RouteDecision:
        """Async :meth:`route`: the event loop is not blocked; concurrent tasks share batches."""
        start = time.perf_counter()
        prepared = self._prepare_one(query)
        cached = self._cached_vector(prepared[0])
        if cached is not None:
            return self._route_vectors([prepared], cached, start, per_query=False, keep=True)[0]
        return await self.batcher.asubmit((prepared, start))

    def route_batch(self, queries: Sequence[str]) -> list[RouteDecision]:
        """Route many queries with one batched embedding call and one index search.

        ``elapsed_ms`` and ``timings_ms`` are per query (the batch's time divided by its
        size), the encoder's one-time load excluded (it is ``timings_ms["load"]``).
        """
        if isinstance(queries, str):
            raise TypeError("route_batch takes a sequence of queries, not a string")
        start = time.perf_counter()
        prepared = [self.settings.prepare(self._check_query(q)) for q in queries]
        if not prepared:
            return []
        if not self._exemplars:
            raise RouterConfigError("the router has no exemplars: add some before routing")
        return self._route_vectors(prepared, None, start, per_query=True)

    def route_vectors(self, queries: Sequence[str], vectors: np.ndarray) -> list[RouteDecision]:
        """Route queries whose vectors the caller made (e.g. a conversation's mixed vector).

        ``queries[i]`` is what the decision reports as its query; ``vectors[i]`` (one
        normalised row per query, of the router's dimension) is what is searched.

        Raises:
            RouterConfigError: the router has no exemplars, or the vectors do not match.
        """
        start = time.perf_counter()
        prepared = [self.settings.prepare(self._check_query(q)) for q in queries]
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(prepared):
            raise RouterConfigError(
                f"route_vectors needs one vector per query: {len(prepared)} queries, "
                f"vectors of shape {matrix.shape}"
            )
        if not prepared:
            return []
        if not self._exemplars:
            raise RouterConfigError("the router has no exemplars: add some before routing")
        if matrix.shape[1] != self.embedder.dimension:
            raise RouterConfigError(
                f"vectors have dimension {matrix.shape[1]}, the router's embedder "
                f"{self.embedder.dimension}"
            )
        return self._route_vectors(prepared, matrix, start, per_query=True)

    def warm_up(self) -> float:
        """Load the encoder and run one tiny batch, so no request pays for either; ms spent.

        Safe to call from a background thread while requests arrive: they wait for the
        load (recorded as ``timings_ms["load"]``), not load it again.

        Example:
            >>> router.warm_up() >= 0.0
            True
        """
        start = time.perf_counter()
        load_encoder(self.embedder)
        inner = self.embedder.inner if isinstance(self.embedder, CachedEmbedder) else self.embedder
        vectors = inner.embed_queries(["warm up"])  # not through the cache: nothing to keep
        with self._lock:
            if self._index is not None and len(self._exemplars):
                self._index.search(vectors, 1)
        return (time.perf_counter() - start) * 1000

    def _prepare_one(self, query: Any) -> _Prepared:
        prepared = self.settings.prepare(self._check_query(query))
        if not self._exemplars:
            raise RouterConfigError("the router has no exemplars: add some before routing")
        return prepared

    def _cached_vector(self, text: str) -> np.ndarray | None:
        if not isinstance(self.embedder, CachedEmbedder):
            return None
        vector = self.embedder.lookup(text)
        return None if vector is None else vector[None, :]

    def _route_queued(
        self, items: list[tuple[_Prepared, float]], waits: list[float]
    ) -> list[RouteDecision]:
        """One batch of single queries; each decision timed from its own call.

        A query that queued behind another batch reports the wait as ``timings_ms["wait"]``.
        """
        began = time.perf_counter()
        decisions = self._route_vectors(
            [p for p, _ in items], None, began, per_query=False, keep=True
        )
        out = []
        for decision, (_, start), wait in zip(decisions, items, waits):
            timings = dict(decision.timings_ms)
            timings["embed"] += (began - start - wait) * 1000  # checking the query
            if wait:
                timings = {"wait": wait * 1000, **timings}
            elapsed = decision.elapsed_ms + (began - start) * 1000
            out.append(decision.model_copy(update={"elapsed_ms": elapsed, "timings_ms": timings}))
        return out

    def _route_vectors(
        self,
        prepared: list[_Prepared],
        vectors: np.ndarray | None,
        start: float,
        *,
        per_query: bool,
        keep: bool = False,
    ) -> list[RouteDecision]:
        """Embed (unless ``vectors``), search and decide; time it, the encoder's load apart.

        ``keep``: each decision carries its query's vector (``query_vector``), for the
        single queries of :meth:`route` (a batch's decisions would hold them all).
        """
        load_s = load_encoder(self.embedder) if vectors is None else 0.0
        if vectors is None:
            vectors = self.embedder.embed_queries([text for text, _ in prepared])
        embedded = time.perf_counter()
        settings = self.settings
        nb = self._search(prepared, vectors, settings.k)
        searched = time.perf_counter()
        decisions = engine.decide(nb, settings, self.mode)
        done = time.perf_counter()
        n = len(decisions) if per_query else 1
        timings = {
            "embed": (embedded - start - load_s) * 1000 / n,
            "search": (searched - embedded) * 1000 / n,
            "decide": (done - searched) * 1000 / n,
        }
        if load_s:
            timings["load"] = load_s * 1000
        elapsed = (done - start - load_s) * 1000 / n
        update = {"elapsed_ms": elapsed, "timings_ms": timings}
        if keep:
            kept = zip(decisions, vectors, strict=True)
            return [d.with_query_vector(v, **update) for d, v in kept]
        return [d.model_copy(update=update) for d in decisions]

    def neighbours(self, queries: Sequence[str], k: int | None = None) -> engine.Neighbourhood:
        """The ``k`` nearest exemplars of each query (default: ``settings.k``), as arrays.

        Search once, then replay :func:`langroute.router.engine.decide` under many settings
        (evaluation, calibration and tuning do); it gives exactly what :meth:`route_batch`
        gives.

        Example:
            >>> nb = router.neighbours(["hello there"], k=2)
            >>> nb.sims.shape
            (1, 2)
        """
        if isinstance(queries, str):
            raise TypeError("neighbours takes a sequence of queries, not a string")
        prepared = [self.settings.prepare(self._check_query(q)) for q in queries]
        if not self._exemplars:
            raise RouterConfigError("the router has no exemplars: add some before routing")
        vectors = self.embedder.embed_queries([text for text, _ in prepared])
        return self._search(prepared, vectors, k or self.settings.k)

    def _search(
        self, prepared: list[tuple[str, bool]], vectors: np.ndarray, k: int
    ) -> engine.Neighbourhood:
        n_routes = len(self.settings.routes)
        limit = self.settings.max_query_chars
        with self._lock:
            if self._index is None:
                raise RouterConfigError("the router has no exemplars: add some before routing")
            sims, keys = self._index.search(vectors, k)
            exemplars = [[self._exemplars[key] for key in row] for row in keys]
            labels = [[self._labels[key] for key in row] for row in keys]
            scores = (
                np.array([[self._scores[key] for key in row] for row in keys])
                if keys and keys[0]
                else np.zeros((len(keys), 0, n_routes))
            )
        n = len(keys)
        width = len(keys[0]) if keys else 0
        return engine.Neighbourhood(
            queries=[text for text, _ in prepared],
            truncated=[cut for _, cut in prepared],
            sims=np.asarray(sims, dtype=np.float64).reshape(n, width),
            labels=np.array(labels, dtype=np.int64).reshape(n, width),
            scores=scores,
            weights=np.array(
                [[ex.weight for ex in row] for row in exemplars], dtype=np.float64
            ).reshape(n, width),
            lengths=np.array(
                [[min(len(ex.text), limit) for ex in row] for row in exemplars]
            ).reshape(n, width),
            exemplars=exemplars,
        )

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
            >>> router.save("routers/support").name
            'support'
        """
        from langroute.router.store import save_router

        return save_router(
            Path(path),
            settings=self.settings,
            embedder=self.embedder,
            write_index=self.write_index,
            calibration=self.calibration,
            tuning=self.tuning,
        )

    def write_index(self, path: Path) -> IndexSnapshot:
        """Write the FAISS index to ``path`` and say which exemplars it holds (used by save).

        One consistent snapshot: an exemplar added meanwhile is in the file and the
        snapshot, or in neither.
        """
        from langroute.errors import RouterStoreError
        from langroute.router.store import IndexSnapshot

        with self._lock:
            if self._index is None:
                raise RouterStoreError("the router has no exemplars; nothing to save")
            faiss_ids = self._index.write(path)
            exemplars = [self._exemplars[key] for key in self._index.keys()]  # noqa: SIM118
            return IndexSnapshot(exemplars, faiss_ids, self._index.kind)

    @classmethod
    def load(cls, path: str | Path, *, embedder: Any = None) -> ExemplarRouter:
        """Load a saved router without re-embedding; the embedder must match the saved one.

        Example:
            >>> path = router.save("routers/support")
            >>> loaded = ExemplarRouter.load(path, embedder=router.embedder)
            >>> len(loaded) == len(router)
            True
        """
        from langroute.router.store import load_router

        stored = load_router(Path(path), embedder)
        return cls.from_index(
            stored.settings,
            stored.exemplars,
            stored.index,
            embedder=stored.embedder,
            calibration=stored.calibration,
            tuning=stored.tuning,
        )

    @classmethod
    def from_index(
        cls,
        settings: RouterSettings,
        exemplars: Sequence[Exemplar],
        index: VectorIndex,
        *,
        embedder: Any = None,
        calibration: dict[str, Any] | None = None,
        tuning: dict[str, Any] | None = None,
    ) -> ExemplarRouter:
        """A router over an index that already holds the exemplars' vectors (no embedding).

        ``index`` must hold one vector per exemplar, keyed by exemplar id, made by
        ``embedder``; this is how :meth:`load` rebuilds a saved router.
        """
        router = cls(settings=settings, embedder=embedder)
        exemplar_list = list(exemplars)
        if sorted(index.keys()) != sorted(ex.id for ex in exemplar_list):
            raise RouterConfigError("the index and the exemplars hold different ids")
        router._check_exemplars(exemplar_list)
        with router._lock:
            router._index = index
            for ex in exemplar_list:
                router._remember(ex)
        router.calibration = calibration
        router.tuning = tuning
        return router

    def reembedded(self, embedder: Any) -> ExemplarRouter:
        """A copy of this router with every exemplar embedded again by ``embedder``.

        Settings and calibration are kept. This converts a saved router to another
        embedder: ``ExemplarRouter.load(path, embedder=old).reembedded(new).save(path)``.

        Example:
            >>> from langroute.embedders import HashingEmbedder
            >>> router.reembedded(HashingEmbedder(dimension=64)).embedder.fingerprint
            'hashing:64'
        """
        router = type(self)(settings=self.settings, exemplars=self.exemplars, embedder=embedder)
        router.calibration = self.calibration
        return router

    def __repr__(self) -> str:
        return (
            f"ExemplarRouter(routes={self.routes}, exemplars={len(self)}, mode={self.mode!r}, "
            f"k={self.settings.k}, threshold={self.threshold})"
        )


def _starter_cache_path(embedder: Embedder) -> Path:
    """Cache folder of the embedded starter pack for one embedder."""
    import hashlib

    from langroute.embedders import cache_dir
    from langroute.router.store import FORMAT_VERSION

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


def load_saved_router(path: str | Path, embedder: str | None = None) -> Any:
    """Load a saved router with the embedder ``embedder`` names, else the one its manifest names.

    ``embedder`` is a spec as :func:`~langroute.embedders.adapters.embedder_from_spec`
    reads it (the CLI's ``--embedder``, ``langroute serve``'s ``embedder``).
    """
    from langroute.embedders.adapters import embedder_from_spec
    from langroute.errors import RouterStoreError
    from langroute.router.store import read_manifest

    path = Path(path)
    try:
        fingerprint: str | None = read_manifest(path).embedder.fingerprint
    except (RouterStoreError, OSError):
        fingerprint = None  # the load below says what is wrong
    return ExemplarRouter.load(path, embedder=embedder_from_spec(embedder, fingerprint))
