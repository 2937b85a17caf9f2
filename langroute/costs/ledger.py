"""The cost ledger: prices each record and stores it in a sink."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from langroute.costs.pricing import Pricer
from langroute.costs.records import LedgerRecord
from langroute.costs.sinks import MemorySink, Sink, sink_for
from langroute.costs.summary import LedgerSummary, summarize

__all__ = ["CostLedger"]


class CostLedger:
    """Records the cost of every routed call and summarises it per route.

    Args:
        sink: ``None`` or ``"memory"`` (in memory), a path ending in ``.jsonl`` (JSON
            Lines), a path ending in ``.db`` / ``.sqlite`` / ``.sqlite3`` (SQLite, shareable
            by several processes), or any :class:`Sink`.
        pricer: Prices records whose ``cost`` / ``baseline_cost`` are ``None``
            (default: a plain :class:`Pricer`).
        auto_price: Set ``False`` to store records exactly as given.

    Raises:
        LedgerFormatError: The path has an unsupported suffix.

    Thread-safe; from asyncio use :meth:`arecord` (or :meth:`record`, which only does
    a fast local write).

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
    ) -> None:
        self.sink: Sink = sink_for(sink)
        self.pricer = pricer if pricer is not None else Pricer()
        self.auto_price = auto_price

    @classmethod
    def open(cls, path: str | Path, *, pricer: Pricer | None = None) -> CostLedger:
        """Open an existing JSONL or SQLite ledger (and check that it can be read).

        Raises:
            FileNotFoundError: The file does not exist.
            LedgerFormatError: Unsupported suffix, or a malformed line / table (the
                message names the file and line).

        Example:
            >>> CostLedger.open("costs.jsonl").summary()  # doctest: +SKIP
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no ledger at {path}")
        ledger = cls(path, pricer=pricer)
        ledger.records()  # validate now: fail with file and line
        return ledger

    def __repr__(self) -> str:
        return f"CostLedger({self.sink!r})"

    def __len__(self) -> int:
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

        Returns:
            The record as stored.
        """
        if self.auto_price:
            record = self.price(record)
        self.sink.write(record)
        return record

    async def arecord(self, record: LedgerRecord) -> LedgerRecord:
        """Async :meth:`record`: file and database writes run in a worker thread."""
        if isinstance(self.sink, MemorySink):
            return self.record(record)
        return await asyncio.to_thread(self.record, record)

    def records(self) -> list[LedgerRecord]:
        """All records, oldest first."""
        return self.sink.read()

    def summary(self, order: Sequence[str] | None = None) -> LedgerSummary:
        """Aggregate the records per route (see :class:`LedgerSummary`).

        Args:
            order: Route names to list first (for example cheapest to strongest).
        """
        return summarize(self.records(), order=order)

    def close(self) -> None:
        """Close the sink."""
        self.sink.close()
