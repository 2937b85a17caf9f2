"""Ledger analytics computed where the ledger lives, in bounded memory.

``langroute report`` and ``langroute monitor`` (and the dashboard) read ledgers of
millions of rows. Building a :class:`~langroute.costs.LedgerRecord` per row costs
minutes and gigabytes, so these functions never do. A :class:`LedgerSession` copies
the calls' compact columns into a temporary table, :data:`CALLS` (the database's JSON
operators read the few metadata keys that matter), and the feedback rows into
:data:`FEEDBACK`; queries then run in the database:

* :func:`ledger_summary` is :func:`~langroute.costs.summarize` of a ledger (the
  ``report`` command, :meth:`CostLedger.summary <langroute.costs.CostLedger.summary>`):
  counts and token sums are ``GROUP BY`` aggregates (:func:`summary_sql`: one scan per
  route and one per request); each group's costs and latencies come back whole, to be
  summed exactly with :func:`math.fsum`, as ``summarize`` does, and ranked for the
  percentiles (:func:`percentiles`). :data:`SUMMARY_QUERIES` is the earlier form of the
  same SQL (a query per column), kept for callers that read it.
* :func:`session_requests` returns the calls ordered by request (``run_id``), so each
  request is complete when its last row arrives: :func:`langroute.monitoring.monitor_ledger`
  (the ``monitor`` command) folds them into every (segment, window) in one pass.
* :func:`request_groups` and :func:`latest_verdicts` give the same per request and per
  judged call, for other views of a ledger.

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
import json
import math
import sqlite3
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
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
    from langroute.costs.sinks import SQLiteSink

__all__ = [
    "CALLS",
    "FEEDBACK",
    "SUMMARY_QUERIES",
    "CallRow",
    "LedgerSession",
    "RequestCosts",
    "Verdicts",
    "latest_verdicts",
    "ledger_summary",
    "open_session",
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


Verdicts = dict[str, tuple[datetime, int, str]]
"""``record_id`` of a judged call -> (time, order, verdict) of its latest feedback."""


# ---------------------------------------------------------------------------- SQL

CALLS = "langroute_calls"
"""The temporary table of a session: one row per call (no feedback), compact columns."""
FEEDBACK = "langroute_feedback"
"""The temporary table of a session: (feedback_for, verdict, ts, ord) per feedback row."""

_CALL_COLUMNS = (
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

    @property
    def nulls_first(self) -> str:
        return "" if self.sqlite else " NULLS FIRST"

    def collect(self, expr: str) -> str:
        """An aggregate of the non-NULL floats of ``expr`` in the group, read by :func:`floats`.

        The values come back whole (never summed in SQL) for :func:`math.fsum` and the
        percentiles: SQLite's :data:`COLLECT` (a blob of doubles), Postgres' ``array_agg``.
        """
        if self.sqlite:
            return f"{COLLECT}({expr}) FILTER (WHERE {expr} IS NOT NULL)"
        return f"array_agg({expr}) FILTER (WHERE {expr} IS NOT NULL)"

    def collect_where(self, expr: str, condition: str) -> str:
        """:meth:`collect` of the rows where ``condition`` holds."""
        function = COLLECT if self.sqlite else "array_agg"
        return f"{function}({expr}) FILTER (WHERE {expr} IS NOT NULL AND {condition})"

    def texts_where(self, expr: str, condition: str) -> str:
        """The non-NULL texts of ``expr`` where ``condition`` holds (a list after :func:`texts`)."""
        function = COLLECT_TEXT if self.sqlite else "array_agg"
        return f"{function}({expr}) FILTER (WHERE {expr} IS NOT NULL AND {condition})"


SQLITE = Dialect(order="id")
POSTGRES = Dialect(order="seq", sqlite=False)


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (standard quoting: ``'`` doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _segment_key(key: str | None) -> str | None:
    return None if key is None else key.removeprefix("metadata.")


def _flag(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _mentions(dialect: Dialect, key: str) -> str:
    r"""Whether the metadata text may hold ``key``: JSON is parsed only where it does.

    A key spelled with escapes (``\u0070urpose``) is not found by the text search, so
    metadata holding any backslash is parsed too.
    """
    find = "instr(metadata, {})" if dialect.sqlite else "strpos(metadata, {}) > 0"
    return f"({find.format(_literal(json.dumps(key)))} OR {find.format(_literal(chr(92)))})"


def calls_select_sql(
    dialect: Dialect,
    table: str,
    present: Iterable[str],
    segment_key: str | None,
    *,
    similarity: bool = True,
) -> str:
    """The SELECT of every call (no feedback) of a ledger table as :data:`CALLS` rows.

    Args:
        dialect: :data:`SQLITE` or :data:`POSTGRES`.
        table: The ledger table.
        present: Its columns (an older ledger lacks some: read as NULL).
        segment_key: A metadata key whose value's JSON text is the ``segment`` column.
        similarity: Read ``metadata["max_similarity"]`` (``monitor`` needs it, the
            summary does not: left NULL, one JSON read per row saved).
    """
    present = set(present)
    order = dialect.order
    record_id = "record_id" if "record_id" in present else "NULL"
    row_id = f"{order}" if dialect.sqlite else f"{order}::text"
    # Python's json may have written NaN / Infinity, which SQLite's JSON reader refuses
    meta = (
        f"CASE WHEN instr(metadata, 'NaN') OR instr(metadata, 'Infinity') "
        f"THEN {STRICT_JSON}(metadata) ELSE NULLIF(metadata, '') END"
        if dialect.sqlite
        else f"CASE WHEN strpos(metadata, 'NaN') > 0 OR strpos(metadata, 'Infinity') > 0 "
        f"THEN {PG_STRICT_JSON}(metadata) ELSE NULLIF(metadata, '')::json END"
    )
    key = _segment_key(segment_key)
    segment = "NULL" if key is None else dialect.json_text(key)
    roles = ", ".join(_literal(role) for role in sorted(OVERHEAD_ROLES))
    # most rows hold none of these keys: a text search spares parsing their JSON
    unmeasured = (
        f"{_mentions(dialect, UNMEASURED_KEY)} "
        f"AND COALESCE({dialect.json_text(UNMEASURED_KEY)}, '') = 'true'"
    )
    labelling = (
        f"{_mentions(dialect, PURPOSE_KEY)} "
        f"AND {dialect.json_value(PURPOSE_KEY)} = {_literal(LABELLING_PURPOSE)}"
    )
    overhead = f"{_mentions(dialect, ROLE_KEY)} AND {dialect.json_value(ROLE_KEY)} IN ({roles})"
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


COLLECT = "langroute_collect"
"""SQLite aggregate (see :func:`register_sqlite_functions`): its floats as a blob of doubles."""
COLLECT_TEXT = "langroute_collect_text"
"""SQLite aggregate: its texts as a JSON array."""
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
    return json.dumps(_finite(json.loads(text)))


def _json_get(text: str | None, key: str) -> str | None:
    value = json.loads(text).get(key) if text else None
    return None if value is None else json.dumps(value)


class _Collect:
    """:data:`COLLECT`: the group's floats, returned whole as a blob of doubles."""

    def __init__(self) -> None:
        self.values = array("d")

    def step(self, value: float) -> None:
        self.values.append(value)

    def finalize(self) -> bytes:
        return self.values.tobytes()


class _CollectText:
    """:data:`COLLECT_TEXT`: the group's texts as a JSON array."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def step(self, value: str) -> None:
        self.values.append(value)

    def finalize(self) -> str:
        return json.dumps(self.values)


def floats(collected: bytes | Sequence[float] | None) -> array:
    """The floats of a :meth:`Dialect.collect` column (empty when the group had none)."""
    if collected is None:
        return array("d")
    if isinstance(collected, bytes):
        values = array("d")
        values.frombytes(collected)
        return values
    return array("d", collected)


def texts(collected: str | Sequence[str] | None) -> list[str]:
    """The texts of a :meth:`Dialect.texts_where` column."""
    if collected is None:
        return []
    return json.loads(collected) if isinstance(collected, str) else list(collected)


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Give a SQLite connection the functions the analytics' SQL may call."""
    conn.create_function(STRICT_JSON, 1, _strict_json, deterministic=True)
    conn.create_function(JSON_GET, 2, _json_get, deterministic=True)
    conn.create_aggregate(COLLECT, 1, _Collect)
    conn.create_aggregate(COLLECT_TEXT, 1, _CollectText)


class LedgerSession:
    """A read of a ledger with its calls and feedback in temporary tables.

    Queries run against :data:`CALLS` and :data:`FEEDBACK` (the same SQL in SQLite
    and Postgres); rows stream from the database. Sinks open one with
    ``analytics_session(segment_key)``; records are staged in a temporary SQLite
    database (:func:`staged_session`).

    Args:
        dialect: The database's dialect.
        run: Runs one query and returns an iterator over its rows.
    """

    def __init__(self, dialect: Dialect, run: Any) -> None:
        self.dialect = dialect
        self._run = run

    def query(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql``, streamed."""
        return iter(self._run(sql))


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
        conn.execute(f"CREATE TABLE {CALLS} ({', '.join(_CALL_COLUMNS)}, solo)")
        conn.execute(f"CREATE TABLE {FEEDBACK} (feedback_for, verdict, ts, ord)")
        insert = f"INSERT INTO {CALLS} VALUES ({', '.join('?' for _ in _CALL_COLUMNS)}, ?)"
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
    source: Any, segment_key: str | None = None, *, similarity: bool = True
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
        with _sqlite_session(sink, segment_key, similarity) as session:
            refuse_invalid_calls(session, sink.path)
            yield session
    elif isinstance(sink, JSONLSink):
        with sink.stream() as records, staged_session(records, segment_key) as session:
            yield session
    elif hasattr(sink, "analytics_session"):
        options = {} if similarity else {"similarity": False}
        with sink.analytics_session(segment_key, **options) as session:
            refuse_invalid_calls(session, getattr(sink, "url", None))
            yield session
    else:
        with staged_session(_records_of(source), segment_key) as session:
            yield session


_INVALID_CALLS = f"""
    SELECT record_id, cost, baseline_cost, latency_ms, ts FROM {CALLS}
    WHERE cost < 0 OR baseline_cost < 0 OR latency_ms < 0
       OR cost > 1e300 OR baseline_cost > 1e300 OR latency_ms > 1e300
       OR ts < '1970' OR ts >= '3000'
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
    sink: SQLiteSink, segment_key: str | None, similarity: bool = True
) -> Iterator[LedgerSession]:
    """A session over a SQLite ledger, on a read connection of its own.

    The calls' compact columns are copied into a temporary table (the SQL does the
    JSON), then every query runs in SQLite.

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
        calls = calls_select_sql(SQLITE, SQL_TABLE, present, segment_key, similarity=similarity)
        conn.execute(f"CREATE TEMP TABLE {CALLS} AS {calls}")
        feedback = feedback_select_sql(SQLITE, SQL_TABLE, present)
        conn.execute(f"CREATE TEMP TABLE {FEEDBACK} AS {feedback}")
        conn.execute("COMMIT")  # copied: the temp tables stay, the ledger is not held
        yield LedgerSession(SQLITE, lambda sql: sqlite_rows(conn.execute(sql), sink.path))
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
    columns = ", ".join(_CALL_COLUMNS)
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


def session_verdicts(session: LedgerSession) -> Verdicts:
    """The latest verdict on each judged call of a session (see :data:`Verdicts`)."""
    latest: Verdicts = {}
    for target, verdict, stamp, order in session.query(f"SELECT * FROM {FEEDBACK}"):
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


# ---------------------------------------------------------------------------- summary


class RequestCosts:
    """Per-request counts and the costs behind savings (as ``summarize`` computes them)."""

    __slots__ = (
        "baselines",
        "compared",
        "compared_baselines",
        "compared_costs",
        "escalated",
        "requests",
        "unmeasured",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.escalated = 0
        self.unmeasured = 0
        self.compared = 0  # requests whose costs and baseline are both known
        self.baselines = array("d")
        self.compared_baselines = array("d")
        self.compared_costs = array("d")

    def add_facts(self, escalated: Any, measured: Any, baseline: float | None, priced: Any) -> None:
        """One request, by its SQL aggregates (its calls' costs are added apart)."""
        self.requests += 1
        self.escalated += bool(escalated)
        if not measured:
            self.unmeasured += 1
        elif baseline is not None:
            self.baselines.append(baseline)
            if priced:
                self.compared += 1
                self.compared_baselines.append(baseline)

    def savings(self) -> tuple[float | None, float | None]:
        """Savings and savings in percent of the compared baseline.

        ``compared_baselines`` and ``compared_costs`` may hold negated values (those of
        the requests left out, taken back from a total): :func:`math.fsum` is exact.
        """
        if not self.compared:
            return None, None
        base = math.fsum(self.compared_baselines)
        savings = base - math.fsum(self.compared_costs)
        return savings, (100.0 * savings / base if base > 0 else None)


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


class _Part:
    """The query results of one part of a ledger (serving, or labelling calls)."""

    def __init__(self) -> None:
        self.routes: dict[str | None, list[Any]] = {}
        self.models: dict[str | None, dict[str, int]] = {}
        self.baseline_models: dict[str, int] = {}
        self.requests = RequestCosts()
        self.costs: dict[str | None, array] = {}
        self.latencies: dict[str | None, array] = {}
        self.all_latencies = array("d")

    def summary(self, order: Sequence[str] | None) -> LedgerSummary:
        named = [name for name in dict.fromkeys(order or ()) if name in self.routes]
        rest = sorted(
            (name for name in self.routes if name not in named),
            key=lambda name: self.routes[name][9],
        )
        routes = [self._route(name) for name in [*named, *rest]]
        every = list(self.routes.values())

        def total(column: int) -> int:
            return sum(int(row[column]) for row in every)

        requests = self.requests
        savings, savings_pct = requests.savings()
        p50, p95 = percentiles(self.all_latencies, 50, 95)
        costs = [column for column in self.costs.values() if column]
        return LedgerSummary(
            routes=routes,
            requests=requests.requests,
            calls=total(0),
            errors=total(1),
            escalations=total(2),
            escalated_requests=requests.escalated,
            escalation_rate=requests.escalated / requests.requests if requests.requests else 0.0,
            input_tokens=total(4),
            output_tokens=total(5),
            cached_tokens=total(6),
            cost=math.fsum(value for column in costs for value in column) if costs else None,
            unpriced_calls=total(7),
            unmeasured_calls=total(8),
            unmeasured_requests=requests.unmeasured,
            baseline_models=_by_first(self.baseline_models),
            baseline_cost=math.fsum(requests.baselines) if requests.baselines else None,
            savings=savings,
            savings_pct=savings_pct,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            first_timestamp=min((parse_timestamp(row[10]) for row in every), default=None),
            last_timestamp=max((parse_timestamp(row[11]) for row in every), default=None),
        )

    def _route(self, name: str | None) -> RouteCostSummary:
        calls, errors, escalations, rejected, inp, out, cached, unpriced, unmeasured = (
            int(value) for value in self.routes[name][:9]
        )
        costs = self.costs.get(name)
        p50, p95 = percentiles(self.latencies.get(name, array("d")), 50, 95)
        return RouteCostSummary(
            route=name,
            models=_by_first(self.models.get(name, {})),
            calls=calls,
            errors=errors,
            escalations=escalations,
            escalation_rate=escalations / calls if calls else 0.0,
            rejected=rejected,
            input_tokens=inp,
            output_tokens=out,
            cached_tokens=cached,
            cost=math.fsum(costs) if costs else None,
            unpriced_calls=unpriced,
            unmeasured_calls=unmeasured,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
        )


def _first_seen(seen: dict[str, int], name: str, order: int) -> None:
    known = seen.get(name)
    if known is None or order < known:
        seen[name] = order


def _by_first(seen: dict[str, int]) -> list[str]:
    return sorted(seen, key=seen.__getitem__)


def summary_sql(dialect: Dialect) -> dict[str, str]:
    """The SQL behind :func:`ledger_summary` over a session's :data:`CALLS` table.

    ``routes`` and ``requests`` are one scan each; costs, baselines and latencies come
    back whole per group (:meth:`Dialect.collect`), to be summed with :func:`math.fsum`
    and ranked for the percentiles in Python, as :func:`~langroute.costs.summarize`
    does. The savings compare the requests whose calls are all measured and priced and
    that have a baseline: nearly all, so the costs and baselines of the others are taken
    back from the totals (:func:`math.fsum` of the values and the others' negations is
    exact). A request's costs are its ``MIN`` and ``MAX`` when it has one or two;
    ``request_costs`` (``{labelling}`` and ``{run_ids}`` to fill) fetches them for
    the few with three or more.
    """
    compared = "measured = 1 AND baseline IS NOT NULL AND priced = 1"
    left_out = "measured = 1 AND baseline IS NOT NULL AND priced = 0"
    others = f"NOT ({compared})"
    return {
        # per labelling flag, route, model and baseline model (few groups; merged per route)
        "routes": f"""
            SELECT labelling, route, model, baseline_model, COUNT(*), SUM(failed),
                   SUM(escalated), SUM({_flag("accepted = 0")}), SUM(input_tokens),
                   SUM(output_tokens), SUM(cached_tokens),
                   SUM({_flag("cost IS NULL AND measured = 1")}), SUM(1 - measured),
                   MIN(ord), MIN(ts), MAX(ts), {dialect.collect("cost")},
                   {dialect.collect("latency_ms")}
            FROM {CALLS} GROUP BY labelling, route, model, baseline_model""",
        # one row per request, then the serving and the labelling requests apart (FILTER
        # rather than GROUP BY: no second sort). Compared requests are most of them, so
        # the few others are collected, to be taken back from the totals.
        "requests": "SELECT "
        + ", ".join(
            f"""COUNT(*) FILTER (WHERE labelling = {part}),
                SUM(escalated) FILTER (WHERE labelling = {part}),
                SUM(1 - measured) FILTER (WHERE labelling = {part}),
                COUNT(*) FILTER (WHERE labelling = {part} AND {compared}),
                {dialect.collect_where("baseline", f"labelling = {part} AND measured = 1")},
                {dialect.collect_where("baseline", f"labelling = {part} AND {left_out}")},
                {dialect.collect_where("low", f"labelling = {part} AND {others} AND costs <= 2")},
                {dialect.collect_where("high", f"labelling = {part} AND {others} AND costs = 2")},
                {dialect.texts_where("run_id", f"labelling = {part} AND {others} AND costs > 2")}"""
            for part in (0, 1)
        )
        + f"""
            FROM (SELECT labelling, run_id, MAX(escalated) AS escalated,
                         MIN(measured) AS measured, MAX(baseline_cost) AS baseline,
                         MIN({_flag("cost IS NOT NULL")}) AS priced, COUNT(cost) AS costs,
                         MIN(cost) AS low, MAX(cost) AS high
                  FROM {CALLS} GROUP BY {_REQUEST}) AS requests""",
        "request_costs": f"""
            SELECT cost FROM {CALLS}
            WHERE labelling = {{labelling}} AND cost IS NOT NULL AND run_id IN ({{run_ids}})""",
    }


def percentiles(values: Sequence[float], *quantiles: float) -> list[float | None]:
    """:func:`~langroute.costs.summary._percentile` of unsorted values, in linear time.

    The same two order statistics are interpolated with the same arithmetic, so the
    results are equal to the last bit; ``numpy.partition`` finds them without a sort.

    Example:
        >>> percentiles([4.0, 1.0, 3.0, 2.0], 50, 95)
        [2.5, 3.85]
    """
    if not values:
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
    sql = summary_sql(session.dialect)
    parts = (_Part(), _Part())
    for labelling, route, model, baseline_model, *values in session.query(sql["routes"]):
        part = parts[labelling]
        first = values[9]
        costs, latencies = floats(values[12]), floats(values[13])
        values = values[:12]
        if model is not None:
            _first_seen(part.models.setdefault(route, {}), model, first)
        if baseline_model is not None:
            _first_seen(part.baseline_models, baseline_model, first)
        part.costs.setdefault(route, array("d")).extend(costs)
        part.latencies.setdefault(route, array("d")).extend(latencies)
        part.all_latencies.extend(latencies)
        known = part.routes.get(route)
        if known is None:
            part.routes[route] = values
        else:  # the same route with another model: add up (first, earliest, latest)
            sums = [int(a) + int(b) for a, b in zip(known[:9], values[:9], strict=True)]
            part.routes[route] = [
                *sums,
                min(known[9], first),
                min(known[10], values[10]),
                max(known[11], values[11]),
            ]
    long_requests: list[tuple[int, list[str]]] = []
    for row in session.query(sql["requests"]):
        for labelling in (0, 1):
            count, escalated, unmeasured, compared, *collected = row[
                9 * labelling : 9 * labelling + 9
            ]
            baselines, left_out, low, high, run_ids = collected
            part = parts[labelling]
            facts = part.requests
            facts.requests, facts.escalated = count, int(escalated or 0)
            facts.unmeasured, facts.compared = int(unmeasured or 0), compared
            facts.baselines = floats(baselines)
            # the compared requests' baselines and costs: every one, less those left out
            facts.compared_baselines = array("d", facts.baselines)
            facts.compared_baselines.extend(-value for value in floats(left_out))
            facts.compared_costs = array("d")
            for column in part.costs.values():
                facts.compared_costs.extend(column)
            for column in (floats(low), floats(high)):
                facts.compared_costs.extend(-value for value in column)
            long_requests.append((labelling, texts(run_ids)))
    for labelling, run_ids in long_requests:
        for chunk in range(0, len(run_ids), 50_000):
            listed = ", ".join(_literal(run_id) for run_id in run_ids[chunk : chunk + 50_000])
            query = sql["request_costs"].format(labelling=labelling, run_ids=listed)
            parts[labelling].requests.compared_costs.extend(
                -cost for (cost,) in session.query(query)
            )
    serving, labelling = parts
    summary = serving.summary(order)
    if labelling.routes:
        return summary.model_copy(update={"labelling": labelling.summary(order)})
    return summary


def ledger_summary(source: Any, order: Sequence[str] | None = None) -> LedgerSummary:
    """:func:`~langroute.costs.summarize` of a whole ledger, computed in its database.

    Counts and token sums are SQL aggregates; costs come back whole per group to
    be summed exactly (:func:`math.fsum`, as :func:`~langroute.costs.summarize` does)
    and latencies whole for the percentiles (:func:`summary_sql`).

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
    with open_session(source, None) as session:
        return _summarize_session(session, order)
