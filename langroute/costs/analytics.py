"""Ledger analytics computed where the ledger lives, in one pass and bounded memory.

``langroute report`` and ``langroute monitor`` (and the dashboard) read ledgers of
millions of rows. Building a :class:`~langroute.costs.LedgerRecord` per row costs
minutes and gigabytes, so these functions never do: the database selects the few
columns an aggregate needs, reads the metadata keys that matter with its JSON
operators, leaves feedback out and returns the calls ordered by request (``run_id``),
so each request is complete when its last row arrives and is folded into small
accumulators. Python keeps only what exact results need: per route, the costs (summed
with :func:`math.fsum`, exactly as :func:`~langroute.costs.summarize` does) and the
latencies (for the percentiles), as compact ``array('d')`` columns.

* :func:`ledger_summary` is :func:`~langroute.costs.summarize` of a ledger (the
  ``report`` command, :meth:`CostLedger.summary <langroute.costs.CostLedger.summary>`).
* :func:`ledger_monitor` is :func:`langroute.monitoring.monitor` of a ledger (the
  ``monitor`` command), all segments in one pass.
* :func:`request_groups` yields each request's calls as :class:`CallRow` tuples, and
  :func:`latest_verdicts` the latest verdict on each judged call: the building blocks,
  for other views of a ledger.

Sources: a :class:`~langroute.costs.SQLiteSink` and a
:class:`~langroute.postgres.PostgresSink` run the same SQL (their dialects differ only
in JSON operators and placeholders); a :class:`~langroute.costs.JSONLSink` is streamed
line by line into a temporary SQLite table (records are validated as they pass, with
file and line on error; nothing is kept in memory); any other sink, or a list of
records, is converted in memory. Results equal the in-Python functions' on the same
records, number for number.

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
from langroute.costs.summary import LedgerSummary, RouteCostSummary, _percentile

if TYPE_CHECKING:
    from langroute.monitoring import MonitorReport, MonitorThresholds, WindowStats

__all__ = [
    "CallRow",
    "Verdicts",
    "latest_verdicts",
    "ledger_monitor",
    "ledger_summary",
    "request_groups",
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


@dataclass(frozen=True)
class Dialect:
    """How one database spells what the shared SQL needs.

    Attributes:
        placeholder: The parameter marker (``?``, ``%s``).
        order: The row-order column (``id``, ``seq``).
        row_id_prefix: Prefix of the id of a row stored without ``record_id``.
    """

    placeholder: str
    order: str
    row_id_prefix: str
    sqlite: bool = True

    def json_text(self, key: str) -> str:
        """The JSON text of ``meta[key]`` (``NULL`` when absent)."""
        if self.sqlite:
            return f"(meta -> '$.{key}')"
        return f"((meta -> '{key}')::text)"

    def json_value(self, key: str) -> str:
        """``meta[key]`` as SQL text (a JSON string unquoted)."""
        return f"(meta ->> '$.{key}')" if self.sqlite else f"(meta ->> '{key}')"

    def json_param(self) -> str:
        """The JSON text of ``meta[<parameter>]``, the key bound as a parameter."""
        if self.sqlite:
            return f"(meta -> {self.placeholder})"
        return f"((meta -> {self.placeholder})::text)"

    def key_param(self, key: str) -> str:
        """The bound value of :meth:`json_param` for a metadata key."""
        return f'$."{key}"' if self.sqlite else key

    def flag(self, expression: str) -> str:
        """A boolean expression as a value that reads back as a truth value."""
        return f"({expression})" if self.sqlite else f"COALESCE(({expression}), false)"


SQLITE = Dialect(placeholder="?", order="id", row_id_prefix="sqlite-row-")
POSTGRES = Dialect(placeholder="%s", order="seq", row_id_prefix="postgres-row-", sqlite=False)


def _segment_key(key: str | None) -> str | None:
    return None if key is None else key.removeprefix("metadata.")


def call_rows_sql(
    dialect: Dialect, table: str, present: Iterable[str], segment_key: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The query of every call (no feedback) as :class:`CallRow` columns, by request.

    Args:
        dialect: :data:`SQLITE` or :data:`POSTGRES`.
        table: The ledger table.
        present: Its columns (an older ledger lacks some: read as NULL).
        segment_key: A metadata key whose value is returned as ``segment``.

    Returns:
        The SQL and its parameters.
    """
    present = set(present)

    def column(name: str) -> str:
        return name if name in present else "NULL"

    key = _segment_key(segment_key)
    params: tuple[Any, ...] = ()
    if key is None:
        segment = "NULL"
    elif dialect.sqlite and ('"' in key or "\\" in key):
        segment = f"{JSON_GET}(meta, ?)"  # a label SQLite's JSON paths cannot quote
        params = (key,)
    else:
        segment = dialect.json_param()
        params = (dialect.key_param(key),)
    order = dialect.order
    record_id = (
        f"COALESCE({column('record_id')}, '{dialect.row_id_prefix}' || {order})"
        if dialect.sqlite
        else f"COALESCE({column('record_id')}, '{dialect.row_id_prefix}' || {order}::text)"
    )
    meta = (
        f"CASE WHEN json_valid(metadata) THEN metadata ELSE {STRICT_JSON}(metadata) END"
        if dialect.sqlite
        else "NULLIF(metadata, '')::json"
    )
    roles = ", ".join(f"'{role}'" for role in sorted(OVERHEAD_ROLES))
    select = f"""
        SELECT run_id, {order}, timestamp, kind, route, model,
               input_tokens, output_tokens, cached_tokens,
               cost, baseline_model, baseline_cost, latency_ms,
               escalated, error IS NOT NULL, reason, accepted,
               {dialect.flag(f"COALESCE({dialect.json_text(UNMEASURED_KEY)}, '') <> 'true'")},
               {dialect.flag(f"{dialect.json_value(PURPOSE_KEY)} = '{LABELLING_PURPOSE}'")},
               {dialect.flag(f"{dialect.json_value(ROLE_KEY)} IN ({roles})")},
               {dialect.json_text("max_similarity")},
               {segment},
               {record_id}
        FROM (SELECT *, {meta} AS meta FROM {table} WHERE kind <> 'feedback') AS calls
        ORDER BY run_id {"" if dialect.sqlite else "NULLS FIRST"}, {order}
    """
    return select, params


STRICT_JSON = "langroute_strict_json"
"""SQLite function (see :func:`register_sqlite_functions`): metadata as strict JSON."""
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


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Give a SQLite connection the functions :func:`call_rows_sql` may call."""
    conn.create_function(STRICT_JSON, 1, _strict_json, deterministic=True)
    conn.create_function(JSON_GET, 2, _json_get, deterministic=True)


def feedback_rows_sql(dialect: Dialect, table: str, present: Iterable[str]) -> str:
    """The query of every feedback row: (feedback_for, verdict, timestamp, order)."""
    present = set(present)
    if not {"feedback_for", "verdict"} <= present:  # a ledger older than feedback
        return f"SELECT NULL, NULL, NULL, NULL FROM {table} WHERE 1 = 0"
    return (
        f"SELECT feedback_for, verdict, timestamp, {dialect.order} FROM {table} "
        "WHERE kind = 'feedback'"
    )


def call_row(values: Sequence[Any]) -> CallRow:
    """A :class:`CallRow` from a row of :func:`call_rows_sql` (converting the types)."""
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


def rows_of_records(
    records: Iterable[LedgerRecord], segment_key: str | None = None
) -> Iterator[CallRow]:
    """:class:`CallRow` of each call among ``records`` (feedback left out), in their order."""
    key = _segment_key(segment_key)
    for order, record in enumerate(records):
        if record.is_feedback:
            continue
        similarity = record.metadata.get("max_similarity")
        segment = None if key is None else record.metadata.get(key)
        yield CallRow(
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


def verdicts_of_records(records: Iterable[LedgerRecord]) -> Verdicts:
    """:data:`Verdicts` of the feedback among ``records``."""
    latest: Verdicts = {}
    for order, record in enumerate(records):
        if record.is_feedback and record.feedback_for is not None and record.verdict:
            _keep_latest(latest, record.feedback_for, record.timestamp, order, record.verdict)
    return latest


def _keep_latest(latest: Verdicts, target: str, when: datetime, order: int, verdict: str) -> None:
    # the latest by time; among equal times the later row (a stable sort's last)
    seen = latest.get(target)
    if seen is None or (when, order) >= seen[:2]:
        latest[target] = (when, order, verdict)


# ---------------------------------------------------------------------------- sources


def _sql_source(source: Any) -> Any:
    """The sink behind ``source`` when it answers the analytics queries itself."""
    sink = getattr(source, "sink", source)
    if hasattr(sink, "analytics_call_rows") and hasattr(sink, "analytics_feedback_rows"):
        return sink
    return None


@contextlib.contextmanager
def _call_rows(source: Any, segment_key: str | None) -> Iterator[Iterator[CallRow]]:
    """Every call of ``source``, ordered by request (``run_id``, then ledger order)."""
    from langroute.costs.writer import flush_writers_of

    sink = _sql_source(source)
    if sink is not None:
        flush_writers_of(sink)
        with sink.analytics_call_rows(segment_key) as rows:
            yield (call_row(row) for row in rows)
        return
    records = _records_of(source)
    rows = sorted(
        rows_of_records(records, segment_key),
        key=lambda row: (row.run_id is not None, row.run_id or "", row.order),
    )
    yield iter(rows)


def _records_of(source: Any) -> Sequence[LedgerRecord]:
    read = getattr(source, "records", None)
    if callable(read):  # a CostLedger
        return read()
    read = getattr(source, "read", None)
    if callable(read):  # a Sink
        return read()
    return list(source)


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
    with _call_rows(source, segment_key) as rows:
        group: list[CallRow] = []
        for row in rows:
            if group and (row.run_id is None or row.run_id != group[0].run_id):
                yield group
                group = []
            group.append(row)
        if group:
            yield group


def latest_verdicts(source: Any) -> Verdicts:
    """The latest verdict on each judged call of ``source`` (see :data:`Verdicts`).

    Example:
        >>> call = LedgerRecord(route="s")
        >>> verdict = LedgerRecord(kind="feedback", feedback_for=call.record_id, verdict="bad")
        >>> latest_verdicts([call, verdict])[call.record_id][2]
        'bad'
    """
    sink = _sql_source(source)
    if sink is None:
        return verdicts_of_records(_records_of(source))
    latest: Verdicts = {}
    for target, verdict, stamp, order in sink.analytics_feedback_rows():
        if target is not None and verdict is not None:
            _keep_latest(latest, target, parse_timestamp(stamp), order, verdict)
    return latest


# ---------------------------------------------------------------------------- summary


class _Requests:
    """Per-request counts and the costs behind savings (as ``summarize`` computes them)."""

    __slots__ = (
        "baselines",
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
        self.baselines = array("d")
        self.compared_baselines = array("d")
        self.compared_costs = array("d")

    def add(self, rows: Sequence[CallRow]) -> None:
        self.requests += 1
        self.escalated += any(row.escalated for row in rows)
        if not all(row.measured for row in rows):
            self.unmeasured += 1  # its cost and its baseline are unknown
            return
        baselines = [row.baseline_cost for row in rows if row.baseline_cost is not None]
        if not baselines:
            return
        baseline = max(baselines)
        self.baselines.append(baseline)
        if all(row.cost is not None for row in rows):
            self.compared_baselines.append(baseline)
            self.compared_costs.extend(row.cost for row in rows if row.cost is not None)

    def savings(self) -> tuple[float | None, float | None]:
        """Savings and savings in percent of the compared baseline."""
        if not self.compared_baselines:
            return None, None
        base = math.fsum(self.compared_baselines)
        savings = base - math.fsum(self.compared_costs)
        return savings, (100.0 * savings / base if base > 0 else None)


@dataclass
class _Route:
    """One route's aggregates (its costs and latencies as compact columns)."""

    first: int
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    unpriced: int = 0
    unmeasured: int = 0
    costs: array = field(default_factory=lambda: array("d"))
    latencies: array = field(default_factory=lambda: array("d"))
    models: dict[str, int] = field(default_factory=dict)

    def add(self, row: CallRow) -> None:
        self.first = min(self.first, row.order)
        self.calls += 1
        self.errors += row.failed
        self.escalations += row.escalated
        self.rejected += row.accepted is False
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cached_tokens += row.cached_tokens
        if row.cost is not None:
            self.costs.append(row.cost)
        elif row.measured:
            self.unpriced += 1
        if not row.measured:
            self.unmeasured += 1
        if row.latency_ms is not None:
            self.latencies.append(row.latency_ms)
        if row.model is not None:
            _first_seen(self.models, row.model, row.order)


def _first_seen(seen: dict[str, int], name: str, order: int) -> None:
    known = seen.get(name)
    if known is None or order < known:
        seen[name] = order


def _by_first(seen: dict[str, int]) -> list[str]:
    return sorted(seen, key=seen.__getitem__)


class _Part:
    """The aggregates of one part of a ledger (serving, or labelling)."""

    def __init__(self) -> None:
        self.routes: dict[str | None, _Route] = {}
        self.requests = _Requests()
        self.baseline_models: dict[str, int] = {}
        self.first: datetime | None = None
        self.last: datetime | None = None

    def add(self, rows: Sequence[CallRow]) -> None:
        self.requests.add(rows)
        for row in rows:
            route = self.routes.get(row.route)
            if route is None:
                route = self.routes[row.route] = _Route(first=row.order)
            route.add(row)
            if row.baseline_model is not None:
                _first_seen(self.baseline_models, row.baseline_model, row.order)
            if self.first is None or row.timestamp < self.first:
                self.first = row.timestamp
            if self.last is None or row.timestamp > self.last:
                self.last = row.timestamp

    def summary(self, order: Sequence[str] | None) -> LedgerSummary:
        named = [name for name in dict.fromkeys(order or ()) if name in self.routes]
        rest = sorted(
            (name for name in self.routes if name not in named),
            key=lambda name: self.routes[name].first,
        )
        routes = [_route_summary(name, self.routes[name]) for name in [*named, *rest]]
        every = list(self.routes.values())
        costs = [route.costs for route in every if route.costs]
        latencies = array("d")
        for route in every:
            latencies.extend(route.latencies)
        requests = self.requests
        savings, savings_pct = requests.savings()
        calls = sum(route.calls for route in every)
        return LedgerSummary(
            routes=routes,
            requests=requests.requests,
            calls=calls,
            errors=sum(route.errors for route in every),
            escalations=sum(route.escalations for route in every),
            escalated_requests=requests.escalated,
            escalation_rate=requests.escalated / requests.requests if requests.requests else 0.0,
            input_tokens=sum(route.input_tokens for route in every),
            output_tokens=sum(route.output_tokens for route in every),
            cached_tokens=sum(route.cached_tokens for route in every),
            cost=math.fsum(value for column in costs for value in column) if costs else None,
            unpriced_calls=sum(route.unpriced for route in every),
            unmeasured_calls=sum(route.unmeasured for route in every),
            unmeasured_requests=requests.unmeasured,
            baseline_models=_by_first(self.baseline_models),
            baseline_cost=math.fsum(requests.baselines) if requests.baselines else None,
            savings=savings,
            savings_pct=savings_pct,
            latency_p50_ms=_percentile(latencies, 50),
            latency_p95_ms=_percentile(latencies, 95),
            first_timestamp=self.first,
            last_timestamp=self.last,
        )


def _route_summary(name: str | None, route: _Route) -> RouteCostSummary:
    return RouteCostSummary(
        route=name,
        models=_by_first(route.models),
        calls=route.calls,
        errors=route.errors,
        escalations=route.escalations,
        escalation_rate=route.escalations / route.calls if route.calls else 0.0,
        rejected=route.rejected,
        input_tokens=route.input_tokens,
        output_tokens=route.output_tokens,
        cached_tokens=route.cached_tokens,
        cost=math.fsum(route.costs) if route.costs else None,
        unpriced_calls=route.unpriced,
        unmeasured_calls=route.unmeasured,
        latency_p50_ms=_percentile(route.latencies, 50),
        latency_p95_ms=_percentile(route.latencies, 95),
    )


def _split(rows: Sequence[CallRow]) -> tuple[list[CallRow], list[CallRow]]:
    """A request's serving calls and its labelling calls."""
    serving = [row for row in rows if not row.labelling]
    if len(serving) == len(rows):
        return serving, []
    return serving, [row for row in rows if row.labelling]


def ledger_summary(source: Any, order: Sequence[str] | None = None) -> LedgerSummary:
    """:func:`~langroute.costs.summarize` of a whole ledger, without loading its records.

    Args:
        source: A :class:`~langroute.costs.CostLedger`, a sink (SQLite, Postgres and
            JSONL ledgers are aggregated in one pass), or records.
        order: Route names to list first.

    Returns:
        The same summary :func:`~langroute.costs.summarize` gives for its records.

    Raises:
        LedgerFormatError: The ledger is malformed (file and line named).

    Example:
        >>> ledger_summary([LedgerRecord(route="small", cost=0.5)]).cost
        0.5
    """
    serving, labelling = _Part(), _Part()
    for rows in request_groups(source):
        calls, labels = _split(rows)
        if calls:
            serving.add(calls)
        if labels:
            labelling.add(labels)
    summary = serving.summary(order)
    if labelling.routes:
        return summary.model_copy(update={"labelling": labelling.summary(order)})
    return summary


# ---------------------------------------------------------------------------- monitor

_UNSURE = ("low_confidence", "out_of_distribution")


class _Window:
    """One window's (or baseline's) aggregates, as ``monitoring._stats`` computes them."""

    __slots__ = (
        "calls",
        "cascade",
        "costs",
        "escalated",
        "failed",
        "good",
        "good_by_route",
        "judged",
        "judged_by_route",
        "low_confidence",
        "out_of_distribution",
        "rejected",
        "requests",
        "routes",
        "savings",
        "similarities",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.calls = 0
        self.routes: dict[str, int] = {}
        self.escalated = 0
        self.out_of_distribution = 0
        self.low_confidence = 0
        self.failed = 0
        self.cascade = 0
        self.rejected = 0
        self.similarities = array("d")
        self.costs = array("d")
        self.savings = _Requests()
        self.judged = 0
        self.good = 0
        self.judged_by_route: dict[str, int] = {}
        self.good_by_route: dict[str, int] = {}

    def add(self, request: _MonitoredRequest) -> None:
        self.requests += 1
        rows = request.rows
        self.calls += len(rows)
        if request.route is not None:
            self.routes[request.route] = self.routes.get(request.route, 0) + 1
        self.escalated += request.escalated
        self.out_of_distribution += request.reason == "out_of_distribution"
        self.low_confidence += request.reason == "low_confidence"
        self.failed += request.failed
        for row in rows:
            if row.kind == "cascade":
                self.cascade += 1
                self.rejected += row.accepted is False
        if request.similarity is not None:
            self.similarities.append(request.similarity)
        serving, _ = _split(rows)
        if serving:
            self.costs.extend(row.cost for row in serving if row.cost is not None)
            self.savings.add(serving)
        if request.verdict is not None:
            route = request.route or "(none)"
            good = request.verdict == "good"
            self.judged += 1
            self.good += good
            self.judged_by_route[route] = self.judged_by_route.get(route, 0) + 1
            self.good_by_route[route] = self.good_by_route.get(route, 0) + good

    def stats(self, start: datetime, end: datetime, segment: str | None) -> WindowStats:
        from langroute.monitoring import WindowStats

        count = self.requests

        def share(hits: int) -> float:
            return hits / count if count else 0.0

        savings, _ = self.savings.savings()
        similarities = self.similarities
        return WindowStats(
            start=start,
            end=end,
            segment=segment,
            requests=count,
            calls=self.calls,
            route_shares={route: n / count for route, n in sorted(self.routes.items())},
            escalation_rate=share(self.escalated),
            out_of_distribution_rate=share(self.out_of_distribution),
            low_confidence_rate=share(self.low_confidence),
            error_rate=share(self.failed),
            cascade_rejection_rate=self.rejected / self.cascade if self.cascade else None,
            mean_best_similarity=(
                math.fsum(similarities) / len(similarities) if similarities else None
            ),
            cost=math.fsum(self.costs) if self.costs else None,
            savings=savings,
            unmeasured_requests=self.savings.unmeasured,
            feedback=self.judged,
            quality=self.good / self.judged if self.judged else None,
            quality_by_route={
                route: self.good_by_route[route] / judged
                for route, judged in sorted(self.judged_by_route.items())
            },
        )


class _MonitoredRequest:
    """What monitoring reads of one request (as ``monitoring._Request``)."""

    __slots__ = ("escalated", "failed", "reason", "route", "rows", "similarity", "verdict")

    def __init__(self, rows: Sequence[CallRow], verdicts: Verdicts) -> None:
        self.rows = rows
        self.reason = rows[0].reason
        answered = [
            row for row in rows if not row.failed and row.accepted is not False and not row.overhead
        ]
        self.route = answered[-1].route if answered else None
        self.failed = any(row.failed for row in rows)
        self.escalated = any(row.escalated for row in rows) or self.reason in _UNSURE
        self.similarity: float | None = None
        for row in rows:
            if row.similarity is not None:
                value = json.loads(row.similarity)
                if isinstance(value, (int, float)):
                    self.similarity = float(value)
                    break
        self.verdict: str | None = None
        if verdicts:
            judged = [verdicts[row.record_id] for row in rows if row.record_id in verdicts]
            if judged:
                self.verdict = max(judged, key=lambda seen: seen[:2])[2]


def _segment_name(row: CallRow, segment_key: str | None) -> str | None:
    if segment_key is None:
        return None
    value = None if row.segment is None else json.loads(row.segment)
    return "(none)" if value is None else str(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ledger_monitor(
    source: Any,
    *,
    window: timedelta = timedelta(hours=1),
    segment_key: str | None = None,
    baseline: tuple[datetime, datetime] | None = None,
    thresholds: MonitorThresholds | None = None,
) -> MonitorReport:
    """:func:`langroute.monitoring.monitor` of a whole ledger, in one pass over its calls.

    Every (segment, window) pair is aggregated as its requests stream by, so many
    segments cost no more than one.

    Args:
        source: A :class:`~langroute.costs.CostLedger`, a sink, or records.
        window: The length of a window (aligned on whole multiples of it, UTC).
        segment_key: A ``metadata`` key: each segment gets its own windows and alarms.
        baseline: The period ``(start, end)`` to compare with; default: the first window.
        thresholds: When to raise alarms.

    Returns:
        The same report :func:`~langroute.monitoring.monitor` gives for the records.

    Raises:
        ValueError: ``window`` is not positive, or ``baseline`` holds no request.
        LedgerFormatError: The ledger is malformed.

    Example:
        >>> ledger_monitor([LedgerRecord(route="small")]).windows[0].requests
        1
    """
    from langroute.monitoring import MonitorReport, MonitorThresholds, _alarms

    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    thresholds = thresholds or MonitorThresholds()
    verdicts = latest_verdicts(source)
    windows: dict[tuple[str | None, int], _Window] = {}
    periods: dict[str | None, _Window] = {}
    first_index: int | None = None
    for rows in request_groups(source, segment_key):
        request = _MonitoredRequest(rows, verdicts)
        time = min(row.timestamp for row in rows)
        segment = _segment_name(rows[0], segment_key)
        index = (time - _EPOCH) // window
        if first_index is None or index < first_index:
            first_index = index
        slot = windows.get((segment, index))
        if slot is None:
            slot = windows[(segment, index)] = _Window()
        slot.add(request)
        if baseline is not None and baseline[0] <= time < baseline[1]:
            period = periods.get(segment)
            if period is None:
                period = periods[segment] = _Window()
            period.add(request)
    if first_index is None:
        return MonitorReport(window=window, segment_key=segment_key, thresholds=thresholds)
    origin = _EPOCH + first_index * window
    if baseline is None:
        baseline = (origin, origin + window)
        periods = {
            segment: slot for (segment, index), slot in windows.items() if index == first_index
        }
    segments = sorted({segment for segment, _ in windows}, key=lambda s: (s is None, s or ""))
    by_segment: dict[str | None, list[int]] = {}
    for segment, index in windows:
        by_segment.setdefault(segment, []).append(index)
    baselines: list[WindowStats] = []
    stats: list[WindowStats] = []
    alarms = []
    for segment in segments:
        base = periods.get(segment, _Window()).stats(baseline[0], baseline[1], segment)
        baselines.append(base)
        for index in sorted(by_segment[segment]):
            start = origin + (index - first_index) * window
            current = windows[(segment, index)].stats(start, start + window, segment)
            stats.append(current)
            in_baseline = baseline[0] <= start and start + window <= baseline[1]
            if base.requests and not in_baseline:
                alarms.extend(_alarms(current, base, thresholds))
    if not any(b.requests for b in baselines):
        raise ValueError(f"no request in the baseline period {baseline[0]} .. {baseline[1]}")
    stats.sort(key=lambda w: (w.start, w.segment is None, w.segment or ""))
    alarms.sort(key=lambda a: (a.start, a.segment or "", a.kind))
    return MonitorReport(
        window=window,
        segment_key=segment_key,
        thresholds=thresholds,
        baselines=baselines,
        windows=stats,
        alarms=alarms,
    )


# ---------------------------------------------------------------------------- JSONL


_STAGING_COLUMNS = CallRow._fields


@contextlib.contextmanager
def staged_call_rows(
    records: Iterable[LedgerRecord], segment_key: str | None
) -> Iterator[Iterator[tuple[Any, ...]]]:
    """Stream records into a temporary SQLite table; yield its rows ordered by request.

    What a JSONL ledger uses: the file is read once, nothing is kept in memory, and the
    rows come back in the order :func:`call_rows_sql` gives (as raw columns).
    """
    conn = sqlite3.connect("")  # a private temporary database, on disk when it grows
    try:
        columns = ", ".join(f'"{name}"' for name in _STAGING_COLUMNS)
        conn.execute(f"CREATE TABLE calls ({columns})")
        insert = f"INSERT INTO calls VALUES ({', '.join('?' for _ in _STAGING_COLUMNS)})"
        batch: list[tuple[Any, ...]] = []
        for row in rows_of_records(records, segment_key):
            batch.append(row._replace(timestamp=row.timestamp.isoformat()))
            if len(batch) >= 10_000:
                conn.executemany(insert, batch)
                batch.clear()
        conn.executemany(insert, batch)
        yield iter(conn.execute('SELECT * FROM calls ORDER BY run_id, "order"'))
    finally:
        conn.close()
