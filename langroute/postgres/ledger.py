"""The cost ledger in Postgres: one table that every replica writes and reports read."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from langroute.costs.records import LedgerRecord
from langroute.errors import DatabaseUnavailableError, LedgerFormatError, SinkUnavailableError
from langroute.postgres.database import (
    LEDGER_TABLE,
    SchemaConnection,
    connect,
    ledger_columns,
    redact,
)

if TYPE_CHECKING:
    import psycopg

    from langroute.costs.analytics import LedgerSession

__all__ = ["PostgresSink"]

_STRICT_JSON_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {name}(metadata text) RETURNS json
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN NULLIF(metadata, '')::json;
EXCEPTION WHEN invalid_text_representation THEN
    -- Python's json wrote bare NaN / Infinity / -Infinity: read them as null
    RETURN regexp_replace(metadata, '(-?Infinity|NaN)(?=\s*[,}}\]])', 'null', 'g')::json;
END
$$"""


class PostgresSink:
    """Appends ledger records to the ``langroute_ledger`` table of a Postgres database.

    The table has the columns of :class:`~langroute.costs.SQLiteSink`'s ``ledger`` table
    (derived from the same list; booleans as 0/1, the timestamp as ISO-8601 text,
    ``metadata`` as JSON text), plus a ``seq`` key in insertion order. Schema creation
    and upgrades happen on first use (see :mod:`langroute.postgres.database`). A
    :class:`~langroute.costs.CostLedger` on this sink writes batches with ``COPY`` on its
    background thread, off the request path. When the database cannot be reached the
    writer keeps the records queued and retries with backoff (see
    :class:`~langroute.costs.writer.SinkUnavailableError`); they are dropped, counted
    and warned about only past the ledger's ``max_pending``.

    Args:
        url: A ``postgresql://`` URL.
        timeout: Seconds to wait for the server when connecting.

    Example:
        >>> ledger = CostLedger("postgresql://app@db/langroute")  # doctest: +SKIP
        >>> # langroute report postgresql://app@db/langroute
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._db = SchemaConnection(url, timeout=timeout)
        names = [name for name, _, _ in ledger_columns()]
        self._names = names
        self._copy = f"COPY {LEDGER_TABLE} ({', '.join(names)}) FROM STDIN"
        self._select = f"SELECT {', '.join(names)}, seq FROM {LEDGER_TABLE}"

    def __repr__(self) -> str:
        return f"PostgresSink({redact(self.url)!r})"

    def _run(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction; an unreachable database is a clear error."""
        import psycopg

        try:
            return self._db.run(work)
        except psycopg.DataError as exc:  # the row itself (a NUL byte in text, ...)
            raise ValueError(f"{self!r}: a record was rejected: {exc}") from exc

    def write(self, record: LedgerRecord) -> None:
        """Insert one record (committed before returning).

        Raises:
            SinkUnavailableError: The database cannot be reached.
        """
        self.write_many([record])

    def write_many(self, records: Sequence[LedgerRecord]) -> None:
        """Insert records in one transaction with ``COPY`` (all or none).

        Raises:
            SinkUnavailableError: The database cannot be reached (the background writer
                keeps the records and retries).
        """
        from langroute.costs.schema import record_to_row

        rows = [record_to_row(record) for record in records]
        if not rows:
            return

        def insert(conn: psycopg.Connection) -> None:
            with conn.cursor() as cursor, cursor.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row)

        try:
            self._run(insert)
        except DatabaseUnavailableError as exc:
            raise SinkUnavailableError(str(exc)) from exc

    def read(self) -> list[LedgerRecord]:
        """All records of every writer, in insertion order.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            LedgerFormatError: A row is not a valid record (its ``seq`` named).
        """
        return self._records("ORDER BY seq")

    def find(self, record_id: str) -> LedgerRecord | None:
        """The record with ``record_id`` (``None`` when there is none).

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
        """
        found = self._records("WHERE record_id = %s ORDER BY seq LIMIT 1", (record_id,))
        return found[0] if found else None

    def _records(self, clause: str, params: Sequence[Any] = ()) -> list[LedgerRecord]:
        from pydantic import ValidationError

        from langroute.costs.schema import row_to_record

        query = f"{self._select} {clause}"
        rows = self._run(lambda conn: conn.execute(query, tuple(params)).fetchall())
        records = []
        for row in rows:
            try:
                records.append(row_to_record(row))
            except (ValidationError, ValueError) as exc:
                raise LedgerFormatError(
                    f"{redact(self.url)}: row seq={row[-1]} of {LEDGER_TABLE} is not a valid "
                    f"record: {exc}"
                ) from exc
        return records

    def analytics_connection(self) -> psycopg.Connection:
        """A connection of its own for reading (autocommit), with the strict-JSON function.

        ``pg_temp.langroute_strict_json`` reads metadata that Python wrote with ``NaN``
        or ``Infinity`` as ``null``, as SQLite reads it. The caller closes it.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
        """
        from langroute.costs.analytics import PG_STRICT_JSON

        self.check()  # the schema exists, its columns known
        conn = connect(self.url, autocommit=True, timeout=self.timeout)
        try:
            conn.execute(_STRICT_JSON_FUNCTION.format(name=PG_STRICT_JSON))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def analytics_session(
        self, segment_key: str | None, *, similarity: bool = True
    ) -> Iterator[LedgerSession]:
        """A :class:`~langroute.costs.analytics.LedgerSession` over this database.

        On a connection of its own (the writer's lock is not held while the queries
        run), in one read-only transaction, the calls' compact columns are copied into a
        temporary table (dropped at commit); each query streams through a server-side
        cursor. Metadata that Python wrote with ``NaN`` or ``Infinity`` (which Postgres'
        ``json`` refuses) is read with those values as ``null``, as SQLite reads it.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
        """
        import psycopg

        from langroute.costs.analytics import (
            CALLS,
            FEEDBACK,
            PG_STRICT_JSON,
            POSTGRES,
            LedgerSession,
            calls_select_sql,
            feedback_select_sql,
        )

        cursors = itertools.count()

        def run(conn: psycopg.Connection, sql: str) -> Iterator[Any]:
            with conn.cursor(name=f"langroute_analytics_{next(cursors)}") as cursor:
                cursor.itersize = 10_000
                cursor.execute(sql)
                yield from cursor

        self.check()  # the schema exists (created or upgraded once, under the lock)
        conn = connect(self.url, timeout=self.timeout)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.execute(_STRICT_JSON_FUNCTION.format(name=PG_STRICT_JSON))
                select = calls_select_sql(
                    POSTGRES, LEDGER_TABLE, self._names, segment_key, similarity=similarity
                )
                conn.execute(f"CREATE TEMP TABLE {CALLS} ON COMMIT DROP AS {select}")
                feedback = feedback_select_sql(POSTGRES, LEDGER_TABLE, self._names)
                conn.execute(f"CREATE TEMP TABLE {FEEDBACK} ON COMMIT DROP AS {feedback}")
                yield LedgerSession(POSTGRES, lambda sql: run(conn, sql))
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(
                f"lost the connection to {redact(self.url)}: {' '.join(str(exc).split())}"
            ) from exc
        finally:
            conn.close()

    def count(self) -> int:
        """Number of records."""
        return int(
            self._run(lambda conn: conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone())[
                0
            ]
        )

    def check(self) -> None:
        """Connect and create or upgrade the schema now, so a bad URL fails at start.

        Raises:
            DatabaseUnavailableError: The database cannot be reached.
            SchemaVersionError: Its schema is newer than this langroute knows.
        """
        self._run(lambda conn: None)

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        self._db.close()
