"""The dashboard's rollup: a ledger folded into mergeable aggregates, extended as it grows.

``report`` and ``monitor`` read every call of a ledger each time; on a million rows that
takes seconds, too slow for a page. The dashboard folds the ledger once into small
tables instead, in SQL (``INSERT ... SELECT``: no Python per row for a SQLite ledger),
and afterwards folds only the rows appended since (ids above the last one folded):

* ``req``: one row per request (calls sharing a ``run_id``; a call without one is its
  own), with what ``report`` and ``monitor`` read of it: its first time, first reason,
  answering route, first similarity, flags, its serving and labelling calls' costs and
  baseline, its first failed call, the latest verdict on any of its calls. Every column
  merges (a sum, a min or a max, some over text that packs the row order before the
  value), so a request whose calls straddle two folds is merged, not counted twice.
* ``windows``: the requests added up per window of ``monitor`` (whole multiples of the
  window since 1970, by each request's first call), answering route and first failed
  route; a fold adds up again only the windows its requests touch.
* ``calls_by``, ``latency``, ``segments``: per-call aggregates (per window, route,
  model and baseline model; a latency histogram per route; per segment and day),
  added to.
* ``verdicts``: the latest verdict on each judged call, with the call's request and route.

Panels read these tables only (hundreds of rows, not millions). Totals equal ``report
--json`` and windows ``monitor --json`` to float rounding (SQL adds the costs; the
command lines add them exactly with :func:`math.fsum`). Latency percentiles come from
a histogram of :data:`LATENCY_BINS_PER_E` log-spaced bins per route that keeps each bin's
smallest and largest latency: a percentile lies within its bin, so it is off by less than
:data:`LATENCY_RELATIVE_ERROR` of itself (exact when its bin holds at most two values).

Where the rollup lives: beside a SQLite ledger, in ``LEDGER.dashboard-cache`` (a SQLite
file of its own: the ledger is opened read-only and never written), and for a Postgres
ledger in the user's cache (:func:`postgres_cache_path`; its new calls stream in), kept
across runs so a restarted dashboard folds only what is new. It records the ledger's
first row, the last row folded and how many rows reach up to it: a ledger replaced, cut
shorter or missing a row below that one (a Postgres writer committing late) is folded
again from scratch, and so is a cache file that is not one (corrupt, foreign, another
version). JSONL ledgers and records in memory are folded from scratch into a temporary
database when they change.

Example:
    >>> from langroute.costs import LedgerRecord
    >>> rows = [LedgerRecord(route="small", cost=0.5, baseline_cost=2.0)]
    >>> with LedgerRollup.over(rows, window_seconds=3600, segment_key="tenant") as rollup:
    ...     rollup.refresh()
    ...     rollup.summary().savings
    1.5
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langroute.costs.analytics import (
    CALLS,
    FEEDBACK,
    SQLITE,
    LedgerSession,
    calls_select_sql,
    feedback_select_sql,
    open_session,
    parse_timestamp,
    refuse_invalid_calls,
    register_sqlite_functions,
)
from langroute.costs.schema import ROW_ID_PREFIX
from langroute.costs.summary import LedgerSummary, RouteCostSummary
from langroute.errors import LedgerFormatError

if TYPE_CHECKING:
    from langroute.dashboard.queries import LatencyRow
    from langroute.monitoring import MonitorReport, MonitorThresholds, WindowStats

__all__ = [
    "CACHE_SUFFIX",
    "LATENCY_BINS_PER_E",
    "LATENCY_RELATIVE_ERROR",
    "LedgerRollup",
    "cache_path",
    "postgres_cache_path",
]

SCHEMA_VERSION = "1"
"""Bumped whenever the tables change: a cache of another version is folded again."""
CACHE_SUFFIX = ".dashboard-cache"
"""The rollup of ``ledger.db`` lives in ``ledger.db.dashboard-cache``."""
LATENCY_BINS_PER_E = 1000
"""Latency histogram bins per factor e (bin ``floor(ln(ms) * 1000)``): each spans 0.1 %."""
LATENCY_RELATIVE_ERROR = math.expm1(1 / LATENCY_BINS_PER_E)
"""A percentile from the histogram is within this share of the exact one (0.1 %)."""
_ZERO_BIN = -(2**62)
"""The histogram bin of a latency of exactly 0 ms (``ln`` has none)."""
_DAY = 86_400
_UNSURE = ("low_confidence", "out_of_distribution")


def cache_path(ledger: Path) -> Path:
    """Where the rollup of a SQLite ledger file is kept (beside it)."""
    return ledger.with_name(ledger.name + CACHE_SUFFIX)


# ---------------------------------------------------------------------------- encoding
# Columns that merge by MIN / MAX over text carry the row order first, zero-padded, then
# the value: ``=value``, or nothing for NULL (so NULL and "" stay apart).

_ORD = "printf('%020d', ord)"
_ORD_WIDTH = 20
_STAMP_WIDTH = 26  # 'YYYY-MM-DDTHH:MM:SS.ffffff'


def _tagged(column: str) -> str:
    """``column`` as ``=value``, or ``''`` when NULL: a NULL-safe key or packed value."""
    return f"COALESCE('=' || {column}, '')"


def _untag(text: str | None) -> str | None:
    return None if not text else text[1:]


def _after_ord(packed: str) -> str:
    """The value packed after the row order, as SQL (``''`` or ``=value``)."""
    return f"substr({packed}, {_ORD_WIDTH + 1})"


def _fixed_stamp(column: str) -> str:
    """A langroute ISO timestamp padded to microseconds: fixed width, text order is time order."""
    return (
        f"substr({column}, 1, 19) || CASE WHEN substr({column}, 20, 1) = '.' "
        f"THEN substr({column} || '000000', 20, 7) ELSE '.000000' END"
    )


def _epoch(column: str) -> str:
    return f"CAST(strftime('%s', {column}) AS INTEGER)"


def _merge(column: str, how: str) -> str:
    """An upsert's merge of ``column`` with the excluded row's (NULL-safe sum, min, max)."""
    if how == "sum":
        return f"{column} = COALESCE({column} + excluded.{column}, {column}, excluded.{column})"
    return f"{column} = COALESCE({how}({column}, excluded.{column}), {column}, excluded.{column})"


_ANSWERS = "failed = 0 AND (accepted IS NULL OR accepted <> 0) AND overhead = 0"
"""A call that answered (``monitor`` reads the request's route from the last one)."""
_NUMERIC = (
    "similarity IN ('true', 'false') OR unicode(similarity) = 45 "
    "OR unicode(similarity) BETWEEN 48 AND 57"
)
"""A JSON number (``-`` or a digit first: the text is JSON), or a boolean (``monitor``'s)."""

# one row per request of the new calls: every column merges with the stored one
_REQUEST_COLUMNS: dict[str, tuple[str, str]] = {
    # name: (aggregate over the request's new calls, how it merges)
    "ts_first": ("MIN(ts)", "min"),
    "calls": ("COUNT(*)", "sum"),
    "first_reason": (f"MIN(o || {_tagged('reason')})", "min"),
    "answer": (f"MAX(CASE WHEN {_ANSWERS} THEN o || {_tagged('route')} END)", "max"),
    "similarity": (
        f"MIN(CASE WHEN {_NUMERIC} THEN o || CASE similarity WHEN 'true' THEN '1' "
        "WHEN 'false' THEN '0' ELSE similarity END END)",
        "min",
    ),
    "escalated": ("MAX(escalated)", "max"),
    "failed": ("MAX(failed)", "max"),
    "cascade": ("SUM(kind = 'cascade')", "sum"),
    "rejected": ("SUM(CASE WHEN kind = 'cascade' AND accepted = 0 THEN 1 ELSE 0 END)", "sum"),
    **{
        f"{part}_{name}": (aggregate.format(flag=flag), how)
        for part, flag in (("s", 0), ("l", 1))
        for name, aggregate, how in (
            ("calls", "SUM(labelling = {flag})", "sum"),
            ("unmeasured", "SUM(labelling = {flag} AND measured = 0)", "sum"),
            ("unpriced", "SUM(labelling = {flag} AND cost IS NULL)", "sum"),
            ("baseline", "MAX(CASE WHEN labelling = {flag} THEN baseline_cost END)", "max"),
            ("cost", "SUM(CASE WHEN labelling = {flag} THEN cost END)", "sum"),
            ("escalated", "MAX(labelling = {flag} AND escalated <> 0)", "max"),
        )
    },
    "first_failure": (
        "MIN(CASE WHEN labelling = 0 AND overhead = 0 AND failed = 1 "
        "THEN o || " + _tagged("route") + " END)",
        "min",
    ),
    "answered": (f"MAX(labelling = 0 AND {_ANSWERS})", "max"),
    "first_serving": ("MIN(CASE WHEN labelling = 0 THEN ord END)", "min"),
}

_CALL_GROUPS = ("win", "labelling", "overhead", "route", "model", "baseline_model")
_CALL_SUMS: dict[str, tuple[str, str]] = {
    # name: (its value for one call, how calls merge)
    "calls": ("1", "sum"),
    "failed": ("failed", "sum"),
    "escalated": ("escalated", "sum"),
    "rejected": ("CASE WHEN accepted = 0 THEN 1 ELSE 0 END", "sum"),
    "input_tokens": ("input_tokens", "sum"),
    "output_tokens": ("output_tokens", "sum"),
    "cached_tokens": ("cached_tokens", "sum"),
    "unpriced": ("cost IS NULL AND measured = 1", "sum"),
    "unmeasured": ("1 - measured", "sum"),
    "first_ord": ("ord", "min"),
    "first_ts": ("ts", "min"),
    "last_ts": ("ts", "max"),
    "cost": ("cost", "sum"),
}
"""Per call, added into its (window, labelling, overhead, route, model, baseline model) row."""

_PART_WINDOW_COLUMNS = (
    "requests",
    "escalated",
    "unmeasured",
    "baseline",
    "compared",
    "compared_baseline",
    "compared_cost",
)


def _part_window(part: str) -> list[str]:
    """A part's (serving ``s``, labelling ``l``) facts of one request, for ``report``."""
    served = f"{part}_calls > 0"
    measured = f"{served} AND {part}_unmeasured = 0"
    compared = f"{measured} AND {part}_baseline IS NOT NULL AND {part}_unpriced = 0"
    return [
        served,
        f"{served} AND {part}_escalated <> 0",
        f"{served} AND {part}_unmeasured > 0",
        f"CASE WHEN {measured} THEN {part}_baseline END",
        compared,
        f"CASE WHEN {compared} THEN {part}_baseline END",
        f"CASE WHEN {compared} THEN {part}_cost END",
    ]


_VERDICT_OF = "substr({}, " + str(_STAMP_WIDTH + _ORD_WIDTH + 2) + ")"
"""The verdict in a packed latest verdict (time, row order, ``=verdict``)."""
_REASON = _after_ord("first_reason")


def _route_key(packed: str) -> str:
    """A request's route packed after the row order as a group key.

    ``''``: no such call; ``'='``: a call of no route; ``'==name'``: route ``name``.
    """
    return f"CASE WHEN {packed} IS NULL THEN '' ELSE '=' || {_after_ord(packed)} END"


_WINDOW_COLUMNS = {
    # name: its value for one request (added up per window, answering and failed route)
    "requests": "1",
    "calls": "calls",
    "escalated": f"escalated <> 0 OR {_REASON} "
    f"IN ({', '.join(repr('=' + reason) for reason in _UNSURE)})",
    "out_of_distribution": f"{_REASON} = '=out_of_distribution'",
    "low_confidence": f"{_REASON} = '=low_confidence'",
    "failed": "failed",
    "cascade": "cascade",
    "rejected": "rejected",
    "similarity_sum": f"CAST({_after_ord('similarity')} AS REAL)",
    "similarity_count": "similarity IS NOT NULL",
    "cost": "CASE WHEN s_calls > 0 THEN s_cost END",
    "judged": "verdict IS NOT NULL",
    "good": f"verdict IS NOT NULL AND {_VERDICT_OF.format('verdict')} = 'good'",
    "failed_over": "first_failure IS NOT NULL AND answered <> 0",
    "unanswered": "first_failure IS NOT NULL AND answered = 0",
    **{
        f"{part}_{name}": sql
        for part in ("s", "l")
        for name, sql in zip(_PART_WINDOW_COLUMNS, _part_window(part), strict=True)
    },
}
"""Per request, added into its (window, answering route, first failed route) row."""

_TABLES = {
    "meta": "name TEXT PRIMARY KEY, value TEXT",
    "req": "request TEXT PRIMARY KEY, win INTEGER NOT NULL, "
    + ", ".join(_REQUEST_COLUMNS)
    + ", verdict",
    "calls_by": ", ".join((*_CALL_GROUPS, *_CALL_SUMS))
    + f", PRIMARY KEY ({', '.join(_CALL_GROUPS)})",
    "latency": "labelling, route, bin, calls, low, high, PRIMARY KEY (labelling, route, bin)",
    "windows": "win, answer, failure, "
    + ", ".join(_WINDOW_COLUMNS)
    + ", PRIMARY KEY (win, answer, failure)",
    "verdicts": "target TEXT PRIMARY KEY, latest TEXT NOT NULL, request, route, labelling",
    "segments": "key, segment, day, calls, errors, escalated, cost, requests, "
    "PRIMARY KEY (key, segment, day)",
    "segment_keys": "key TEXT PRIMARY KEY, last INTEGER NOT NULL",
}
"""The rollup's tables."""


def _create_tables(conn: sqlite3.Connection) -> None:
    for name, body in _TABLES.items():
        conn.execute(f"CREATE TABLE rollup.{name} ({body}) WITHOUT ROWID")
    conn.execute("CREATE INDEX rollup.req_win ON req (win)")


def _upsert(keys: tuple[str, ...], columns: dict[str, str]) -> str:
    """``ON CONFLICT`` merging each of ``columns`` (name: ``sum``, ``min``, ``max``)."""
    merges = ", ".join(_merge(name, how) for name, how in columns.items())
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {merges}"


def _add_rows(
    table: str, keys: dict[str, str], columns: dict[str, tuple[str, str]], rows: str
) -> str:
    """Add ``rows`` one by one into ``table``'s key rows (an upsert each: no sort).

    Args:
        table: The table.
        keys: Its key columns: the expression of each.
        columns: Its other columns: (the expression of one row, how rows merge).
        rows: ``FROM ... WHERE ...`` of the rows.
    """
    values = ", ".join((*keys.values(), *(sql for sql, _ in columns.values())))
    hows = {name: how for name, (_, how) in columns.items()}
    return (
        f"INSERT INTO {table} ({', '.join((*keys, *columns))}) SELECT {values} {rows} "
        + _upsert(tuple(keys), hows)
    )


# ---------------------------------------------------------------------------- results


@dataclass
class _Histogram:
    """Latency bins: bin -> [calls, lowest, highest]."""

    bins: dict[int, list[float]] = field(default_factory=dict)

    def add(self, bin_: int, calls: int, low: float, high: float) -> None:
        seen = self.bins.get(bin_)
        if seen is None:
            self.bins[bin_] = [calls, low, high]
        else:
            seen[0] += calls
            seen[1], seen[2] = min(seen[1], low), max(seen[2], high)

    @property
    def count(self) -> int:
        return int(sum(entry[0] for entry in self.bins.values()))

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile, interpolated between ranks as ``report`` does.

        Each rank is read from its bin, linearly between the bin's lowest and highest
        latency (exact for a bin of one or two values).
        """
        count = self.count
        if not count:
            return None
        at = (count - 1) * q / 100
        low, high = self._rank(math.floor(at)), self._rank(math.ceil(at))
        return low + (high - low) * (at - math.floor(at))

    def _rank(self, rank: int) -> float:
        seen = 0
        for bin_ in sorted(self.bins):
            calls, low, high = self.bins[bin_]
            if rank < seen + calls:
                if calls <= 1:
                    return low
                return low + (high - low) * (rank - seen) / (calls - 1)
            seen += int(calls)
        raise ValueError(f"rank {rank} past {seen} values")


def _segment_name(text: str | None) -> str:
    """A segment column's JSON text as ``monitor`` names it (``"(none)"`` when absent)."""
    value = None if text is None else json.loads(text)
    return "(none)" if value is None else str(value)


# ---------------------------------------------------------------------------- sources


class _Source:
    """Where new calls come from: puts them in the temporary :data:`CALLS`."""

    incremental = False

    def stage(self, conn: sqlite3.Connection, last: int, segment_key: str | None) -> int:
        """Stage the calls after ``last`` (and feedback: :data:`FEEDBACK`); the new last."""
        raise NotImplementedError

    def stage_targets(self, conn: sqlite3.Connection, upto: int) -> None:
        """Stage the judged calls of the staged feedback as the temporary ``targets``."""
        raise NotImplementedError

    def identity(self, conn: sqlite3.Connection) -> str:
        """What names the ledger: its first row (another first row: another ledger)."""
        return ""

    def mark(self, conn: sqlite3.Connection, last: int, since: _Since = None) -> str:
        """The row ``last`` and how many rows reach up to it (changed: fold again).

        ``since``: a row and the count up to it, to count only the rows after it.
        """
        return ""

    def close(self) -> None:
        """Close what the source keeps open."""

    def segment_calls(self, conn: sqlite3.Connection, last: int, upto: int, key: str) -> str:
        """The calls in ``(last, upto]`` with ``key``'s segment, as a relation to read."""
        self.stage(conn, last, key)
        if self.incremental:
            conn.execute(f"DELETE FROM {CALLS} WHERE ord > {int(upto)}")
        return CALLS

    def judged_segments(
        self, conn: sqlite3.Connection, segment_key: str
    ) -> list[tuple[str | None, int, int]]:
        raise NotImplementedError


_CURSORS = itertools.count()
_Since = tuple[int, int] | None
"""A row folded before and the count of rows up to it (a mark counts only the rows after)."""
_REQUEST_KEY = "CASE WHEN run_id IS NULL THEN 's' || solo ELSE 'r' || run_id END"
_STAGED = f"{_REQUEST_KEY} AS request, {_ORD} AS o"
"""What staged calls add: their request's key, their row order packed (read by the folds)."""


class _SQLiteLedger(_Source):
    """A SQLite ledger file, opened read-only as the connection's ``main`` database."""

    incremental = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def present(self, conn: sqlite3.Connection) -> set[str]:
        from langroute.costs.sinks import sqlite_ledger_columns

        return sqlite_ledger_columns(conn, self.path)

    def last(self, conn: sqlite3.Connection) -> int:
        from langroute.costs.sinks import SQL_TABLE

        if not self.present(conn):
            return 0
        return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM main.{SQL_TABLE}").fetchone()[0])

    def _row(self, conn: sqlite3.Connection, where: str) -> str:
        from langroute.costs.sinks import SQL_TABLE

        if not self.present(conn):
            return ""
        row = conn.execute(
            f"SELECT id, timestamp, kind, run_id, route FROM main.{SQL_TABLE} {where} LIMIT 1"
        ).fetchone()
        return json.dumps(row)

    def identity(self, conn: sqlite3.Connection) -> str:
        return self._row(conn, "ORDER BY id")

    def mark(self, conn: sqlite3.Connection, last: int, since: _Since = None) -> str:
        from langroute.costs.sinks import SQL_TABLE

        if not self.present(conn):
            return ""
        start, count = since or (0, 0)
        (more,) = conn.execute(
            f"SELECT COUNT(*) FROM main.{SQL_TABLE} WHERE id > {int(start)} AND id <= {int(last)}"
        ).fetchone()
        return json.dumps([count + more, self._row(conn, f"WHERE id = {int(last)}")])

    def stage(self, conn: sqlite3.Connection, last: int, segment_key: str | None) -> int:
        from langroute.costs.sinks import SQL_TABLE

        present = self.present(conn)
        if not present:  # no ledger table yet: nothing to fold
            _stage_empty(conn)
            return 0
        upto = self.last(conn)
        rows = f"(SELECT * FROM main.{SQL_TABLE} WHERE id > {int(last)} AND id <= {upto})"
        calls = calls_select_sql(SQLITE, rows, present, segment_key)
        conn.execute(f"CREATE TEMP TABLE {CALLS} AS SELECT *, {_STAGED} FROM ({calls})")
        feedback = feedback_select_sql(SQLITE, rows, present)
        conn.execute(f"CREATE TEMP TABLE {FEEDBACK} AS {feedback}")
        return upto

    def segment_calls(self, conn: sqlite3.Connection, last: int, upto: int, key: str) -> str:
        """Read in place (no copy): only the columns the segments need are computed."""
        from langroute.costs.sinks import SQL_TABLE

        present = self.present(conn)
        if not present:
            _stage_empty(conn)
            return CALLS
        rows = f"(SELECT * FROM main.{SQL_TABLE} WHERE id > {int(last)} AND id <= {int(upto)})"
        return f"({calls_select_sql(SQLITE, rows, present, key, similarity=False)})"

    def stage_targets(self, conn: sqlite3.Connection, upto: int) -> None:
        from langroute.costs.sinks import SQL_TABLE

        present = self.present(conn)
        if not present:
            conn.execute(f"CREATE TEMP VIEW targets AS SELECT * FROM {CALLS}")
            return
        # the judged calls, found through the ledger's record_id index (or by row id)
        prefix = len(ROW_ID_PREFIX) + 1
        by_row = (
            f"id IN (SELECT CAST(substr(feedback_for, {prefix}) AS INTEGER) FROM {FEEDBACK} "
            f"WHERE feedback_for LIKE '{ROW_ID_PREFIX}%')"
        )
        where = by_row
        if "record_id" in present:
            where = f"({by_row} OR record_id IN (SELECT feedback_for FROM {FEEDBACK}))"
        rows = f"(SELECT * FROM main.{SQL_TABLE} WHERE {where} AND id <= {int(upto)})"
        calls = calls_select_sql(SQLITE, rows, present, None, similarity=False)
        conn.execute(f"CREATE TEMP TABLE targets AS SELECT *, {_STAGED} FROM ({calls})")

    def judged_segments(
        self, conn: sqlite3.Connection, segment_key: str
    ) -> list[tuple[str | None, int, int]]:
        from langroute.costs.sinks import SQL_TABLE

        present = self.present(conn)
        if not present:
            return []
        prefix = len(ROW_ID_PREFIX) + 1
        where = (
            f"id IN (SELECT CAST(substr(target, {prefix}) AS INTEGER) FROM verdicts "
            f"WHERE target LIKE '{ROW_ID_PREFIX}%')"
        )
        if "record_id" in present:
            where = f"({where} OR record_id IN (SELECT target FROM verdicts))"
        last = _meta(conn).get("last", "0")
        rows = f"(SELECT * FROM main.{SQL_TABLE} WHERE {where} AND id <= {int(last)})"
        calls = calls_select_sql(SQLITE, rows, present, segment_key, similarity=False)
        return _judged_by_segment(conn, f"({calls})")


_LATEST = f"MAX({_fixed_stamp('ts')} || {_ORD} || '=' || verdict)"
"""The latest verdict of a group of feedback rows, packed: time, row order, ``=verdict``."""


def _stage_empty(conn: sqlite3.Connection) -> None:
    from langroute.costs.analytics import CALL_COLUMNS

    conn.execute(f"CREATE TEMP TABLE {CALLS} ({', '.join(CALL_COLUMNS)}, solo, request, o)")
    conn.execute(f"CREATE TEMP TABLE {FEEDBACK} (feedback_for, verdict, ts, ord)")


def _judged_by_segment(
    conn: sqlite3.Connection, calls: str, verdicts: str = "verdicts"
) -> list[tuple[str | None, int, int]]:
    """Judged serving calls and good verdicts per segment of ``calls`` (latest verdicts)."""
    sql = f"""
        SELECT calls.segment, COUNT(*), SUM({_VERDICT_OF.format("v.latest")} = 'good')
        FROM {calls} AS calls JOIN {verdicts} AS v ON v.target = calls.record_id
        WHERE calls.labelling = 0 GROUP BY calls.segment"""
    return [(segment, int(judged), int(good or 0)) for segment, judged, good in conn.execute(sql)]


class _PostgresLedger(_Source):
    """A Postgres ledger: the calls after the last one folded, streamed into the rollup.

    Sequence numbers may commit out of order (several writers): a fold reads up to the
    largest committed ``seq`` and the mark counts the rows up to it, so a row that
    commits later under a smaller ``seq`` changes the count and the ledger is folded
    again.
    """

    incremental = True

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _pg(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.sink.analytics_connection()
        return self._conn

    def _stream(self, sql: str, params: Any = None) -> Iterator[tuple[Any, ...]]:
        conn = self._pg()
        with conn.transaction(), conn.cursor(name=f"langroute_rollup_{next(_CURSORS)}") as cursor:
            cursor.itersize = 10_000
            cursor.execute(sql, params)
            yield from cursor

    def _one(self, sql: str) -> Any:
        return self._pg().execute(sql).fetchone()

    def _rows(self, where: str) -> str:
        from langroute.postgres.database import LEDGER_TABLE

        return f"(SELECT * FROM {LEDGER_TABLE} WHERE {where}) AS src"

    def identity(self, conn: sqlite3.Connection) -> str:
        from langroute.postgres.database import LEDGER_TABLE

        row = self._one(
            f"SELECT seq, timestamp, kind, run_id, route FROM {LEDGER_TABLE} ORDER BY seq LIMIT 1"
        )
        return json.dumps(None if row is None else list(row))

    def mark(self, conn: sqlite3.Connection, last: int, since: _Since = None) -> str:
        from langroute.postgres.database import LEDGER_TABLE

        start, count = since or (0, 0)
        (more,) = self._one(
            f"SELECT count(*) FROM {LEDGER_TABLE} WHERE seq > {int(start)} AND seq <= {int(last)}"
        )
        count += more
        row = self._one(
            f"SELECT seq, timestamp, kind, run_id, route FROM {LEDGER_TABLE} "
            f"WHERE seq = {int(last)}"
        )
        return json.dumps([count, None if row is None else list(row)])

    def _copy(self, conn: sqlite3.Connection, table: str, sql: str, params: Any = None) -> None:
        rows = self._stream(sql, params)
        first = next(rows, None)
        if first is None:
            return
        insert = f"INSERT INTO {table} VALUES ({', '.join('?' for _ in first)})"
        conn.execute(insert, first)
        while batch := list(itertools.islice(rows, 10_000)):
            conn.executemany(insert, batch)

    def stage(self, conn: sqlite3.Connection, last: int, segment_key: str | None) -> int:
        from langroute.costs.analytics import CALL_COLUMNS, POSTGRES
        from langroute.postgres.database import LEDGER_TABLE

        (upto,) = self._one(f"SELECT COALESCE(MAX(seq), 0) FROM {LEDGER_TABLE}")
        rows = self._rows(f"seq > {int(last)} AND seq <= {int(upto)}")
        names = self.sink._names
        conn.execute(f"CREATE TEMP TABLE staged ({', '.join(CALL_COLUMNS)}, solo)")
        self._copy(conn, "staged", calls_select_sql(POSTGRES, rows, names, segment_key))
        conn.execute(f"CREATE TEMP TABLE {CALLS} AS SELECT *, {_STAGED} FROM staged")
        conn.execute("DROP TABLE staged")
        conn.execute(f"CREATE TEMP TABLE {FEEDBACK} (feedback_for, verdict, ts, ord)")
        self._copy(conn, FEEDBACK, feedback_select_sql(POSTGRES, rows, names))
        return int(upto)

    def segment_calls(self, conn: sqlite3.Connection, last: int, upto: int, key: str) -> str:
        """Only the columns the segments need come over (Postgres computes no others)."""
        from langroute.costs.analytics import POSTGRES

        columns = "ord, ts, labelling, failed, escalated, cost, segment"
        rows = self._rows(f"seq > {int(last)} AND seq <= {int(upto)}")
        calls = calls_select_sql(POSTGRES, rows, self.sink._names, key, similarity=False)
        conn.execute(f"CREATE TEMP TABLE segment_calls ({columns})")
        self._copy(conn, "segment_calls", f"SELECT {columns} FROM ({calls}) AS calls")
        return "segment_calls"

    def _calls_of(
        self, conn: sqlite3.Connection, table: str, targets: list[str], upto: int, key: Any
    ) -> None:
        """Stage the calls whose record id is in ``targets`` as the temporary ``table``."""
        from langroute.costs.analytics import CALL_COLUMNS, POSTGRES

        conn.execute(f"CREATE TEMP TABLE {table}_rows ({', '.join(CALL_COLUMNS)}, solo)")
        prefix = len(ROW_ID_PREFIX)
        row_ids = [
            int(t[prefix:]) for t in targets if t.startswith(ROW_ID_PREFIX) and t[prefix:].isdigit()
        ]
        where = f"(record_id = ANY(%(ids)s) OR seq = ANY(%(rows)s)) AND seq <= {int(upto)}"
        if "record_id" not in self.sink._names:
            where = f"seq = ANY(%(rows)s) AND seq <= {int(upto)}"
        sql = calls_select_sql(POSTGRES, self._rows(where), self.sink._names, key, similarity=False)
        self._copy(conn, f"{table}_rows", sql, {"ids": targets, "rows": row_ids})
        conn.execute(f"CREATE TEMP TABLE {table} AS SELECT *, {_STAGED} FROM {table}_rows")

    def stage_targets(self, conn: sqlite3.Connection, upto: int) -> None:
        targets = [row[0] for row in conn.execute(f"SELECT DISTINCT feedback_for FROM {FEEDBACK}")]
        self._calls_of(conn, "targets", targets, upto, None)

    def judged_segments(
        self, conn: sqlite3.Connection, segment_key: str
    ) -> list[tuple[str | None, int, int]]:
        targets = [row[0] for row in conn.execute("SELECT target FROM verdicts")]
        last = int(_meta(conn).get("last", "0"))
        try:
            self._calls_of(conn, "judged", targets, last, segment_key)
            return _judged_by_segment(conn, "judged")
        finally:
            conn.execute("DROP TABLE IF EXISTS temp.judged")
            conn.execute("DROP TABLE IF EXISTS temp.judged_rows")


class _Staged(_Source):
    """Any other ledger (JSONL, Postgres, records): its analytics session, read whole."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._judged: dict[str, list[tuple[str | None, int, int]]] = {}

    def stage(self, conn: sqlite3.Connection, last: int, segment_key: str | None) -> int:
        from langroute.costs.analytics import CALL_COLUMNS

        columns = (*CALL_COLUMNS, "solo")
        conn.execute(f"CREATE TEMP TABLE staged ({', '.join(columns)})")
        conn.execute(f"CREATE TEMP TABLE {FEEDBACK} (feedback_for, verdict, ts, ord)")
        insert = f"INSERT INTO staged VALUES ({', '.join('?' for _ in columns)})"
        with open_session(self.source, segment_key) as session:
            batch: list[Any] = []
            for row in session.query(f"SELECT {', '.join(columns)} FROM {CALLS}"):
                batch.append(tuple(row))
                if len(batch) >= 10_000:
                    conn.executemany(insert, batch)
                    batch.clear()
            conn.executemany(insert, batch)
            conn.executemany(
                f"INSERT INTO {FEEDBACK} VALUES (?, ?, ?, ?)",
                (tuple(row) for row in session.query(f"SELECT * FROM {FEEDBACK}")),
            )
        conn.execute(f"CREATE TEMP TABLE {CALLS} AS SELECT *, {_STAGED} FROM staged")
        conn.execute("DROP TABLE staged")
        upto = conn.execute(f"SELECT COALESCE(MAX(ord), -1) + 1 FROM {CALLS}").fetchone()[0]
        if segment_key is not None:  # the whole ledger is here: its verdicts too
            latest = (
                f"(SELECT feedback_for AS target, {_LATEST} AS latest FROM {FEEDBACK} "
                "GROUP BY feedback_for)"
            )
            self._judged[segment_key] = _judged_by_segment(conn, CALLS, latest)
        return max(int(upto), last)

    def stage_targets(self, conn: sqlite3.Connection, upto: int) -> None:
        conn.execute(f"CREATE TEMP VIEW targets AS SELECT * FROM {CALLS}")

    def judged_segments(
        self, conn: sqlite3.Connection, segment_key: str
    ) -> list[tuple[str | None, int, int]]:
        return self._judged.get(segment_key, [])


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, value FROM rollup.meta"))


def _marked_count(mark: str | None) -> int:
    """The count of rows a mark holds (0 when it holds none)."""
    try:
        count = json.loads(mark or "null")[0]
    except (ValueError, TypeError, IndexError, KeyError):
        return 0
    return count if isinstance(count, int) else 0


def _drop_temp(conn: sqlite3.Connection, keep: tuple[str, ...] = ()) -> None:
    for name, kind in conn.execute("SELECT name, type FROM temp.sqlite_master").fetchall():
        if kind in ("table", "view") and name not in keep:
            conn.execute(f"DROP {kind.upper()} IF EXISTS temp.{name}")


# ---------------------------------------------------------------------------- the rollup


class LedgerRollup:
    """A ledger's rollup: folded from SQL, extended with new rows, read by the panels.

    Open one with :meth:`over`; call :meth:`refresh` to fold what is new (on the thread
    that opened it: the SQLite connection belongs to it), then read.

    Args:
        conn: A connection whose ``rollup`` database holds the tables (and whose ``main``
            is the ledger, for a SQLite ledger).
        source: Where new calls come from.
        window_seconds: ``monitor``'s window (requests are aggregated per window).
        segment_key: The segment key folded with every refresh (others on first use).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        source: _Source,
        *,
        window_seconds: int,
        segment_key: str,
    ) -> None:
        self.conn = conn
        self.source = source
        self.window_seconds = int(window_seconds)
        self.segment_key = segment_key
        self._reset: Any = None  # replaces a kept store that fails (see _resetter)
        self._keys_ready: set[str] = set()
        self._opened = _file_identity(source.path) if isinstance(source, _SQLiteLedger) else None

    @classmethod
    def over(
        cls, source: Any, *, window_seconds: int = 3600, segment_key: str = "api_key"
    ) -> LedgerRollup:
        """The rollup of ``source``: a SQLite ledger (kept beside it), or any other ledger.

        Args:
            source: A :class:`~langroute.costs.CostLedger` or a sink (a SQLite ledger's
                rollup is kept in :func:`cache_path`; others are folded in a temporary
                database), or records.
            window_seconds: The timeline's window in whole seconds.
            segment_key: The segment key to fold with every refresh.

        Raises:
            ValueError: ``window_seconds`` is not positive.
        """
        if int(window_seconds) < 1:
            raise ValueError("the rollup's window must be at least one second")
        from langroute.costs.sinks import SQLiteSink

        sink = getattr(source, "sink", source)
        window = int(window_seconds)
        if isinstance(sink, SQLiteSink):
            return _open_store(
                cls, _SQLiteLedger(sink.path), cache_path(sink.path), window, segment_key
            )
        if type(sink).__name__ == "PostgresSink":  # without importing psycopg for others
            store = postgres_cache_path(sink.url)
            with contextlib.suppress(OSError):
                store.parent.mkdir(parents=True, exist_ok=True)
            return _open_store(cls, _PostgresLedger(sink), store, window, segment_key)
        return _fresh(cls, _Staged(source), None, window, segment_key)

    @property
    def detached(self) -> bool:
        """A SQLite ledger file that is not the one the connection opened (new, replaced)."""
        source = self.source
        if not isinstance(source, _SQLiteLedger):
            return False
        return _file_identity(source.path) != self._opened

    def close(self) -> None:
        """Close the connections."""
        self.conn.close()
        self.source.close()

    def __enter__(self) -> LedgerRollup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- folding

    def _settings(self) -> dict[str, str]:
        return {
            "version": SCHEMA_VERSION,
            "window": str(self.window_seconds),
            "segment_key": self.segment_key,
        }

    def refresh(self) -> None:
        """Fold the rows appended since the last refresh (everything the first time).

        Raises:
            LedgerFormatError: A row the record checks refuse (negative cost...), or a
                file that is not a ledger.
        """
        if self.detached:  # the ledger file appeared or was replaced since: open it again
            assert isinstance(self.source, _SQLiteLedger)
            fresh = _open_store(
                LedgerRollup,
                self.source,
                cache_path(self.source.path),
                self.window_seconds,
                self.segment_key,
            )
            self.conn.close()
            self.conn, self._reset, self._opened = fresh.conn, fresh._reset, fresh._opened
            self._keys_ready.clear()
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # one writer folds at a time; one ledger snapshot
            try:
                self._fold_all()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                _drop_temp(conn)
        except sqlite3.DatabaseError as exc:
            if self._reset is None:
                raise LedgerFormatError(f"the dashboard's rollup failed: {exc}") from exc
            self._reset(self)  # a cache file that is not ours: start again, once
            self.refresh()

    def _fold_all(self) -> None:
        conn = self.conn
        meta = _meta(conn)
        source = self.source
        expected = {**self._settings(), "identity": source.identity(conn)}
        stale = any(meta.get(name) != value for name, value in expected.items())
        last = int(meta.get("last", "0")) if not stale else 0
        if not stale and source.incremental and meta.get("mark") != source.mark(conn, last):
            stale = True  # the row last folded is gone or another: a replaced ledger
        if stale or not source.incremental:
            self._clear()
            last = 0
        upto = self._fold(last)
        since = (last, _marked_count(meta.get("mark"))) if last else None
        conn.executemany(
            "INSERT OR REPLACE INTO rollup.meta VALUES (?, ?)",
            [*expected.items(), ("last", str(upto)), ("mark", source.mark(conn, upto, since))],
        )
        # the other segment keys already in use follow (the same new rows: the same firsts)
        for key, key_last in conn.execute("SELECT key, last FROM segment_keys").fetchall():
            if key != self.segment_key and key_last < upto:
                self._fold_segments(key, key_last, upto, same_rows=key_last == last)

    def _clear(self) -> None:
        for name in _TABLES:
            self.conn.execute(f"DELETE FROM rollup.{name}")
        self._keys_ready.clear()

    def _fold(self, last: int) -> int:
        """Fold the calls and feedback after ``last``; the last row folded."""
        conn = self.conn
        source = self.source
        upto = source.stage(conn, last, self.segment_key)
        if upto == last and source.incremental:
            return upto
        session = LedgerSession(SQLITE, conn.execute)
        refuse_invalid_calls(session, getattr(source, "path", None))
        window = self.window_seconds
        # 1. the new calls per request, merged into the stored requests
        aggregates = ", ".join(f"{sql} AS {name}" for name, (sql, _) in _REQUEST_COLUMNS.items())
        conn.execute(
            f"CREATE TEMP TABLE new_req AS SELECT request, {aggregates} "
            f"FROM {CALLS} GROUP BY request"
        )
        # the first fold (an empty rollup) adds up every window: no window is marked
        first = last == 0
        conn.execute("CREATE TEMP TABLE dirty (win INTEGER PRIMARY KEY)")
        if not first:
            conn.execute(
                "INSERT OR IGNORE INTO dirty SELECT req.win FROM new_req JOIN req USING (request)"
            )
        # a request's first serving call is one of these rows when it had none before
        conn.execute(
            "CREATE TEMP TABLE firsts AS SELECT new_req.first_serving AS ord FROM new_req "
            + ("" if first else "LEFT JOIN req USING (request) ")
            + "WHERE new_req.first_serving IS NOT NULL"
            + ("" if first else " AND req.first_serving IS NULL")
        )
        names = ", ".join(_REQUEST_COLUMNS)
        win_of = _epoch("min(ts_first, excluded.ts_first)")
        conn.execute(
            f"INSERT INTO req (request, win, {names}) "
            f"SELECT request, {_epoch('ts_first')} / {window}, {names} FROM new_req WHERE true "
            + _upsert(("request",), {name: how for name, (_, how) in _REQUEST_COLUMNS.items()})
            + f", win = {win_of} / {window}"
        )
        if not first:
            conn.execute(
                "INSERT OR IGNORE INTO dirty SELECT req.win FROM new_req JOIN req USING (request)"
            )
        # 2. feedback: the latest verdict on each judged call, then on each request
        conn.execute(
            f"CREATE TEMP TABLE new_verdicts AS SELECT feedback_for AS target, {_LATEST} AS latest "
            f"FROM {FEEDBACK} WHERE feedback_for IS NOT NULL AND verdict IS NOT NULL "
            "GROUP BY feedback_for"
        )
        source.stage_targets(conn, upto)
        conn.execute(
            "INSERT INTO verdicts (target, latest, request, route, labelling) "
            "SELECT n.target, n.latest, t.request, t.route, t.labelling FROM new_verdicts AS n "
            "LEFT JOIN targets AS t ON t.record_id = n.target WHERE true "
            "ON CONFLICT (target) DO UPDATE SET latest = max(latest, excluded.latest), "
            "request = COALESCE(request, excluded.request), "
            "route = CASE WHEN labelling IS NULL THEN excluded.route ELSE route END, "
            "labelling = COALESCE(labelling, excluded.labelling)"
        )
        conn.execute("CREATE TEMP TABLE touched (target TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO touched SELECT target FROM new_verdicts")
        if last > 0:  # verdicts folded before their call was written: their call is here now
            conn.execute(
                f"INSERT OR IGNORE INTO touched SELECT v.target FROM verdicts AS v "
                f"JOIN {CALLS} AS c ON c.record_id = v.target WHERE v.labelling IS NULL"
            )
            conn.execute(
                "UPDATE verdicts SET request = c.request, route = c.route, "
                f"labelling = c.labelling FROM {CALLS} AS c "
                "WHERE verdicts.labelling IS NULL AND c.record_id = verdicts.target"
            )
        conn.execute(
            "CREATE TEMP TABLE judged_requests AS SELECT request, MAX(latest) AS latest "
            "FROM verdicts WHERE target IN (SELECT target FROM touched) AND request IS NOT NULL "
            "GROUP BY request"
        )
        conn.execute(
            "UPDATE req SET verdict = COALESCE(max(req.verdict, j.latest), req.verdict, j.latest) "
            "FROM judged_requests AS j WHERE req.request = j.request"
        )
        if not first:
            conn.execute(
                "INSERT OR IGNORE INTO dirty "
                "SELECT req.win FROM judged_requests JOIN req USING (request)"
            )
        # 3. per call, added up one by one: routes and models, latencies, models, segments
        keys = {"win": f"{_epoch('ts')} / {window}", "labelling": "labelling"}
        keys.update(overhead="overhead", **{name: _tagged(name) for name in _CALL_GROUPS[3:]})
        conn.execute(_add_rows("calls_by", keys, _CALL_SUMS, f"FROM {CALLS} WHERE true"))
        bin_ = (
            f"CASE WHEN latency_ms > 0 THEN CAST(floor(ln(latency_ms) * {LATENCY_BINS_PER_E}) "
            f"AS INTEGER) ELSE {_ZERO_BIN} END"
        )
        conn.execute(
            _add_rows(
                "latency",
                {"labelling": "labelling", "route": _tagged("route"), "bin": bin_},
                {
                    "calls": ("1", "sum"),
                    "low": ("latency_ms", "min"),
                    "high": ("latency_ms", "max"),
                },
                f"FROM {CALLS} WHERE latency_ms IS NOT NULL",
            )
        )
        self._add_segments(self.segment_key)
        conn.execute(
            "INSERT OR REPLACE INTO segment_keys VALUES (?, ?)", (self.segment_key, int(upto))
        )
        self._keys_ready.add(self.segment_key)
        # 4. the windows the new requests and verdicts touched, again from their requests
        self._recompute_windows(everything=first)
        return upto

    def _add_segments(self, key: str, calls: str = CALLS) -> None:
        """Add ``calls`` to their segment's day (requests by their first serving call).

        Grouped before they are added: a key may have tens of thousands of values.
        """
        literal = "'" + key.replace("'", "''") + "'"  # the key as a value, not a parameter
        segment = _tagged("segment")
        self.conn.execute(
            f"INSERT INTO segments SELECT {literal}, {segment} AS tagged, "
            "substr(ts, 1, 10) AS day, COUNT(*), SUM(failed), SUM(escalated), SUM(cost), "
            "SUM(ord IN (SELECT ord FROM firsts)) "
            f"FROM {calls} WHERE labelling = 0 GROUP BY tagged, day "
            + _upsert(
                ("key", "segment", "day"),
                {name: "sum" for name in ("calls", "errors", "escalated", "cost", "requests")},
            )
        )

    def _fold_segments(self, key: str, last: int, upto: int, same_rows: bool = False) -> None:
        """Fold another segment key's calls after ``last`` (up to the rows folded).

        ``same_rows``: the main fold just folded these rows; its ``firsts`` are theirs.
        """
        conn = self.conn
        _drop_temp(conn, keep=("firsts",) if same_rows else ())
        calls = self.source.segment_calls(conn, last, upto, key)
        span = (
            f"first_serving > {int(last)} AND first_serving <= {int(upto)}"
            if self.source.incremental
            else "first_serving IS NOT NULL"
        )
        if not same_rows:
            conn.execute(
                f"CREATE TEMP TABLE firsts AS SELECT first_serving AS ord FROM req WHERE {span}"
            )
        self._add_segments(key, calls)
        conn.execute("INSERT OR REPLACE INTO segment_keys VALUES (?, ?)", (key, int(upto)))
        _drop_temp(conn)

    def _recompute_windows(self, everything: bool) -> None:
        """Add up again the windows the fold touched (every window: ``everything``)."""
        conn = self.conn
        dirty = "true" if everything else "win IN (SELECT win FROM dirty)"
        conn.execute(f"DELETE FROM windows WHERE {dirty}")
        answer, failure = _route_key("answer"), _route_key("first_failure")
        sums = ", ".join(f"SUM({sql})" for sql in _WINDOW_COLUMNS.values())
        conn.execute(
            f"INSERT INTO windows SELECT win, {answer} AS a, {failure} AS f, {sums} "
            f"FROM req WHERE {dirty} GROUP BY win, a, f"
        )

    def ensure_segment_key(self, key: str) -> None:
        """Fold ``key``'s segments up to the rows folded, the first time it is asked for."""
        if key in self._keys_ready:
            return
        conn = self.conn
        known = conn.execute("SELECT last FROM segment_keys WHERE key = ?", (key,)).fetchone()
        last = int(known[0]) if known else 0
        upto = int(_meta(conn).get("last", "0"))
        if known is None or last < upto or not self.source.incremental:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not self.source.incremental:
                    conn.execute("DELETE FROM segments WHERE key = ?", (key,))
                    last = 0
                self._fold_segments(key, last, upto)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                _drop_temp(conn)
                raise
        self._keys_ready.add(key)

    # ---------------------------------------------------------------- reading

    def _parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        names = [f"{part}_{name}" for part in ("s", "l") for name in _PART_WINDOW_COLUMNS]
        row = self.conn.execute(
            f"SELECT {', '.join(f'SUM({name})' for name in names)} FROM windows"
        ).fetchone()
        values = dict(zip(names, row, strict=True))
        return (
            {name: values[f"s_{name}"] for name in _PART_WINDOW_COLUMNS},
            {name: values[f"l_{name}"] for name in _PART_WINDOW_COLUMNS},
        )

    def _histograms(self, labelling: int) -> dict[str | None, _Histogram]:
        histograms: dict[str | None, _Histogram] = {}
        for route, bin_, calls, low, high in self.conn.execute(
            "SELECT route, bin, calls, low, high FROM latency WHERE labelling = ?", (labelling,)
        ):
            histograms.setdefault(_untag(route), _Histogram()).add(bin_, calls, low, high)
        return histograms

    def summary(self) -> LedgerSummary:
        """``report``'s summary of the ledger (:func:`~langroute.costs.analytics.ledger_summary`).

        Latency percentiles come from the histogram (:data:`LATENCY_RELATIVE_ERROR`).
        """
        parts = self._parts()
        groups = ", ".join(_CALL_GROUPS[1:])  # every window together
        totals = ", ".join(
            f"{'SUM' if how == 'sum' else how.upper()}({name})"
            for name, (_, how) in _CALL_SUMS.items()
        )
        rows: list[tuple[Any, ...]] = self.conn.execute(
            f"SELECT {groups}, {totals} FROM calls_by GROUP BY {groups}"
        ).fetchall()
        serving = self._part_summary(0, [row for row in rows if row[0] == 0], parts[0])
        labelling_rows = [row for row in rows if row[0] == 1]
        if labelling_rows:
            labelling = self._part_summary(1, labelling_rows, parts[1])
            return serving.model_copy(update={"labelling": labelling})
        return serving

    def _part_summary(
        self, labelling: int, rows: list[tuple[Any, ...]], requests: dict[str, Any]
    ) -> LedgerSummary:
        names = list(_CALL_SUMS)
        routes: dict[str | None, dict[str, Any]] = {}
        models: dict[str | None, dict[str, int]] = {}
        baseline_models: dict[str, int] = {}
        for _, _, route_key, model, baseline_model, *values in rows:
            route = _untag(route_key)
            row = dict(zip(names, values, strict=True))
            first = row["first_ord"]
            if _untag(model) is not None:
                _first(models.setdefault(route, {}), _untag(model), first)
            if _untag(baseline_model) is not None:
                _first(baseline_models, _untag(baseline_model), first)
            known = routes.get(route)
            if known is None:
                routes[route] = row
                continue
            for name in names:
                a, b = known[name], row[name]
                if name in ("first_ord", "first_ts"):
                    known[name] = min(a, b)
                elif name == "last_ts":
                    known[name] = max(a, b)
                else:
                    known[name] = b if a is None else a if b is None else a + b
        histograms = self._histograms(labelling)
        every = _Histogram()
        for histogram in histograms.values():
            for bin_, (calls, low, high) in histogram.bins.items():
                every.add(bin_, int(calls), low, high)
        ordered = sorted(routes, key=lambda name: routes[name]["first_ord"])
        summaries = []
        for name in ordered:
            row = routes[name]
            histogram = histograms.get(name, _Histogram())
            calls = int(row["calls"])
            summaries.append(
                RouteCostSummary(
                    route=name,
                    models=_by_first(models.get(name, {})),
                    calls=calls,
                    errors=int(row["failed"]),
                    escalations=int(row["escalated"]),
                    escalation_rate=int(row["escalated"]) / calls if calls else 0.0,
                    rejected=int(row["rejected"]),
                    input_tokens=int(row["input_tokens"]),
                    output_tokens=int(row["output_tokens"]),
                    cached_tokens=int(row["cached_tokens"]),
                    cost=row["cost"],
                    unpriced_calls=int(row["unpriced"]),
                    unmeasured_calls=int(row["unmeasured"]),
                    latency_p50_ms=histogram.percentile(50),
                    latency_p95_ms=histogram.percentile(95),
                )
            )

        def total(name: str) -> int:
            return sum(int(routes[route][name]) for route in routes)

        costs = [routes[route]["cost"] for route in routes if routes[route]["cost"] is not None]
        count = int(requests["requests"] or 0)
        escalated = int(requests["escalated"] or 0)
        compared = int(requests["compared"] or 0)
        savings = savings_pct = None
        if compared:
            base = requests["compared_baseline"] or 0.0
            savings = base - (requests["compared_cost"] or 0.0)
            savings_pct = 100.0 * savings / base if base > 0 else None
        return LedgerSummary(
            routes=summaries,
            requests=count,
            calls=total("calls"),
            errors=total("failed"),
            escalations=total("escalated"),
            escalated_requests=escalated,
            escalation_rate=escalated / count if count else 0.0,
            input_tokens=total("input_tokens"),
            output_tokens=total("output_tokens"),
            cached_tokens=total("cached_tokens"),
            cost=sum(costs) if costs else None,
            unpriced_calls=total("unpriced"),
            unmeasured_calls=total("unmeasured"),
            unmeasured_requests=int(requests["unmeasured"] or 0),
            baseline_models=_by_first(baseline_models),
            baseline_cost=requests["baseline"],
            savings=savings,
            savings_pct=savings_pct,
            latency_p50_ms=every.percentile(50),
            latency_p95_ms=every.percentile(95),
            first_timestamp=min(
                (parse_timestamp(routes[route]["first_ts"]) for route in routes), default=None
            ),
            last_timestamp=max(
                (parse_timestamp(routes[route]["last_ts"]) for route in routes), default=None
            ),
        )

    def overhead_cost(self) -> float | None:
        """What judge and LLM-router calls cost (serving)."""
        (cost,) = self.conn.execute(
            "SELECT SUM(cost) FROM calls_by WHERE labelling = 0 AND overhead = 1"
        ).fetchone()
        return cost

    def monitor(self, thresholds: MonitorThresholds) -> MonitorReport:
        """``monitor``'s report of the whole ledger, unsegmented (the first window the baseline)."""
        from langroute.monitoring import MonitorReport, report_of_windows

        window = timedelta(seconds=self.window_seconds)
        stats = self.windows()
        if not stats:
            return MonitorReport(window=window, thresholds=thresholds)
        base = stats[0]
        return report_of_windows(window, None, thresholds, (base.start, base.end), [base], stats)

    def windows(self) -> list[WindowStats]:
        """Each window's :class:`~langroute.monitoring.WindowStats`, in time order."""
        from langroute.monitoring import WindowStats

        conn = self.conn
        routed = "substr(answer, 1, 2) = '=='"
        shares: dict[int, dict[str, int]] = {}
        for win, route, requests in conn.execute(
            f"SELECT win, substr(answer, 3), SUM(requests) FROM windows WHERE {routed} "
            "GROUP BY win, answer"
        ):
            shares.setdefault(win, {})[route] = requests
        quality: dict[int, dict[str, tuple[int, int]]] = {}
        for win, route, judged, good in conn.execute(
            f"SELECT win, CASE WHEN {routed} AND length(answer) > 2 THEN substr(answer, 3) "
            "ELSE '(none)' END AS label, SUM(judged), SUM(good) FROM windows "
            "GROUP BY win, label HAVING SUM(judged) > 0"
        ):
            quality.setdefault(win, {})[route] = (judged, good)
        names = list(_WINDOW_COLUMNS)
        width = timedelta(seconds=self.window_seconds)
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        result = []
        sums = ", ".join(f"SUM({name})" for name in names)
        for win, *values in conn.execute(
            f"SELECT win, {sums} FROM windows GROUP BY win ORDER BY win"
        ):
            row = dict(zip(names, values, strict=True))
            count = row["requests"]

            def share(hits: Any, count: int = count) -> float:
                return (hits or 0) / count if count else 0.0

            compared = row["s_compared"] or 0
            savings = None
            if compared:
                savings = (row["s_compared_baseline"] or 0.0) - (row["s_compared_cost"] or 0.0)
            judged = row["judged"] or 0
            start = epoch + win * width
            routes = shares.get(win, {})
            by_route = quality.get(win, {})
            stats = WindowStats(
                start=start,
                end=start + width,
                segment=None,
                requests=count,
                calls=row["calls"],
                route_shares={route: n / count for route, n in sorted(routes.items())},
                escalation_rate=share(row["escalated"]),
                out_of_distribution_rate=share(row["out_of_distribution"]),
                low_confidence_rate=share(row["low_confidence"]),
                error_rate=share(row["failed"]),
                cascade_rejection_rate=(row["rejected"] or 0) / row["cascade"]
                if row["cascade"]
                else None,
                mean_best_similarity=row["similarity_sum"] / row["similarity_count"]
                if row["similarity_count"]
                else None,
                cost=row["cost"],
                savings=savings,
                unmeasured_requests=int(row["s_unmeasured"] or 0),
                feedback=judged,
                quality=(row["good"] or 0) / judged if judged else None,
                quality_by_route={route: good / n for route, (n, good) in sorted(by_route.items())},
            )
            result.append(stats)
        return result

    def model_mix(self) -> list[tuple[datetime, dict[str, int]]]:
        """Serving calls per model and window (by each call's time)."""
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        width = timedelta(seconds=self.window_seconds)
        points: dict[int, dict[str, int]] = {}
        for win, model, calls in self.conn.execute(
            "SELECT win, model, SUM(calls) FROM calls_by WHERE labelling = 0 "
            "GROUP BY win, model ORDER BY win"
        ):
            points.setdefault(win, {})[_untag(model) or "(none)"] = int(calls)
        return [(epoch + win * width, calls) for win, calls in points.items()]

    def latencies(self) -> list[LatencyRow]:
        """p50 / p95 / p99 per route of the serving calls, then all routes (from the histogram)."""
        from langroute.dashboard.queries import LatencyRow

        histograms = self._histograms(0)
        every = _Histogram()
        for histogram in histograms.values():
            for bin_, (calls, low, high) in histogram.bins.items():
                every.add(bin_, int(calls), low, high)
        ordered = sorted(histograms, key=lambda name: (name is None, name or ""))

        def row(route: str | None, histogram: _Histogram) -> LatencyRow:
            return LatencyRow(
                route=route,
                calls=histogram.count,
                p50_ms=histogram.percentile(50),
                p95_ms=histogram.percentile(95),
                p99_ms=histogram.percentile(99),
            )

        return [*(row(route, histograms[route]) for route in ordered), row(None, every)]

    def errors(self) -> list[tuple[str | None, int, int, int, int]]:
        """Per route (serving, no judge or router calls): calls, failed, failed over, unanswered."""
        failovers: dict[str | None, list[int]] = {}
        for failure, over, unanswered in self.conn.execute(
            "SELECT failure, SUM(failed_over), SUM(unanswered) FROM windows "
            "WHERE failure <> '' GROUP BY failure"
        ):
            failovers[_untag(failure[1:])] = [int(over or 0), int(unanswered or 0)]
        rows = []
        for route, calls, failed in self.conn.execute(
            "SELECT route, SUM(calls), SUM(failed) FROM calls_by "
            "WHERE labelling = 0 AND overhead = 0 GROUP BY route"
        ):
            name = _untag(route)
            over, unanswered = failovers.get(name, [0, 0])
            rows.append((name, int(calls), int(failed or 0), over, unanswered))
        return sorted(rows, key=lambda row: (row[0] is None, row[0] or ""))

    def quality(self) -> list[tuple[str | None, int, int]]:
        """Per route of the judged serving call: judged calls, good (the latest verdict)."""
        return [
            (route, int(judged), int(good or 0))
            for route, judged, good in self.conn.execute(
                f"SELECT route, COUNT(*), SUM({_VERDICT_OF.format('latest')} = 'good') "
                "FROM verdicts WHERE labelling = 0 GROUP BY route"
            )
        ]

    def segments(self, key: str, limit: int = 50) -> list[dict[str, Any]]:
        """The ``limit`` segments of ``key`` that spent most: traffic, spend and quality."""
        self.ensure_segment_key(key)
        rows = {}
        for segment, requests, calls, errors, escalated, cost in self.conn.execute(
            "SELECT segment, SUM(requests), SUM(calls), SUM(errors), SUM(escalated), SUM(cost) "
            "FROM segments WHERE key = ? GROUP BY segment "
            "ORDER BY SUM(cost) IS NULL, SUM(cost) DESC, SUM(calls) DESC LIMIT ?",
            (key, int(limit)),
        ):
            rows[_untag(segment)] = {
                "segment": _segment_name(_untag(segment)),
                "requests": int(requests),
                "calls": int(calls),
                "errors": int(errors or 0),
                "escalated_calls": int(escalated or 0),
                "cost": cost,
                "judged": 0,
                "good": 0,
                "quality": None,
            }
        for segment, judged, good in self.source.judged_segments(self.conn, key):
            row = rows.get(segment)
            if row is not None and judged:
                row.update(judged=judged, good=good, quality=good / judged)
        return list(rows.values())

    def spend_since(self, key: str, start: datetime) -> dict[str, float]:
        """Spend per segment of ``key`` from the day of ``start`` (UTC; budgets are per day)."""
        self.ensure_segment_key(key)
        day = start.astimezone(timezone.utc).date().isoformat() if start.year > 1 else ""
        return {
            _segment_name(_untag(segment)): float(cost)
            for segment, cost in self.conn.execute(
                "SELECT segment, SUM(cost) FROM segments WHERE key = ? AND day >= ? "
                "AND cost IS NOT NULL GROUP BY segment",
                (key, day),
            )
        }

    def serving_calls(self) -> int:
        """How many serving calls the ledger holds (the decision log's unfiltered total)."""
        (calls,) = self.conn.execute(
            "SELECT COALESCE(SUM(calls), 0) FROM calls_by WHERE labelling = 0"
        ).fetchone()
        return int(calls)


def _first(seen: dict[str, int], name: str, order: int) -> None:
    known = seen.get(name)
    if known is None or order < known:
        seen[name] = order


def _by_first(seen: dict[str, int]) -> list[str]:
    return sorted(seen, key=seen.__getitem__)


# ---------------------------------------------------------------------------- the cache file


def _file_identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode (``None`` when there is none): replaced files differ."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _connect(source: _Source, store: str) -> sqlite3.Connection:
    """A connection with the store attached, and a SQLite ledger (read-only) as ``main``."""
    ledger = source.path if isinstance(source, _SQLiteLedger) else None
    if ledger is not None and ledger.is_file():
        uri = "file:" + ledger.resolve().as_posix().replace("?", "%3f").replace("#", "%23")
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, timeout=30)
    else:
        conn = sqlite3.connect("", isolation_level=None)
    register_sqlite_functions(conn)
    conn.execute("PRAGMA temp_store = FILE")
    conn.execute("ATTACH ? AS rollup", (store,))
    conn.execute("PRAGMA rollup.synchronous = OFF")  # a cache: a torn file is rebuilt
    return conn


def _columns(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [tuple(row) for row in conn.execute(f"PRAGMA rollup.table_info({name})")]
        for name in _TABLES
    }


def _valid(conn: sqlite3.Connection) -> bool:
    """Whether the store holds this version's tables, each with its columns and keys."""
    reference = sqlite3.connect("")
    try:
        reference.execute("ATTACH '' AS rollup")
        _create_tables(reference)
        return (
            _columns(conn) == _columns(reference) and _meta(conn).get("version") == SCHEMA_VERSION
        )
    except sqlite3.DatabaseError:
        return False
    finally:
        reference.close()


def _open_store(
    cls: type[LedgerRollup],
    source: _Source,
    store: Path | None,
    window_seconds: int,
    segment_key: str,
) -> LedgerRollup:
    """The rollup of ``source`` kept in the file ``store`` (``None``: in a temporary one).

    A store that is not a database, not this version's or not writable is replaced
    (never through a symbolic link: then a temporary store).
    """
    if store is not None:
        folder = store.parent
        if store.is_symlink() or not (
            store.is_file() or (folder.is_dir() and os.access(folder, os.W_OK))
        ):
            store = None
    if store is None:
        return _fresh(cls, source, None, window_seconds, segment_key)
    try:
        conn = _connect(source, str(store))
    except sqlite3.DatabaseError:  # not a database at all
        _remove(store)
        return _fresh(cls, source, store, window_seconds, segment_key)
    if not _valid(conn):
        conn.close()
        _remove(store)
        return _fresh(cls, source, store, window_seconds, segment_key)
    rollup = cls(conn, source, window_seconds=window_seconds, segment_key=segment_key)
    rollup._reset = _resetter(source, store, window_seconds, segment_key)
    return rollup


def _remove(store: Path) -> None:
    for path in (
        store,
        *(store.with_name(store.name + end) for end in ("-journal", "-wal", "-shm")),
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fresh(
    cls: type[LedgerRollup],
    source: _Source,
    store: Path | None,
    window_seconds: int,
    segment_key: str,
) -> LedgerRollup:
    if store is not None and not _create_private(store, source):
        store = None  # not ours to write (a link put there meanwhile): a temporary store
    conn = _connect(source, "" if store is None else str(store))
    _create_tables(conn)
    conn.execute("INSERT INTO rollup.meta VALUES ('version', ?)", (SCHEMA_VERSION,))
    rollup = cls(conn, source, window_seconds=window_seconds, segment_key=segment_key)
    if store is not None:
        rollup._reset = _resetter(source, store, window_seconds, segment_key)
    return rollup


def _create_private(store: Path, source: _Source) -> bool:
    """Create the empty store, readable by no more than its ledger; False: it cannot be.

    A SQLite ledger's permission bits (less the umask), else the owner's only; SQLite's
    journals take the database file's. The store holds the ledger's figures (spend per
    segment, tenants' names among them), which the default mode would have shown to
    every user of the machine. One made meanwhile by another process is kept.
    """
    mode = 0o600
    if isinstance(source, _SQLiteLedger):
        with contextlib.suppress(OSError):
            mode = source.path.stat().st_mode & 0o666
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(store, flags, mode))
    except FileExistsError:
        return not store.is_symlink()
    except OSError:
        return False
    return True


def _resetter(source: _Source, store: Path, window_seconds: int, segment_key: str) -> Any:
    def reset(rollup: LedgerRollup) -> None:
        """Replace a store that failed with a new one (once: the new one does not reset)."""
        rollup.conn.close()
        with contextlib.suppress(OSError):
            _remove(store)
        try:
            fresh = _fresh(LedgerRollup, source, store, window_seconds, segment_key)
        except (OSError, sqlite3.DatabaseError):
            fresh = _fresh(LedgerRollup, source, None, window_seconds, segment_key)
        rollup.conn = fresh.conn
        rollup._reset = None
        rollup._keys_ready.clear()

    return reset


def postgres_cache_path(url: str) -> Path:
    """Where the rollup of a Postgres ledger is kept: the user's cache, one file per database.

    ``LANGROUTE_CACHE_DIR`` (else ``$XDG_CACHE_HOME/langroute``, else
    ``~/.cache/langroute``), ``dashboard/``, a hash of the URL without its password.
    """
    import hashlib

    from langroute.embedders.onnx import cache_dir
    from langroute.postgres.database import redact

    digest = hashlib.sha256(redact(url).encode()).hexdigest()[:24]
    return cache_dir() / "dashboard" / f"postgres-{digest}{CACHE_SUFFIX}"
