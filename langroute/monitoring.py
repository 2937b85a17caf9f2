"""Watch a router in production: per-window rates from the ledger, and alarms on drift.

A router's estimates rot when traffic drifts (new topics arrive), when a segment of the
traffic (a language, a tenant) changes, or when it grows greedy and stops escalating.
:func:`monitor` reads a cost ledger (every routed call is a row), cuts it into time
windows, optionally per segment (a key of the records' ``metadata``), and compares each
window with a baseline period:

* **out of distribution**: the share of requests no exemplar resembles rose by a
  factor (new topics the exemplars do not cover);
* **route shift**: a route's share of requests moved by more than N points;
* **too greedy**: almost nothing escalates (the share of requests sent up, by an
  error, a rejected answer or an unsure decision, fell under a floor);
* **quality drop**: the share of judged answers whose feedback is good (feedback
  records, :meth:`CostLedger.feedback <langroute.costs.CostLedger.feedback>`) fell by
  more than N points. A verdict counts in the window of the call it judges.

Spend and savings count the calls that served the decision (an LLM judge, an LLM
router: :attr:`LedgerRecord.overhead <langroute.costs.LedgerRecord.overhead>`) against
the request they belong to.

A window (or segment) with fewer than ``min_requests`` requests never raises an alarm:
a handful of requests is noise.

Example:
    >>> from datetime import datetime, timedelta, timezone
    >>> from langroute.costs import LedgerRecord
    >>> start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    >>> records = [
    ...     LedgerRecord(run_id=f"r{i}", route="small", reason="vote",
    ...                  timestamp=start + timedelta(minutes=i))
    ...     for i in range(120)
    ... ]
    >>> report = monitor(records, window=timedelta(hours=1))
    >>> [w.requests for w in report.windows], [a.kind for a in report.alarms]
    ([60, 60], ['too_greedy'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from langroute.costs.analytics import (
    CASCADE,
    EPOCH,
    ESCALATED,
    FAILED,
    LABELLING,
    LOW_CONFIDENCE,
    MEASURED,
    OUT_OF_DISTRIBUTION,
    OVERHEAD,
    REJECTED,
    Verdicts,
    group_starts,
    micros,
    open_session,
    read_calls,
    session_verdicts,
)
from langroute.costs.records import LedgerRecord

if TYPE_CHECKING:
    import numpy as np

    from langroute.costs.analytics import CallColumns

__all__ = [
    "Alarm",
    "AlarmKind",
    "MonitorReport",
    "MonitorThresholds",
    "WindowStats",
    "monitor",
    "monitor_ledger",
    "parse_duration",
    "plot_monitor",
    "report_of_windows",
    "window_stats",
]

AlarmKind = Literal["out_of_distribution", "route_shift", "too_greedy", "quality_drop"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"15m"``, ``"1h"``, ``"2d"``, ``"1w"`` (``s``/``m``/``h``/``d``/``w``) as a timedelta.

    Example:
        >>> parse_duration("90m")
        datetime.timedelta(seconds=5400)

    Raises:
        ValueError: Not a positive duration in one of those units.
    """
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use for example 30m, 1h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class MonitorThresholds(BaseModel):
    """When a window raises an alarm, compared with the baseline."""

    model_config = ConfigDict(frozen=True)

    ood_factor: float = Field(
        default=2.0, gt=1, description="Alarm when the OOD rate grows by this factor ..."
    )
    ood_min_points: float = Field(
        default=0.05, ge=0, description="... and by at least this many points (0.05 = 5)."
    )
    route_shift_points: float = Field(
        default=0.15, gt=0, description="Alarm when a route's share moves by more than this."
    )
    escalation_floor: float = Field(
        default=0.02, ge=0, description="Alarm when fewer requests than this escalate."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Windows with fewer requests raise no alarm."
    )
    quality_drop_points: float = Field(
        default=0.10,
        gt=0,
        description="Alarm when the share of good verdicts falls by more than this ...",
    )
    min_feedback: int = Field(
        default=10, ge=1, description="... and the window and baseline each hold this many."
    )


class WindowStats(BaseModel):
    """What the ledger shows for one window (and one segment, when segmented).

    Rates are shares of the window's requests (records sharing a ``run_id`` are one).
    """

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    segment: str | None = None
    requests: int = 0
    calls: int = 0
    route_shares: dict[str, float] = Field(
        default_factory=dict, description="Share of requests answered by each route."
    )
    escalation_rate: float = Field(
        default=0.0,
        description=(
            "Requests sent up: a cheaper route failed or was rejected, or the decision "
            "was unsure (low confidence, out of distribution) and went to the fallback."
        ),
    )
    out_of_distribution_rate: float = 0.0
    low_confidence_rate: float = 0.0
    error_rate: float = Field(default=0.0, description="Requests with a failed call.")
    cascade_rejection_rate: float | None = Field(
        default=None, description="Rejected cascade attempts among cascade attempts."
    )
    mean_best_similarity: float | None = Field(
        default=None, description="Mean similarity of each request's nearest exemplar."
    )
    cost: float | None = Field(
        default=None, description="Spend, judge and LLM-router calls included (USD)."
    )
    savings: float | None = Field(
        default=None, description="Against the strongest route, net of judge and router calls."
    )
    unmeasured_requests: int = 0
    feedback: int = Field(default=0, description="Requests with a verdict (feedback records).")
    quality: float | None = Field(
        default=None, description="Share of the judged requests whose verdict is good."
    )
    quality_by_route: dict[str, float] = Field(
        default_factory=dict, description="That share per route that answered."
    )


class Alarm(BaseModel):
    """A window that moved away from the baseline."""

    model_config = ConfigDict(frozen=True)

    kind: AlarmKind
    start: datetime
    segment: str | None = None
    value: float
    baseline: float | None = None
    message: str


class MonitorReport(BaseModel):
    """Every window, the baseline each was compared with, and the alarms raised."""

    model_config = ConfigDict(frozen=True)

    window: timedelta
    segment_key: str | None = None
    thresholds: MonitorThresholds
    baselines: list[WindowStats] = Field(default_factory=list)
    windows: list[WindowStats] = Field(default_factory=list)
    alarms: list[Alarm] = Field(default_factory=list)


def _alarms(
    window: WindowStats, baseline: WindowStats, thresholds: MonitorThresholds
) -> list[Alarm]:
    if window.requests < thresholds.min_requests:
        return []
    found: list[Alarm] = []
    where = f" in segment {window.segment!r}" if window.segment is not None else ""

    def alarm(kind: AlarmKind, value: float, before: float | None, message: str) -> None:
        found.append(
            Alarm(
                kind=kind,
                start=window.start,
                segment=window.segment,
                value=value,
                baseline=before,
                message=message,
            )
        )

    ood, base_ood = window.out_of_distribution_rate, baseline.out_of_distribution_rate
    if (
        ood - base_ood >= thresholds.ood_min_points
        and ood >= base_ood * thresholds.ood_factor
        and ood > 0
    ):
        alarm(
            "out_of_distribution",
            ood,
            base_ood,
            f"{ood:.0%} of requests are out of distribution{where} "
            f"(baseline {base_ood:.0%}): traffic the exemplars do not cover",
        )
    if baseline.requests >= thresholds.min_requests:
        for route in sorted(set(window.route_shares) | set(baseline.route_shares)):
            now = window.route_shares.get(route, 0.0)
            before = baseline.route_shares.get(route, 0.0)
            if abs(now - before) > thresholds.route_shift_points:
                alarm(
                    "route_shift",
                    now,
                    before,
                    f"route {route!r} answers {now:.0%} of requests{where} (baseline {before:.0%})",
                )
    if (
        window.quality is not None
        and baseline.quality is not None
        and window.feedback >= thresholds.min_feedback
        and baseline.feedback >= thresholds.min_feedback
        and baseline.quality - window.quality > thresholds.quality_drop_points
    ):
        alarm(
            "quality_drop",
            window.quality,
            baseline.quality,
            f"{window.quality:.0%} of judged answers are good{where} "
            f"(baseline {baseline.quality:.0%}, {window.feedback} verdicts)",
        )
    if window.escalation_rate < thresholds.escalation_floor:
        alarm(
            "too_greedy",
            window.escalation_rate,
            baseline.escalation_rate,
            f"only {window.escalation_rate:.1%} of requests escalate{where} "
            f"(floor {thresholds.escalation_floor:.0%}): the router may be too greedy",
        )
    return found


def monitor(
    records: Iterable[LedgerRecord],
    *,
    window: timedelta = timedelta(hours=1),
    segment_key: str | None = None,
    baseline: tuple[datetime, datetime] | None = None,
    thresholds: MonitorThresholds | None = None,
) -> MonitorReport:
    """Cut a ledger into windows, compare each with a baseline, and raise alarms.

    Args:
        records: Ledger records (``CostLedger.records()``), in any order.
        window: The length of a window; windows are aligned on whole multiples of it
            (an hour window starts on the hour, UTC).
        segment_key: A ``metadata`` key (``"tenant"`` or ``"metadata.tenant"``): each
            segment gets its own windows, baseline and alarms.
        baseline: The period ``(start, end)`` to compare with; default: the first window.
        thresholds: When to raise alarms (default :class:`MonitorThresholds`).

    Returns:
        The report; ``report.alarms`` is empty when nothing moved.

    Raises:
        ValueError: ``window`` is not positive, or ``baseline`` holds no request.
    """
    return monitor_ledger(
        list(records),  # staged in a temporary SQLite table, folded as a ledger is
        window=window,
        segment_key=segment_key,
        baseline=baseline,
        thresholds=thresholds,
    )


class _Window:
    """One window's (or baseline's) aggregates, folded from :class:`_Requests` columns.

    :func:`monitor` (records in memory, staged), :func:`monitor_ledger` and
    :func:`window_stats` all fold their requests in :func:`_fold`, so they cannot drift
    apart.
    """

    __slots__ = (
        "calls",
        "cascade",
        "cost",
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
        "similarity",
        "unmeasured",
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
        self.similarity: float | None = None
        self.cost: float | None = None
        self.savings: float | None = None
        self.unmeasured = 0
        self.judged = 0
        self.good = 0
        self.judged_by_route: dict[str, int] = {}
        self.good_by_route: dict[str, int] = {}

    def stats(self, start: datetime, end: datetime, segment: str | None) -> WindowStats:
        count = self.requests

        def share(hits: int) -> float:
            return hits / count if count else 0.0

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
            mean_best_similarity=self.similarity,
            cost=self.cost,
            savings=self.savings,
            unmeasured_requests=self.unmeasured,
            feedback=self.judged,
            quality=self.good / self.judged if self.judged else None,
            quality_by_route={
                route: self.good_by_route[route] / judged
                for route, judged in sorted(self.judged_by_route.items())
            },
        )


class _Requests:
    """Each request's facts (one entry per request), from its calls' columns.

    Reads a request as :func:`~langroute.costs.summarize` does for savings: the route of
    the last call that answered (no error, not rejected, not a judge or LLM router), the
    first numeric ``max_similarity``, the latest verdict on any of its calls, its
    serving calls' costs and largest baseline. ``row_request`` maps each call to its
    request; ``row_cost`` is a serving call's cost (``NaN`` otherwise).
    """

    def __init__(self, calls: CallColumns, verdicts: Verdicts, segment_key: str | None) -> None:
        import numpy as np

        by_request = np.argsort(calls.request, kind="stable")  # a request's calls in order
        starts = group_starts(calls.request[by_request])
        count = len(starts)
        self.calls = np.diff(np.append(starts, len(by_request)))
        self.row_request = np.empty(len(by_request), dtype=np.int64)
        self.row_request[by_request] = np.repeat(np.arange(count), self.calls)
        first = by_request[starts]
        flags = calls.flags[by_request]
        position = np.arange(len(by_request))

        def any_of(mask: np.ndarray) -> np.ndarray:
            return np.maximum.reduceat(mask, starts) if count else mask[:0]

        def count_of(mask: np.ndarray) -> np.ndarray:
            return np.add.reduceat(mask.astype(np.int64), starts) if count else starts

        self.time = np.minimum.reduceat(calls.time[by_request], starts) if count else starts
        answers = (flags & (FAILED | REJECTED | OVERHEAD)) == 0
        last = np.maximum.reduceat(np.where(answers, position, -1), starts) if count else starts
        named = np.array([name is not None for name in calls.routes] + [False], dtype=bool)
        route = np.where(last >= 0, calls.route[by_request][np.maximum(last, 0)], -1)
        self.route = np.where(named[route], route, -1)  # -1: no route answered
        self.route_names = calls.routes
        has = calls.has_similarity[by_request]
        found = (
            np.minimum.reduceat(np.where(has, position, len(position)), starts) if count else starts
        )
        self.has_similarity = found < len(position)
        self.similarity = calls.similarity[by_request][np.minimum(found, max(len(position) - 1, 0))]
        reason = calls.flags[first]  # a request's reason is its first call's
        self.out_of_distribution = (reason & OUT_OF_DISTRIBUTION) != 0
        self.low_confidence = (reason & LOW_CONFIDENCE) != 0
        unsure = self.out_of_distribution | self.low_confidence
        self.escalated = any_of((flags & ESCALATED) != 0) | unsure
        self.failed = any_of((flags & FAILED) != 0)
        cascade = (flags & CASCADE) != 0
        self.cascade = count_of(cascade)
        self.rejected = count_of(cascade & ((flags & REJECTED) != 0))
        serving = (flags & LABELLING) == 0
        unmeasured = any_of(serving & ((flags & MEASURED) == 0))
        unpriced = any_of(serving & np.isnan(calls.cost[by_request]))
        self.baseline = (
            np.fmax.reduceat(np.where(serving, calls.baseline[by_request], np.nan), starts)
            if count
            else calls.baseline[:0]
        )
        served = any_of(serving)
        self.unmeasured = served & unmeasured
        self.compared = served & ~unmeasured & ~unpriced & ~np.isnan(self.baseline)
        self.row_cost = np.where(calls.has(LABELLING), np.nan, calls.cost)
        if segment_key is None:
            self.segment_names: list[str | None] = [None]
            self.segment = np.zeros(count, dtype=np.int64)
        else:
            self.segment_names = calls.segments
            self.segment = calls.segment[first].astype(np.int64)
        self.verdict = np.full(count, -1, dtype=np.int8)  # -1 none, 0 bad, 1 good
        latest: dict[int, tuple[datetime, int, str]] = {}
        for row, record_id in calls.judged:
            seen = verdicts.get(record_id)
            request = int(self.row_request[row])
            if seen is not None and (request not in latest or seen[:2] > latest[request][:2]):
                latest[request] = seen
        for request, seen in latest.items():
            self.verdict[request] = seen[2] == "good"

    def __len__(self) -> int:
        return len(self.time)


def _fold(
    requests: _Requests, index: np.ndarray, chosen: np.ndarray
) -> dict[tuple[str | None, int], _Window]:
    """The :class:`_Window` of each (segment, ``index``) of the ``chosen`` requests."""
    import numpy as np

    picked = np.flatnonzero(chosen)
    if not len(picked):
        return {}
    ordered = picked[np.lexsort((index[picked], requests.segment[picked]))]
    segment, slot = requests.segment[ordered], index[ordered]
    change = np.concatenate(([True], (segment[1:] != segment[:-1]) | (slot[1:] != slot[:-1])))
    starts = np.flatnonzero(change)
    groups = len(starts)
    group_of = np.full(len(requests), -1, dtype=np.int64)
    group_of[ordered] = np.cumsum(change) - 1

    def total(values: np.ndarray) -> list[int]:
        return np.add.reduceat(values[ordered].astype(np.int64), starts).tolist()

    def sums(
        values: np.ndarray, kept: np.ndarray, order: np.ndarray, bounds: np.ndarray
    ) -> tuple[list[float], list[int]]:
        """math.fsum and count of the ``kept`` values per group.

        ``order`` lists the values group by group, each group starting at its ``bounds``.
        """
        kept = kept[order]
        count = np.add.reduceat(kept.astype(np.int64), bounds)
        edges = np.concatenate(([0], np.cumsum(count))).tolist()
        flat = values[order][kept].tolist()
        return [math.fsum(flat[low:high]) for low, high in zip(edges, edges[1:])], count.tolist()

    counts = {
        name: total(getattr(requests, name))
        for name in (
            "calls",
            "escalated",
            "out_of_distribution",
            "low_confidence",
            "failed",
            "cascade",
            "rejected",
            "unmeasured",
            "compared",
        )
    }
    sizes = np.diff(np.append(starts, len(ordered))).tolist()
    # the requests are grouped along ``ordered``; their calls along ``ordered_rows``
    row_group = group_of[requests.row_request]
    ordered_rows = np.flatnonzero(row_group >= 0)
    ordered_rows = ordered_rows[np.argsort(row_group[ordered_rows], kind="stable")]
    row_starts = np.searchsorted(row_group[ordered_rows], np.arange(groups))
    similarity, similar = sums(requests.similarity, requests.has_similarity, ordered, starts)
    known = ~np.isnan(requests.row_cost)
    spent, priced = sums(requests.row_cost, known, ordered_rows, row_starts)
    compared_row = requests.compared[requests.row_request] & known
    compared_costs, _ = sums(requests.row_cost, compared_row, ordered_rows, row_starts)
    baselines, _ = sums(requests.baseline, requests.compared, ordered, starts)
    route_names = requests.route_names
    answered = np.flatnonzero(requests.route >= 0)
    windows = [_Window() for _ in range(groups)]
    names = max(len(route_names), 1)
    keys, hits = np.unique(
        group_of[answered] * names + requests.route[answered], return_counts=True
    )
    for key, count in zip(keys.tolist(), hits.tolist(), strict=True):
        if key >= 0:
            windows[key // names].routes[route_names[key % names]] = count
    judged = np.flatnonzero((requests.verdict >= 0) & (group_of >= 0))
    for request in judged.tolist():
        window = windows[group_of[request]]
        route = requests.route[request]
        name = (route_names[route] if route >= 0 else None) or "(none)"
        good = int(requests.verdict[request])
        window.judged += 1
        window.good += good
        window.judged_by_route[name] = window.judged_by_route.get(name, 0) + 1
        window.good_by_route[name] = window.good_by_route.get(name, 0) + good
    result: dict[tuple[str | None, int], _Window] = {}
    segments = segment[starts].tolist()
    slots = slot[starts].tolist()
    for group, window in enumerate(windows):
        window.requests = sizes[group]
        window.calls = counts["calls"][group]
        window.escalated = counts["escalated"][group]
        window.out_of_distribution = counts["out_of_distribution"][group]
        window.low_confidence = counts["low_confidence"][group]
        window.failed = counts["failed"][group]
        window.cascade = counts["cascade"][group]
        window.rejected = counts["rejected"][group]
        window.unmeasured = counts["unmeasured"][group]
        window.similarity = similarity[group] / similar[group] if similar[group] else None
        window.cost = spent[group] if priced[group] else None
        if counts["compared"][group]:
            window.savings = baselines[group] - compared_costs[group]
        result[(requests.segment_names[segments[group]], slots[group])] = window
    return result


def _read_requests(
    source: Any, segment_key: str | None, since: datetime | None = None
) -> _Requests:
    """The requests of a ledger, in one read of its calls (those since ``since``)."""
    with open_session(source, segment_key, copy=False) as session:
        verdicts = session_verdicts(session, since)
        calls = read_calls(
            session, monitor=True, segment_key=segment_key, judged=verdicts.keys(), since=since
        )
    return _Requests(calls, verdicts, segment_key)


REQUEST_SPAN = timedelta(hours=1)
"""How long before a window :func:`window_stats` reads: a request's rows (its attempts,
each written as it ends) lie closer together than this, so every request that began in
the window is read whole, and none that began before it is taken for a newer one."""


def monitor_ledger(
    source: Any,
    *,
    window: timedelta = timedelta(hours=1),
    segment_key: str | None = None,
    baseline: tuple[datetime, datetime] | None = None,
    thresholds: MonitorThresholds | None = None,
) -> MonitorReport:
    """:func:`langroute.monitoring.monitor` of a whole ledger, in one pass over its calls.

    The calls are read once, as columns (:func:`~langroute.costs.analytics.read_calls`),
    and every (segment, window) pair is aggregated from them at once, so many segments
    cost no more than one.

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
        >>> monitor_ledger([LedgerRecord(route="small")]).windows[0].requests
        1
    """
    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    import numpy as np

    thresholds = thresholds or MonitorThresholds()
    requests = _read_requests(source, segment_key)
    if not len(requests):
        return MonitorReport(window=window, segment_key=segment_key, thresholds=thresholds)
    every = np.ones(len(requests), dtype=bool)
    windows = _fold(requests, requests.time // (window // timedelta(microseconds=1)), every)
    periods: dict[str | None, _Window] = {}
    if baseline is not None:
        inside = (requests.time >= micros(baseline[0])) & (requests.time < micros(baseline[1]))
        folded = _fold(requests, np.zeros(len(requests), dtype=np.int64), inside)
        periods = {segment: slot for (segment, _), slot in folded.items()}
    first_index = min(index for _, index in windows)
    origin = EPOCH + first_index * window
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
    for segment in segments:
        baselines.append(periods.get(segment, _Window()).stats(baseline[0], baseline[1], segment))
        for index in sorted(by_segment[segment]):
            start = origin + (index - first_index) * window
            # popped: each window's accumulators go as its stats arrive (20k segments)
            stats.append(windows.pop((segment, index)).stats(start, start + window, segment))
    return report_of_windows(window, segment_key, thresholds, baseline, baselines, stats)


def window_stats(source: Any, start: datetime, end: datetime) -> WindowStats:
    """The stats of the requests that began in ``[start, end)`` (one pass over the calls).

    What :class:`~langroute.adaptive_dial.AdaptiveDial` reads: the same figures
    as a :func:`monitor_ledger` window, for any span. Only the rows from
    :data:`REQUEST_SPAN` before ``start`` are read (in SQL, by the ledger's timestamp
    index), so a check costs the window's rows, not the whole ledger's.

    Example:
        >>> from datetime import datetime, timezone
        >>> now = datetime.now(timezone.utc)
        >>> window_stats([LedgerRecord(route="small")], now - timedelta(hours=1),
        ...              now + timedelta(minutes=1)).requests
        1
    """
    import numpy as np

    requests = _read_requests(source, None, start - REQUEST_SPAN)
    inside = (requests.time >= micros(start)) & (requests.time < micros(end))
    folded = _fold(requests, np.zeros(len(requests), dtype=np.int64), inside)
    return folded.get((None, 0), _Window()).stats(start, end, None)


def report_of_windows(
    window: timedelta,
    segment_key: str | None,
    thresholds: MonitorThresholds,
    baseline: tuple[datetime, datetime],
    baselines: list[WindowStats],
    windows: list[WindowStats],
) -> MonitorReport:
    """The monitor report of windows' stats, each checked against its segment's baseline.

    A window outside the baseline period raises the alarms its figures call for against
    the baseline of its segment (one with requests); :func:`monitor_ledger` and the
    dashboard's rollup both report through here.

    Raises:
        ValueError: No baseline holds a request.

    Example:
        >>> from datetime import datetime, timezone
        >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
        >>> base = WindowStats(start=t, end=t + timedelta(hours=1), requests=50)
        >>> later = WindowStats(start=t + timedelta(hours=1), end=t + timedelta(hours=2),
        ...                     requests=50)
        >>> report = report_of_windows(timedelta(hours=1), None, MonitorThresholds(),
        ...                            (base.start, base.end), [base], [base, later])
        >>> [(alarm.kind, alarm.start.hour) for alarm in report.alarms]  # not the baseline's
        [('too_greedy', 1)]
    """
    by_segment = {base.segment: base for base in baselines}
    alarms: list[Alarm] = []
    for current in windows:
        base = by_segment.get(current.segment)
        in_baseline = baseline[0] <= current.start and current.end <= baseline[1]
        if base is not None and base.requests and not in_baseline:
            alarms.extend(_alarms(current, base, thresholds))
    return _report(window, segment_key, thresholds, baseline, baselines, windows, alarms)


def _report(
    window: timedelta,
    segment_key: str | None,
    thresholds: MonitorThresholds,
    baseline: tuple[datetime, datetime],
    baselines: list[WindowStats],
    windows: list[WindowStats],
    alarms: list[Alarm],
) -> MonitorReport:
    """The report of :func:`monitor` and :func:`monitor_ledger`, in one order."""
    if not any(b.requests for b in baselines):
        raise ValueError(f"no request in the baseline period {baseline[0]} .. {baseline[1]}")
    windows.sort(key=lambda w: (w.start, w.segment is None, w.segment or ""))
    alarms.sort(key=lambda a: (a.start, a.segment or "", a.kind))
    return MonitorReport(
        window=window,
        segment_key=segment_key,
        thresholds=thresholds,
        baselines=baselines,
        windows=windows,
        alarms=alarms,
    )


def plot_monitor(report: MonitorReport, path: str | Path) -> Path:
    """Plot the windows' time series: requests; escalation, OOD and good-answer rates; routes.

    One line per segment (and route); windows with an alarm are marked with a red band. Uses
    matplotlib's Agg canvas directly (no display needed).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(10, 7.5))
    FigureCanvasAgg(figure)
    volume, rates, shares = figure.subplots(3, 1, sharex=True)
    segments = list(dict.fromkeys(w.segment for w in report.windows))
    for segment in segments:
        mine = [w for w in report.windows if w.segment == segment]
        times = [w.start for w in mine]
        label = "all" if segment is None else str(segment)
        volume.plot(times, [w.requests for w in mine], marker="o", label=label)
        escalated = [w.escalation_rate for w in mine]
        rates.plot(times, escalated, marker="o", label=f"{label}: escalated")
        rates.plot(
            times,
            [w.out_of_distribution_rate for w in mine],
            marker="x",
            linestyle="--",
            label=f"{label}: out of distribution",
        )
        judged = [w for w in mine if w.quality is not None]
        if judged:
            rates.plot(
                [w.start for w in judged],
                [w.quality for w in judged],
                marker="s",
                linestyle=":",
                label=f"{label}: good answers",
            )
    routes = sorted({route for w in report.windows for route in w.route_shares})
    for segment in segments:
        mine = [w for w in report.windows if w.segment == segment]
        for route in routes:
            label = route if segment is None else f"{segment}: {route}"
            shares.plot(
                [w.start for w in mine],
                [w.route_shares.get(route, 0.0) for w in mine],
                marker="o",
                label=label,
            )
    for alarm in report.alarms:
        for axis in (volume, rates, shares):
            axis.axvspan(alarm.start, alarm.start + report.window, color="#D1495B", alpha=0.08)
    volume.set_ylabel("requests")
    volume.set_ylim(bottom=0)
    rates.set_ylabel("share of requests")
    shares.set_ylabel("route share")
    for axis in (rates, shares):
        axis.set_ylim(0, 1.05)
    for axis in (volume, rates, shares):
        axis.legend(loc="upper left", fontsize=7)
    volume.set_title(f"langroute monitor: {len(report.alarms)} alarm(s)")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
    return path


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
