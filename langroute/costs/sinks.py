"""Where a ledger keeps its records: in memory, a JSON Lines file or a SQLite database."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from langroute.costs.records import LedgerFormatError, LedgerRecord
from langroute.textfiles import utf8_lines

__all__ = ["JSONLSink", "MemorySink", "SQLiteSink", "Sink", "sink_for"]

_JSONL_SUFFIXES = (".jsonl",)
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@runtime_checkable
class Sink(Protocol):
    """Where a :class:`~langroute.costs.CostLedger` keeps its records.

    Implementations must be safe to call from several threads. ``count()`` is optional
    (the ledger falls back to ``len(read())``).
    """

    def write(self, record: LedgerRecord) -> None:
        """Append one record."""
        ...

    def read(self) -> list[LedgerRecord]:
        """All records, oldest first."""
        ...

    def close(self) -> None:
        """Release files and connections; further writes may reopen them."""
        ...


class MemorySink:
    """Keeps records in a list (lost when the process ends).

    Example:
        >>> sink = MemorySink()
        >>> sink.write(LedgerRecord(model="m"))
        >>> len(sink.read())
        1
    """

    def __init__(self) -> None:
        self._records: list[LedgerRecord] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySink({self.count()} records)"

    def write(self, record: LedgerRecord) -> None:
        """Append one record."""
        with self._lock:
            self._records.append(record)

    def read(self) -> list[LedgerRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def count(self) -> int:
        """Number of records."""
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        """Nothing to release."""


def _read_jsonl(path: Path) -> Iterator[LedgerRecord]:
    with path.open("rb") as handle:
        for number, line in utf8_lines(handle, path, LedgerFormatError):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LedgerFormatError(
                    f"not valid JSON ({exc.msg})", path=path, line=number
                ) from exc
            if not isinstance(data, dict):
                raise LedgerFormatError(
                    f"expected a JSON object, got {type(data).__name__}", path=path, line=number
                )
            try:
                yield LedgerRecord.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(part) for part in first["loc"]) or "record"
                raise LedgerFormatError(
                    f"field {field!r}: {first['msg']}", path=path, line=number
                ) from exc


class JSONLSink:
    """Appends records to a JSON Lines file, one record per line.

    Each write opens the file in append mode, writes one line, flushes and closes it, so
    nothing stays open, a crash loses at most the record being written, and log
    rotation is safe. A lock serialises this process's threads; on POSIX an advisory
    ``flock`` also serialises writers in other processes. The file and its parent folder
    are created on the first write.

    Example:
        >>> sink = JSONLSink("costs.jsonl")  # doctest: +SKIP
        >>> sink.write(LedgerRecord(model="gpt-4o-mini"))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, record: LedgerRecord) -> None:
        """Append one record as one line and flush it."""
        line = record.model_dump_json() + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle, _file_lock(handle):
                handle.write(line)
                handle.flush()

    def read(self) -> list[LedgerRecord]:
        """All records in file order ([] if the file does not exist yet).

        Raises:
            LedgerFormatError: A line is not a valid record (file and line named).
        """
        if not self.path.exists():
            return []
        return list(_read_jsonl(self.path))

    def count(self) -> int:
        """Number of records."""
        return len(self.read())

    def close(self) -> None:
        """Nothing stays open between writes; kept for the :class:`Sink` protocol."""


@contextlib.contextmanager
def _file_lock(handle: Any) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND line writes only
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_SQL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "TEXT NOT NULL"),
    ("framework", "TEXT NOT NULL"),
    ("run_id", "TEXT"),
    ("kind", "TEXT NOT NULL"),
    ("route", "TEXT"),
    ("model", "TEXT"),
    ("input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("cached_tokens", "INTEGER NOT NULL"),
    ("cost", "REAL"),
    ("baseline_model", "TEXT"),
    ("baseline_cost", "REAL"),
    ("latency_ms", "REAL"),
    ("escalated", "INTEGER NOT NULL"),
    ("escalated_from", "TEXT"),
    ("error", "TEXT"),
    ("reason", "TEXT"),
    ("confidence", "REAL"),
    ("tier", "INTEGER"),
    ("accepted", "INTEGER"),
    ("metadata", "TEXT NOT NULL"),
)
_SQL_NAMES = tuple(name for name, _ in _SQL_COLUMNS)
_SQL_TABLE = "ledger"
_SQL_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {_SQL_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {decl}" for name, decl in _SQL_COLUMNS)
    + ")"
)
_SQL_INSERT = (
    f"INSERT INTO {_SQL_TABLE} ({', '.join(_SQL_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in _SQL_NAMES)})"
)
_SQL_SELECT = f"SELECT {', '.join(_SQL_NAMES)} FROM {_SQL_TABLE} ORDER BY id"


class SQLiteSink:
    """Appends records to a SQLite database file that several processes can share.

    The table ``ledger`` has one typed column per :class:`LedgerRecord` field (booleans
    as 0/1, the timestamp as ISO-8601 text) and ``metadata`` as JSON text; it is created
    if missing. The database uses WAL journaling (``synchronous=NORMAL``) and a busy
    timeout, so writers in other processes wait for each other instead of failing.
    Each thread gets its own connection (a new one after ``fork``); a lock serialises
    this process's writers. Every write is committed before it returns.

    Args:
        path: The database file (created with its parent folder if missing).
        timeout: Seconds a writer waits for another process's lock.

    Example:
        >>> sink = SQLiteSink("costs.db")  # doctest: +SKIP
        >>> sink.write(LedgerRecord(model="gpt-4o-mini"))  # doctest: +SKIP
        >>> # sqlite3 costs.db "select route, sum(cost) from ledger group by route"
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._ready_pid: int | None = None
        self._finalizer = weakref.finalize(self, _close_connections, self._connections)

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, reopened after fork)."""
        pid = os.getpid()
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == pid:
            return cached[1]
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self._local.conn = (pid, conn)
        with self._connections_lock:
            self._connections.append((pid, conn))
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if self._ready_pid == os.getpid():
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":  # pragma: no cover - exotic fs
            warnings.warn(
                f"{self.path}: SQLite WAL mode unavailable (got {mode!r})",
                RuntimeWarning,
                stacklevel=3,
            )
        conn.execute(_SQL_CREATE)
        self._check_columns(conn)
        self._ready_pid = os.getpid()

    def _check_columns(self, conn: sqlite3.Connection) -> None:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({_SQL_TABLE})")}
        missing = [name for name in _SQL_NAMES if name not in present]
        if missing:
            raise LedgerFormatError(
                f"table {_SQL_TABLE!r} lacks columns {missing}: not a langroute ledger",
                path=self.path,
            )

    def write(self, record: LedgerRecord) -> None:
        """Insert one record (committed before returning)."""
        row = _record_to_row(record)
        with self._lock:
            try:
                if self._ready_pid != os.getpid():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._conn()
                self._ensure_schema(conn)
                conn.execute(_SQL_INSERT, row)
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
                raise LedgerFormatError(f"not a SQLite ledger: {exc}", path=self.path) from exc

    def read(self) -> list[LedgerRecord]:
        """All records in insertion order ([] if the database does not exist yet).

        Raises:
            LedgerFormatError: The file is not a SQLite langroute ledger.
        """
        if not self.path.exists():
            return []
        try:
            conn = self._conn()
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if _SQL_TABLE not in tables:
                if not tables:
                    return []
                raise LedgerFormatError(
                    f"no {_SQL_TABLE!r} table (found {sorted(tables)}): not a langroute ledger",
                    path=self.path,
                )
            self._check_columns(conn)
            rows = conn.execute(_SQL_SELECT).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=self.path) from exc
        records = []
        for number, row in enumerate(rows, start=1):
            try:
                records.append(_row_to_record(row))
            except (ValidationError, ValueError) as exc:
                raise LedgerFormatError(
                    f"row {number} is not a valid record: {exc}", path=self.path
                ) from exc
        return records

    def count(self) -> int:
        """Number of records."""
        if not self.path.exists():
            return 0
        try:
            return int(self._conn().execute(f"SELECT COUNT(*) FROM {_SQL_TABLE}").fetchone()[0])
        except sqlite3.OperationalError:  # no table yet
            return 0

    def close(self) -> None:
        """Close this process's connections (later calls reopen them)."""
        with self._connections_lock:
            _close_connections(self._connections)
        self._local = threading.local()
        self._ready_pid = None


def _close_connections(connections: list[tuple[int, sqlite3.Connection]]) -> None:
    """Close (and forget) the connections this process opened."""
    pid = os.getpid()
    for owner, conn in connections:
        if owner == pid:
            conn.close()
    connections.clear()


def _record_to_row(record: LedgerRecord) -> tuple[Any, ...]:
    data = record.model_dump()
    data["timestamp"] = record.timestamp.isoformat()
    data["escalated"] = int(record.escalated)
    data["accepted"] = None if record.accepted is None else int(record.accepted)
    data["metadata"] = json.dumps(record.metadata)
    return tuple(data[name] for name in _SQL_NAMES)


def _row_to_record(row: Sequence[Any]) -> LedgerRecord:
    data = dict(zip(_SQL_NAMES, row, strict=True))
    data["metadata"] = json.loads(data["metadata"] or "{}")
    data["escalated"] = bool(data["escalated"])
    if data["accepted"] is not None:
        data["accepted"] = bool(data["accepted"])
    return LedgerRecord.model_validate(data)


def sink_for(target: str | Path | Sink | None) -> Sink:
    """The sink a :class:`~langroute.costs.CostLedger` uses for ``target``.

    Args:
        target: ``None`` or ``"memory"`` (a :class:`MemorySink`), a ``.jsonl`` path (a
            :class:`JSONLSink`), a ``.db`` / ``.sqlite`` / ``.sqlite3`` path (a
            :class:`SQLiteSink`), or a :class:`Sink`, returned as is.

    Raises:
        LedgerFormatError: The path has an unsupported suffix.
        TypeError: ``target`` is none of the above.
    """
    if target is None or (isinstance(target, str) and target == "memory"):
        return MemorySink()
    if isinstance(target, (str, Path)):
        path = Path(target)
        suffix = path.suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            return JSONLSink(path)
        if suffix in _SQLITE_SUFFIXES:
            return SQLiteSink(path)
        raise LedgerFormatError(
            f"unsupported ledger file type {suffix or '(no suffix)'!r}: use .jsonl for JSON "
            "Lines or .db / .sqlite / .sqlite3 for SQLite",
            path=path,
        )
    if isinstance(target, Sink):
        return target
    raise TypeError(f"sink must be None, 'memory', a path or a Sink, not {type(target).__name__}")
