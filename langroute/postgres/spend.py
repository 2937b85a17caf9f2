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
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from langroute.postgres.database import SchemaConnection, redact

if TYPE_CHECKING:
    import psycopg

    from langroute.costs import LedgerRecord
    from langroute.serving.keys import ApiKey, ApiKeys

__all__ = ["DEFAULT_HOLD_TTL_S", "PostgresSpend"]

DEFAULT_HOLD_TTL_S = 3600.0
"""Seconds a reservation counts before it expires (a replica that died holds no longer)."""


class PostgresSpend:
    """Spend per key and budget period, and reservations, shared through Postgres.

    The same methods as the server's in-memory spend (``add``, ``spent``, ``reserve``,
    ``release``, ``reserved``, ``load``), so a gateway uses either.

    Args:
        url: A ``postgresql://`` URL (the ledger's database).
        hold_ttl: Seconds a reservation counts at most; longer than any call may run.
        timeout: Seconds to wait for the server when connecting.

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
        self, url: str, *, hold_ttl: float = DEFAULT_HOLD_TTL_S, timeout: float = 5.0
    ) -> None:
        if hold_ttl <= 0:
            raise ValueError(f"hold_ttl must be positive, got {hold_ttl!r}")
        self.url = url
        self.hold_ttl = hold_ttl
        self._db = SchemaConnection(url, timeout=timeout)
        self._lock = threading.Lock()  # this process's holds
        # this process's reservation ids, by (key, period, start, amount): release
        # deletes exactly one hold it made
        self._holds: dict[tuple[str, str, datetime, float], list[int]] = defaultdict(list)
        self._deferred: list[Any] = []  # writes that met an outage, retried first

    def __repr__(self) -> str:
        return f"PostgresSpend({redact(self.url)!r})"

    # ------------------------------------------------------------------ connection
    def _run(self, work: Any) -> Any:
        """Run ``work`` after what an outage deferred, in their order (one lock for both)."""
        with self._db.lock:
            if self._deferred:
                pending = list(self._deferred)

                def replay(conn: psycopg.Connection) -> None:
                    for earlier in pending:
                        earlier(conn)

                self._db.run(replay)
                del self._deferred[: len(pending)]
            return self._db.run(work)

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self._db.close()

    def _run_or_defer(self, work: Any) -> None:
        """Run ``work``, or keep it for the next call that reaches the database.

        A call's cost and the end of its hold must not be lost to an outage (the
        call was made); they are written before anything else once Postgres is back.
        """
        from langroute.errors import DatabaseUnavailableError

        try:
            self._run(work)
        except DatabaseUnavailableError:
            with self._db.lock:
                self._deferred.append(work)

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
        """Add ``cost`` to ``key``'s period that holds ``when`` (default: now)."""
        slot = self._slot(key, when)

        def change(conn: psycopg.Connection) -> None:
            self._ensure_slot(conn, slot)
            conn.execute(
                "UPDATE langroute_spend SET spent = spent + %s "
                "WHERE key = %s AND period = %s AND period_start = %s",
                (cost, *slot),
            )

        self._run_or_defer(change)

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
        """Give back a reservation of :meth:`reserve` (its call's cost was added)."""
        with self._lock:
            ids = self._holds.get((key.name, key.period, start, amount))
            if not ids:
                return
            held = ids.pop()
            if not ids:
                del self._holds[(key.name, key.period, start, amount)]
        self._run_or_defer(
            lambda conn: conn.execute("DELETE FROM langroute_reservations WHERE id = %s", (held,))
        )

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
