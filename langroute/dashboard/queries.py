"""The dashboard's SQL: aggregations over a ledger session's :data:`CALLS` and :data:`FEEDBACK`.

Totals and per-window rates come from the functions behind ``report`` and ``monitor``
(:func:`~langroute.costs.analytics.ledger_summary`,
:func:`~langroute.monitoring.monitor_ledger`), so the page shows their numbers. What
they do not compute (the model mix over time, p99 latency, failovers, segments, quality
per call, the decision log) is aggregated here, in SQL that runs on SQLite and Postgres
alike (:class:`~langroute.costs.analytics.LedgerSession`); only small results (a row
per group, or per route the sorted latencies for exact percentiles) come back.

Example:
    >>> from langroute.costs import LedgerRecord
    >>> from langroute.costs.analytics import open_session
    >>> with open_session([LedgerRecord(route="small", model="m", cost=0.5)]) as session:
    ...     [(row.route, row.calls) for row in route_errors(session)]
    [('small', 1)]
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from langroute.costs.analytics import CALLS, FEEDBACK, LedgerSession, parse_timestamp
from langroute.costs.summary import _percentile
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
    "model_mix",
    "overhead_cost",
    "quality_by",
    "route_errors",
    "route_latencies",
    "segment_rows",
    "spend_since",
]


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (``'`` doubled): values from a query string."""
    return "'" + text.replace("'", "''") + "'"


def _epoch(session: LedgerSession, column: str = "ts") -> str:
    """Seconds since 1970 of an ISO timestamp column, in the session's SQL dialect."""
    if session.dialect.sqlite:
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(floor(extract(epoch FROM CAST({column} AS timestamptz))) AS BIGINT)"


_SERVING = "labelling = 0"
"""Calls that served users (``report`` shows ``langroute label``'s calls apart)."""


class ModelMixPoint(BaseModel):
    """Calls per model in one time bucket (serving calls, judges and LLM routers included)."""

    start: datetime
    calls: dict[str, int] = Field(default_factory=dict)


def model_mix(session: LedgerSession, bucket_seconds: int) -> list[ModelMixPoint]:
    """Calls per model and time bucket (buckets aligned on multiples of ``bucket_seconds``).

    Example:
        >>> from langroute.costs import LedgerRecord
        >>> from langroute.costs.analytics import open_session
        >>> with open_session([LedgerRecord(route="s", model="m")]) as session:
        ...     model_mix(session, 3600)[0].calls
        {'m': 1}
    """
    seconds = int(bucket_seconds)
    sql = f"""
        SELECT {_epoch(session)} / {seconds} AS bucket, COALESCE(model, '(none)'), COUNT(*)
        FROM {CALLS} WHERE {_SERVING} GROUP BY bucket, COALESCE(model, '(none)')
        ORDER BY bucket"""
    points: dict[int, ModelMixPoint] = {}
    for bucket, model, calls in session.query(sql):
        point = points.get(bucket)
        if point is None:
            start = datetime.fromtimestamp(int(bucket) * seconds, tz=timezone.utc)
            point = points[bucket] = ModelMixPoint(start=start)
        point.calls[model] = int(calls)
    return list(points.values())


class LatencyRow(BaseModel):
    """Latency percentiles of one route's serving calls (ms); ``route`` ``None``: all routes."""

    route: str | None
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def route_latencies(session: LedgerSession) -> list[LatencyRow]:
    """p50 / p95 / p99 latency per route and overall, as ``report`` computes p50 and p95.

    The database sorts; each route's latencies come back in order and the percentiles
    interpolate between closest ranks (:func:`langroute.costs.summary._percentile`).
    """
    sql = f"""
        SELECT route, latency_ms FROM {CALLS}
        WHERE {_SERVING} AND latency_ms IS NOT NULL ORDER BY route, latency_ms"""
    by_route: dict[str | None, list[float]] = {}
    for route, latency in session.query(sql):
        by_route.setdefault(route, []).append(latency)
    every = sorted(value for values in by_route.values() for value in values)

    def row(route: str | None, values: Sequence[float]) -> LatencyRow:
        return LatencyRow(
            route=route,
            calls=len(values),
            p50_ms=_percentile(values, 50),
            p95_ms=_percentile(values, 95),
            p99_ms=_percentile(values, 99),
        )

    ordered = sorted(by_route, key=lambda name: (name is None, name or ""))
    return [*(row(route, by_route[route]) for route in ordered), row(None, every)]


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


_REQUEST = "COALESCE(run_id, CAST(solo AS TEXT))"


def route_errors(session: LedgerSession) -> list[RouteErrors]:
    """Calls and failed calls per route, with the requests that failed over.

    A request *failed over* when one of its calls failed and a later call answered
    (an escalation after an error, a fallback to an equivalent model); it is counted on
    the route of its first failed call.
    """
    rows: dict[str | None, RouteErrors] = {}
    for route, calls, errors in session.query(
        f"SELECT route, COUNT(*), SUM(failed) FROM {CALLS} WHERE {_SERVING} AND overhead = 0 "
        "GROUP BY route"
    ):
        calls, errors = int(calls), int(errors or 0)
        rows[route] = RouteErrors(
            route=route, calls=calls, errors=errors, error_rate=errors / calls if calls else 0.0
        )
    failovers = f"""
        SELECT first_failed.route, SUM(CASE WHEN answered.request IS NULL THEN 0 ELSE 1 END),
               SUM(CASE WHEN answered.request IS NULL THEN 1 ELSE 0 END)
        FROM (SELECT {_REQUEST} AS request, route,
                     ROW_NUMBER() OVER (PARTITION BY {_REQUEST} ORDER BY ord) AS n
              FROM {CALLS} WHERE {_SERVING} AND overhead = 0 AND failed = 1) AS first_failed
        LEFT JOIN (SELECT DISTINCT {_REQUEST} AS request FROM {CALLS}
                   WHERE {_SERVING} AND overhead = 0 AND failed = 0
                     AND (accepted IS NULL OR accepted <> 0)) AS answered
               ON answered.request = first_failed.request
        WHERE first_failed.n = 1 GROUP BY first_failed.route"""
    for route, failed_over, unanswered in session.query(failovers):
        known = rows.get(route)
        if known is not None:
            rows[route] = known.model_copy(
                update={"failed_over": int(failed_over or 0), "unanswered": int(unanswered or 0)}
            )
    return sorted(rows.values(), key=lambda row: (row.route is None, row.route or ""))


def overhead_cost(session: LedgerSession) -> float | None:
    """What judge and LLM-router calls cost (serving; ``report``'s savings are net of it)."""
    for (cost,) in session.query(
        f"SELECT SUM(cost) FROM {CALLS} WHERE {_SERVING} AND overhead = 1 AND cost IS NOT NULL"
    ):
        return None if cost is None else float(cost)
    return None


def _segment_value(text: str | None) -> str:
    """A segment column's JSON text as ``monitor`` names it (``"(none)"`` when absent)."""
    value = None if text is None else json.loads(text)
    return "(none)" if value is None else str(value)


class SegmentRow(BaseModel):
    """One segment's (a tenant's, a key's, a tag's) traffic."""

    segment: str
    requests: int
    calls: int
    errors: int
    escalated_calls: int
    cost: float | None
    judged: int = 0
    good: int = 0
    quality: float | None = None


_LATEST_VERDICTS = f"""
    SELECT feedback_for, verdict FROM (
        SELECT feedback_for, verdict,
               ROW_NUMBER() OVER (PARTITION BY feedback_for ORDER BY ts DESC, ord DESC) AS n
        FROM {FEEDBACK}) AS latest
    WHERE n = 1"""
"""The latest verdict on each judged call (by time, then ledger order, as ``monitor`` keeps it)."""


def segment_rows(session: LedgerSession, limit: int = 50) -> list[SegmentRow]:
    """The ``limit`` segments that spent most (the session's segment column), most first.

    Segments are the values of the metadata key the session was opened with
    (:func:`~langroute.costs.analytics.open_session`'s ``segment_key``).
    """
    sql = f"""
        SELECT segment, COUNT(DISTINCT {_REQUEST}), COUNT(*), SUM(failed), SUM(escalated),
               SUM(cost)
        FROM {CALLS} WHERE {_SERVING} GROUP BY segment
        ORDER BY SUM(cost) IS NULL, SUM(cost) DESC, COUNT(*) DESC LIMIT {int(limit)}"""
    rows = {
        segment: SegmentRow(
            segment=_segment_value(segment),
            requests=int(requests),
            calls=int(calls),
            errors=int(errors or 0),
            escalated_calls=int(escalated or 0),
            cost=None if cost is None else float(cost),
        )
        for segment, requests, calls, errors, escalated, cost in session.query(sql)
    }
    for segment, judged, good in _judged(session, "segment"):
        row = rows.get(segment)
        if row is not None and judged:
            rows[segment] = row.model_copy(
                update={"judged": judged, "good": good, "quality": good / judged}
            )
    return list(rows.values())


def _judged(session: LedgerSession, column: str) -> list[tuple[Any, int, int]]:
    sql = f"""
        SELECT calls.{column}, COUNT(*), SUM(CASE WHEN latest.verdict = 'good' THEN 1 ELSE 0 END)
        FROM ({_LATEST_VERDICTS}) AS latest JOIN {CALLS} AS calls
             ON calls.record_id = latest.feedback_for
        WHERE calls.labelling = 0
        GROUP BY calls.{column}"""
    return [(key, int(judged), int(good or 0)) for key, judged, good in session.query(sql)]


class QualityRow(BaseModel):
    """Feedback on one route's answers: the latest verdict on each judged call."""

    route: str | None
    judged: int
    good: int
    quality: float


def quality_by(session: LedgerSession) -> list[QualityRow]:
    """Share of good verdicts per route of the judged call (the latest verdict counts).

    ``monitor`` counts a verdict on the route that answered its request; here it counts
    on the call it names, which is that answer's call whenever feedback names the
    answer's ``record_id`` (as ``langroute serve`` and the integrations hand it out).
    """
    rows = [
        QualityRow(route=route, judged=judged, good=good, quality=good / judged)
        for route, judged, good in _judged(session, "route")
        if judged
    ]
    return sorted(rows, key=lambda row: (row.route is None, row.route or ""))


def spend_since(session: LedgerSession, start: datetime) -> dict[str, float]:
    """Spend per segment since ``start`` (priced serving calls): a key's budget burn."""
    sql = f"""
        SELECT segment, SUM(cost) FROM {CALLS}
        WHERE {_SERVING} AND cost IS NOT NULL AND {_epoch(session)} >= {int(start.timestamp())}
        GROUP BY segment"""
    return {_segment_value(segment): float(cost) for segment, cost in session.query(sql)}


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
