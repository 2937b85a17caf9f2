"""API-key spend and budget reservations shared by every replica, in Postgres.

``langroute serve`` admits a call by reserving its worst-case cost against its key's
budget and settles the reservation to the real cost afterwards. In one process that
bookkeeping lives in memory; replicas (or ``--workers``) on one Postgres ledger need it
in the database, or each would admit the whole budget. :class:`PostgresSpend` keeps:

- ``langroute_spend``: what each key spent per budget period (one row per key and
  period, raised by every replica as its calls are priced);
- ``langroute_reservations``: the holds of the calls under way, each with an expiry, so
  the holds of a replica that died mid-call stop counting after ``hold_ttl`` seconds.

A reservation locks its key's spend row (``SELECT ... FOR UPDATE``), so concurrent
reservations of one key, from any replica, see each other: a budget is passed by at most
one call's worst case across all replicas, as in one process.

Admission decides, so :meth:`PostgresSpend.reserve` runs on the caller's thread. What
follows a call (its real cost, the end of its hold) never makes the caller wait: it is
queued, in order, for one background writer per :class:`PostgresSpend`, which writes
it in batches and, while the database is away, keeps it and retries (the writes of an
outage are applied first once Postgres is back). A reservation, and every read, first
applies what this process still has queued, so a call's cost counts at the next
admission of the same process as soon as it was added.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
import weakref
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from langroute.errors import DatabaseUnavailableError, SpendWriteWarning
from langroute.postgres.database import SchemaConnection, redact

if TYPE_CHECKING:
    import psycopg

    from langroute.costs import LedgerRecord
    from langroute.serving.keys import ApiKey, ApiKeys

__all__ = ["DEFAULT_HOLD_TTL_S", "DEFAULT_MAX_PENDING", "PostgresSpend"]

DEFAULT_HOLD_TTL_S = 3600.0
"""Seconds a reservation counts before it expires (a replica that died holds no longer)."""

DEFAULT_MAX_PENDING = 100_000
"""Settlements and releases that may wait for the database; more are dropped and warned about."""

_BATCH = 500
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_log = logging.getLogger(__name__)


class _Write(NamedTuple):
    """One queued change: a call's cost added to its slot, or a hold given back."""

    slot: tuple[str, str, datetime]
    cost: float = 0.0
    hold: int | None = None  # the reservation id to delete (a release)


class PostgresSpend:
    """Spend per key and budget period, and reservations, shared through Postgres.

    The same methods as the server's in-memory spend (``add``, ``spent``, ``reserve``,
    ``release``, ``reserved``, ``load``), so a gateway uses either.

    :meth:`add` and :meth:`release` only queue their write for this spend's background
    writer (they never wait for the database, nor for a connect during an outage);
    :meth:`reserve` and the reads apply what is queued before they read, in order.
    Writes that meet an outage stay queued and are retried with backoff. A
    process that dies loses what is still queued: normally the last few milliseconds'
    settlements, during an outage all since it began (the ledger rows of those calls
    are written by the ledger's own writer; the spend row is not rebuilt from them while
    it exists). A lost release only keeps its hold until ``hold_ttl``.

    Args:
        url: A ``postgresql://`` URL (the ledger's database).
        hold_ttl: Seconds a reservation counts at most; longer than any call may run.
        timeout: Seconds to wait for the server when connecting.
        max_pending: Settlements and releases that may wait for the database; past
            that, new ones are dropped, counted in :attr:`dropped` and warned about
            (:class:`SpendWriteWarning`).

    Raises:
        DatabaseUnavailableError: (from :meth:`reserve`, :meth:`spent`, :meth:`reserved`,
            :meth:`load`) the database cannot be reached; a server refuses the request
            with a 503 rather than admit it unbudgeted. :meth:`add` and :meth:`release`
            never raise it: what they write waits for the database's return.

    Example:
        >>> spend = PostgresSpend("postgresql://app@db/langroute")  # doctest: +SKIP
        >>> start = spend.reserve(key, 0.02)  # doctest: +SKIP
        >>> spend.add(key, 0.004); spend.release(key, 0.02, start)  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        hold_ttl: float = DEFAULT_HOLD_TTL_S,
        timeout: float = 5.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if hold_ttl <= 0:
            raise ValueError(f"hold_ttl must be positive, got {hold_ttl!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending!r}")
        self.url = url
        self.hold_ttl = hold_ttl
        self.max_pending = max_pending
        self._db = SchemaConnection(url, timeout=timeout)
        self._lock = threading.Lock()  # this process's holds
        # this process's reservation ids, by (key, period, start, amount): release
        # deletes exactly one hold it made
        self._holds: dict[tuple[str, str, datetime, float], list[int]] = defaultdict(list)
        self._reset_writer()
        _SPENDS.add(self)

    def _reset_writer(self) -> None:
        """An empty queue and no writer thread (at construction and in a forked child)."""
        self._cond = threading.Condition()  # the queue; never held while waiting for db.lock
        self._pending: deque[_Write] = deque()
        self._writer: threading.Thread | None = None
        self._stopping = False
        self._unavailable = False
        self._dropped = 0
        self._overflowing = False  # warned about this overflow already

    def __repr__(self) -> str:
        return f"PostgresSpend({redact(self.url)!r})"

    @property
    def pending(self) -> int:
        """Settlements and releases queued and not yet written (this process)."""
        with self._cond:
            return len(self._pending)

    @property
    def dropped(self) -> int:
        """Settlements and releases dropped: the queue was full, or the database refused one."""
        with self._cond:
            return self._dropped

    # ------------------------------------------------------------------ connection
    def _run(self, work: Any) -> Any:
        """Run ``work`` after what this process queued, in their order (one lock for both)."""
        with self._db.lock:
            self._apply_pending()
            return self._db.run(work)

    def flush(self) -> None:
        """Write what this process queued so far, now (other replicas then see it).

        Raises:
            DatabaseUnavailableError: The database cannot be reached (the writes stay
                queued for the writer).
        """
        with self._db.lock:
            self._apply_pending()

    def close(self) -> None:
        """Write what is queued, stop the writer and close the connection.

        A later call opens a new connection (and a later write a new writer). While the
        database is unreachable the queued writes are kept (logged): they are lost only
        if the process ends before a later call reaches the database.
        """
        with self._cond:
            writer = self._writer
            self._stopping = True
            self._cond.notify_all()
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        with self._cond:
            self._stopping = False
        with self._db.lock:
            try:
                self.flush()
            except DatabaseUnavailableError as exc:
                _log.warning(
                    "%r: %d spend writes not written at close (%s)", self, self.pending, exc
                )
            self._db.close()

    # ------------------------------------------------------------------ writer
    def _queue(self, write: _Write) -> None:
        """Hand ``write`` to the background writer; never waits for the database."""
        with self._cond:
            if len(self._pending) >= self.max_pending:
                self._dropped += 1
                dropped = self._dropped
                warn = not self._overflowing
                self._overflowing = True
            else:
                self._pending.append(write)
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(
                        target=self._write_loop, name=f"langroute-spend-{id(self):x}", daemon=True
                    )
                    self._writer.start()
                self._cond.notify_all()
                return
        if not warn:
            return
        warnings.warn(
            SpendWriteWarning(
                f"{self!r}: {self.max_pending} spend writes wait for the database: a "
                f"{'release' if write.hold is not None else 'cost'} of key {write.slot[0]!r} "
                f"was dropped, and those after it are until the queue drains ({dropped} "
                "dropped so far, see .dropped)"
            ),
            stacklevel=3,
        )

    def _write_loop(self) -> None:
        """The writer thread: apply the queue in batches, retry an outage with backoff."""
        pause = _RETRY_FIRST_S
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    if self._writer is threading.current_thread():
                        self._writer = None
                    return
            try:
                with self._db.lock:
                    self._apply_pending()
            except DatabaseUnavailableError as exc:
                if not self._unavailable:
                    _log.warning(
                        "%r: unavailable (%s); %d spend writes held and retried",
                        self,
                        exc,
                        self.pending,
                    )
                self._unavailable = True
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, pause)
                pause = min(pause * 2, _RETRY_MAX_S)
                continue
            except Exception:  # a daemon thread: report everything, never die
                _log.exception("%r: the spend writer failed", self)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, pause)
                continue
            if self._unavailable:
                _log.warning("%r: reachable again; the held spend writes are written", self)
            self._unavailable = False
            pause = _RETRY_FIRST_S

    def _apply_pending(self) -> None:
        """Write what was queued when called, oldest first, in batches (``db.lock`` held).

        Holding ``db.lock`` makes this the only remover: writes are only appended
        meanwhile, so the batch taken is still the queue's head when it is removed.

        Raises:
            DatabaseUnavailableError: The database cannot be reached; the writes stay
                queued, in order.
        """
        import psycopg

        with self._cond:
            left = len(self._pending)  # not what others queue meanwhile: a reserve ends
        while left > 0:
            with self._cond:
                batch = [self._pending[i] for i in range(min(_BATCH, left, len(self._pending)))]
            if not batch:
                return
            left -= len(batch)
            try:
                self._db.run(lambda conn, head=batch: self._write(conn, head))
            except psycopg.Error:  # the database refused the data itself: one by one
                self._write_alone(batch)
                continue
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                if not self._pending:
                    self._overflowing = False

    def _write_alone(self, batch: Sequence[_Write]) -> None:
        """Write each of ``batch`` (the queue's head) alone, removing each once done.

        One write the database refuses is dropped and warned about; its neighbours are
        written. An outage on the way leaves the rest queued.
        """
        import psycopg

        for write in batch:
            try:
                self._db.run(lambda conn, one=write: self._write(conn, [one]))
            except psycopg.Error as exc:
                with self._cond:
                    self._dropped += 1
                warnings.warn(
                    SpendWriteWarning(f"{self!r}: a spend write was refused and dropped: {exc}"),
                    stacklevel=2,
                )
            with self._cond:
                self._pending.popleft()

    @classmethod
    def _write(cls, conn: psycopg.Connection, batch: Sequence[_Write]) -> None:
        """Apply ``batch`` in one transaction: costs summed per slot, holds deleted."""
        costs: dict[tuple[str, str, datetime], float] = defaultdict(float)
        holds = []
        for write in batch:
            if write.hold is not None:
                holds.append(write.hold)
            else:
                costs[write.slot] += write.cost
        for slot, cost in costs.items():
            cls._ensure_slot(conn, slot)
            conn.execute(
                "UPDATE langroute_spend SET spent = spent + %s "
                "WHERE key = %s AND period = %s AND period_start = %s",
                (cost, *slot),
            )
        if holds:
            conn.execute("DELETE FROM langroute_reservations WHERE id = ANY(%s)", (holds,))

    # ------------------------------------------------------------------ spend
    @staticmethod
    def _slot(key: ApiKey, when: datetime | None) -> tuple[str, str, datetime]:
        from langroute.serving.keys import period_start

        return (key.name, key.period, period_start(key.period, when))

    @staticmethod
    def _ensure_slot(conn: psycopg.Connection, slot: tuple[str, str, datetime]) -> None:
        conn.execute(
            "INSERT INTO langroute_spend (key, period, period_start) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            slot,
        )

    def add(self, key: ApiKey, cost: float, when: datetime | None = None) -> None:
        """Add ``cost`` to ``key``'s period that holds ``when`` (default: now).

        Queued for the background writer (see the class); this process's next
        :meth:`reserve` or read counts it.

        Raises:
            ValueError: ``cost`` is not a finite number.
        """
        if not math.isfinite(cost):
            raise ValueError(f"cost must be a finite number of dollars, got {cost!r}")
        self._queue(_Write(self._slot(key, when), cost=cost))

    def spent(self, key: ApiKey, now: datetime | None = None) -> float:
        """What ``key`` has spent in its current period, on every replica."""
        slot = self._slot(key, now)

        def read(conn: psycopg.Connection) -> float:
            row = conn.execute(
                "SELECT spent FROM langroute_spend "
                "WHERE key = %s AND period = %s AND period_start = %s",
                slot,
            ).fetchone()
            return float(row[0]) if row else 0.0

        return self._run(read)

    @staticmethod
    def _held(conn: psycopg.Connection, slot: tuple[str, str, datetime]) -> float:
        row = conn.execute(
            "SELECT COALESCE(sum(amount), 0) FROM langroute_reservations "
            "WHERE key = %s AND period = %s AND period_start = %s AND expires_at > now()",
            slot,
        ).fetchone()
        return float(row[0])

    def reserved(self, key: ApiKey, now: datetime | None = None) -> float:
        """What running calls of ``key`` hold in its current period, on every replica."""
        slot = self._slot(key, now)
        return self._run(lambda conn: self._held(conn, slot))

    def reserve(self, key: ApiKey, amount: float, now: datetime | None = None) -> datetime | None:
        """Hold ``amount`` of ``key``'s budget for a call, if any of it is left.

        Admitted while spent plus held (by every replica's running calls) is below the
        budget, like the in-memory spend.

        Returns:
            The period the reservation belongs to (pass it to :meth:`release`), or
            ``None``: the budget is used up and nothing was reserved.
        """
        slot = self._slot(key, now)

        def hold(conn: psycopg.Connection) -> int | None:
            self._ensure_slot(conn, slot)
            row = conn.execute(
                "SELECT spent FROM langroute_spend "
                "WHERE key = %s AND period = %s AND period_start = %s FOR UPDATE",
                slot,
            ).fetchone()
            conn.execute(  # the holds of calls that outlived the TTL (a replica died)
                "DELETE FROM langroute_reservations WHERE key = %s AND period = %s "
                "AND period_start = %s AND expires_at <= now()",
                slot,
            )
            if key.budget is not None and float(row[0]) + self._held(conn, slot) >= key.budget:
                return None
            found = conn.execute(
                "INSERT INTO langroute_reservations (key, period, period_start, amount, "
                "expires_at) VALUES (%s, %s, %s, %s, now() + %s) RETURNING id",
                (*slot, amount, timedelta(seconds=self.hold_ttl)),
            ).fetchone()
            return int(found[0])

        held = self._run(hold)
        if held is None:
            return None
        with self._lock:
            self._holds[(*slot, amount)].append(held)
        return slot[2]

    def release(self, key: ApiKey, amount: float, start: datetime) -> None:
        """Give back a reservation of :meth:`reserve` (its call's cost was added).

        Queued for the background writer after the cost (see the class), so no replica
        sees the hold gone before the cost counts.
        """
        with self._lock:
            ids = self._holds.get((key.name, key.period, start, amount))
            if not ids:
                return
            held = ids.pop()
            if not ids:
                del self._holds[(key.name, key.period, start, amount)]
        self._queue(_Write((key.name, key.period, start), hold=held))

    def load(self, records: Iterable[LedgerRecord], keys: ApiKeys) -> int:
        """Start the current periods' spend from a ledger, unless a replica already did.

        A period's spend row that exists is kept as it is (another replica keeps it up
        to date); a missing one is created from the ledger's priced calls (matched to
        keys by ``metadata["api_key"]``). Returns how many calls were read into new rows.
        """
        from langroute.serving.keys import priced_calls_this_period

        sums: dict[tuple[str, str, datetime], float] = defaultdict(float)
        counts: dict[tuple[str, str, datetime], int] = defaultdict(int)
        for key, record in priced_calls_this_period(records, keys):
            slot = self._slot(key, record.timestamp)
            sums[slot] += record.cost or 0.0
            counts[slot] += 1

        def start(conn: psycopg.Connection) -> int:
            created = 0
            for slot, total in sums.items():
                row = conn.execute(
                    "INSERT INTO langroute_spend (key, period, period_start, spent) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING key",
                    (*slot, total),
                ).fetchone()
                created += counts[slot] if row else 0
            return created

        return self._run(start)


_SPENDS: weakref.WeakSet[PostgresSpend] = weakref.WeakSet()


def _reset_after_fork() -> None:
    """In a forked child: no writer survived, and the parent's queue is the parent's to write."""
    for spend in list(_SPENDS):
        spend._reset_writer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
