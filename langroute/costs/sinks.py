"""Where a ledger keeps its records: in memory, a JSON Lines file or a SQLite database.

The Postgres sink, shared by replicas, is :class:`langroute.postgres.PostgresSink`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from pydantic import ValidationError

from langroute.costs.records import LedgerRecord
from langroute.costs.schema import (
    COLUMN_NAMES,
    LEDGER_COLUMNS,
    ROW_ID_PREFIX,
    record_to_row,
    row_to_record,
)
from langroute.errors import LedgerFormatError, SinkUnavailableError, TornLinesWarning
from langroute.files.textfiles import JSONTooDeepError, load_json

__all__ = ["URL_SINKS", "JSONLSink", "MemorySink", "SQLiteSink", "Sink", "sink_for"]

_JSONL_SUFFIXES = (".jsonl",)
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@runtime_checkable
class Sink(Protocol):
    """Where a :class:`~langroute.costs.CostLedger` keeps its records.

    Implementations must be safe to call from several threads. Optional methods:
    ``count()`` (the ledger falls back to ``len(read())``), ``write_many(records)`` (used
    by the background writer to store a batch at once, all or none), ``check()``
    (called when a ledger is built, to reject a file that is not a ledger at once),
    ``find(record_id)`` (a lookup by id without reading every record) and
    ``analytics_session(segment_key)`` (the ledger's own database answers the report's
    and the monitor's queries: see :func:`langroute.costs.analytics.open_session`).
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
        self._by_id: dict[str, LedgerRecord] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemorySink({self.count()} records)"

    def write(self, record: LedgerRecord) -> None:
        """Append one record."""
        with self._lock:
            self._records.append(record)
            self._by_id.setdefault(record.record_id, record)

    def read(self) -> list[LedgerRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def find(self, record_id: str) -> LedgerRecord | None:
        """The record with ``record_id`` (``None`` when there is none)."""
        with self._lock:
            return self._by_id.get(record_id)

    def count(self) -> int:
        """Number of records."""
        with self._lock:
            return len(self._records)

    def close(self) -> None:
        """Nothing to release."""


# The end of a JSON object cut short: the token the text stops in (or nothing).
_PARTIAL_TOKEN = re.compile(
    r"""
    -?\d*(?:\.\d*)?(?:[eE][+-]?\d*)?                        # a number, or nothing
    | t(?:r(?:u)?)? | f(?:a(?:l(?:s)?)?)? | n(?:u(?:l)?)?   # a literal's first letters
    | u[0-9a-fA-F]{0,4}                                     # a \\u escape in a string
    """,
    re.VERBOSE | re.DOTALL,
)


def _cut_short(text: str) -> bool:
    """Whether ``text`` is the start of a JSON object that stops before the object ends."""
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except RecursionError:  # nested too deeply to be one of our records
        return False
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unterminated string"):  # the string runs to the end
            return True
        return _PARTIAL_TOKEN.fullmatch(text, exc.pos) is not None
    return False


_QUOTE, _BACKSLASH, _OPEN, _CLOSE = 34, 92, 123, 125  # the bytes '"', '\\', '{', '}'
_STRUCTURE = re.compile(rb'["{}]')


def _last_object_start(body: bytes) -> int:
    """Where the JSON object that ends ``body`` starts (-1: it does not end in one).

    One backward pass: a JSON text ending the line has exactly one start, found by
    matching braces from the end while skipping strings, so torn-line recovery reads each
    byte a bounded number of times (trying every ``{"`` took minutes on a 0.4 MB line).
    """
    end = len(body.rstrip())
    if end == 0 or body[end - 1] != _CLOSE:
        return -1
    depth, in_string = 0, False
    for position in reversed([m.start() for m in _STRUCTURE.finditer(body, 0, end)]):
        byte = body[position]
        if byte == _QUOTE:
            before = position - 1
            while before >= 0 and body[before] == _BACKSLASH:
                before -= 1
            if (position - 1 - before) % 2 == 0:  # not escaped: a string starts or ends
                in_string = not in_string
        elif in_string:
            continue
        elif byte == _CLOSE:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return position
    return -1


def _parse_line(body: bytes) -> tuple[Any, bool]:
    """One non-blank line: its JSON value (``None`` if all torn) and whether a tear was skipped.

    A line is torn when it is a JSON object cut short (its writer was killed mid-write);
    a complete object that a writer appended to a torn line without a newline between
    them is kept. The work is linear in the line's length.

    Raises:
        ValueError: The line is neither a JSON value nor torn, or it nests deeper than
            :data:`~langroute.files.textfiles.MAX_JSON_DEPTH` (the message says why).
    """
    try:
        return load_json(body), False
    except UnicodeDecodeError:
        problem = "not valid UTF-8"
    except JSONTooDeepError:
        raise
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc.msg})"
    start = _last_object_start(body)
    if start > 0:  # a whole record glued onto a torn one?
        head, tail = body[:start], body[start:]
        if _cut_short(head.decode("utf-8", errors="replace").strip()):
            with contextlib.suppress(UnicodeDecodeError, ValueError):
                value = load_json(tail)
                # writers start a record with its timestamp and end it with its metadata
                if isinstance(value, dict) and {"timestamp", "metadata"} <= value.keys():
                    return value, True
    if _cut_short(body.decode("utf-8", errors="replace").strip()):
        return None, True
    raise ValueError(problem)


_LINE_ID_PREFIX = "jsonl-line-"
"""Prefix of the stable id given to a line of an older ledger that has no record_id."""


def _read_jsonl(path: Path, handle: BinaryIO) -> tuple[list[LedgerRecord], list[int]]:
    """The records of a JSONL ledger and the numbers of the torn lines it skipped."""
    torn: list[int] = []
    records = [record for _, record in _iter_jsonl(path, handle, torn)]
    return records, torn


def _iter_jsonl(
    path: Path, handle: BinaryIO, torn: list[int], start_line: int = 1
) -> Iterator[tuple[int, LedgerRecord]]:
    """Each record of a JSONL ledger with its line number; torn lines go to ``torn``."""
    for number, raw in enumerate(handle, start=start_line):
        record = _line_record(path, number, raw, torn)
        if record is not None:
            yield number, record


def _line_record(path: Path, number: int, raw: bytes, torn: list[int]) -> LedgerRecord | None:
    """The record on one line (``None`` for a blank or torn line, whose number goes to ``torn``).

    Raises:
        LedgerFormatError: The line is neither a record nor torn (file and line named).
    """
    if not raw.strip():
        return None
    if b'"record_id"' in raw:  # the usual line: parsed and validated in one step
        try:
            record = LedgerRecord.model_validate_json(raw)
        except ValidationError:
            pass  # torn, or not a record: the careful path says which, and where
        else:
            if "record_id" in record.model_fields_set:
                return record
            # the bytes were in metadata or the query: an older line, whose stable id
            # (from its line number) the careful path gives
    try:
        data, tear = _parse_line(raw.rstrip(b"\r\n"))
    except ValueError as exc:
        raise LedgerFormatError(str(exc), path=path, line=number) from exc
    if tear:
        torn.append(number)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise LedgerFormatError(
            f"expected a JSON object, got {type(data).__name__}", path=path, line=number
        )
    # a line written before records had ids gets a stable one from its line number
    data.setdefault("record_id", f"{_LINE_ID_PREFIX}{number}")
    try:
        return LedgerRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        message = first["msg"].removeprefix("Value error, ")
        raise LedgerFormatError(f"field {field!r}: {message}", path=path, line=number) from exc


def _torn_message(path: Path, torn: Sequence[int]) -> str:
    shown = ", ".join(str(number) for number in torn[:10])
    if len(torn) > 10:
        shown += f", ... (+{len(torn) - 10} more)"
    plural = "s" if len(torn) > 1 else ""
    return f"{path}: skipped {len(torn)} torn line{plural} (line{plural} {shown})"


class JSONLSink:
    """Appends records to a JSON Lines file, one record per line.

    Each write opens the file in append mode, writes whole lines, flushes and closes it,
    so nothing stays open, a crash loses at most the records being written, and log
    rotation is safe. A lock serialises this process's threads; on POSIX an advisory
    ``flock`` also serialises writers in other processes (a writer waits at most
    ``timeout`` seconds for it, then raises :class:`TimeoutError`). A writer that finds
    the file ending in a partial line (left by a writer killed mid-write) starts on a new
    line, so records are never glued onto a torn one. The file and its parent folder
    are created on the first write.

    Readers skip torn lines, warn with :class:`~langroute.costs.TornLinesWarning` and
    keep their numbers in :attr:`torn_lines`.

    Args:
        path: The ``.jsonl`` file.
        timeout: Seconds a writer waits for another process's lock.

    Example:
        >>> sink = JSONLSink("costs.jsonl")  # doctest: +SKIP
        >>> sink.write(LedgerRecord(model="gpt-4o-mini"))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.torn_lines: list[int] = []
        """1-based numbers of the torn lines the last :meth:`read` skipped."""
        self._lock = threading.Lock()
        self._index = _LineIndex(self.path)

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, record: LedgerRecord) -> None:
        """Append one record as one line and flush it.

        Raises:
            TimeoutError: Another process held the file's lock for ``timeout`` seconds.
        """
        self.write_many([record])

    def write_many(self, records: Sequence[LedgerRecord]) -> None:
        """Append records, one line each, in one locked write (all or none are attempted).

        Raises:
            TimeoutError: Another process held the file's lock for ``timeout`` seconds.
            SinkUnavailableError: The file cannot be written (read-only, a full disk, a
                folder in its place): the background writer holds the records and retries.
        """
        data = b"".join(record.model_dump_json().encode("utf-8") + b"\n" for record in records)
        if not data:
            return
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("ab+") as handle, _file_lock(handle, self.path, self.timeout):
                    if _ends_mid_line(handle):
                        data = b"\n" + data  # end the torn line; never glue onto it
                    handle.write(data)
                    handle.flush()
            except TimeoutError:
                raise
            except OSError as exc:  # read-only, full, or not a file: hold the records
                raise SinkUnavailableError(f"{self.path}: {exc}") from exc

    def read(self) -> list[LedgerRecord]:
        """All records in file order ([] if the file does not exist yet).

        Torn lines are skipped, counted in :attr:`torn_lines` and reported with a
        :class:`~langroute.costs.TornLinesWarning` (when they differ from the last
        read's). The read waits up to ``timeout`` for writers to finish, then reads
        anyway.

        Raises:
            LedgerFormatError: A complete line is not a valid record (file and line named).
        """
        with self.stream() as records:
            return list(records)

    @contextlib.contextmanager
    def stream(self) -> Iterator[Iterator[LedgerRecord]]:
        """The records in file order, one at a time (constant memory), as :meth:`read` reads.

        The shared lock is held while the iterator is open; torn lines are noted in
        :attr:`torn_lines` (and warned about) once it is used up.

        Example:
            >>> with JSONLSink("costs.jsonl").stream() as records:  # doctest: +SKIP
            ...     calls = sum(1 for _ in records)
        """
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self.torn_lines = []
            yield iter(())
            return
        torn: list[int] = []
        with handle, contextlib.ExitStack() as stack:
            # a writer holding the lock past the timeout: complete lines are still right
            with contextlib.suppress(TimeoutError):
                stack.enter_context(_file_lock(handle, self.path, self.timeout, shared=True))
            yield (record for _, record in _iter_jsonl(self.path, handle, torn))
        if torn and torn != self.torn_lines:  # once per sink, and again for new ones
            warnings.warn(TornLinesWarning(_torn_message(self.path, torn)), stacklevel=3)
        self.torn_lines = torn

    def find(self, record_id: str) -> LedgerRecord | None:
        """The record with ``record_id`` (``None`` when there is none), through an index.

        The first lookup reads the file once and keeps each record id's line offset;
        later lookups read only the lines appended since (a file that shrank or was
        replaced is indexed again), then the one line they need.

        Raises:
            LedgerFormatError: A complete line is not a valid record (file and line named).
        """
        with self._lock:
            return self._index.find(record_id)

    def count(self) -> int:
        """Number of records."""
        with self.stream() as records:
            return sum(1 for _ in records)

    def close(self) -> None:
        """Nothing stays open between writes; kept for the :class:`Sink` protocol."""


class _LineIndex:
    """Record id -> (byte offset, line number) of a JSONL ledger, extended as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset(None)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self.identity = identity
        self.size = 0  # bytes indexed: whole lines only
        self.lines = 0
        self.offsets: dict[str, tuple[int, int]] = {}

    def find(self, record_id: str) -> LedgerRecord | None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self._reset(None)
            return None
        with handle:
            status = os.fstat(handle.fileno())
            identity = (status.st_dev, status.st_ino)
            if identity != self.identity or status.st_size < self.size:
                self._reset(identity)  # a new or rewritten file
            if record_id not in self.offsets:
                self._extend(handle)
            place = self.offsets.get(record_id)
            if place is None:
                return None
            handle.seek(place[0])
            return _line_record(self.path, place[1], handle.readline(), [])

    def _extend(self, handle: BinaryIO) -> None:
        handle.seek(self.size)
        offset, number = self.size, self.lines
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # a line still being written: indexed once complete
            number += 1
            record = _line_record(self.path, number, raw, [])
            if record is not None:
                self.offsets.setdefault(record.record_id, (offset, number))
            offset += len(raw)
        self.size, self.lines = offset, number


def _ends_mid_line(handle: BinaryIO) -> bool:
    """Whether the file's last byte is not a newline (a torn line is at its end)."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return False
    handle.seek(size - 1)
    return handle.read(1) != b"\n"


@contextlib.contextmanager
def _file_lock(
    handle: BinaryIO, path: Path, timeout: float, *, shared: bool = False
) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``handle``, waiting at most ``timeout`` seconds for it.

    Raises:
        TimeoutError: Another process held the lock all that time.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND line writes only
        yield
        return
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(handle.fileno(), mode)
            break
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{path}: another process held the ledger's lock for {timeout:g} s"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_SQL_ADDED = frozenset(
    {"record_id", "query", "feedback_for", "verdict"}
    | {"shadow_router", "shadow_route", "shadow_reason", "shadow_confidence", "shadow_error"}
)
"""Columns that older ledgers lack (langroute < 0.3; the shadow ones, added with shadow
evaluation): added on first write, read as NULL."""
SQL_TABLE = "ledger"
"""The SQLite ledger's table."""
_SQL_TABLE = SQL_TABLE
_SQL_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {_SQL_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {decl}" for name, decl in LEDGER_COLUMNS)
    + ")"
)
_SQL_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {_SQL_TABLE}_record_id ON {_SQL_TABLE} (record_id)",
    # the recent rows, without reading the rest (the adaptive dial's window)
    f"CREATE INDEX IF NOT EXISTS {_SQL_TABLE}_timestamp ON {_SQL_TABLE} (timestamp)",
)
_SQL_INSERT = (
    f"INSERT INTO {_SQL_TABLE} ({', '.join(COLUMN_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in COLUMN_NAMES)})"
)


def _sql_select(present: set[str], where: str = "") -> str:
    """SELECT of every column (NULL for columns an older ledger lacks), then the row id."""
    columns = [name if name in present else f"NULL AS {name}" for name in COLUMN_NAMES]
    return f"SELECT {', '.join(columns)}, id FROM {_SQL_TABLE} {where} ORDER BY id"


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
        present = self._check_columns(conn)
        for name, decl in LEDGER_COLUMNS:  # upgrade a ledger of an older version in place
            if name not in present:
                conn.execute(f"ALTER TABLE {_SQL_TABLE} ADD COLUMN {name} {decl}")
        for index in _SQL_INDEXES:
            conn.execute(index)
        self._ready_pid = os.getpid()

    def _check_columns(self, conn: sqlite3.Connection) -> set[str]:
        """The ledger table's columns; raises if one that every version has is missing."""
        return sqlite_ledger_columns(conn, self.path)

    def write(self, record: LedgerRecord) -> None:
        """Insert one record (committed before returning).

        Raises:
            SinkUnavailableError: The database stayed locked for ``timeout`` seconds.
        """
        self.write_many([record])

    def write_many(self, records: Sequence[LedgerRecord]) -> None:
        """Insert records in one transaction (committed before returning; all or none).

        Raises:
            SinkUnavailableError: The database stayed locked for ``timeout`` seconds, or
                cannot be written (read-only, a full disk, cannot be opened): the
                background writer holds the records and retries, as for Postgres.
        """
        rows = [record_to_row(record) for record in records]
        if not rows:
            return
        with self._lock:
            try:
                if self._ready_pid != os.getpid():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._conn()
                self._ensure_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_SQL_INSERT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):  # another process holds the lock: hold and retry
                    raise SinkUnavailableError(
                        f"{self.path}: the database stayed locked for {self.timeout:g} s ({exc})"
                    ) from exc
                # read-only, a full disk, a file that cannot be opened: hold the records
                raise SinkUnavailableError(f"{self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
                raise LedgerFormatError(f"not a SQLite ledger: {exc}", path=self.path) from exc

    def read(self) -> list[LedgerRecord]:
        """All records in insertion order ([] if the database does not exist yet).

        Raises:
            LedgerFormatError: The file is not a SQLite langroute ledger.
        """
        if not self.path.exists():
            return []
        return self._select("")

    def find(self, record_id: str) -> LedgerRecord | None:
        """The record with ``record_id`` (``None`` when there is none).

        Raises:
            LedgerFormatError: The file is not a SQLite langroute ledger.
        """
        if not self.path.exists():
            return None
        found = self._select("WHERE record_id = ?", (record_id,))
        if not found and record_id.startswith(ROW_ID_PREFIX):  # a row of an older ledger
            row = record_id.removeprefix(ROW_ID_PREFIX)
            if row.isdigit():
                found = self._select("WHERE id = ? AND record_id IS NULL", (int(row),))
        return found[0] if found else None

    def _select(self, where: str, params: Sequence[Any] = ()) -> list[LedgerRecord]:
        try:
            conn = self._conn()
            if not self._has_table(conn):
                return []
            present = self._check_columns(conn)
            rows = conn.execute(_sql_select(present, where), tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=self.path) from exc
        records = []
        for number, row in enumerate(rows, start=1):
            try:
                records.append(row_to_record(row))
            except (ValidationError, ValueError) as exc:
                raise LedgerFormatError(
                    f"row {row[-1] if where else number} is not a valid record: {exc}",
                    path=self.path,
                ) from exc
        return records

    def check(self) -> None:
        """Fail now if the file exists but is not a langroute ledger (reads only).

        Raises:
            LedgerFormatError: Not a SQLite database, or its tables are not a ledger's.
        """
        if not self.path.exists():
            return
        try:
            self._has_table(self._conn())
        except sqlite3.DatabaseError as exc:
            raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=self.path) from exc

    def _has_table(self, conn: sqlite3.Connection) -> bool:
        """Whether the ledger table exists (``False`` in an empty database).

        Raises:
            LedgerFormatError: Other tables but no ledger, or a ledger table without our
                columns.
        """
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if _SQL_TABLE not in tables:
            if not tables:
                return False
            raise LedgerFormatError(
                f"no {_SQL_TABLE!r} table (found {sorted(tables)}): not a langroute ledger",
                path=self.path,
            )
        self._check_columns(conn)
        return True

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


def sqlite_ledger_columns(conn: sqlite3.Connection, path: Path) -> set[str]:
    """The columns of the ledger table in ``conn``'s main database (empty: no table).

    Raises:
        LedgerFormatError: The table lacks a column every version of the ledger has.
    """
    present = {row[1] for row in conn.execute(f"PRAGMA main.table_info({_SQL_TABLE})")}
    missing = [name for name in COLUMN_NAMES if name not in present and name not in _SQL_ADDED]
    if present and missing:
        raise LedgerFormatError(
            f"table {_SQL_TABLE!r} lacks columns {missing}: not a langroute ledger", path=path
        )
    return present


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def sqlite_rows(cursor: sqlite3.Cursor, path: Path) -> Iterator[Any]:
    """The cursor's rows; a database error while stepping names the file."""
    try:
        yield from cursor
    except sqlite3.DatabaseError as exc:
        raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=path) from exc


def _close_connections(connections: list[tuple[int, sqlite3.Connection]]) -> None:
    """Close (and forget) the connections this process opened."""
    pid = os.getpid()
    for owner, conn in connections:
        if owner == pid:
            conn.close()
    connections.clear()


URL_SINKS: dict[str, str] = {
    "postgresql": "langroute.postgres.ledger:PostgresSink",
    "postgres": "langroute.postgres.ledger:PostgresSink",
}
"""URL scheme -> the sink class (``"module:Class"``) a ledger URL of that scheme opens.

Sinks are found by name, as database drivers are: the costs package depends on no
database package, and another sink registers by adding its scheme here."""


def _url_sink(scheme: str, url: str) -> Sink:
    module, _, name = URL_SINKS[scheme].partition(":")
    return getattr(importlib.import_module(module), name)(url)


def sink_for(target: str | Path | Sink | None) -> Sink:
    """The sink a :class:`~langroute.costs.CostLedger` uses for ``target``.

    Args:
        target: ``None`` or ``"memory"`` (a :class:`MemorySink`), a ``.jsonl`` path (a
            :class:`JSONLSink`), a ``.db`` / ``.sqlite`` / ``.sqlite3`` path (a
            :class:`SQLiteSink`), a ``postgresql://`` URL string (a
            :class:`~langroute.postgres.PostgresSink`, shared by replicas), or a
            :class:`Sink`, returned as is.

    Raises:
        LedgerFormatError: The path has an unsupported suffix.
        TypeError: ``target`` is none of the above.
    """
    if target is None or (isinstance(target, str) and target == "memory"):
        return MemorySink()
    if isinstance(target, str):
        scheme = target.partition("://")[0].lower() if "://" in target else None
        if scheme in URL_SINKS:
            return _url_sink(scheme, target)
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
