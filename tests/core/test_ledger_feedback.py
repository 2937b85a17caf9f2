"""Record ids, feedback records and upgrading ledgers written before records had ids."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from langroute.costs import CostLedger, LedgerRecord, ModelPrice, Pricer
from langroute.errors import UnknownRecordError

PRICER = Pricer(
    overrides={
        "cheap": ModelPrice(input_per_mtok=1.0, output_per_mtok=1.0),
        "strong": ModelPrice(input_per_mtok=10.0, output_per_mtok=10.0),
    }
)

# The ledger table as langroute 0.2 created it: no record_id, query, feedback_for, verdict.
OLD_SCHEMA = """
CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
  framework TEXT NOT NULL, run_id TEXT, kind TEXT NOT NULL, route TEXT, model TEXT,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL, cost REAL, baseline_model TEXT, baseline_cost REAL,
  latency_ms REAL, escalated INTEGER NOT NULL, escalated_from TEXT, error TEXT,
  reason TEXT, confidence REAL, tier INTEGER, accepted INTEGER, metadata TEXT NOT NULL)
"""
OLD_ROW = (
    "INSERT INTO ledger (timestamp, framework, run_id, kind, route, model, input_tokens, "
    "output_tokens, cached_tokens, cost, escalated, metadata) VALUES "
    "('2026-01-01T00:00:00+00:00', 'core', NULL, 'route', ?, 'cheap', 10, 5, 0, 0.001, 0, '{}')"
)


def call(route: str = "small", **fields: object) -> LedgerRecord:
    model = "cheap" if route == "small" else "strong"
    return LedgerRecord(
        route=route, model=model, input_tokens=1000, output_tokens=100,
        baseline_model="strong", **fields,
    )  # fmt: skip


def test_every_record_gets_its_own_id() -> None:
    ids = {LedgerRecord().record_id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 for i in ids)


@pytest.mark.parametrize("target", ["memory", "ledger.jsonl", "ledger.db"])
def test_feedback_names_a_call_lands_in_its_segment_and_stays_out_of_the_costs(
    tmp_path: Path, target: str
) -> None:
    where = target if target == "memory" else tmp_path / target
    ledger = CostLedger(where, pricer=PRICER)
    answer = ledger.record(call(run_id="r1", query="hi", metadata={"tenant": "acme"}))
    ledger.record(call("large", run_id="r2"))
    before = ledger.summary()

    verdict = ledger.feedback(answer.record_id, "bad", metadata={"comment": "wrong"})

    assert ledger.get(answer.record_id) == answer
    stored = ledger.get(verdict.record_id)
    assert stored.is_feedback and stored.feedback_for == answer.record_id
    assert (stored.verdict, stored.route, stored.model, stored.run_id) == (
        "bad", "small", "cheap", "r1",
    )  # fmt: skip
    assert stored.query == "hi"
    assert stored.metadata == {"tenant": "acme", "comment": "wrong", "source": "user"}
    after = ledger.summary()
    assert (after.calls, after.requests, after.cost, after.savings) == (
        before.calls, before.requests, before.cost, before.savings,
    )  # fmt: skip
    ledger.close()


def test_feedback_on_an_unknown_or_feedback_record_or_with_a_bad_verdict_is_refused() -> None:
    ledger = CostLedger(pricer=PRICER)
    answer = ledger.record(call())
    with pytest.raises(UnknownRecordError, match="'nope'"):
        ledger.feedback("nope", "good")
    with pytest.raises(ValueError, match="verdict"):
        ledger.feedback(answer.record_id, "meh")  # type: ignore[arg-type]
    verdict = ledger.feedback(answer.record_id, "good")
    with pytest.raises(ValueError, match="feedback itself"):
        ledger.feedback(verdict.record_id, "good")
    assert len(ledger) == 2  # nothing stored by the refused calls


def test_a_feedback_record_needs_its_target_and_verdict() -> None:
    with pytest.raises(ValidationError, match="feedback_for and verdict"):
        LedgerRecord(kind="feedback", verdict="good")
    with pytest.raises(ValidationError, match="only feedback records"):
        LedgerRecord(kind="route", verdict="good")


def test_an_older_sqlite_ledger_reads_with_stable_ids_and_is_upgraded_on_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute(OLD_ROW, ("small",))
        conn.execute(OLD_ROW, ("large",))
    conn.close()

    ledger = CostLedger(path, pricer=PRICER)
    old = ledger.records()
    assert [r.record_id for r in old] == ["sqlite-row-1", "sqlite-row-2"]
    assert [r.record_id for r in ledger.records()] == ["sqlite-row-1", "sqlite-row-2"]
    assert ledger.get("sqlite-row-2").route == "large"

    verdict = ledger.feedback("sqlite-row-1", "good")  # the first write upgrades the table
    ledger.flush()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    conn.close()
    assert {"record_id", "query", "feedback_for", "verdict"} <= columns
    records = ledger.records()
    assert [r.record_id for r in records] == ["sqlite-row-1", "sqlite-row-2", verdict.record_id]
    assert records[2].feedback_for == "sqlite-row-1"
    ledger.close()


def test_an_older_jsonl_ledger_reads_with_ids_from_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    line = {"timestamp": "2026-01-01T00:00:00+00:00", "route": "small", "metadata": {}}
    path.write_text(json.dumps(line) + "\n\n" + json.dumps(line) + "\n")
    ledger = CostLedger(path)
    assert [r.record_id for r in ledger.records()] == ["jsonl-line-1", "jsonl-line-3"]
    assert ledger.feedback("jsonl-line-3", "bad").feedback_for == "jsonl-line-3"
    ledger.close()


def test_an_older_line_mentioning_record_id_elsewhere_keeps_a_stable_id(tmp_path):
    from langroute.costs import LedgerRecord
    from langroute.costs.sinks import JSONLSink

    path = tmp_path / "old.jsonl"
    data = LedgerRecord(model="m", metadata={"note": "record_id"}).model_dump(mode="json")
    del data["record_id"]  # written before records had ids
    path.write_text(__import__("json").dumps(data) + "\n", encoding="utf-8")
    first, second = JSONLSink(path).read(), JSONLSink(path).read()
    assert first[0].record_id == second[0].record_id
