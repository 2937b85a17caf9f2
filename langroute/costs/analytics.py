"""Ledger analytics computed where the ledger lives, in bounded memory.

``langroute report`` and ``langroute monitor`` (and the dashboard) read ledgers of
millions of rows. Building a :class:`~langroute.costs.LedgerRecord` per row costs
minutes and gigabytes, so these functions never do. A :class:`LedgerSession` exposes
the calls' compact columns as :data:`CALLS` (the database's JSON operators read the few
metadata keys that matter) and the feedback rows as :data:`FEEDBACK`: temporary tables
for several queries, or views over a SQLite ledger for one pass:

* :func:`ledger_summary` is :func:`~langroute.costs.summarize` of a ledger (the
  ``report`` command, :meth:`CostLedger.summary <langroute.costs.CostLedger.summary>`),
  and :func:`langroute.monitoring.monitor_ledger` the ``monitor`` command: both read
  the calls once, as numpy columns (:func:`read_calls`: one
  plain streamed ``SELECT``, no ``GROUP BY`` sort, no Python aggregate per row), group
  them by request and route with numpy, sum costs exactly with :func:`math.fsum`, as
  ``summarize`` does, and rank latencies for the percentiles (:func:`percentiles`).
  :data:`SUMMARY_QUERIES` is an earlier, SQL form of the summary, kept for callers that
  read it.
* :func:`session_requests` returns the calls ordered by request (``run_id``), each
  request whole; :func:`request_groups` and :func:`latest_verdicts` give the calls per
  request and the verdict per judged call, for other views of a ledger.

Sources (:func:`open_session`): a SQLite ledger is queried in place and a Postgres one
through :meth:`PostgresSink.analytics_session
<langroute.postgres.PostgresSink.analytics_session>`, with the same SQL (the dialects
differ only in JSON operators); a JSONL file is streamed line by line into a temporary
SQLite database (validated as it passes, file and line named on error; nothing is kept
in memory), and so are records in memory. Results equal the in-Python functions' on the
same records, number for number.

Example:
    >>> from langroute.costs import CostLedger, LedgerRecord
    >>> ledger = CostLedger()
    >>> _ = ledger.record(LedgerRecord(route="small", cost=0.5, baseline_cost=2.0))
    >>> ledger_summary(ledger).savings
    1.5
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sqlite3
from array import array
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from langroute.costs.records import (
    LABELLING_PURPOSE,
    OVERHEAD_ROLES,
    PURPOSE_KEY,
    ROLE_KEY,
    UNMEASURED_KEY,
    LedgerRecord,
)
from langroute.costs.schema import ROW_ID_PREFIX
from langroute.costs.summary import LedgerSummary, RouteCostSummary
from langroute.errors import LedgerFormatError

if TYPE_CHECKING:
    import numpy as np

    from langroute.costs.sinks import SQLiteSink

__all__ = [
    "CALLS",
    "CALL_COLUMNS",
    "FEEDBACK",
    "SUMMARY_QUERIES",
    "CallColumns",
    "CallRow",
    "LedgerSession",
    "Verdicts",
    "epoch_micros",
    "latest_verdicts",
    "ledger_summary",
    "open_session",
    "read_calls",
    "request_groups",
    "session_requests",
    "session_verdicts",
]


class CallRow(NamedTuple):
    """The columns of one call that the analytics read (never a whole record).

    ``order`` is the row's position in the ledger (SQLite row id, Postgres ``seq``,
    JSONL line). ``similarity`` and ``segment`` are the JSON text of
    ``metadata["max_similarity"]`` and of the segment key's value (``None`` when absent).
    """

    run_id: str | None
    order: int
    timestamp: datetime
    kind: str
    route: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: float | None
    baseline_model: str | None
    baseline_cost: float | None
    latency_ms: float | None
    escalated: bool
    failed: bool
    reason: str | None
    accepted: bool | None
    measured: bool
    labelling: bool
    overhead: bool
    similarity: str | None
    segment: str | None
    record_id: str


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Verdicts = dict[str, tuple[datetime, int, str]]
"""``record_id`` of a judged call -> (time, order, verdict) of its latest feedback."""


# ---------------------------------------------------------------------------- SQL

CALLS = "langroute_calls"
"""The temporary table of a session: one row per call (no feedback), compact columns."""
FEEDBACK = "langroute_feedback"
"""The temporary table of a session: (feedback_for, verdict, ts, ord) per feedback row."""

CALL_COLUMNS = (
    "run_id", "ord", "ts", "kind", "route", "model", "input_tokens", "output_tokens",
    "cached_tokens", "cost", "baseline_model", "baseline_cost", "latency_ms", "escalated",
    "failed", "reason", "accepted", "measured", "labelling", "overhead", "similarity",
    "segment", "record_id",
)  # fmt: skip
"""The columns of :data:`CALLS` in :class:`CallRow` order (``solo`` follows them)."""


@dataclass(frozen=True)
class Dialect:
    """How one database spells what the shared SQL needs.

    Attributes:
        order: The ledger's row-order column (``id``, ``seq``).
        sqlite: SQLite (JSON paths, ``->`` on text) rather than Postgres (``json``).
    """

    order: str
    sqlite: bool = True

    def json_text(self, key: str) -> str:
        """The JSON text of ``meta[key]`` (``NULL`` when absent)."""
        if self.sqlite:
            if '"' in key or "\\" in key:  # a label SQLite's JSON paths cannot quote
                return f"{JSON_GET}(meta, {_literal(key)})"
            return f"(meta -> {_literal('$.' + chr(34) + key + chr(34))})"
        return f"((meta -> {_literal(key)})::text)"

    def json_value(self, key: str) -> str:
        """``meta[key]`` as SQL text (a JSON string unquoted)."""
        if self.sqlite:
            return f"(meta ->> {_literal('$.' + key)})"
        return f"(meta ->> {_literal(key)})"

    def json_array(self, *exprs: str) -> str:
        """A JSON array of ``exprs``, as text."""
        joined = ", ".join(exprs)
        return f"json_array({joined})" if self.sqlite else f"json_build_array({joined})::text"

    @property
    def nulls_first(self) -> str:
        return "" if self.sqlite else " NULLS FIRST"


SQLITE = Dialect(order="id")
POSTGRES = Dialect(order="seq", sqlite=False)


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (standard quoting: ``'`` doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _segment_key(key: str | None) -> str | None:
    return None if key is None else key.removeprefix("metadata.")


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _mentions(key: str) -> str:
    r"""Whether Postgres metadata text may hold ``key``: JSON is parsed only where it does.

    A key spelled with escapes (``\u0070urpose``) is not found by the text search, so
    metadata holding any backslash is parsed too.
    """
    find = "strpos(metadata, {}) > 0"
    return f"({find.format(_literal(json.dumps(key)))} OR {find.format(_literal(chr(92)))})"


def calls_select_sql(
    dialect: Dialect,
    table: str,
    present: Iterable[str],
    segment_key: str | None,
    *,
    similarity: bool = True,
    raw_metadata: bool = False,
) -> str:
    """The SELECT of every call (no feedback) of a ledger table as :data:`CALLS` rows.

    Args:
        dialect: :data:`SQLITE` or :data:`POSTGRES`.
        table: The ledger table.
        present: Its columns (an older ledger lacks some: read as NULL).
        segment_key: A metadata key whose value's JSON text is the ``segment`` column.
        similarity: Read ``metadata["max_similarity"]`` (``monitor`` needs it, the
            summary does not: left NULL, one JSON read per row saved).
        raw_metadata: Add the metadata text as a last column, ``metadata``.
    """
    present = set(present)
    order = dialect.order
    record_id = "record_id" if "record_id" in present else "NULL"
    row_id = f"{order}" if dialect.sqlite else f"{order}::text"
    # Python's json may have written NaN / Infinity, which the databases' JSON refuses.
    # SQLite parses each row's metadata once (its lookups share the parse), which costs
    # less than searching the text for each key; Postgres searches the text first.
    meta = (
        f"CASE WHEN json_valid(metadata) THEN metadata ELSE {STRICT_JSON}(metadata) END"
        if dialect.sqlite
        else f"CASE WHEN strpos(metadata, 'NaN') > 0 OR strpos(metadata, 'Infinity') > 0 "
        f"THEN {PG_STRICT_JSON}(metadata) ELSE NULLIF(metadata, '')::json END"
    )
    key = _segment_key(segment_key)
    segment = "NULL" if key is None else dialect.json_text(key)
    roles = ", ".join(_literal(role) for role in sorted(OVERHEAD_ROLES))

    def mentions(key: str) -> str:
        return "" if dialect.sqlite else f"{_mentions(key)} AND "

    unmeasured = (
        f"{mentions(UNMEASURED_KEY)}COALESCE({dialect.json_text(UNMEASURED_KEY)}, '') = 'true'"
    )
    labelling = (
        f"{mentions(PURPOSE_KEY)}{dialect.json_value(PURPOSE_KEY)} = {_literal(LABELLING_PURPOSE)}"
    )
    overhead = f"{mentions(ROLE_KEY)}{dialect.json_value(ROLE_KEY)} IN ({roles})"
    best = dialect.json_text("max_similarity") if similarity else "NULL"
    return f"""
        SELECT run_id, {order} AS ord, timestamp AS ts, kind, route, model,
               input_tokens, output_tokens, cached_tokens,
               cost, baseline_model, baseline_cost, latency_ms,
               escalated, {_flag("error IS NOT NULL")} AS failed, reason, accepted,
               {_flag(f"NOT ({unmeasured})")} AS measured,
               {_flag(labelling)} AS labelling,
               {_flag(overhead)} AS overhead,
               {best} AS similarity,
               {segment} AS segment,
               COALESCE({record_id}, '{ROW_ID_PREFIX}' || {row_id}) AS record_id,
               CASE WHEN run_id IS NULL THEN {order} END AS solo
               {", metadata" if raw_metadata else ""}
        FROM (SELECT *, {meta} AS meta FROM {table} WHERE kind <> 'feedback') AS calls
    """


def feedback_select_sql(dialect: Dialect, table: str, present: Iterable[str]) -> str:
    """The SELECT of every feedback row of a ledger table as :data:`FEEDBACK` rows."""
    if not {"feedback_for", "verdict"} <= set(present):  # a ledger older than feedback
        return "SELECT NULL AS feedback_for, NULL AS verdict, NULL AS ts, NULL AS ord"
    return (
        f"SELECT feedback_for, verdict, timestamp AS ts, {dialect.order} AS ord FROM {table} "
        "WHERE kind = 'feedback' AND feedback_for IS NOT NULL AND verdict IS NOT NULL"
    )


STRICT_JSON = "langroute_strict_json"
"""SQLite function (see :func:`register_sqlite_functions`): metadata as strict JSON."""
PG_STRICT_JSON = "pg_temp.langroute_strict_json"
"""Postgres function that a session creates (see :class:`~langroute.postgres.PostgresSink`):
metadata as ``json``, the ``NaN`` and ``Infinity`` Python's json writes as null."""
JSON_GET = "langroute_json_get"
"""SQLite function: the JSON text of ``metadata[key]`` for any key."""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _strict_json(text: str | None) -> str | None:
    # Python wrote NaN / Infinity (which SQLite's JSON reader refuses) or nothing at all
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text  # not JSON: SQLite's reader refuses it ("malformed JSON")
    return json.dumps(_finite(value))


def _json_get(text: str | None, key: str) -> str | None:
    value = json.loads(text).get(key) if text else None
    return None if value is None else json.dumps(value)


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Give a SQLite connection the functions the analytics' SQL may call."""
    conn.create_function(STRICT_JSON, 1, _strict_json, deterministic=True)
    conn.create_function(JSON_GET, 2, _json_get, deterministic=True)


class LedgerSession:
    """A read of a ledger with its calls and feedback in temporary tables.

    Queries run against :data:`CALLS` and :data:`FEEDBACK` (the same SQL in SQLite
    and Postgres); rows stream from the database. Sinks open one with
    ``analytics_session(segment_key)``; records are staged in a temporary SQLite
    database (:func:`staged_session`).

    Args:
        dialect: The database's dialect.
        run: Runs one query and returns an iterator over its rows.
        where: The ledger's file or URL, named in errors.
        raw_metadata: :data:`CALLS` has a ``metadata`` column, the ledger's text.
    """

    def __init__(
        self, dialect: Dialect, run: Any, where: Any = None, *, raw_metadata: bool = False
    ) -> None:
        self.dialect = dialect
        self._run = run
        self.where = where
        self.raw_metadata = raw_metadata

    def query(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql``, streamed."""
        return iter(self._run(sql))

    def query_chunks(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``sql`` in lists of up to ``size`` (a cursor's ``fetchmany``)."""
        rows = self._run(sql)
        fetch = getattr(rows, "fetchmany", None)
        try:
            if fetch is None:
                rows = iter(rows)
                while chunk := list(itertools.islice(rows, size)):
                    yield chunk
            else:
                while chunk := fetch(size):
                    yield chunk
        except sqlite3.DatabaseError as exc:
            raise LedgerFormatError(
                f"not a readable SQLite ledger: {exc}", path=self.where
            ) from exc


def call_row(values: Sequence[Any]) -> CallRow:
    """A :class:`CallRow` from the columns of :data:`CALLS` (converting the types)."""
    (run_id, order, stamp, kind, route, model, inp, out, cached, cost, base_model,
     base_cost, latency, escalated, failed, reason, accepted, measured, labelling,
     overhead, similarity, segment, record_id) = values  # fmt: skip
    return CallRow(
        run_id,
        order,
        parse_timestamp(stamp),
        kind,
        route,
        model,
        inp,
        out,
        cached,
        cost,
        base_model,
        base_cost,
        latency,
        bool(escalated),
        bool(failed),
        reason,
        None if accepted is None else bool(accepted),
        bool(measured),
        bool(labelling),
        bool(overhead),
        similarity,
        segment,
        record_id,
    )


def parse_timestamp(value: str | datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (as :class:`LedgerRecord` reads it)."""
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:  # a form only pydantic reads
            return LedgerRecord(timestamp=value).timestamp
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=timezone.utc)
    return stamp if stamp.tzinfo is timezone.utc else stamp.astimezone(timezone.utc)


def _record_row(order: int, record: LedgerRecord, key: str | None) -> CallRow:
    similarity = record.metadata.get("max_similarity")
    segment = None if key is None else record.metadata.get(key)
    return CallRow(
        record.run_id,
        order,
        record.timestamp,
        record.kind,
        record.route,
        record.model,
        record.input_tokens,
        record.output_tokens,
        record.cached_tokens,
        record.cost,
        record.baseline_model,
        record.baseline_cost,
        record.latency_ms,
        record.escalated,
        record.error is not None,
        record.reason,
        record.accepted,
        record.measured,
        record.labelling,
        record.overhead,
        None if similarity is None else json.dumps(similarity),
        None if segment is None else json.dumps(segment),
        record.record_id,
    )


def _keep_latest(latest: Verdicts, target: str, when: datetime, order: int, verdict: str) -> None:
    # the latest by time; among equal times the later row (a stable sort's last)
    seen = latest.get(target)
    if seen is None or (when, order) >= seen[:2]:
        latest[target] = (when, order, verdict)


# ---------------------------------------------------------------------------- sources


@contextlib.contextmanager
def staged_session(
    records: Iterable[LedgerRecord], segment_key: str | None
) -> Iterator[LedgerSession]:
    """Stream records into a temporary SQLite database; a session over it.

    What a JSONL ledger (and any sink without SQL) uses: records are read once and
    nothing is kept in memory (the database spills to a temporary file as it grows).
    """
    conn = sqlite3.connect("")  # a private temporary database, on disk when it grows
    try:
        register_sqlite_functions(conn)
        # the ledger order is the table's key: read in that order without a sort
        columns = ", ".join("ord INTEGER PRIMARY KEY" if c == "ord" else c for c in CALL_COLUMNS)
        conn.execute(f"CREATE TABLE {CALLS} ({columns}, solo)")
        conn.execute(f"CREATE TABLE {FEEDBACK} (feedback_for, verdict, ts, ord)")
        insert = f"INSERT INTO {CALLS} VALUES ({', '.join('?' for _ in CALL_COLUMNS)}, ?)"
        key = _segment_key(segment_key)
        calls: list[tuple[Any, ...]] = []
        feedback: list[tuple[Any, ...]] = []
        for order, record in enumerate(records):
            if record.is_feedback:
                if record.feedback_for is not None and record.verdict is not None:
                    stamp = record.timestamp.isoformat()
                    feedback.append((record.feedback_for, record.verdict, stamp, order))
                continue
            row = _record_row(order, record, key)
            solo = order if row.run_id is None else None
            calls.append((*row._replace(timestamp=row.timestamp.isoformat()), solo))
            if len(calls) >= 10_000:
                conn.executemany(insert, calls)
                calls.clear()
        conn.executemany(insert, calls)
        conn.executemany(f"INSERT INTO {FEEDBACK} VALUES (?, ?, ?, ?)", feedback)
        yield LedgerSession(SQLITE, conn.execute)
    finally:
        conn.close()


@contextlib.contextmanager
def open_session(
    source: Any, segment_key: str | None = None, *, similarity: bool = True, copy: bool = True
) -> Iterator[LedgerSession]:
    """A :class:`LedgerSession` over ``source``: a sink's own database, or records staged.

    A SQLite ledger is queried in place, a Postgres one through its sink's
    ``analytics_session`` (any sink may offer one), a JSONL file is streamed once into
    a temporary SQLite table, and records (a memory ledger) are staged the same way.

    Args:
        source: A :class:`~langroute.costs.CostLedger`, a sink, or records.
        segment_key: A metadata key whose value's JSON text the ``segment`` column holds.
        similarity: Fill the ``similarity`` column (a database ledger leaves it NULL
            otherwise: one JSON read per row saved where nothing needs it).
        copy: Copy a SQLite ledger's calls into temporary tables (for several queries).
            ``False`` makes :data:`CALLS` and :data:`FEEDBACK` views over the ledger,
            read afresh by each query (for one pass, as :func:`read_calls`
            makes: it refuses the rows :func:`refuse_invalid_calls` would, as it reads them).

    Example:
        >>> with open_session([LedgerRecord(route="small")]) as session:
        ...     list(session.query(f"SELECT route, COUNT(*) FROM {CALLS} GROUP BY route"))
        [('small', 1)]
    """
    from langroute.costs.sinks import JSONLSink, SQLiteSink
    from langroute.costs.writer import flush_writers_of

    sink = getattr(source, "sink", source)
    if isinstance(sink, (SQLiteSink, JSONLSink)) or hasattr(sink, "analytics_session"):
        flush_writers_of(sink)
    if isinstance(sink, SQLiteSink):
        with _sqlite_session(sink, segment_key, similarity, copy=copy) as session:
            if copy:
                refuse_invalid_calls(session, sink.path)
            yield session
    elif isinstance(sink, JSONLSink):
        with sink.stream() as records, staged_session(records, segment_key) as session:
            yield session
    elif hasattr(sink, "analytics_session"):
        options = {} if similarity else {"similarity": False}
        with sink.analytics_session(segment_key, **options) as session:
            session.where = getattr(sink, "url", None)
            refuse_invalid_calls(session, session.where)
            yield session
    else:
        with staged_session(_records_of(source), segment_key) as session:
            yield session


INVALID_CALL = """(cost < 0 OR baseline_cost < 0 OR latency_ms < 0
    OR cost > 1e300 OR baseline_cost > 1e300 OR latency_ms > 1e300
    OR ts < '1970' OR ts >= '3000')"""
"""The SQL condition on a :data:`CALLS` row that the record checks refuse."""
_INVALID_CALLS = f"""
    SELECT record_id, cost, baseline_cost, latency_ms, ts FROM {CALLS}
    WHERE {INVALID_CALL}
    LIMIT 1
"""


def refuse_invalid_calls(session: LedgerSession, where: Any) -> None:
    """Refuse a database ledger holding a row the record checks refuse (another tool's).

    Rows read from a database are aggregated without becoming records; this one query
    applies the checks :class:`~langroute.costs.LedgerRecord` applies to money and time
    (negative or infinite costs and latency, timestamps outside 1970 .. 3000).

    Raises:
        LedgerFormatError: Naming the first such row.
    """
    from langroute.errors import LedgerFormatError

    for record_id, cost, baseline, latency, ts in session.query(_INVALID_CALLS):
        raise LedgerFormatError(
            f"record {record_id}: cost {cost}, baseline_cost {baseline}, latency_ms "
            f"{latency}, timestamp {ts}: money and latency must be finite and not negative, "
            "timestamps between 1970 and 3000",
            path=None if where is None else str(where),
        )


@contextlib.contextmanager
def _sqlite_session(
    sink: SQLiteSink, segment_key: str | None, similarity: bool = True, *, copy: bool = True
) -> Iterator[LedgerSession]:
    """A session over a SQLite ledger, on a read connection of its own.

    The calls' compact columns are copied into a temporary table (the SQL does the
    JSON), then every query runs in SQLite. Without ``copy`` the temporary tables are
    views and the read transaction stays open until the session ends (one snapshot; a
    WAL ledger's writers are not held).

    Raises:
        LedgerFormatError: The file is not a SQLite langroute ledger.
    """
    from langroute.costs.sinks import SQL_TABLE, sqlite_rows

    if not sink.path.exists():
        with staged_session((), None) as session:
            yield session
        return
    conn = sqlite3.connect(sink.path, timeout=sink.timeout, isolation_level=None)
    try:
        if not sink._has_table(conn):
            with staged_session((), None) as session:
                yield session
            return
        present = sink._check_columns(conn)
        register_sqlite_functions(conn)
        conn.execute("PRAGMA temp_store = FILE")  # a big ledger's copy spills to disk
        conn.execute("BEGIN")  # one snapshot for every query
        made = "TABLE" if copy else "VIEW"
        calls = calls_select_sql(
            SQLITE, SQL_TABLE, present, segment_key, similarity=similarity, raw_metadata=not copy
        )
        conn.execute(f"CREATE TEMP {made} {CALLS} AS {calls}")
        feedback = feedback_select_sql(SQLITE, SQL_TABLE, present)
        conn.execute(f"CREATE TEMP {made} {FEEDBACK} AS {feedback}")
        if copy:
            conn.execute("COMMIT")  # copied: the temp tables stay, the ledger is not held
        if copy:
            yield LedgerSession(
                SQLITE, lambda sql: sqlite_rows(conn.execute(sql), sink.path), where=sink.path
            )
        else:  # read in chunks (query_chunks): the cursor itself
            yield LedgerSession(SQLITE, conn.execute, where=sink.path, raw_metadata=True)
    except sqlite3.DatabaseError as exc:
        raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=sink.path) from exc
    finally:
        conn.close()


def _records_of(source: Any) -> Sequence[LedgerRecord]:
    read = getattr(source, "records", None)
    if callable(read):  # a CostLedger
        return read()
    read = getattr(source, "read", None)
    if callable(read):  # a Sink
        return read()
    return list(source)


def session_requests(session: LedgerSession) -> Iterator[list[CallRow]]:
    """Each request's rows as stored: timestamps as text, flags as 0/1 (no conversion)."""
    columns = ", ".join(CALL_COLUMNS)
    nulls = session.dialect.nulls_first
    rows = session.query(f"SELECT {columns} FROM {CALLS} ORDER BY run_id{nulls}, ord")
    make = CallRow._make
    group: list[CallRow] = []
    current: str | None = None
    for values in rows:
        run_id = values[0]
        if group and (run_id is None or run_id != current):
            yield group
            group = []
        current = run_id
        group.append(make(values))
    if group:
        yield group


def since_condition(since: datetime | None) -> str:
    """SQL: rows at or after ``since`` (``ts``, UTC ISO text, compares in time order).

    Example:
        >>> from datetime import datetime, timezone
        >>> since_condition(datetime(2026, 1, 2, tzinfo=timezone.utc))
        "WHERE ts >= '2026-01-02T00:00:00+00:00'"
        >>> since_condition(None)
        ''
    """
    if since is None:
        return ""
    return f"WHERE ts >= {_literal(since.astimezone(timezone.utc).isoformat())}"


def session_verdicts(session: LedgerSession, since: datetime | None = None) -> Verdicts:
    """The latest verdict on each judged call of a session (see :data:`Verdicts`).

    ``since``: only verdicts given at or after it (a call's verdict comes after it).
    """
    latest: Verdicts = {}
    where = since_condition(since)
    for target, verdict, stamp, order in session.query(f"SELECT * FROM {FEEDBACK} {where}"):
        if target is not None and verdict is not None:
            _keep_latest(latest, target, parse_timestamp(stamp), order, verdict)
    return latest


def request_groups(source: Any, segment_key: str | None = None) -> Iterator[list[CallRow]]:
    """The calls of each user request (those sharing a ``run_id``), one list at a time.

    Args:
        source: A :class:`~langroute.costs.CostLedger`, a sink, or records.
        segment_key: A metadata key whose JSON value each row carries as ``segment``.

    Yields:
        The rows of one request, in ledger order. Requests come in ``run_id`` order
        (requests without one first, in ledger order).

    Example:
        >>> rows = [LedgerRecord(run_id="a", route="s"), LedgerRecord(run_id="a", route="l")]
        >>> [[row.route for row in group] for group in request_groups(rows)]
        [['s', 'l']]
    """
    with open_session(source, segment_key) as session:
        for group in session_requests(session):
            yield [call_row(row) for row in group]


def latest_verdicts(source: Any) -> Verdicts:
    """The latest verdict on each judged call of ``source`` (see :data:`Verdicts`).

    Example:
        >>> call = LedgerRecord(route="s")
        >>> verdict = LedgerRecord(kind="feedback", feedback_for=call.record_id, verdict="bad")
        >>> latest_verdicts([call, verdict])[call.record_id][2]
        'bad'
    """
    with open_session(source, None) as session:
        return session_verdicts(session)


# ---------------------------------------------------------------------------- columns
# ``report`` and ``monitor`` read the calls once, in one plain streamed SELECT of the few
# columns they need, as numpy columns (a GROUP BY sorts every row, a Python aggregate
# costs a call per row, and each value fetched costs a Python object: flags are packed
# in one integer, texts come as bytes, token counts in one integer), then group them by
# request and route with numpy.


(
    FAILED,
    ESCALATED,
    REJECTED,
    MEASURED,
    LABELLING,
    OVERHEAD,
    CASCADE,
    INVALID,
    OUT_OF_DISTRIBUTION,
    LOW_CONFIDENCE,
    ALONE,
) = (1 << bit for bit in range(11))
"""Bits of :attr:`CallColumns.flags`."""

_ROW_FLAGS = f"""(failed + {ESCALATED} * (CASE WHEN escalated <> 0 THEN 1 ELSE 0 END)
    + {REJECTED} * (CASE WHEN accepted = 0 THEN 1 ELSE 0 END)
    + {CASCADE} * (CASE WHEN kind = 'cascade' THEN 1 ELSE 0 END)
    + {INVALID} * (CASE WHEN {INVALID_CALL} THEN 1 ELSE 0 END)
    + {OUT_OF_DISTRIBUTION} * (CASE WHEN reason = 'out_of_distribution' THEN 1 ELSE 0 END)
    + {LOW_CONFIDENCE} * (CASE WHEN reason = 'low_confidence' THEN 1 ELSE 0 END)
    + {ALONE} * (CASE WHEN run_id IS NULL THEN 1 ELSE 0 END))"""
_METADATA_FLAGS = f"({MEASURED} * measured + {LABELLING} * labelling + {OVERHEAD} * overhead)"
_KEYS = (*(json.dumps(key) for key in (PURPOSE_KEY, UNMEASURED_KEY, ROLE_KEY)), "\\")
_KEY_BYTES = tuple(key.encode() for key in _KEYS)
SIMILARITY_KEY = "max_similarity"

_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 20_000  # rows per fetch: small enough to stay in the CPU's caches


@dataclass
class CallColumns:
    """Every call of a ledger (no feedback), one numpy array per column, in ledger order.

    Text columns are codes into a list of their distinct values (``None`` included).
    Columns a reader did not ask for are empty.

    Attributes:
        request: Calls sharing a ``run_id`` share a code; a call without one has its own.
        time: Microseconds since the epoch (UTC).
        flags: The bits ``FAILED``, ``ESCALATED``, ``REJECTED`` (``accepted`` is 0),
            ``MEASURED``, ``LABELLING``, ``OVERHEAD`` (a judge or LLM router),
            ``CASCADE``, ``OUT_OF_DISTRIBUTION`` and ``LOW_CONFIDENCE`` (the reason) of
            each call.
        cost: The cost, ``NaN`` where unknown (a stored cost is never ``NaN``);
            ``baseline`` and ``latency`` likewise.
        similarity: ``metadata["max_similarity"]`` as a number (0 where ``has_similarity``
            is false: absent or not a number).
        segment: Codes into ``segments``, the names of the segment key's values
            (:func:`segment_name`; ``None`` where no key was read).
        judged: (row, record id) of the calls that some feedback names.
    """

    request: np.ndarray
    time: np.ndarray
    flags: np.ndarray
    cost: np.ndarray
    baseline: np.ndarray
    route: np.ndarray
    routes: list[str | None]
    model: np.ndarray
    models: list[str | None]
    baseline_model: np.ndarray
    baseline_models: list[str | None]
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_tokens: np.ndarray
    latency: np.ndarray
    similarity: np.ndarray
    has_similarity: np.ndarray
    segment: np.ndarray
    segments: list[str | None]
    judged: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.flags)

    def has(self, bit: int) -> np.ndarray:
        """Whether each call has the flag ``bit``."""
        return (self.flags & bit) != 0


def micros(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (when - EPOCH) // _MICROSECOND


def epoch_micros(stamps: Sequence[Any]) -> np.ndarray:
    """Stored timestamps as microseconds since the epoch, as :func:`parse_timestamp` reads them.

    The form langroute writes (``datetime.isoformat()`` in UTC:
    ``2026-11-01T00:00:00.604800+00:00``, or without the fraction) is decoded by numpy
    and checked field by field; any other form (another offset, ``Z``, a bad date) goes
    through :func:`parse_timestamp`.

    Example:
        >>> epoch_micros(["1970-01-01T00:00:01.5+00:00", "1970-01-01T00:00:02+00:00"])
        array([1500000, 2000000])
    """
    import numpy as np

    count = len(stamps)
    try:
        chars = np.array(stamps, dtype="S33").view(np.uint8).reshape(count, 33)
    except (TypeError, ValueError):  # not ASCII text (a driver's datetimes): one by one
        return np.fromiter((micros(parse_timestamp(s)) for s in stamps), np.int64, count)
    # one column at a time: numpy is slow at reducing many short rows
    digit = {at: chars[:, at] - np.uint8(ord("0")) for at in _DIGIT_AT}  # wraps below "0"
    good = np.ones(count, dtype=bool)
    for value in digit.values():
        good &= value <= 9
    for at, char in zip(_SEPARATOR_AT, "--T::", strict=True):
        good &= chars[:, at] == ord(char)
    with_fraction = chars[:, 19] == ord(".")
    whole = np.ones(count, dtype=bool)
    for offset, char in enumerate("+00:00\0"):
        with_fraction &= chars[:, 26 + offset] == ord(char)
        whole &= chars[:, 19 + offset] == ord(char)
    fraction = np.zeros(count, dtype=np.int64)
    for at in range(20, 26):
        value = chars[:, at] - np.uint8(ord("0"))
        with_fraction &= value <= 9
        fraction = fraction * 10 + value
    good &= with_fraction | whole

    def number(*positions: int) -> np.ndarray:
        value = np.zeros(count, dtype=np.int64)
        for position in positions:
            value = value * 10 + digit[position]
        return value

    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array(_DAYS)[np.clip(month, 0, 12)] + (leap & (month == 2))
    good &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # days from the civil date (H. Hinnant's algorithm), then microseconds
    shifted = year - (month <= 2)
    era = shifted // 400
    of_era = shifted - era * 400
    of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + of_era * 365 + of_era // 4 - of_era // 100 + of_year - 719468
    result = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000
    result += np.where(with_fraction, fraction, 0)
    for row in np.flatnonzero(~good).tolist():
        stamp = stamps[row]
        result[row] = micros(parse_timestamp(stamp.decode() if isinstance(stamp, bytes) else stamp))
    return result


_DIGIT_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_SEPARATOR_AT = [4, 7, 10, 13, 16]
_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Codes:
    """Small integer codes of a text column's values, assigned as they arrive."""

    def __init__(self) -> None:
        self.codes: defaultdict[Any, int] = defaultdict()
        self.codes.default_factory = self.codes.__len__

    def of(self, values: Sequence[Any]) -> np.ndarray:
        import numpy as np

        return np.fromiter(map(self.codes.__getitem__, values), np.int32, len(values))

    def values(self) -> list[Any]:
        return list(self.codes)


def _number(text: str) -> float | None:
    """A JSON value's number as ``float(value)`` for ``int``/``float``/``bool``, else None."""
    try:
        return float(text)  # rounds exactly as json.loads, then float(), would
    except ValueError:
        return {"true": 1.0, "false": 0.0}.get(text)


def _metadata_flags(
    texts: Sequence[str] | Sequence[bytes], where: Any, parsed: Sequence[Any] | None = None
) -> np.ndarray:
    """``MEASURED``, ``LABELLING`` and ``OVERHEAD`` of each call, from its metadata text.

    As :class:`~langroute.costs.LedgerRecord` reads them. The texts are searched at
    once (joined) for the keys, or an escape; only the metadata that holds one is read
    (parsed here, or taken from ``parsed``).
    """
    import numpy as np

    flags = np.full(len(texts), MEASURED, dtype=np.int32)
    as_bytes = len(texts) > 0 and isinstance(texts[0], bytes)
    joined = (b"\0" if as_bytes else "\0").join(texts)
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
    found: set[int] = set()
    for key in _KEY_BYTES if as_bytes else _KEYS:
        at = joined.find(key)
        while at >= 0:
            row = int(np.searchsorted(ends, at, side="right"))
            found.add(row)
            at = joined.find(key, int(ends[row]))  # the next row's text
    for row in sorted(found):
        metadata = _loads(texts[row], where) if parsed is None else parsed[row]
        if not isinstance(metadata, dict):
            continue
        role = metadata.get(ROLE_KEY)
        flags[row] = (
            MEASURED * (metadata.get(UNMEASURED_KEY) is not True)
            + LABELLING * (metadata.get(PURPOSE_KEY) == LABELLING_PURPOSE)
            + OVERHEAD * (isinstance(role, str) and role in OVERHEAD_ROLES)
        )
    return flags


def _loads(text: str | bytes, where: Any) -> Any:
    """A metadata text parsed (orjson; Python's json for what it refuses, as ``NaN``)."""
    import orjson

    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise LedgerFormatError(f"a call's metadata is not JSON: {exc}", path=where) from exc


def _parse_all(texts: Sequence[str] | Sequence[bytes], where: Any) -> list[Any]:
    """Every metadata text parsed (orjson reads a million in well under a second)."""
    import orjson

    try:
        return list(map(orjson.loads, texts))
    except orjson.JSONDecodeError:  # NaN, an empty text, or not JSON: one by one
        return [_loads(text, where) for text in texts]


def _similarities(parsed: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``max_similarity`` of each metadata as a finite number, and whether it is one."""
    import numpy as np

    values = [item.get(SIMILARITY_KEY) if type(item) is dict else None for item in parsed]
    if not set(map(type, values)) <= _NUMERIC:  # numpy would read a text "0.5" as 0.5
        values = [value if type(value) in _NUMERIC else None for value in values]
    try:
        numbers = np.array(values, dtype=np.float64)  # None: NaN
    except OverflowError:  # an integer past a float's range
        numbers = np.array([_float(value) for value in values], dtype=np.float64)
    known = np.isfinite(numbers)
    return np.where(known, numbers, 0.0), known


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except OverflowError:
        return math.inf


_NUMERIC = {float, int, bool, type(None)}


def _segment_names(parsed: Sequence[Any], key: str) -> list[str]:
    """The segment of each call: its metadata's value of ``key`` as text, ``(none)`` if null."""
    values = [item.get(key) if type(item) is dict else None for item in parsed]
    return [
        value if type(value) is str else "(none)" if value is None else str(value)
        for value in values
    ]


def segment_name(text: str | None) -> str:
    """A segment's name from its value's JSON text: the value as text, ``(none)`` if null."""
    value = None if text is None else json.loads(text)
    return "(none)" if value is None else str(value)


def read_calls(
    session: LedgerSession,
    *,
    summary: bool = False,
    monitor: bool = False,
    segment_key: str | None = None,
    judged: Collection[str] = (),
    since: datetime | None = None,
) -> CallColumns:
    """Every call of a session's :data:`~langroute.costs.analytics.CALLS`, as columns.

    Args:
        session: An open session.
        summary: Read what the summary needs too (models, tokens, latency).
        monitor: Read what ``monitor`` needs too (similarity, segment).
        segment_key: The metadata key of the segments (the session's, when it reads
            the metadata in SQL).
        judged: The record ids that feedback names: the calls holding one are listed
            in :attr:`CallColumns.judged`.
        since: Only the calls recorded at or after it (in SQL: a Postgres ledger's
            timestamp index, or a SQLite one's, finds them without reading the rest).

    Raises:
        LedgerFormatError: A call with a negative or infinite cost or latency, or a
            timestamp outside 1970 .. 3000 (the first such call named).

    Example:
        >>> with open_session([LedgerRecord(route="small", cost=0.5)]) as session:
        ...     calls = read_calls(session)
        >>> calls.routes[calls.route[0]], float(calls.cost[0])
        ('small', 0.5)
    """
    import numpy as np

    # a SQLite ledger read in place hands over its metadata text: a substring test in
    # Python finds the few rows whose flags need their JSON, cheaper than SQL JSON
    in_python = session.raw_metadata
    flags = _ROW_FLAGS if in_python else f"{_ROW_FLAGS} + {_METADATA_FLAGS}"
    # each value fetched costs a Python object: texts come as bytes where the database
    # can (no decoding), floats without NULL (-1: none; a negative one is refused),
    # the three token counts packed in one integer
    raw = "CAST({} AS BLOB)" if session.dialect.sqlite else "{}"
    selected = [
        ("request", raw.format("COALESCE(run_id, '')")), ("time", raw.format("ts")),
        ("flags", flags),
        ("cost", "COALESCE(cost, -1.0)"), ("baseline", "COALESCE(baseline_cost, -1.0)"),
    ]  # fmt: skip
    if in_python:
        selected.append(("metadata", raw.format("COALESCE(metadata, '')")))
    if summary:  # one text for the three names: two columns fewer to fetch
        selected += [
            ("names", session.dialect.json_array("route", "model", "baseline_model")),
            ("tokens", _PACKED_TOKENS), ("latency", "COALESCE(latency_ms, -1.0)"),
        ]  # fmt: skip
    else:
        selected.append(("route", "route"))
    if monitor and not in_python:
        selected += [("similarity", "similarity"), ("segment", "segment")]
    if judged:
        selected.append(("judged", raw.format("record_id")))
        targets = {*judged, *(record_id.encode() for record_id in judged)}
    names = [name for name, _ in selected]
    columns = ", ".join(sql for _, sql in selected)
    # in ledger order: a SQLite ledger's row id, a staged table's key (no sort)
    where = since_condition(since)
    # a bounded read sorts its rows (+ord): SQLite would otherwise walk the whole table
    # in row order to skip the sort, rather than find the recent rows by their index
    order = "+ord" if since is not None else "ord"
    chunks = session.query_chunks(f"SELECT {columns} FROM {CALLS} {where} ORDER BY {order}", _CHUNK)
    key = _segment_key(segment_key)
    coders = {name: _Codes() for name in names if name in _TEXTS}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names if name in _KEPT}
    if monitor and in_python:  # from the metadata, parsed in Python
        parts.update(similarity_value=[], has_similarity=[], segment=[])
        coders["segment"] = _Codes()
    judged_ids: list[tuple[int, str]] = []
    read = 0
    # numpy converts each batch of rows at once: numbers to their columns, texts kept
    layout = np.dtype([(name, _TYPES.get(name, object)) for name in names])
    for chunk in chunks:
        block = np.array(chunk, dtype=layout)
        values = {name: block[name] for name in names}
        flags = values.pop("flags").copy()
        if (flags & INVALID).any():  # checked before a timestamp is parsed
            refuse_invalid_calls(session, session.where)
        if in_python:
            texts = values.pop("metadata")
            parsed = _parse_all(texts, session.where) if monitor else None
            flags |= _metadata_flags(texts, session.where, parsed)
            if parsed is not None:
                similarity, known = _similarities(parsed)
                parts["similarity_value"].append(similarity)
                parts["has_similarity"].append(known)
                segments = [None] * len(parsed) if key is None else _segment_names(parsed, key)
                parts["segment"].append(coders["segment"].of(segments))
        parts["flags"].append(flags)
        parts["time"].append(epoch_micros(values.pop("time")))
        parts["request"].append(_fixed_width(values.pop("request")))
        if judged:
            judged_ids.extend(
                (read + row, record_id.decode() if isinstance(record_id, bytes) else record_id)
                for row, record_id in enumerate(values.pop("judged"))
                if record_id in targets
            )
        for name, column in values.items():
            if name in coders:
                parts[name].append(coders[name].of(column))
            elif _TYPES[name] == "float64":
                parts[name].append(np.where(column < 0, np.nan, column))
            else:
                parts[name].append(column.copy())
        read += len(chunk)
    if summary:
        _unpack_tokens(session, parts)
    return _assemble(parts, coders, judged_ids)


_TOKEN_BITS = 21
_FITS = " AND ".join(
    f"{name} BETWEEN 0 AND {2**_TOKEN_BITS - 1}"
    for name in ("input_tokens", "output_tokens", "cached_tokens")
)
_PACKED_TOKENS = f"""CASE WHEN {_FITS} THEN
    (CAST(input_tokens AS BIGINT) * {2**_TOKEN_BITS} + output_tokens) * {2**_TOKEN_BITS}
    + cached_tokens ELSE -1 END"""


def _unpack_tokens(session: LedgerSession, parts: dict[str, list[np.ndarray]]) -> None:
    """The token columns from their packed form (the rare calls that do not fit: read apart)."""
    import numpy as np

    packed = np.concatenate(parts.pop("tokens")) if parts["flags"] else np.zeros(0, np.int64)
    mask = 2**_TOKEN_BITS - 1
    columns = [packed >> (2 * _TOKEN_BITS), (packed >> _TOKEN_BITS) & mask, packed & mask]
    apart = np.flatnonzero(packed < 0)
    if len(apart):
        sql = (
            f"SELECT input_tokens, output_tokens, cached_tokens FROM {CALLS} "
            f"WHERE NOT ({_FITS}) ORDER BY ord"
        )
        rows = np.array(list(session.query(sql)), dtype=np.int64).reshape(-1, 3)
        for column, values in zip(columns, rows.T, strict=True):
            column[apart] = values
    for name, column in zip(
        ("input_tokens", "output_tokens", "cached_tokens"), columns, strict=True
    ):
        parts[name] = [column]


_TEXTS = {"route", "names", "similarity", "segment"}
_TYPES = {
    "flags": "int32",
    "cost": "float64",
    "baseline": "float64",
    "latency": "float64",
    "tokens": "int64",
}
_KEPT = {"flags", "time", "request", *_TEXTS, *_TYPES}


def _assemble(
    parts: dict[str, list[np.ndarray]], coders: dict[str, _Codes], judged: list[tuple[int, str]]
) -> CallColumns:
    import numpy as np

    empty = {"float": np.zeros(0, dtype=np.float64), "int": np.zeros(0, dtype=np.int32)}

    def whole(name: str, kind: str = "int") -> np.ndarray:
        chunks = parts.pop(name, None)  # released as soon as joined: one copy at a time
        return np.concatenate(chunks) if chunks else empty[kind]

    flags = whole("flags")
    request = request_codes(parts.pop("request", []), (flags & ALONE) != 0)
    similarity, has_similarity = empty["float"], np.zeros(0, dtype=bool)
    if "similarity_value" in parts:
        similarity = whole("similarity_value", "float")
        has_similarity = whole("has_similarity").astype(bool)
    elif "similarity" in coders:
        numbers = [
            None if text is None else _number(text) for text in coders["similarity"].values()
        ]
        codes = whole("similarity")
        known = np.array([value is not None for value in numbers], dtype=bool)
        value = np.array([value or 0.0 for value in numbers], dtype=np.float64)
        similarity, has_similarity = value[codes], known[codes]
    route, routes = whole("route"), coders["route"].values() if "route" in coders else []
    model = baseline_model = empty["int"]
    models: list[str | None] = []
    baseline_models: list[str | None] = []
    if "names" in coders:  # route, model and baseline model from their JSON array
        named = [json.loads(text) for text in coders["names"].values()]
        codes = whole("names")
        route, routes = _recoded(codes, [names[0] for names in named])
        model, models = _recoded(codes, [names[1] for names in named])
        baseline_model, baseline_models = _recoded(codes, [names[2] for names in named])
    segment, segments = whole("segment"), []
    if "segment" in coders:
        segments = coders["segment"].values()
        if "similarity" in coders:  # read in SQL: JSON texts, named here
            segment, segments = _recoded(segment, [segment_name(text) for text in segments])
    return CallColumns(
        request=request,
        time=whole("time"),
        flags=flags,
        cost=whole("cost", "float"),
        baseline=whole("baseline", "float"),
        route=route,
        routes=routes,
        model=model,
        models=models,
        baseline_model=baseline_model,
        baseline_models=baseline_models,
        input_tokens=whole("input_tokens"),
        output_tokens=whole("output_tokens"),
        cached_tokens=whole("cached_tokens"),
        latency=whole("latency", "float"),
        similarity=similarity,
        has_similarity=has_similarity,
        segment=segment,
        segments=segments,
        judged=judged,
    )


def _fixed_width(run_ids: Sequence[str] | Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run ids as a fixed-width byte array, and their lengths (numpy drops trailing NULs)."""
    import numpy as np

    encoded = (
        [run_id.encode() for run_id in run_ids]
        if len(run_ids) and isinstance(run_ids[0], str)
        else run_ids
    )
    return np.array(encoded, dtype=bytes), np.fromiter(map(len, encoded), np.int64, len(encoded))


def request_codes(chunks: list[tuple[np.ndarray, np.ndarray]], alone: np.ndarray) -> np.ndarray:
    """A code per call: equal for the calls sharing a run id, its own for each ``alone``.

    Exact, without a Python object per run id (a million of them would hold a hundred
    MB): the ids' bytes, as 64-bit words, are hashed, sorted by the hash, and neighbours
    with equal hashes compared word for word; only if two ids share a hash are the
    words sorted themselves.
    """
    import numpy as np

    if not chunks:
        return np.zeros(0, dtype=np.int64)
    width = max(ids.dtype.itemsize for ids, _ in chunks)
    width = max(8, width + -width % 8)  # whole 64-bit words
    ids = np.concatenate([ids.astype(f"S{width}") for ids, _ in chunks])
    length = np.concatenate([lengths for _, lengths in chunks])
    words = ids.view(np.uint64).reshape(len(ids), width // 8)
    del ids
    hashed = length.astype(np.uint64)
    for column in words.T:
        hashed = (hashed ^ column) * np.uint64(0x100000001B3)
    order = np.argsort(hashed, kind="stable")
    ranked = words[order]
    same = (length[order][1:] == length[order][:-1]) & np.all(ranked[1:] == ranked[:-1], axis=1)
    if np.any((hashed[order][1:] == hashed[order][:-1]) & ~same):  # two ids, one hash
        order = np.lexsort([*words.T[::-1], length])
        ranked = words[order]
        same = (length[order][1:] == length[order][:-1]) & np.all(ranked[1:] == ranked[:-1], axis=1)
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = np.concatenate(([0], np.cumsum(~same)))
    codes[alone] = codes.max(initial=0) + 1 + np.arange(int(alone.sum()))
    return codes


def _recoded(codes: np.ndarray, values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes of ``values[code]`` for each code: one per distinct value."""
    import numpy as np

    positions: dict[Any, int] = {}
    mapping = np.array([positions.setdefault(value, len(positions)) for value in values])
    return mapping.astype(np.int32)[codes], list(positions)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in sorted ``keys`` (empty for no keys)."""
    import numpy as np

    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def first_seen(codes: np.ndarray, names: list[Any]) -> list[Any]:
    """The non-``None`` names of ``codes`` in order of first appearance."""
    import numpy as np

    unique, first = np.unique(codes, return_index=True)
    return [
        names[code]
        for _, code in sorted(zip(first.tolist(), unique.tolist()))
        if names[code] is not None
    ]


# ---------------------------------------------------------------------------- summary


# Each query returns the labelling flag first: 0 = serving, 1 = labelling calls.
_REQUEST = "labelling, run_id, solo"
SUMMARY_QUERIES = {
    # one scan: per route, model and baseline model (few groups; merged per route)
    "routes": f"""
        SELECT labelling, route, model, baseline_model, COUNT(*), SUM(failed), SUM(escalated),
               SUM({_flag("accepted = 0")}), SUM(input_tokens), SUM(output_tokens),
               SUM(cached_tokens), SUM({_flag("cost IS NULL AND measured = 1")}),
               SUM(1 - measured), MIN(ord), MIN(ts), MAX(ts)
        FROM {CALLS} GROUP BY labelling, route, model, baseline_model""",
    # one row per request: escalated, all measured, its baseline, all priced
    "requests": f"""
        SELECT labelling, MAX(escalated), MIN(measured), MAX(baseline_cost),
               MIN({_flag("cost IS NOT NULL")})
        FROM {CALLS} GROUP BY {_REQUEST}""",
    # each known cost, and whether its request counts towards savings
    "costs": f"""
        SELECT labelling, route, cost,
               {_flag("measured_all = 1 AND baselines > 0 AND priced_all = 1")}
        FROM (SELECT labelling, route, cost,
                     MIN(measured) OVER request AS measured_all,
                     COUNT(baseline_cost) OVER request AS baselines,
                     MIN({_flag("cost IS NOT NULL")}) OVER request AS priced_all
              FROM {CALLS} WINDOW request AS (PARTITION BY {_REQUEST})) AS calls
        WHERE cost IS NOT NULL""",
    "latencies": f"""
        SELECT labelling, route, latency_ms FROM {CALLS}
        WHERE latency_ms IS NOT NULL ORDER BY latency_ms""",
}  # fmt: skip
"""The SQL behind :func:`ledger_summary`, over a session's :data:`CALLS` table."""


def _summarize_calls(calls: CallColumns, order: Sequence[str] | None) -> LedgerSummary:
    """:func:`~langroute.costs.summarize` of a ledger's calls read as columns."""
    import numpy as np

    labelling = calls.has(LABELLING)
    summary = _part_summary(calls, np.flatnonzero(~labelling), order)
    if labelling.any():
        part = _part_summary(calls, np.flatnonzero(labelling), order)
        return summary.model_copy(update={"labelling": part})
    return summary


def _call_counts(calls: CallColumns, rows: Any) -> dict[str, Any]:
    """What a route's and a part's summaries both count over their calls (``rows``)."""
    import numpy as np

    flags = calls.flags[rows]
    cost = calls.cost[rows]
    known = cost[~np.isnan(cost)]
    measured = (flags & MEASURED) != 0
    latency = calls.latency[rows]
    p50, p95 = percentiles(latency[~np.isnan(latency)], 50, 95)
    return {
        "calls": len(rows),
        "errors": int(np.count_nonzero(flags & FAILED)),
        "escalations": int(np.count_nonzero(flags & ESCALATED)),
        "rejected": int(np.count_nonzero(flags & REJECTED)),
        "input_tokens": int(calls.input_tokens[rows].sum()),
        "output_tokens": int(calls.output_tokens[rows].sum()),
        "cached_tokens": int(calls.cached_tokens[rows].sum()),
        "cost": math.fsum(known.tolist()) if len(known) else None,
        "unpriced_calls": int(np.count_nonzero(np.isnan(cost) & measured)),
        "unmeasured_calls": int(np.count_nonzero(~measured)),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
    }


def _part_summary(calls: CallColumns, rows: Any, order: Sequence[str] | None) -> LedgerSummary:
    """The summary of the calls ``rows`` (ascending): serving or labelling calls."""
    import numpy as np

    from langroute.costs.summary import summarize

    if not len(rows):
        return summarize([], order)
    by_route = rows[np.argsort(calls.route[rows], kind="stable")]
    codes = calls.route[by_route]
    starts = group_starts(codes).tolist()
    routes: dict[str | None, tuple[int, RouteCostSummary]] = {}
    for start, end in zip(starts, [*starts[1:], len(by_route)], strict=True):
        mine = by_route[start:end]
        name = calls.routes[codes[start]]
        counts = _call_counts(calls, mine)
        calls_made = counts["calls"]
        route = RouteCostSummary(
            route=name,
            models=first_seen(calls.model[mine], calls.models),
            escalation_rate=counts["escalations"] / calls_made if calls_made else 0.0,
            **counts,
        )
        routes[name] = (int(mine[0]), route)
    named = [name for name in dict.fromkeys(order or ()) if name in routes]
    rest = sorted((name for name in routes if name not in named), key=lambda n: routes[n][0])

    # per request (the part's calls sharing a run_id): the facts behind savings
    by_request = rows[np.argsort(calls.request[rows], kind="stable")]
    starts_at = group_starts(calls.request[by_request])
    flags = calls.flags[by_request]
    cost = calls.cost[by_request]
    escalated = np.maximum.reduceat((flags & ESCALATED) != 0, starts_at)
    unmeasured = np.maximum.reduceat((flags & MEASURED) == 0, starts_at)
    unpriced = np.maximum.reduceat(np.isnan(cost), starts_at)
    baseline = np.fmax.reduceat(calls.baseline[by_request], starts_at)
    with_baseline = ~unmeasured & ~np.isnan(baseline)
    compared = with_baseline & ~unpriced
    sizes = np.diff(np.append(starts_at, len(by_request)))
    compared_costs = cost[np.repeat(compared, sizes)]
    savings = savings_pct = None
    if compared.any():
        base = math.fsum(baseline[compared].tolist())
        savings = base - math.fsum(compared_costs.tolist())
        savings_pct = 100.0 * savings / base if base > 0 else None
    requests = len(starts_at)
    escalated_requests = int(np.count_nonzero(escalated))
    counts = _call_counts(calls, rows)
    del counts["rejected"]
    time = calls.time[rows]
    return LedgerSummary(
        routes=[routes[name][1] for name in [*named, *rest]],
        requests=requests,
        escalated_requests=escalated_requests,
        escalation_rate=escalated_requests / requests,
        unmeasured_requests=int(np.count_nonzero(unmeasured)),
        baseline_models=first_seen(calls.baseline_model[rows], calls.baseline_models),
        baseline_cost=math.fsum(baseline[with_baseline].tolist()) if with_baseline.any() else None,
        savings=savings,
        savings_pct=savings_pct,
        first_timestamp=EPOCH + timedelta(microseconds=int(time.min())),
        last_timestamp=EPOCH + timedelta(microseconds=int(time.max())),
        **counts,
    )


def percentiles(values: Sequence[float], *quantiles: float) -> list[float | None]:
    """:func:`~langroute.costs.summary._percentile` of unsorted values, in linear time.

    The same two order statistics are interpolated with the same arithmetic, so the
    results are equal to the last bit; ``numpy.partition`` finds them without a sort.

    Example:
        >>> percentiles([4.0, 1.0, 3.0, 2.0], 50, 95)
        [2.5, 3.85]
    """
    if not len(values):
        return [None for _ in quantiles]
    import numpy as np

    data = np.frombuffer(values, dtype=np.float64) if isinstance(values, array) else values
    data = np.asarray(data, dtype=np.float64)
    positions = [(len(data) - 1) * q / 100 for q in quantiles]
    ranks = sorted({bound for at in positions for bound in (math.floor(at), math.ceil(at))})
    ranked = np.partition(data, ranks)
    result: list[float | None] = []
    for at in positions:
        low, high = float(ranked[math.floor(at)]), float(ranked[math.ceil(at)])
        result.append(low + (high - low) * (at - math.floor(at)))
    return result


def _summarize_session(session: LedgerSession, order: Sequence[str] | None) -> LedgerSummary:
    return _summarize_calls(read_calls(session, summary=True), order)


def ledger_summary(source: Any, order: Sequence[str] | None = None) -> LedgerSummary:
    """:func:`~langroute.costs.summarize` of a whole ledger, computed in its database.

    The calls are read once as columns (:func:`read_calls`);
    costs are summed exactly (:func:`math.fsum`, as :func:`~langroute.costs.summarize`
    does) and latencies ranked for the percentiles.

    Args:
        source: A :class:`~langroute.costs.CostLedger`, a sink (SQLite and Postgres
            ledgers are queried where they are; a JSONL file is streamed once into a
            temporary SQLite table), or records.
        order: Route names to list first.

    Returns:
        The same summary :func:`~langroute.costs.summarize` gives for its records.

    Raises:
        LedgerFormatError: The ledger is malformed (file and line named).

    Example:
        >>> ledger_summary([LedgerRecord(route="small", cost=0.5)]).cost
        0.5
    """
    from langroute.costs.sinks import MemorySink
    from langroute.costs.summary import summarize

    sink = getattr(source, "sink", source)
    if isinstance(sink, MemorySink) or not hasattr(sink, "read"):
        return summarize(_records_of(source), order)  # in memory already: nothing to stage
    with open_session(source, None, similarity=False, copy=False) as session:
        return _summarize_session(session, order)
