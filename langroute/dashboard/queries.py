"""The dashboard's decision log, SQL over a ledger session's :data:`CALLS`; the panels' rows.

The decision log pages through the calls themselves: a SQLite ledger is read in place
(:func:`ledger_view`, newest rows first, a page stops at its end), other ledgers
through an analytics session (:func:`~langroute.costs.analytics.open_session`); the
same SQL runs on SQLite and Postgres. The other panels read the ledger's rollup
(:mod:`langroute.dashboard.rollup`); the models here are the rows they return.

Example:
    >>> from langroute.costs import LedgerRecord
    >>> from langroute.costs.analytics import open_session
    >>> rows = [LedgerRecord(route="small", model="m", cost=0.5)]
    >>> with open_session(rows) as session:
    ...     [(row.route, row.cost) for row in decision_rows(session, DecisionFilter())]
    [('small', 0.5)]
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from langroute.costs.analytics import CALLS, LedgerSession, parse_timestamp
from langroute.errors import LedgerFormatError

__all__ = [
    "DecisionFilter",
    "DecisionRow",
    "LatencyRow",
    "ModelMixPoint",
    "QualityRow",
    "RouteErrors",
    "SegmentRow",
    "decision_count",
    "decision_rows",
    "index_calls",
    "ledger_view",
    "postgres_view",
]


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (``'`` doubled): values from a query string."""
    return "'" + text.replace("'", "''") + "'"


_SERVING = "labelling = 0"
"""Calls that served users (``report`` shows ``langroute label``'s calls apart)."""


class ModelMixPoint(BaseModel):
    """Calls per model in one time bucket (serving calls, judges and LLM routers included)."""

    start: datetime
    calls: dict[str, int] = Field(default_factory=dict)


class LatencyRow(BaseModel):
    """Latency percentiles of one route's serving calls (ms); ``route`` ``None``: all routes.

    From the rollup's histogram: each within
    :data:`~langroute.dashboard.rollup.LATENCY_RELATIVE_ERROR` of the exact percentile.
    """

    route: str | None
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class RouteErrors(BaseModel):
    """Failed calls of one route, and the requests a later call still answered (failover)."""

    route: str | None
    calls: int
    errors: int
    error_rate: float
    failed_over: int = Field(
        default=0,
        description="Requests whose first failed call was this route's and that got an answer.",
    )
    unanswered: int = Field(default=0, description="Such requests that got no answer at all.")


def _segment_value(text: str | None) -> str:
    """A segment column's JSON text as ``monitor`` names it (``"(none)"`` when absent)."""
    value = None if text is None else json.loads(text)
    return "(none)" if value is None else str(value)


class SegmentRow(BaseModel):
    """One segment's (a tenant's, a key's, a tag's) serving calls.

    ``requests`` counts the requests whose first serving call carries the segment.
    """

    segment: str
    requests: int
    calls: int
    errors: int
    escalated_calls: int
    cost: float | None
    judged: int = 0
    good: int = 0
    quality: float | None = None


class QualityRow(BaseModel):
    """Feedback on one route's answers: the latest verdict on each judged call."""

    route: str | None
    judged: int
    good: int
    quality: float


class DecisionFilter(BaseModel):
    """Which calls the decision log lists (every field optional; all must match)."""

    route: str | None = None
    reason: str | None = None
    segment: str | None = Field(default=None, description="The segment's value, as listed.")
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class DecisionRow(BaseModel):
    """One call of the decision log (the rest of its record: :meth:`CostLedger.find`)."""

    record_id: str
    run_id: str | None
    timestamp: datetime
    kind: str
    route: str | None
    model: str | None
    reason: str | None
    cost: float | None
    latency_ms: float | None
    escalated: bool
    failed: bool
    overhead: bool
    segment: str | None
    max_similarity: float | None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def index_calls(session: LedgerSession) -> None:
    """Index a SQLite session's calls by ledger order and request (the decision log pages).

    A Postgres session's server-side cursors take no DDL; Postgres sorts the page itself.
    """
    if session.dialect.sqlite:
        for column in ("ord", "run_id", "ts"):
            list(
                session.query(f"CREATE INDEX IF NOT EXISTS {CALLS}_{column} ON {CALLS} ({column})")
            )


@contextlib.contextmanager
def ledger_view(path: Path, segment_key: str | None) -> Iterator[LedgerSession]:
    """A session over a SQLite ledger read in place: :data:`CALLS` is a view of its rows.

    The ledger is opened read-only; a decision-log page reads the newest rows first
    and stops at the page's end (no copy of the calls). A ledger file not written yet
    reads as empty.

    Raises:
        LedgerFormatError: The file is not a SQLite ledger.
    """
    from langroute.costs.analytics import (
        SQLITE,
        calls_select_sql,
        register_sqlite_functions,
        staged_session,
    )
    from langroute.costs.sinks import SQL_TABLE, sqlite_rows

    if not path.is_file():
        with staged_session((), segment_key) as session:
            yield session
        return
    uri = "file:" + path.resolve().as_posix().replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({SQL_TABLE})")}
        if not present:
            with staged_session((), segment_key) as session:
                yield session
            return
        register_sqlite_functions(conn)
        calls = calls_select_sql(SQLITE, SQL_TABLE, present, segment_key)
        conn.execute(f"CREATE TEMP VIEW {CALLS} AS {calls}")
        yield LedgerSession(SQLITE, lambda sql: sqlite_rows(conn.execute(sql), path))
    except sqlite3.DatabaseError as exc:
        raise LedgerFormatError(f"not a readable SQLite ledger: {exc}", path=path) from exc
    finally:
        conn.close()


@contextlib.contextmanager
def postgres_view(sink: Any, segment_key: str | None) -> Iterator[LedgerSession]:
    """A session over a Postgres ledger read in place: :data:`CALLS` is a temporary view.

    On a connection of its own; each query runs in its own transaction through a
    server-side cursor. A page reads the newest rows by ``seq`` and stops at its end.

    Raises:
        DatabaseUnavailableError: The database cannot be reached.
    """
    import itertools

    from langroute.costs.analytics import POSTGRES, calls_select_sql
    from langroute.postgres.database import LEDGER_TABLE

    conn = sink.analytics_connection()
    cursors = itertools.count()

    def run(sql: str) -> Iterator[Any]:
        with conn.transaction(), conn.cursor(name=f"langroute_log_{next(cursors)}") as cursor:
            cursor.itersize = 1_000
            cursor.execute(sql)
            yield from cursor

    try:
        calls = calls_select_sql(POSTGRES, LEDGER_TABLE, sink._names, segment_key)
        conn.execute(f"CREATE TEMP VIEW {CALLS} AS {calls}")
        yield LedgerSession(POSTGRES, run)
    finally:
        conn.close()


def _where(where: DecisionFilter) -> str:
    clauses = [_SERVING]
    if where.route is not None:
        clauses.append(f"route = {_literal(where.route)}")
    if where.reason is not None:
        clauses.append(f"reason = {_literal(where.reason)}")
    if where.run_id is not None:
        clauses.append(f"run_id = {_literal(where.run_id)}")
    if where.segment is not None:
        if where.segment == "(none)":
            clauses.append("(segment IS NULL OR segment = 'null')")
        else:
            # the segment column holds JSON text: a string value is quoted, a number not
            texts = {json.dumps(where.segment)}
            with contextlib.suppress(ValueError):
                texts.add(json.dumps(json.loads(where.segment)))
            clauses.append(f"segment IN ({', '.join(_literal(text) for text in sorted(texts))})")
    # langroute writes one ISO form (UTC, +00:00): text order is time order, and the
    # text comparison needs no per-row date parsing
    if where.since is not None:
        clauses.append(f"ts >= {_literal(_iso(where.since))}")
    if where.until is not None:
        clauses.append(f"ts < {_literal(_iso(where.until))}")
    return " AND ".join(clauses)


def decision_count(session: LedgerSession, where: DecisionFilter) -> int:
    """How many calls the decision log's filter matches."""
    for (count,) in session.query(f"SELECT COUNT(*) FROM {CALLS} WHERE {_where(where)}"):
        return int(count)
    return 0


def decision_rows(
    session: LedgerSession, where: DecisionFilter, *, offset: int = 0, limit: int = 50
) -> list[DecisionRow]:
    """One page of the matching calls, newest first.

    Example:
        >>> from langroute.costs import LedgerRecord
        >>> from langroute.costs.analytics import open_session
        >>> rows = [LedgerRecord(route="s", reason="vote"), LedgerRecord(route="l")]
        >>> with open_session(rows) as session:
        ...     [row.route for row in decision_rows(session, DecisionFilter(route="l"))]
        ['l']
    """
    clause = _where(where)
    sql = f"""
        SELECT record_id, run_id, ts, kind, route, model, reason, cost, latency_ms,
               escalated, failed, overhead, segment, similarity
        FROM {CALLS} WHERE {clause} ORDER BY ord DESC
        LIMIT {max(0, int(limit))} OFFSET {max(0, int(offset))}"""
    page = []
    for (record_id, run_id, ts, kind, route, model, reason, cost, latency, escalated, failed,
         overhead, segment, similarity) in session.query(sql):  # fmt: skip
        try:
            best = None if similarity is None else float(json.loads(similarity))
        except (TypeError, ValueError):
            best = None
        page.append(
            DecisionRow(
                record_id=record_id,
                run_id=run_id,
                timestamp=parse_timestamp(ts),
                kind=kind,
                route=route,
                model=model,
                reason=reason,
                cost=cost,
                latency_ms=latency,
                escalated=bool(escalated),
                failed=bool(failed),
                overhead=bool(overhead),
                segment=None if segment is None else _segment_value(segment),
                max_similarity=best,
            )
        )
    return page
