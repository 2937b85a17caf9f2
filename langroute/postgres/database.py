"""Connecting to a shared Postgres database, and its versioned langroute schema.

Every table langroute keeps in Postgres is created and upgraded here, in numbered steps
(:data:`MIGRATIONS`); the version reached is stored in ``langroute_schema_version``. A
process that finds a newer version than it knows stops with :class:`SchemaVersionError`
instead of writing rows an older layout does not expect. Upgrades run under an advisory
lock, so replicas starting together apply each step once.

psycopg (3) is imported on first use: install it with ``pip install "langroute[postgres]"``.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from langroute.errors import DatabaseUnavailableError, SchemaVersionError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SchemaConnection",
    "connect",
    "ensure_schema",
    "is_postgres_url",
    "ledger_columns",
    "redact",
    "schema_version",
]

_URL_PREFIXES = ("postgresql://", "postgres://")
_LOCK_KEY = 0x6C616E67726F  # pg_advisory_xact_lock key of schema upgrades ("langro")

LEDGER_TABLE = "langroute_ledger"

_PG_TYPES = {"TEXT": "TEXT", "INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION"}


def ledger_columns() -> list[tuple[str, str, bool]]:
    """The ledger's columns in Postgres: ``(name, type, not_null)``.

    Derived from the SQLite sink's column list, so a column added to the ledger record
    flows to both stores.
    """
    from langroute.costs.schema import LEDGER_COLUMNS

    columns = []
    for name, decl in LEDGER_COLUMNS:
        kind, *rest = decl.split()
        columns.append((name, _PG_TYPES[kind.upper()], "NOT NULL" in " ".join(rest).upper()))
    return columns


def _ledger_table() -> list[str]:
    body = ", ".join(
        f"{name} {kind}{' NOT NULL' if not_null else ''}"
        for name, kind, not_null in ledger_columns()
    )
    return [
        f"CREATE TABLE {LEDGER_TABLE} (seq BIGSERIAL PRIMARY KEY, {body})",
        f"CREATE INDEX {LEDGER_TABLE}_timestamp ON {LEDGER_TABLE} (timestamp)",
        f"CREATE INDEX {LEDGER_TABLE}_record_id ON {LEDGER_TABLE} (record_id)",
    ]


MIGRATIONS: dict[int, Any] = {
    1: lambda: [
        # one row per shared router: its settings, embedder and change sequence
        """CREATE TABLE langroute_routers (
            name TEXT PRIMARY KEY,
            seq BIGINT NOT NULL DEFAULT 0,
            settings_seq BIGINT NOT NULL DEFAULT 0,
            settings JSONB NOT NULL,
            embedder TEXT NOT NULL,
            dimension INTEGER NOT NULL CHECK (dimension > 0),
            calibration JSONB,
            tuning JSONB,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )""",
        # exemplars with their vectors (float32, little-endian); a removal leaves a
        # tombstone (deleted, no vector) so followers learn of it by sequence number
        """CREATE TABLE langroute_exemplars (
            router TEXT NOT NULL REFERENCES langroute_routers (name) ON DELETE CASCADE,
            id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            deleted BOOLEAN NOT NULL DEFAULT false,
            body JSONB,
            vector BYTEA,
            PRIMARY KEY (router, id)
        )""",
        "CREATE INDEX langroute_exemplars_seq ON langroute_exemplars (router, seq)",
        *_ledger_table(),
    ],
    2: lambda: [
        # API-key spend per budget period, raised by every replica (langroute.postgres.spend)
        """CREATE TABLE langroute_spend (
            key TEXT NOT NULL,
            period TEXT NOT NULL,
            period_start TIMESTAMPTZ NOT NULL,
            spent DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (key, period, period_start)
        )""",
        # the budget holds of calls under way; an expired one (its replica died) is ignored
        """CREATE TABLE langroute_reservations (
            id BIGSERIAL PRIMARY KEY,
            key TEXT NOT NULL,
            period TEXT NOT NULL,
            period_start TIMESTAMPTZ NOT NULL,
            amount DOUBLE PRECISION NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX langroute_reservations_slot ON langroute_reservations "
        "(key, period, period_start)",
    ],
}
"""Schema steps: version -> a function returning the SQL statements that reach it."""

SCHEMA_VERSION = max(MIGRATIONS)
"""The newest schema version this langroute knows."""


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` is a ``postgresql://`` (or ``postgres://``) URL.

    Example:
        >>> is_postgres_url("postgresql://db/langroute"), is_postgres_url("costs.db")
        (True, False)
    """
    return isinstance(target, str) and target.lower().startswith(_URL_PREFIXES)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and reprs).

    Also safe on a message that holds URLs among other text.

    Example:
        >>> redact("postgresql://app:s3cret@db:5432/langroute")
        'postgresql://app:***@db:5432/langroute'
    """
    url = re.sub(r"(://[^\s:/@?#]*:)[^\s@/?#]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise DatabaseUnavailableError(
            'Postgres support needs psycopg: pip install "langroute[postgres]"'
        ) from exc
    return psycopg


def connect(url: str, *, autocommit: bool = False, timeout: float = 5.0) -> psycopg.Connection:
    """Open a connection to ``url``, or fail with a clear message.

    Args:
        url: A ``postgresql://`` URL (libpq syntax, e.g. ``?host=/socket/dir``).
        autocommit: Open the connection in autocommit mode.
        timeout: Seconds to wait for the server.

    Raises:
        DatabaseUnavailableError: The URL is malformed, or the server cannot be reached,
            refuses the login or lacks the database (the message names the URL, without
            its password).
    """
    if not is_postgres_url(url):
        raise DatabaseUnavailableError(
            f"not a Postgres URL: {redact(str(url))!r} (expected postgresql://...)"
        )
    psycopg = _psycopg()
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, round(timeout)))
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to Postgres at {redact(url)}: {detail}"
        ) from exc


def schema_version(conn: psycopg.Connection) -> int:
    """The schema version stored in the database (0 when langroute never ran there)."""
    row = conn.execute("SELECT to_regclass('langroute_schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT max(version) FROM langroute_schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def ensure_schema(conn: psycopg.Connection, *, target: int = SCHEMA_VERSION) -> int:
    """Create or upgrade langroute's tables to ``target``; returns the version reached.

    Each missing step runs in one transaction under an advisory lock (concurrent
    starters wait, then find the work done). Ledger columns added to the record after
    a table was created are added too (nullable), so a new column flows to old tables.

    Raises:
        SchemaVersionError: The database holds a newer schema than ``target`` knows.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        current = schema_version(conn)
        if current > target:
            raise SchemaVersionError(
                f"the database's langroute schema is version {current}, newer than this "
                f"langroute knows ({target}): upgrade langroute on this machine"
            )
        if current == 0:
            conn.execute("CREATE TABLE langroute_schema_version (version INTEGER NOT NULL)")
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version]():
                conn.execute(statement)
            conn.execute("INSERT INTO langroute_schema_version (version) VALUES (%s)", (version,))
        present = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (LEDGER_TABLE,),
            )
        }
        for name, kind, _ in ledger_columns():
            if name not in present:
                conn.execute(f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN {name} {kind}")
    return target


class SchemaConnection:
    """One connection to ``url`` with langroute's schema ensured, reopened after a failure.

    :meth:`run` runs work in a transaction under a lock (one caller at a time); a lost
    server is a :class:`~langroute.errors.DatabaseUnavailableError` naming the URL
    without its password, and the next :meth:`run` connects again.

    Example:
        >>> db = SchemaConnection("postgresql://app@db/langroute")  # doctest: +SKIP
        >>> db.run(lambda conn: conn.execute("SELECT 1").fetchone())  # doctest: +SKIP
        (1,)
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.lock = threading.RLock()
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        """The open connection (a new one, with the schema ensured, after a failure)."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        conn = connect(self.url, timeout=self.timeout)
        try:
            ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def lost(self, exc: BaseException) -> DatabaseUnavailableError:
        """Drop the connection after ``exc`` (the server went away); the error to raise."""
        self.close()
        return DatabaseUnavailableError(
            f"lost the connection to {redact(self.url)}: {' '.join(str(exc).split())}"
        )

    def run(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction; an unreachable database is a clear error."""
        psycopg = _psycopg()
        with self.lock:
            try:
                conn = self.connection()
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError as exc:
                raise self.lost(exc) from exc

    def close(self) -> None:
        """Close the connection (a later :meth:`run` reopens it)."""
        with self.lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
