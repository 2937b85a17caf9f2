"""The cost ledger: prices each record and stores it in a sink, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langroute.costs.pricing import Pricer
from langroute.costs.records import LedgerRecord, Verdict
from langroute.costs.sinks import MemorySink, Sink, sink_for
from langroute.costs.summary import LedgerSummary
from langroute.costs.writer import LedgerStats, LedgerWriter, flush_writers_of
from langroute.errors import LedgerFormatError, UnknownRecordError

__all__ = ["CostLedger"]


class CostLedger:
    """Records the cost of every routed call and summarises it per route.

    Args:
        sink: ``None`` or ``"memory"`` (in memory), a path ending in ``.jsonl`` (JSON
            Lines), a path ending in ``.db`` / ``.sqlite`` / ``.sqlite3`` (SQLite, shareable
            by several processes), a ``postgresql://`` URL (shared by replicas on many
            machines; see :class:`~langroute.postgres.PostgresSink`), or any :class:`Sink`.
        pricer: Prices records whose ``cost`` / ``baseline_cost`` are ``None``
            (default: a plain :class:`Pricer`).
        auto_price: Set ``False`` to store records exactly as given.
        background: Write on a background thread, so :meth:`record` never waits for a
            file lock, a busy database or a slow disk. Default: on for every sink but
            :class:`MemorySink`. ``False`` writes inside :meth:`record`, which then
            raises what the sink raises.
        max_pending: Records that may wait for the background writer; beyond that
            :meth:`record` drops them (counted in :attr:`stats`, with a
            :class:`LedgerWriteWarning`) rather than wait.

    Raises:
        LedgerFormatError: The path has an unsupported suffix, or names an existing file
            that is not a ledger (checked when the sink has a ``check()`` method).
        ValueError: ``max_pending`` is below 1.

    Writes: :meth:`record` prices the record and queues it; a background thread stores
    it. Nothing is lost silently: :attr:`stats` counts written, pending, dropped and
    failed records, and each loss is reported with a :class:`LedgerWriteWarning`.
    Reading (:meth:`records`, :meth:`summary`, ``len``) first waits for this process's
    pending writes to the same sink or file, so a record is visible as soon as
    :meth:`record` returns. :meth:`flush` waits for pending writes; :meth:`close`, the
    garbage collector and interpreter exit write them too.

    Thread-safe; from asyncio :meth:`record` and :meth:`arecord` never block the loop.

    Example:
        >>> ledger = CostLedger()
        >>> _ = ledger.record(LedgerRecord(route="small", model="gpt-4o-mini",
        ...                                input_tokens=100, output_tokens=10))
        >>> len(ledger), ledger.records()[0].cost > 0
        (1, True)
    """

    def __init__(
        self,
        sink: str | Path | Sink | None = None,
        *,
        pricer: Pricer | None = None,
        auto_price: bool = True,
        background: bool | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.sink: Sink = sink_for(sink)
        self.pricer = pricer if pricer is not None else Pricer()
        self.auto_price = auto_price
        check = getattr(self.sink, "check", None)
        if callable(check):  # a file that is not a ledger fails here, not in the writer
            check()
        if background is None:
            background = not isinstance(self.sink, MemorySink)
        self._writer = LedgerWriter(self.sink, max_pending=max_pending, background=background)
        # writes what is pending when the ledger is collected or the interpreter exits
        self._finalizer = weakref.finalize(self, self._writer.close)

    @classmethod
    def open(
        cls, path: str | Path, *, pricer: Pricer | None = None, validate: bool = True
    ) -> CostLedger:
        """Open an existing JSONL or SQLite ledger, or a Postgres one by URL (and read it).

        Args:
            path: The ledger file, or a ``postgresql://`` URL.
            pricer: Prices records written through this ledger.
            validate: Read every record now, so a malformed one fails here. ``False``
                only checks that the file is a ledger (for a one-pass reader such as
                :meth:`summary`, which validates a JSONL file as it reads it).

        Raises:
            FileNotFoundError: The file does not exist.
            DatabaseUnavailableError: A ``postgresql://`` URL that cannot be reached.
            LedgerFormatError: Unsupported suffix, or a malformed line / table (the
                message names the file and line).

        Example:
            >>> CostLedger.open("costs.jsonl").summary()  # doctest: +SKIP
        """
        if isinstance(path, str) and path.lower().startswith(("postgresql://", "postgres://")):
            ledger = cls(path, pricer=pricer)  # connects now: an unreachable database fails
            if validate:
                ledger.records()
            return ledger
        path = Path(path)
        if not path.exists():  # perhaps this process still has writes to it queued
            with contextlib.suppress(LedgerFormatError):
                flush_writers_of(sink_for(path))
            if not path.exists():
                raise FileNotFoundError(f"no ledger at {path}")
        ledger = cls(path, pricer=pricer)
        if validate:
            ledger.records()  # fail now, with file and line
        return ledger

    def __repr__(self) -> str:
        return f"CostLedger({self.sink!r})"

    def __len__(self) -> int:
        flush_writers_of(self.sink)
        count = getattr(self.sink, "count", None)
        return int(count()) if callable(count) else len(self.sink.read())

    def __enter__(self) -> CostLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def price(self, record: LedgerRecord) -> LedgerRecord:
        """Fill ``cost`` and ``baseline_cost`` where they are ``None`` and a model is set.

        An unmeasured record (:attr:`LedgerRecord.measured` is False) is left unpriced.

        Returns:
            The record, or an updated copy.
        """
        if not record.measured:
            return record
        update: dict[str, float] = {}
        tokens = (record.input_tokens, record.output_tokens, record.cached_tokens)
        if record.cost is None and record.model is not None:
            cost = self.pricer.cost(record.model, *tokens)
            if cost is not None:
                update["cost"] = cost
        if record.baseline_cost is None and record.baseline_model is not None:
            baseline = self.pricer.cost(record.baseline_model, *tokens)
            if baseline is not None:
                update["baseline_cost"] = baseline
        return record.model_copy(update=update) if update else record

    def record(self, record: LedgerRecord) -> LedgerRecord:
        """Price (unless ``auto_price=False``) and store one record.

        With a background writer this only queues the record: it never waits for the
        sink. A record that cannot be queued (``max_pending`` reached) or written is
        counted in :attr:`stats` and reported with a :class:`LedgerWriteWarning`.

        Returns:
            The record as stored.
        """
        if self.auto_price:
            record = self.price(record)
        self._writer.submit(record)
        return record

    async def arecord(self, record: LedgerRecord) -> LedgerRecord:
        """Async :meth:`record`: an inline file or database write runs in a worker thread."""
        if self._writer.background or isinstance(self.sink, MemorySink):
            return self.record(record)
        return await asyncio.to_thread(self.record, record)

    @property
    def stats(self) -> LedgerStats:
        """Records written, pending, dropped and failed by this ledger in this process."""
        return self._writer.stats

    @property
    def torn_lines(self) -> list[int]:
        """Line numbers of the torn lines the last read skipped (JSONL ledgers; else [])."""
        return list(getattr(self.sink, "torn_lines", []))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the records given so far are written (or have failed).

        Args:
            timeout: Seconds to wait at most (``None``: until done; each write is bounded
                by the sink's lock timeout).

        Returns:
            ``True`` when none of them is still pending.
        """
        return self._writer.flush(timeout)

    def records(self) -> list[LedgerRecord]:
        """All records, oldest first (after this process's pending writes to the sink)."""
        flush_writers_of(self.sink)
        return self.sink.read()

    def get(self, record_id: str) -> LedgerRecord:
        """The record with ``record_id`` (after this process's pending writes).

        Raises:
            UnknownRecordError: No record has that id.

        Example:
            >>> ledger = CostLedger()
            >>> rec = ledger.record(LedgerRecord(route="small", model="gpt-4o-mini"))
            >>> ledger.get(rec.record_id).route
            'small'
        """
        flush_writers_of(self.sink)
        find = getattr(self.sink, "find", None)
        if callable(find):
            found = find(record_id)
        else:
            found = next((r for r in self.sink.read() if r.record_id == record_id), None)
        if found is None:
            raise UnknownRecordError(f"no ledger record has id {record_id!r} (in {self.sink!r})")
        return found

    def feedback(
        self,
        record_id: str | LedgerRecord,
        verdict: Verdict,
        *,
        source: str = "user",
        metadata: Mapping[str, Any] | None = None,
    ) -> LedgerRecord:
        """Store a verdict on the answer of the call ``record_id`` (a thumbs up or down).

        The feedback record copies the call's route, model, run id and metadata (so it
        falls in the same segment of ``langroute monitor``), and adds ``source``. It is
        not a call: summaries and savings leave it out; the monitor turns it into quality
        per route. A router learns from it with ``ExemplarRouter.learn_from_feedback``.

        Args:
            record_id: The ``record_id`` of the call whose answer is judged, or that
                call's record as :meth:`get` returned it (saves a second lookup).
            verdict: ``"good"`` or ``"bad"``.
            source: Who judged (``"user"``, ``"validator"``, ...).
            metadata: Extra metadata for the feedback record.

        Returns:
            The feedback record as stored.

        Raises:
            UnknownRecordError: No record has that id.
            ValueError: ``verdict`` is not ``"good"`` or ``"bad"``, or the record is itself
                feedback.

        Example:
            >>> ledger = CostLedger()
            >>> call = ledger.record(LedgerRecord(route="small", model="gpt-4o-mini"))
            >>> ledger.feedback(call.record_id, "bad").verdict
            'bad'
        """
        if verdict not in ("good", "bad"):
            raise ValueError(f'verdict must be "good" or "bad", not {verdict!r}')
        target = record_id if isinstance(record_id, LedgerRecord) else self.get(record_id)
        if target.is_feedback:
            raise ValueError(f"record {target.record_id!r} is feedback itself, not a call")
        record = LedgerRecord(
            framework=target.framework,
            run_id=target.run_id,
            kind="feedback",
            route=target.route,
            model=target.model,
            reason=target.reason,
            tier=target.tier,
            query=target.query,
            feedback_for=target.record_id,
            verdict=verdict,
            metadata={**target.metadata, **(metadata or {}), "source": source},
        )
        self._writer.submit(record)
        return record

    def summary(self, order: Sequence[str] | None = None) -> LedgerSummary:
        """Aggregate the records per route (see :class:`LedgerSummary`).

        A SQLite, Postgres or JSONL ledger is aggregated in one pass without loading its
        records (:func:`~langroute.costs.analytics.ledger_summary`).

        Args:
            order: Route names to list first (for example cheapest to strongest).
        """
        from langroute.costs.analytics import ledger_summary

        return ledger_summary(self, order=order)

    def close(self) -> None:
        """Write what is pending, stop the background thread and close the sink.

        The ledger stays usable: a later :meth:`record` starts a new thread.
        """
        self._writer.close()
        self.sink.close()
