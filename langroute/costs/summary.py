"""Aggregates of ledger records: per route and in total, with latency percentiles and savings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from langroute.costs.records import LedgerRecord

__all__ = ["LedgerSummary", "RouteCostSummary", "group_requests", "request_costs", "summarize"]


class RouteCostSummary(BaseModel):
    """Aggregates of the ledger records of one route.

    ``escalations`` counts this route's calls that happened because a cheaper route
    failed or was rejected; ``rejected`` counts its cascade answers that were not
    accepted. ``cost`` sums the priced calls (``None`` when none was priced);
    ``unpriced_calls`` says how many measured calls are missing from it (no known
    price) and ``unmeasured_calls`` how many calls produced output whose provider
    reported no usage (their cost is unknown, and left out).
    """

    model_config = ConfigDict(frozen=True)

    route: str | None
    models: list[str] = Field(default_factory=list)
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    escalation_rate: float = 0.0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0
    unmeasured_calls: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class LedgerSummary(BaseModel):
    """Per-route and total aggregates of a ledger.

    * ``requests``: user requests (records sharing a ``run_id`` count once).
    * ``escalation_rate``: share of requests with at least one escalated call.
    * ``baseline_cost``: per request, its largest ``baseline_cost`` (what always calling
      the strongest route would have cost), summed.
    * ``savings`` / ``savings_pct``: baseline minus actual cost, over the requests whose
      calls are all priced and whose baseline is known; ``savings_pct`` is in percent of
      that baseline. ``None`` when no request qualifies.
    * ``unmeasured_calls``: calls whose provider reported no usage although they produced
      output (:attr:`LedgerRecord.measured`). They are not priced, and the requests they
      belong to (``unmeasured_requests``) are left out of ``baseline_cost`` and savings:
      what they cost is unknown, not zero.
    * Latency percentiles use linear interpolation between closest ranks (numpy's default).
    * ``labelling``: the calls made to label exemplars (``langroute label``, records whose
      :attr:`LedgerRecord.labelling` is true), summarised on their own; every other
      figure is about serving only. ``None`` when the ledger has no such call.

    Example:
        >>> from langroute.costs import CostLedger
        >>> CostLedger().summary().calls
        0
    """

    model_config = ConfigDict(frozen=True)

    routes: list[RouteCostSummary] = Field(default_factory=list)
    requests: int = 0
    calls: int = 0
    errors: int = 0
    escalations: int = 0
    escalated_requests: int = 0
    escalation_rate: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    unpriced_calls: int = 0
    unmeasured_calls: int = 0
    unmeasured_requests: int = 0
    baseline_models: list[str] = Field(default_factory=list)
    baseline_cost: float | None = None
    savings: float | None = None
    savings_pct: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    labelling: LedgerSummary | None = None

    def route(self, name: str | None) -> RouteCostSummary:
        """The summary of one route.

        Raises:
            KeyError: No record has that route.
        """
        for item in self.routes:
            if item.route == name:
                return item
        raise KeyError(name)


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _sum_costs(records: Sequence[LedgerRecord]) -> tuple[float | None, int, int]:
    """The summed known costs, the measured calls without a price, the unmeasured calls."""
    known = [r.cost for r in records if r.cost is not None]
    unmeasured = sum(not r.measured for r in records)
    unpriced = sum(r.cost is None and r.measured for r in records)
    return (math.fsum(known) if known else None), unpriced, unmeasured


def _summarize_route(route: str | None, records: Sequence[LedgerRecord]) -> RouteCostSummary:
    cost, unpriced, unmeasured = _sum_costs(records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    escalations = sum(r.escalated for r in records)
    models = list(dict.fromkeys(r.model for r in records if r.model is not None))
    return RouteCostSummary(
        route=route,
        models=models,
        calls=len(records),
        errors=sum(r.error is not None for r in records),
        escalations=escalations,
        escalation_rate=escalations / len(records) if records else 0.0,
        rejected=sum(r.accepted is False for r in records),
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        cost=cost,
        unpriced_calls=unpriced,
        unmeasured_calls=unmeasured,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
    )


def summarize(records: Iterable[LedgerRecord], order: Sequence[str] | None = None) -> LedgerSummary:
    """Aggregate records into a :class:`LedgerSummary`.

    Args:
        records: Ledger records, oldest first.
        order: Route names to list first, in this order; other routes follow in order
            of first appearance.

    Returns:
        The summary; labelling calls are summarised apart, in ``labelling``.

    Example:
        >>> summary = summarize([LedgerRecord(route="small", cost=0.5),
        ...                      LedgerRecord(route="small", cost=2.0,
        ...                                   metadata={"purpose": "labelling"})])
        >>> summary.cost, summary.labelling.cost
        (0.5, 2.0)
    """
    records = [r for r in records if not r.is_feedback]  # verdicts, not calls
    labelling = [r for r in records if r.labelling]
    if labelling:
        serving = _summarize([r for r in records if not r.labelling], order)
        return serving.model_copy(update={"labelling": _summarize(labelling, order)})
    return _summarize(records, order)


def _summarize(records: list[LedgerRecord], order: Sequence[str] | None) -> LedgerSummary:
    """:func:`summarize` of records of one kind (serving or labelling)."""
    by_route: dict[str | None, list[LedgerRecord]] = {name: [] for name in order or ()}
    for rec in records:
        by_route.setdefault(rec.route, []).append(rec)
    requests = group_requests(records)
    routes = [_summarize_route(name, recs) for name, recs in by_route.items() if recs]

    baseline_total: list[float] = []
    compared_baseline: list[float] = []
    compared_cost: list[float] = []
    escalated_requests = 0
    unmeasured_requests = 0
    for group in requests:
        escalated_requests += any(r.escalated for r in group)
        if not all(r.measured for r in group):
            unmeasured_requests += 1  # its cost and its baseline are unknown
            continue
        baselines = [r.baseline_cost for r in group if r.baseline_cost is not None]
        if not baselines:
            continue
        baseline = max(baselines)
        baseline_total.append(baseline)
        if all(r.cost is not None for r in group):
            compared_baseline.append(baseline)
            compared_cost.extend(r.cost for r in group if r.cost is not None)

    savings: float | None = None
    savings_pct: float | None = None
    if compared_baseline:
        base = math.fsum(compared_baseline)
        savings = base - math.fsum(compared_cost)
        savings_pct = 100.0 * savings / base if base > 0 else None

    cost, unpriced, unmeasured = _sum_costs(records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    timestamps = [r.timestamp for r in records]
    escalations = sum(r.escalated for r in records)
    return LedgerSummary(
        routes=routes,
        requests=len(requests),
        calls=len(records),
        errors=sum(r.error is not None for r in records),
        escalations=escalations,
        escalated_requests=escalated_requests,
        escalation_rate=escalated_requests / len(requests) if requests else 0.0,
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cached_tokens=sum(r.cached_tokens for r in records),
        cost=cost,
        unpriced_calls=unpriced,
        unmeasured_calls=unmeasured,
        unmeasured_requests=unmeasured_requests,
        baseline_models=list(
            dict.fromkeys(r.baseline_model for r in records if r.baseline_model is not None)
        ),
        baseline_cost=math.fsum(baseline_total) if baseline_total else None,
        savings=savings,
        savings_pct=savings_pct,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        first_timestamp=min(timestamps) if timestamps else None,
        last_timestamp=max(timestamps) if timestamps else None,
    )


def request_costs(records: Sequence[LedgerRecord]) -> list[tuple[float | None, float | None]]:
    """(cost, baseline cost) per user request, in order of first record.

    Records sharing a ``run_id`` are one request. A request's cost is ``None`` when one
    of its calls is unpriced or unmeasured (what it cost is unknown, not zero); its
    baseline is ``None`` when no record has a ``baseline_cost``.

    Example:
        >>> request_costs([LedgerRecord(run_id="a", cost=0.5, baseline_cost=2.0),
        ...                LedgerRecord(run_id="a", cost=1.0, baseline_cost=2.0),
        ...                LedgerRecord(cost=0.25), LedgerRecord(cost=None)])
        [(1.5, 2.0), (0.25, None), (None, None)]
    """
    result: list[tuple[float | None, float | None]] = []
    for group in group_requests(r for r in records if not r.is_feedback):
        known = all(r.cost is not None and r.measured for r in group)
        cost = math.fsum(r.cost or 0.0 for r in group) if known else None
        baselines = [r.baseline_cost for r in group if r.baseline_cost is not None]
        result.append((cost, max(baselines) if baselines else None))
    return result


def group_requests(records: Iterable[LedgerRecord]) -> list[list[LedgerRecord]]:
    """The records of each user request (those sharing a ``run_id``), in order of first.

    A record without a ``run_id`` is a request of its own.
    """
    requests: dict[object, list[LedgerRecord]] = {}
    for record in records:
        key = record.run_id if record.run_id is not None else object()
        requests.setdefault(key, []).append(record)
    return list(requests.values())
