"""Prices, the cost ledger and its report.

Three layers, each usable on its own:

* :class:`Pricer` turns token counts into US dollars. Prices come from the
  `genai-prices <https://github.com/pydantic/genai-prices>`_ package's bundled snapshot
  (no price list is written here, and nothing is fetched: its optional background
  updater, ``genai_prices.UpdatePrices``, is never started by langroute). Per-model
  :class:`ModelPrice` overrides win over the package.
* :class:`CostLedger` stores one :class:`LedgerRecord` per paid model call (a routed call
  or one attempt of a cascade) in a sink: memory, a JSONL file or a SQLite database that
  several processes can append to. File and database writes happen on a background
  thread, so a request never waits for them; :attr:`CostLedger.stats` counts what was
  written, is pending, was dropped or failed.
* :meth:`CostLedger.summary` aggregates the records per route into a
  :class:`LedgerSummary` (cost, tokens, latency percentiles, escalations, savings against
  always calling the strongest route), and :func:`render_report` / :func:`print_report`
  show it as a table (the ``langroute report LEDGER`` command), and
  :func:`report_json` / :func:`report_csv` write it for machines; :func:`plot_costs`
  draws spend per route and cumulative spend against that baseline (matplotlib).

Example:
    >>> ledger = CostLedger()  # in memory
    >>> _ = ledger.record(
    ...     LedgerRecord(
    ...         framework="core", kind="route", route="small", model="gpt-4o-mini",
    ...         input_tokens=1000, output_tokens=200, baseline_model="gpt-4o",
    ...     )
    ... )
    >>> summary = ledger.summary()
    >>> summary.calls, summary.cost is not None, summary.savings > 0
    (1, True, True)
"""

from __future__ import annotations

from langroute.costs.ledger import CostLedger
from langroute.costs.plot import plot_costs
from langroute.costs.pricing import ModelPrice, Pricer
from langroute.costs.records import LedgerRecord
from langroute.costs.report import print_report, render_report, report_csv, report_json
from langroute.costs.sinks import JSONLSink, MemorySink, Sink, SQLiteSink
from langroute.costs.summary import LedgerSummary, RouteCostSummary, summarize
from langroute.costs.writer import LedgerStats
from langroute.errors import (
    LedgerFormatError,
    LedgerWriteWarning,
    TornLinesWarning,
    UnpricedModelWarning,
)

__all__ = [
    "CostLedger",
    "JSONLSink",
    "LedgerFormatError",
    "LedgerRecord",
    "LedgerStats",
    "LedgerSummary",
    "LedgerWriteWarning",
    "MemorySink",
    "ModelPrice",
    "Pricer",
    "RouteCostSummary",
    "SQLiteSink",
    "Sink",
    "TornLinesWarning",
    "UnpricedModelWarning",
    "plot_costs",
    "print_report",
    "render_report",
    "report_csv",
    "report_json",
    "summarize",
]
