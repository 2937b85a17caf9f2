"""What the dashboard page shows, computed from a ledger and kept until the ledger changes.

:class:`Dashboard` answers one method per panel. Totals, windows, latency, errors,
segments and quality are read from the ledger's rollup
(:class:`~langroute.dashboard.rollup.LedgerRollup`: per-request and per-window
aggregates folded by SQL, kept beside a SQLite ledger and extended with the rows
appended since), with the numbers of ``langroute report`` and ``langroute monitor``
(to float rounding; latency percentiles within
:data:`~langroute.dashboard.rollup.LATENCY_RELATIVE_ERROR`). The decision log is SQL
over the ledger itself (:mod:`langroute.dashboard.queries`).

When the ledger changed (its file's size or time, a database's row count; checked at
most every ``refresh_seconds``), the rollup folds the new rows and the panels are read
again. Every database read runs on one worker thread, which also owns the connections
it keeps open between page loads (SQLite connections and Postgres transactions belong
to the thread that opened them).

Example:
    >>> from langroute.costs import CostLedger, LedgerRecord
    >>> ledger = CostLedger()
    >>> _ = ledger.record(LedgerRecord(route="small", cost=0.5, baseline_cost=2.0))
    >>> with Dashboard(ledger) as dashboard:
    ...     dashboard.summary()["report"]["savings"]
    1.5
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langroute.costs.analytics import LedgerSession, open_session
from langroute.costs.ledger import CostLedger
from langroute.costs.sinks import SQLiteSink
from langroute.dashboard import queries
from langroute.dashboard.rollup import LATENCY_RELATIVE_ERROR, LedgerRollup
from langroute.monitoring import MonitorThresholds

if TYPE_CHECKING:
    from langroute.serving.keys import ApiKey

__all__ = ["Dashboard", "DashboardSettings"]

_MAX_OFFSET = 2**62  # SQLite and Postgres refuse an OFFSET past a signed 64-bit integer

T = TypeVar("T")

KEY_SEGMENT = "api_key"
"""The metadata key naming a call's API key (``langroute serve`` writes it): budgets burn on it."""


class DashboardSettings(BaseModel):
    """How the dashboard cuts the ledger.

    Attributes:
        window: The timeline's window (as ``langroute monitor --window``).
        segment_keys: Metadata keys the segment panel offers (the first is shown first).
        thresholds: ``monitor``'s alarm thresholds, for the alarms on the timeline.
        refresh_seconds: Check the ledger for new rows at most this often.
    """

    model_config = ConfigDict(frozen=True)

    window: timedelta = Field(
        default=timedelta(hours=1), description="Whole seconds (the rollup's windows)."
    )
    segment_keys: tuple[str, ...] = Field(default=(KEY_SEGMENT, "tenant", "tag"), min_length=1)
    thresholds: MonitorThresholds = Field(default_factory=MonitorThresholds)
    refresh_seconds: float = Field(default=10.0, ge=0)

    @field_validator("window")
    @classmethod
    def _whole_seconds(cls, window: timedelta) -> timedelta:
        seconds = window.total_seconds()
        if seconds < 1 or seconds != int(seconds):
            raise ValueError(f"the window must be whole seconds, at least one: {window}")
        return window


def _target(source: str | Path | CostLedger) -> str | Path | CostLedger:
    """What to open each reader from: a file or URL, or (a memory ledger) the ledger itself."""
    if not isinstance(source, CostLedger):
        return source
    sink = source.sink
    url = getattr(sink, "url", None)
    if isinstance(url, str):
        return url
    path = getattr(sink, "path", None)
    if isinstance(path, Path):
        return path
    return source


def _dumps(rows: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [row.model_dump(mode="json") for row in rows]


def _label(target: str | Path | CostLedger) -> str:
    """The ledger as the page names it (a database URL without its password)."""
    if isinstance(target, CostLedger):
        return "memory"
    if isinstance(target, str):
        from langroute.postgres.database import redact

        return redact(target)
    return str(target)


_SHADOW_FIELDS = ("router", "route", "reason", "confidence", "error")


def _shadow(record: Any) -> dict[str, Any] | None:
    """A row's shadow decision (its ``shadow_*`` fields), or ``None`` when it has none."""
    shadow = {name: getattr(record, f"shadow_{name}", None) for name in _SHADOW_FIELDS}
    return shadow if any(value is not None for value in shadow.values()) else None


class _Snapshot:
    """Results for one state of the ledger; sessions kept open while it lasts."""

    def __init__(self, fingerprint: Any) -> None:
        self.fingerprint = fingerprint
        self.made = datetime.now(timezone.utc)
        self.folded = False  # the rollup has folded the rows of this state
        self.results: dict[Any, Any] = {}
        self.sessions: dict[str, LedgerSession] = {}
        self.stack = contextlib.ExitStack()


class Dashboard:
    """The dashboard's data: one method per panel, each a JSON-ready dict.

    Args:
        ledger: A ledger file (JSONL, SQLite), a ``postgresql://`` URL, or a
            :class:`~langroute.costs.CostLedger` (``langroute serve`` passes its own:
            the dashboard reads the same file or database through its own connections).
        router: A router whose exemplars the page lists (learned ones with their
            provenance) and whose nearest exemplars explain a decision whose query
            the ledger kept. ``None``: those panels say no router was given.
        settings: Window, segment keys, alarm thresholds, refresh interval.
        api_keys: Returns the keys with budgets (for budget burn per key), if any.

    Raises:
        FileNotFoundError: The ledger file does not exist.
        LedgerFormatError: The file is not a ledger.
        DatabaseUnavailableError: A Postgres URL that cannot be reached.
    """

    def __init__(
        self,
        ledger: str | Path | CostLedger,
        *,
        router: Any = None,
        settings: DashboardSettings | None = None,
        api_keys: Callable[[], Sequence[ApiKey]] | None = None,
    ) -> None:
        self.settings = settings or DashboardSettings()
        self.router = router
        self.api_keys = api_keys
        self._target = _target(ledger)
        self._label = _label(self._target)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="langroute-dashboard")
        self._snapshot: _Snapshot | None = None
        self._rollup: LedgerRollup | None = None
        self._checked = 0.0
        self._closed = False
        self._lock = threading.Lock()
        self._reader = self._run(self._open)  # a missing file or bad URL fails here

    # ------------------------------------------------------------------ plumbing

    def _open(self) -> CostLedger:
        if isinstance(self._target, CostLedger):
            return self._target
        return CostLedger(self._target)  # reads only; a file not written yet reads as empty

    def _run(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self._closed:
                raise RuntimeError("the dashboard is closed")
            future = self._worker.submit(work)
        return future.result()

    def _fingerprint(self) -> Any:
        target = self._target
        if isinstance(target, Path):
            stamps = []
            for path in (target, target.with_name(target.name + "-wal")):
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    stamps.append((stat.st_size, stat.st_mtime_ns))
            return tuple(stamps)
        return len(self._reader)

    def _state(self) -> _Snapshot:
        """The current snapshot (worker thread only): a new one when the ledger changed."""
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now - self._checked < self.settings.refresh_seconds:
            return snapshot
        self._checked = now
        fingerprint = self._fingerprint()
        if snapshot is not None and snapshot.fingerprint == fingerprint:
            return snapshot
        if snapshot is not None:
            snapshot.stack.close()
        self._snapshot = _Snapshot(fingerprint)
        return self._snapshot

    def _cached(self, key: Any, compute: Callable[[_Snapshot], T]) -> T:
        def work() -> T:
            snapshot = self._state()
            if key not in snapshot.results:
                snapshot.results[key] = compute(snapshot)
            return snapshot.results[key]

        return self._run(work)

    def _rolled(self, snapshot: _Snapshot) -> LedgerRollup:
        """The rollup, with the rows of ``snapshot``'s state folded (worker thread only)."""
        rollup = self._rollup
        if rollup is None:
            rollup = self._rollup = LedgerRollup.over(
                self._reader,
                window_seconds=int(self.settings.window.total_seconds()),
                segment_key=self.settings.segment_keys[0],
            )
        if not snapshot.folded:
            rollup.refresh()
            snapshot.folded = True
        return rollup

    def _session(self, snapshot: _Snapshot, segment_key: str | None) -> LedgerSession:
        """A session for the decision log, kept open for the snapshot (one per key).

        A SQLite or Postgres ledger is read in place (its calls as a view: a page reads
        only the rows it shows); other ledgers are copied into an analytics session.
        """
        segment_key = segment_key or self.settings.segment_keys[0]
        session = snapshot.sessions.get(segment_key)
        if session is None:
            sink = getattr(self._reader, "sink", None)
            if isinstance(sink, SQLiteSink):
                session = snapshot.stack.enter_context(queries.ledger_view(sink.path, segment_key))
            elif type(sink).__name__ == "PostgresSink":
                view = queries.postgres_view(sink, segment_key)
                session = snapshot.stack.enter_context(view)
            else:
                reader = self._open()
                if reader is not self._target:
                    snapshot.stack.callback(reader.close)
                session = snapshot.stack.enter_context(open_session(reader, segment_key))
                queries.index_calls(session)
            snapshot.sessions[segment_key] = session
        return session

    def _segment_key(self, key: str | None) -> str:
        keys = self.settings.segment_keys
        if key is None:
            return keys[0]
        if key not in keys:
            raise ValueError(f"unknown segment key {key!r}: the dashboard offers {', '.join(keys)}")
        return key

    def warm_up(self) -> threading.Thread:
        """Compute every panel in the background now, so the first page load is quick.

        Returns:
            The thread doing it (a page request meanwhile waits for its panel only).
        """

        def work() -> None:
            panels = (self.summary, self.timeline, self.latency, self.segments, self.quality)
            for panel in panels:
                try:
                    panel()
                except Exception:  # the page shows the error when it asks for the panel
                    if self._closed:
                        return

        thread = threading.Thread(target=work, name="langroute-dashboard-warm-up", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Close the sessions and the worker thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True

        def shut() -> None:
            if self._snapshot is not None:
                self._snapshot.stack.close()
            if self._rollup is not None:
                self._rollup.close()
            if self._reader is not self._target:
                self._reader.close()

        self._worker.submit(shut).result()
        self._worker.shutdown()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ panels

    def _meta(self, snapshot: _Snapshot) -> dict[str, Any]:
        return {"ledger": self._label, "as_of": snapshot.made.isoformat()}

    def summary(self) -> dict[str, Any]:
        """Totals: ``report --json`` (``report``), and the judge / LLM-router spend in it.

        Sums equal ``report``'s to float rounding; its latency percentiles come from
        the rollup's histogram (within ``latency_relative_error`` of them).
        """

        def compute(snapshot: _Snapshot) -> dict[str, Any]:
            rollup = self._rolled(snapshot)
            report = rollup.summary()
            return {
                **self._meta(snapshot),
                "report": report.model_dump(mode="json"),
                "overhead_cost": rollup.overhead_cost(),
                "labelling_cost": None if report.labelling is None else report.labelling.cost,
                "latency_relative_error": LATENCY_RELATIVE_ERROR,
            }

        return self._cached("summary", compute)

    def _dial_changes(self) -> list[dict[str, Any]]:
        """The adaptive dial's journal beside a file ledger, as ``monitor --json`` lists it."""
        from langroute.router.dial_targets import DialJournal, dial_journal_path

        if not isinstance(self._target, Path):
            return []
        journal = dial_journal_path(self._target)
        if not journal.is_file():
            return []
        return [change.model_dump(mode="json") for change in DialJournal(journal).read()]

    def timeline(self) -> dict[str, Any]:
        """``monitor --json`` over the whole ledger (windows, alarms, dial changes), model mix."""

        def compute(snapshot: _Snapshot) -> dict[str, Any]:
            rollup = self._rolled(snapshot)
            report = rollup.monitor(self.settings.thresholds)
            mix = [
                queries.ModelMixPoint(start=start, calls=calls)
                for start, calls in rollup.model_mix()
            ]
            return {
                **self._meta(snapshot),
                "monitor": report.model_dump(mode="json") | {"dial_changes": self._dial_changes()},
                "model_mix": [point.model_dump(mode="json") for point in mix],
            }

        return self._cached("timeline", compute)

    def latency(self) -> dict[str, Any]:
        """Latency percentiles per route (from the rollup's histogram), errors and failovers."""

        def compute(snapshot: _Snapshot) -> dict[str, Any]:
            rollup = self._rolled(snapshot)
            latency = rollup.latencies()
            errors = [
                queries.RouteErrors(
                    route=route,
                    calls=calls,
                    errors=failed,
                    error_rate=failed / calls if calls else 0.0,
                    failed_over=over,
                    unanswered=unanswered,
                )
                for route, calls, failed, over, unanswered in rollup.errors()
            ]
            return {
                **self._meta(snapshot),
                "latency": _dumps(latency),
                "latency_relative_error": LATENCY_RELATIVE_ERROR,
                "errors": _dumps(errors),
            }

        return self._cached("latency", compute)

    def segments(self, key: str | None = None) -> dict[str, Any]:
        """Traffic, spend and quality per segment of ``key``; budget burn per API key."""
        key = self._segment_key(key)

        def compute(snapshot: _Snapshot) -> dict[str, Any]:
            rollup = self._rolled(snapshot)
            rows = [
                queries.SegmentRow(**row).model_dump(mode="json") for row in rollup.segments(key)
            ]
            return {
                **self._meta(snapshot),
                "key": key,
                "keys": list(self.settings.segment_keys),
                "segments": rows,
                "budgets": self._budgets(rollup) if key == KEY_SEGMENT else [],
            }

        return self._cached(("segments", key), compute)

    def _budgets(self, rollup: LedgerRollup) -> list[dict[str, Any]]:
        from langroute.serving.keys import period_start

        keys = [key for key in (self.api_keys() if self.api_keys else ()) if key.budget is not None]
        spent_by_period: dict[str, dict[str, float]] = {}
        rows = []
        for key in keys:
            spent = spent_by_period.get(key.period)
            if spent is None:
                start = period_start(key.period)
                spent = spent_by_period[key.period] = rollup.spend_since(KEY_SEGMENT, start)
            used = spent.get(key.name, 0.0)
            budget = float(key.budget or 0.0)
            rows.append(
                {
                    "key": key.name,
                    "period": key.period,
                    "budget": budget,
                    "spent": used,
                    "burn": used / budget if budget > 0 else None,
                }
            )
        return rows

    def quality(self) -> dict[str, Any]:
        """Feedback per route (the latest verdict on each judged call)."""

        def compute(snapshot: _Snapshot) -> dict[str, Any]:
            rows = [
                queries.QualityRow(route=route, judged=judged, good=good, quality=good / judged)
                for route, judged, good in self._rolled(snapshot).quality()
                if judged
            ]
            rows.sort(key=lambda row: (row.route is None, row.route or ""))
            return {**self._meta(snapshot), "routes": [row.model_dump(mode="json") for row in rows]}

        return self._cached("quality", compute)

    def decisions(
        self,
        where: queries.DecisionFilter,
        *,
        segment_key: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        """One page of the decision log (newest first), each call with its decision.

        Confidence, stage and session come from each listed call's record.
        """
        key = self._segment_key(segment_key) if where.segment is not None else None
        limit = max(1, min(int(limit), 500))
        offset = max(0, min(int(offset), _MAX_OFFSET))  # a client's number: SQL's range

        def work() -> dict[str, Any]:
            snapshot = self._state()
            rollup = self._rolled(snapshot)
            session = self._session(snapshot, key)
            counted = ("count", key, where.model_dump_json())  # kept: a count scans every call
            if counted not in snapshot.results:
                unfiltered = where == queries.DecisionFilter()
                snapshot.results[counted] = (
                    rollup.serving_calls() if unfiltered else queries.decision_count(session, where)
                )
            total = snapshot.results[counted]
            page = queries.decision_rows(session, where, offset=offset, limit=limit)
            rows = []
            for row in page:
                record = self._find(row.record_id)
                extra: dict[str, Any] = {}
                if record is not None:
                    extra = {
                        "confidence": record.confidence,
                        "stage": record.metadata.get("stage"),
                        "session": record.metadata.get("session"),
                        "tier": record.tier,
                    }
                rows.append({**row.model_dump(mode="json"), **extra})
            return {
                **self._meta(snapshot),
                "total": total,
                "offset": offset,
                "limit": limit,
                "rows": rows,
            }

        return self._run(work)

    def _find(self, record_id: str) -> Any:
        from langroute.errors import UnknownRecordError

        try:
            return self._reader.get(record_id)
        except UnknownRecordError:
            return None

    def why(self, record_id: str) -> dict[str, Any]:
        """The "why" card of one call: its record, its request's calls, nearest exemplars.

        Nearest exemplars come from the dashboard's router (``--router``), for a call
        whose query the ledger kept; a record that carries ``metadata["neighbours"]`` shows
        those. A shadow candidate's decision on the request (the row's ``shadow_*``
        columns) comes as ``shadow``.

        Raises:
            KeyError: No call has that id.
        """

        def work() -> dict[str, Any]:
            record = self._find(record_id)
            if record is None:
                raise KeyError(record_id)
            request: list[dict[str, Any]] = []
            if record.run_id is not None:
                session = self._session(self._state(), None)
                calls = queries.decision_rows(
                    session, queries.DecisionFilter(run_id=record.run_id), limit=50
                )
                request = [row.model_dump(mode="json") for row in reversed(calls)]
            return {
                "record": record.model_dump(mode="json"),
                "request": request,
                "neighbours": self._neighbours(record),
                "shadow": _shadow(record),
            }

        return self._run(work)

    def _neighbours(self, record: Any) -> dict[str, Any]:
        stored = record.metadata.get("neighbours")
        if isinstance(stored, list):
            return {"source": "ledger", "items": stored}
        route = getattr(self.router, "route", None)
        if record.query is None or not callable(route):
            why = "the ledger kept no query" if record.query is None else "no router given"
            return {"source": None, "items": [], "note": why}
        decision = route(record.query)
        items = [neighbour.model_dump(mode="json") for neighbour in decision.neighbours]
        return {
            "source": "router",
            "items": items,
            "note": "nearest exemplars in the given router now (it may have learned since)",
        }

    def exemplars(self) -> dict[str, Any]:
        """The router's exemplars per route, and its learned ones by source with provenance."""
        router = self.router
        if router is None or not hasattr(router, "exemplars"):
            return {"router": False, "counts": {}, "sources": {}}
        exemplars = router.exemplars
        counts: dict[str, int] = {}
        sources: dict[str, list[dict[str, Any]]] = {}
        for exemplar in exemplars:
            counts[exemplar.route or "(scores)"] = counts.get(exemplar.route or "(scores)", 0) + 1
            if exemplar.metadata.get("learned") is True:
                source = str(exemplar.metadata.get("source", "(unknown)"))
                sources.setdefault(source, []).append(
                    {
                        "id": exemplar.id,
                        "text": exemplar.text,
                        "route": exemplar.route,
                        "provenance": {
                            name: value
                            for name, value in exemplar.metadata.items()
                            if name != "learned"
                        },
                    }
                )
        return {"router": True, "total": len(exemplars), "counts": counts, "sources": sources}
