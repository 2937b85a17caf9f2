"""The ledger's table: its columns, and a record as a row and back.

One schema for every SQL sink: SQLite (:class:`~langroute.costs.sinks.SQLiteSink`) and
Postgres (:class:`~langroute.postgres.PostgresSink`) create their tables from
:data:`LEDGER_COLUMNS` and convert with :func:`record_to_row` / :func:`row_to_record`.

Example:
    >>> from langroute.costs.records import LedgerRecord
    >>> row = record_to_row(LedgerRecord(route="small", model="gpt-4o-mini"))
    >>> row_to_record((*row, 7)).route
    'small'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langroute.costs.records import LedgerRecord

__all__ = ["COLUMN_NAMES", "LEDGER_COLUMNS", "ROW_ID_PREFIX", "record_to_row", "row_to_record"]

LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "TEXT NOT NULL"),
    ("framework", "TEXT NOT NULL"),
    ("run_id", "TEXT"),
    ("kind", "TEXT NOT NULL"),
    ("route", "TEXT"),
    ("model", "TEXT"),
    ("input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("cached_tokens", "INTEGER NOT NULL"),
    ("cost", "REAL"),
    ("baseline_model", "TEXT"),
    ("baseline_cost", "REAL"),
    ("latency_ms", "REAL"),
    ("escalated", "INTEGER NOT NULL"),
    ("escalated_from", "TEXT"),
    ("error", "TEXT"),
    ("reason", "TEXT"),
    ("confidence", "REAL"),
    ("tier", "INTEGER"),
    ("accepted", "INTEGER"),
    ("metadata", "TEXT NOT NULL"),
    ("record_id", "TEXT"),
    ("query", "TEXT"),
    ("feedback_for", "TEXT"),
    ("verdict", "TEXT"),
    ("shadow_router", "TEXT"),
    ("shadow_route", "TEXT"),
    ("shadow_reason", "TEXT"),
    ("shadow_confidence", "REAL"),
    ("shadow_error", "TEXT"),
)
COLUMN_NAMES = tuple(name for name, _ in LEDGER_COLUMNS)
"""Column name and SQL declaration of each ledger column, in order."""


def record_to_row(record: LedgerRecord) -> tuple[Any, ...]:
    """The row of ``record``: one value per column of :data:`LEDGER_COLUMNS`, in order."""
    data = record.model_dump()
    data["timestamp"] = record.timestamp.isoformat()
    data["escalated"] = int(record.escalated)
    data["accepted"] = None if record.accepted is None else int(record.accepted)
    data["metadata"] = json.dumps(record.metadata)
    return tuple(data[name] for name in COLUMN_NAMES)


ROW_ID_PREFIX = "sqlite-row-"
"""Prefix of the stable id given to a row of an older ledger that has no record_id."""


def row_to_record(row: Sequence[Any]) -> LedgerRecord:
    """A record from a row: the values of :data:`LEDGER_COLUMNS`, then the row's own id.

    A row of an older ledger without a ``record_id`` gets a stable one from its row id.
    """
    data = dict(zip(COLUMN_NAMES, row[:-1], strict=True))
    if data["record_id"] is None:
        data["record_id"] = f"{ROW_ID_PREFIX}{row[-1]}"
    data["metadata"] = json.loads(data["metadata"] or "{}")
    data["escalated"] = bool(data["escalated"])
    if data["accepted"] is not None:
        data["accepted"] = bool(data["accepted"])
    return LedgerRecord.model_validate(data)
