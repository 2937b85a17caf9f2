"""A router replica: an in-memory router that follows a shared router in Postgres.

Each process keeps the exemplars' vectors in its own FAISS index (the usual
:class:`~langroute.router.ExemplarRouter`) and applies the changes other replicas write,
so an exemplar added or removed anywhere routes everywhere within about a second:

* a follower thread LISTENs on ``langroute_changes`` and catches up by sequence number
  when notified, and every ``poll_interval`` seconds anyway (a lost notification costs
  at most that);
* when Postgres goes away, routing carries on from the in-memory index; the follower
  reconnects with backoff (up to ``max_backoff`` seconds) and catches up;
* writes made through the replica (:meth:`RouterReplica.add_exemplars`,
  :meth:`~RouterReplica.remove_exemplars`, :meth:`~RouterReplica.feedback`,
  :meth:`~RouterReplica.configure`) are embedded here once, stored with their vectors
  and applied here before the call returns; no replica embeds them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from langroute.embedders import embed_documents
from langroute.errors import DatabaseUnavailableError, RouterConfigError, RouterStoreError
from langroute.postgres.database import connect, ensure_schema, redact
from langroute.postgres.routers import (
    CHANNEL,
    RouterRow,
    publish,
    read_changes,
    read_router,
    write_change,
)
from langroute.router.exemplars import Exemplar

if TYPE_CHECKING:
    import psycopg

    from langroute.router.exemplar_router import ExemplarRouter

__all__ = ["FollowerStats", "RouterReplica", "load_shared_router", "publish_router"]

_log = logging.getLogger(__name__)


class FollowerStats(BaseModel):
    """What a replica's follower has done (this process).

    Example:
        >>> FollowerStats().connected
        False
    """

    model_config = ConfigDict(frozen=True)

    connected: bool = False
    """Whether the follower holds a live connection now."""
    seq: int = 0
    """The shared router's change number this replica has applied up to."""
    applied: int = 0
    """Changes (batches of rows) applied from the database."""
    reconnects: int = 0
    """Connections lost and opened again."""
    last_error: str | None = None
    """The latest database error the follower met (``None`` once it recovered)."""


def publish_router(
    router: ExemplarRouter | str | Path, url: str, *, name: str = "default", embedder: Any = None
) -> int:
    """Publish a router (or a saved router directory) to Postgres as ``name``, in one call.

    The exemplars go with their vectors, so no replica embeds them again; a router of
    that name is replaced (its followers pick the new state up as one change).

    Args:
        router: An :class:`~langroute.router.ExemplarRouter`, or a saved router's directory.
        url: A ``postgresql://`` URL.
        name: The shared router's name.
        embedder: The embedder of a saved directory (default: from its manifest).

    Returns:
        The change number of the published state.

    Raises:
        DatabaseUnavailableError: The database cannot be reached.
        RouterStoreError: The directory is not a loadable router.

    Example:
        >>> publish_router("routers/support", "postgresql://app@db/langroute")  # doctest: +SKIP
        1
    """
    if isinstance(router, (str, Path)):
        from langroute.router.exemplar_router import ExemplarRouter, load_saved_router

        router = (
            load_saved_router(Path(router))
            if embedder is None
            else ExemplarRouter.load(router, embedder=embedder)
        )
    return publish(router, url, name)


def load_shared_router(
    url: str, *, name: str = "default", embedder: Any = None, follow: bool = True, **options: Any
) -> RouterReplica:
    """Build a router from Postgres, in one call, and follow its changes.

    Same as :meth:`RouterReplica.open` (``options``: ``poll_interval``, ``max_backoff``);
    route with ``replica.router`` or ``replica.route(...)``.

    Example:
        >>> replica = load_shared_router("postgresql://app@db/langroute")  # doctest: +SKIP
        >>> replica.route("hello").route  # doctest: +SKIP
        'small'
    """
    return RouterReplica.open(url, name=name, embedder=embedder, follow=follow, **options)


class RouterReplica:
    """One process's copy of a shared router, kept up to date from Postgres.

    Build it with :meth:`open` (or :func:`load_shared_router`). Route with
    :attr:`router` (an ordinary :class:`~langroute.router.ExemplarRouter`; give it to the
    LangChain or LlamaIndex integrations as usual). Change the shared router through the
    replica's methods, so that every replica sees the change; changes made on
    :attr:`router` directly stay in this process.

    Args:
        router: The in-memory router, holding the state up to ``seq``.
        url: The database.
        name: The shared router's name.
        seq: The change number ``router`` holds.
        settings_seq: The change number of its settings.
        poll_interval: Seconds between catch-ups when no notification arrives.
        max_backoff: Most seconds between reconnection attempts.
    """

    def __init__(
        self,
        router: ExemplarRouter,
        url: str,
        name: str,
        seq: int,
        settings_seq: int,
        *,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.router = router
        self.url = url
        self.name = name
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._seq = seq
        self._settings_seq = settings_seq
        self._apply_lock = threading.RLock()  # one catch-up or write at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._applied = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._writer: psycopg.Connection | None = None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        name: str = "default",
        embedder: Any = None,
        follow: bool = True,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> RouterReplica:
        """Load shared router ``name`` from Postgres (no embedding) and start following it.

        Args:
            url: A ``postgresql://`` URL.
            name: The shared router's name.
            embedder: The embedder (default: built from the stored fingerprint); it must
                be the one that made the stored vectors.
            follow: Start the follower thread (``False``: call :meth:`sync` yourself).
            poll_interval: Seconds between catch-ups when no notification arrives.
            max_backoff: Most seconds between reconnection attempts.

        Raises:
            DatabaseUnavailableError: The database cannot be reached now.
            RouterStoreError: No router of that name, or a row that is not valid.
            EmbedderMismatchError: ``embedder`` did not make the stored vectors.
            SchemaVersionError: The database's schema is newer than this langroute.
        """
        from langroute.router.exemplar_router import ExemplarRouter
        from langroute.router.index import VectorIndex
        from langroute.router.store import stored_embedder

        with connect(url) as conn:
            ensure_schema(conn)
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = read_router(conn, name, url)
                if embedder is None:  # the embedder the fingerprint names
                    from langroute.embedders import embedder_from_spec

                    if row.fingerprint.startswith("hashing:"):
                        embedder = embedder_from_spec(None, row.fingerprint)
                resolved = stored_embedder(
                    row.fingerprint, row.dimension, embedder, f"router {name!r} in {redact(url)}"
                )
                live = read_changes(conn, name, -1, row.dimension, url)
        index = VectorIndex(row.dimension, row.settings.index)
        if live.added:
            index.add([ex.id for ex in live.added], live.vectors)
        router = ExemplarRouter.from_index(
            row.settings,
            live.added,
            index,
            embedder=resolved,
            calibration=row.calibration,
            tuning=row.tuning,
        )
        replica = cls(
            router,
            url,
            name,
            row.seq,
            row.settings_seq,
            poll_interval=poll_interval,
            max_backoff=max_backoff,
        )
        if follow:
            replica.start()
        return replica

    def __repr__(self) -> str:
        return f"RouterReplica({self.name!r} at {redact(self.url)}, seq={self._seq})"

    def __enter__(self) -> RouterReplica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def seq(self) -> int:
        """The change number applied so far."""
        return self._seq

    @property
    def stats(self) -> FollowerStats:
        """The follower's state: connected, applied sequence, reconnects, last error."""
        return FollowerStats(
            connected=self._connected,
            seq=self._seq,
            applied=self._applied,
            reconnects=self._reconnects,
            last_error=self._last_error,
        )

    def route(self, query: str) -> Any:
        """Route one query with the in-memory router (works while the database is down)."""
        return self.router.route(query)

    # -- following ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the follower thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._follow, name=f"langroute-follow-{self.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop following and close the connections (the router keeps routing)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        with self._apply_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def sync(self) -> int:
        """Apply the changes written since the last catch-up, now; how many rows changed.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
        """
        with connect(self.url, autocommit=True) as conn:
            return self._catch_up(conn)

    def _catch_up(self, conn: psycopg.Connection) -> int:
        """Read and apply rows above the applied sequence number (under the apply lock)."""
        with self._apply_lock:
            row = read_router(conn, self.name, self.url)
            if row.seq <= self._seq:
                return 0
            return self._apply(conn, row)

    def _apply(self, conn: psycopg.Connection, row: RouterRow) -> int:
        if (row.fingerprint, row.dimension) != (
            self.router.embedder.fingerprint,
            self.router.embedder.dimension,
        ):
            raise RouterStoreError(
                f"router {self.name!r} was republished with embedder {row.fingerprint!r} "
                f"({row.dimension} dims); this replica uses "
                f"{self.router.embedder.fingerprint!r}: open it again"
            )
        changes = read_changes(conn, self.name, self._seq, row.dimension, self.url)
        if changes.added:
            self.router.add_embedded(changes.added, changes.vectors)
        if changes.removed:
            try:
                self.router.remove_exemplars(changes.removed)
            except RouterConfigError as exc:  # only if a writer skipped the check
                _log.error("replica %s: removal not applied: %s", self.name, exc)
        if row.settings_seq > self._settings_seq:
            frozen = {"routes", "index", "score_keys"}
            self.router.configure(
                **{k: v for k, v in row.settings.model_dump().items() if k not in frozen}
            )
            self._settings_seq = row.settings_seq
        self._seq = max(row.seq, changes.seq)
        self._applied += 1
        return len(changes.added) + len(changes.removed)

    def _follow(self) -> None:
        import psycopg

        pause = 0.1
        while not self._stop.is_set():
            try:
                with connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._connected = True
                    if self._last_error is not None:
                        _log.warning("replica %s: reconnected to %s", self.name, redact(self.url))
                    self._last_error = None
                    pause = 0.1
                    self._catch_up(conn)
                    last = time.monotonic()
                    while not self._stop.is_set():
                        notified = False
                        for note in conn.notifies(timeout=0.2, stop_after=1):
                            notified = notified or note.payload == self.name
                        if notified or time.monotonic() - last >= self.poll_interval:
                            self._catch_up(conn)
                            last = time.monotonic()
            except (psycopg.Error, DatabaseUnavailableError, RouterStoreError) as exc:
                if self._connected or self._last_error is None:
                    _log.warning(
                        "replica %s: lost %s (%s); routing from memory, reconnecting",
                        self.name,
                        redact(self.url),
                        " ".join(str(exc).split()),
                    )
                if self._connected:
                    self._reconnects += 1
                self._connected = False
                self._last_error = " ".join(str(exc).split()) or type(exc).__name__
                self._stop.wait(pause)
                pause = min(pause * 2, self.max_backoff)
        self._connected = False

    # -- writing -----------------------------------------------------------------------

    def _write(self, change: Any) -> int:
        """Run ``change(conn)`` in one transaction after catching up; it applies locally.

        The local router changes inside the transaction, under the database row lock
        that orders every writer's changes, so a change the router refuses is never
        written; if the commit fails the replica reloads the shared state.
        """
        import psycopg

        with self._apply_lock:
            try:
                if self._writer is None or self._writer.closed or self._writer.broken:
                    self._writer = connect(self.url)
                conn = self._writer
                with conn.transaction():
                    row = conn.execute(
                        "SELECT seq FROM langroute_routers WHERE name = %s FOR UPDATE",
                        (self.name,),
                    ).fetchone()
                    if row is not None and int(row[0]) > self._seq:
                        self._apply(conn, read_router(conn, self.name, self.url))
                    seq = change(conn)
            except psycopg.Error as exc:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                self._resync_after_failure()
                raise DatabaseUnavailableError(
                    f"could not write to {redact(self.url)}: {' '.join(str(exc).split())}"
                ) from exc
            self._seq = seq
            return seq

    def _resync_after_failure(self) -> None:
        """After a failed commit: rebuild the local state from the database if reachable."""
        try:
            with connect(self.url, autocommit=True) as conn:
                row = read_router(conn, self.name, self.url)
                live = read_changes(conn, self.name, -1, row.dimension, self.url)
                self.router.add_embedded(live.added, live.vectors)
                keep = {ex.id for ex in live.added}
                self.router.remove_exemplars(
                    [ex.id for ex in self.router.exemplars if ex.id not in keep]
                )
                self._seq = row.seq
        except (DatabaseUnavailableError, RouterStoreError, RouterConfigError) as exc:
            _log.warning("replica %s: could not reload after a failed write: %s", self.name, exc)
            self._seq = -1  # the next catch-up reads every row again

    def add_exemplars(
        self, exemplars: Iterable[Exemplar] | Exemplar, *, show_progress: bool = False
    ) -> list[str]:
        """Embed exemplars here, store them with their vectors, and apply them; the ids.

        Every replica routes with them once its follower catches up (about a second).

        Raises:
            RouterConfigError: An exemplar's route is unknown (nothing is written).
            DatabaseUnavailableError: The database cannot be reached (nothing changes).
        """
        batch = [exemplars] if isinstance(exemplars, Exemplar) else list(exemplars)
        if not batch:
            return []
        settings = self.router.settings
        vectors = embed_documents(
            self.router.embedder,
            [settings.prepare(ex.text)[0] for ex in batch],
            show_progress=show_progress,
            label="Embedding exemplars",
        )

        def change(conn: psycopg.Connection) -> int:
            ids = self.router.add_embedded(batch, vectors)
            kept = {key: row for row, key in enumerate(ex.id for ex in batch)}
            chosen = [kept[key] for key in ids]
            return write_change(
                conn, self.name, added=[batch[i] for i in chosen], vectors=vectors[chosen]
            )

        self._write(change)
        return list(dict.fromkeys(ex.id for ex in batch))

    def remove_exemplars(self, ids: Iterable[str]) -> int:
        """Remove exemplars by id everywhere; how many this replica held.

        Raises:
            RouterConfigError: A route would be left without exemplars (nothing changes).
            DatabaseUnavailableError: The database cannot be reached (nothing changes).
        """
        wanted = list(dict.fromkeys(ids))
        removed = 0

        def change(conn: psycopg.Connection) -> int:
            nonlocal removed
            removed = self.router.remove_exemplars(wanted)
            return write_change(conn, self.name, removed=wanted)

        self._write(change)
        return removed

    def feedback(
        self,
        query: str,
        route: str,
        *,
        weight: float = 1.0,
        metadata: Mapping[str, Any] | None = None,
    ) -> Exemplar:
        """Teach every replica that ``query`` belongs on ``route``.

        Runs :meth:`ExemplarRouter.feedback <langroute.router.ExemplarRouter.feedback>`
        here (same arguments and checks), then shares the exemplar it made, with its
        vector.

        Raises:
            RouterConfigError: An unknown route (nothing is written).
            DatabaseUnavailableError: The database cannot be reached (nothing changes).
        """
        made: list[Exemplar] = []

        def change(conn: psycopg.Connection) -> int:
            exemplar = self.router.feedback(query, route, weight=weight, metadata=metadata)
            made.append(exemplar)
            vectors = self.router.vectors([exemplar.id])
            return write_change(conn, self.name, added=[exemplar], vectors=vectors)

        self._write(change)
        return made[0]

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
        """Learn one observed outcome in every replica (see ``ExemplarRouter.learn``).

        Runs :meth:`ExemplarRouter.learn <langroute.router.ExemplarRouter.learn>` here
        (same arguments, checks and guard rails), then shares the learned exemplar with
        its vector, and removes everywhere the learned exemplars the cap evicted here.

        Returns:
            The learned exemplar, or ``None`` when a hand-made exemplar has the same text
            (nothing is written).

        Raises:
            RouterConfigError: An unknown route (nothing is written).
            DatabaseUnavailableError: The database cannot be reached (nothing changes).
        """
        made: list[Exemplar | None] = []

        def change(conn: psycopg.Connection) -> int:
            before = {ex.id for ex in self.router.learned_exemplars}
            exemplar = self.router.learn(
                query,
                route,
                good=good,
                source=source,
                scorer=scorer,
                score=score,
                metadata=metadata,
            )
            made.append(exemplar)
            if exemplar is None:
                return self._seq
            evicted = sorted(before - {ex.id for ex in self.router.learned_exemplars})
            vectors = self.router.vectors([exemplar.id])
            return write_change(conn, self.name, added=[exemplar], vectors=vectors, removed=evicted)

        self._write(change)
        return made[0]

    def configure(self, **changes: Any) -> None:
        """Change settings (validated) here and in every replica, e.g. ``configure(k=20)``.

        Raises:
            RouterConfigError: Invalid settings, or a frozen one (nothing changes).
        """

        def change(conn: psycopg.Connection) -> int:
            self.router.configure(**changes)
            seq = write_change(conn, self.name, settings=self.router.settings)
            self._settings_seq = seq
            return seq

        self._write(change)
