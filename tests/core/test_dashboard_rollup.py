"""The dashboard's rollup: folded in steps it equals a fold from scratch and the CLI.

The rollup is kept beside a SQLite ledger (``LEDGER.dashboard-cache``) and extended
with the rows appended since; these tests append in steps that split requests (a call
now, its escalation or its verdict later), replace and shorten the ledger under it, and
hand it cache files that are not its own.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from langroute.costs import CostLedger, LedgerRecord
from langroute.costs.analytics import ledger_summary
from langroute.dashboard import Dashboard
from langroute.dashboard.queries import DecisionFilter
from langroute.dashboard.rollup import LedgerRollup, cache_path, postgres_cache_path
from langroute.monitoring import MonitorThresholds, monitor_ledger

from .test_dashboard import assert_same_numbers
from .test_ledger_analytics import START, generated_records, store

KEYS = ("tenant", "api_key")


def panels(rollup: LedgerRollup) -> dict[str, Any]:
    """Everything the panels read from a rollup, as JSON-like values."""
    day = START.replace(hour=0) + timedelta(hours=2)
    return {
        "summary": rollup.summary().model_dump(mode="json"),
        "overhead": rollup.overhead_cost(),
        "monitor": rollup.monitor(MonitorThresholds()).model_dump(mode="json"),
        "mix": [[start.isoformat(), calls] for start, calls in rollup.model_mix()],
        "latency": [vars(row) for row in rollup.latencies()],
        "errors": [list(row) for row in rollup.errors()],
        "quality": sorted(list(row) for row in rollup.quality()),
        "segments": {key: rollup.segments(key) for key in KEYS},
        "spend": {key: rollup.spend_since(key, day) for key in KEYS},
        "calls": rollup.serving_calls(),
    }


def from_scratch(path: Path | str) -> dict[str, Any]:
    """The panels of a rollup folded in one go (in memory: the ledger read as records)."""
    ledger = CostLedger(path)
    try:
        records = ledger.records()
    finally:
        ledger.close()
    with LedgerRollup.over(records, segment_key=KEYS[0]) as rollup:
        rollup.refresh()
        return panels(rollup)


def rollup_of(path: Path | str) -> LedgerRollup:
    return LedgerRollup.over(CostLedger(path), segment_key=KEYS[0])


def append(path: Path | str, records: list[LedgerRecord]) -> None:
    ledger = CostLedger(path, auto_price=False)
    for record in records:
        ledger.record(record)
    ledger.close()


def split_requests() -> list[list[LedgerRecord]]:
    """Steps of a ledger whose requests straddle them, with late and repeated verdicts."""
    records = generated_records(300, seed=5)
    calls = [record for record in records if not record.is_feedback]
    verdicts = [record for record in records if record.is_feedback]
    third = len(calls) // 3
    # a request's first call in one step, its escalation in the next; verdicts last
    first = LedgerRecord(run_id="straddles", route="small", cost=0.001, error="Timeout")
    again = LedgerRecord(
        run_id="straddles", route="large", cost=0.01, baseline_cost=0.01, escalated=True
    )
    late = LedgerRecord(kind="feedback", feedback_for=first.record_id, verdict="bad")
    later = LedgerRecord(kind="feedback", feedback_for=again.record_id, verdict="good")
    return [
        [*calls[:third], first],
        [again, *calls[third : 2 * third], *verdicts[: len(verdicts) // 2], late],
        [*calls[2 * third :], *verdicts[len(verdicts) // 2 :], later],
    ]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return tmp_path / "ledger.db"


def test_folding_in_steps_equals_folding_once_and_the_cli(target: Path | str) -> None:
    path = target
    rollup = rollup_of(path)
    try:
        for step in split_requests():
            append(path, step)
            rollup.refresh()
            assert_same_numbers(panels(rollup), from_scratch(path))
        ledger = CostLedger(path)
        summary = rollup.summary().model_dump(mode="json")
        assert_same_numbers(summary, ledger_summary(ledger).model_dump(mode="json"))
        monitored = monitor_ledger(ledger, window=timedelta(hours=1))
        ledger.close()
        shown = rollup.monitor(MonitorThresholds()).model_dump(mode="json")
        assert_same_numbers(shown, monitored.model_dump(mode="json"))
        assert rollup.segments("tenant") and rollup.quality()
    finally:
        rollup.close()
    kept = cache_path(path) if isinstance(path, Path) else postgres_cache_path(path)
    assert kept.is_file()
    # a new process reads the kept rollup and folds only what came since
    append(path, [LedgerRecord(route="small", cost=0.5, metadata={"tenant": "late"})])
    with rollup_of(path) as reopened:
        before = reopened.conn.execute("SELECT value FROM meta WHERE name = 'last'").fetchone()
        reopened.refresh()
        assert_same_numbers(panels(reopened), from_scratch(path))
        after = reopened.conn.execute("SELECT value FROM meta WHERE name = 'last'").fetchone()
        assert int(after[0]) == int(before[0]) + 1


def test_a_replaced_or_shortened_ledger_is_folded_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    steps = split_requests()
    append(path, [*steps[0], *steps[1]])
    with rollup_of(path) as rollup:
        rollup.refresh()
        # shortened: the same first rows, fewer of them (the row last folded is gone)
        path.unlink()
        append(path, steps[0][:50])
        rollup.refresh()
        assert rollup.summary().calls == ledger_summary(CostLedger(path)).calls
        assert_same_numbers(panels(rollup), from_scratch(path))
        # replaced: another ledger as long as before, its first row another
        path.unlink()
        other = generated_records(120, seed=9)
        append(path, other)
        rollup.refresh()
        assert_same_numbers(panels(rollup), from_scratch(path))
        # emptied
        path.unlink()
        append(path, [])
        rollup.refresh()
        assert rollup.summary().calls == 0 and rollup.monitor(MonitorThresholds()).windows == []


@pytest.mark.parametrize(
    "cache",
    [
        "garbage",  # not a database at all
        "foreign",  # a SQLite database of someone else's
        "version",  # our tables, another version
        "lying",  # our tables and version, numbers that are not this ledger's
    ],
)
def test_a_cache_file_that_is_not_this_ledgers_is_rebuilt(cache: str, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.db"
    records = generated_records(120, seed=4)
    store(records, path).close()
    sidecar = cache_path(path)
    if cache == "garbage":
        sidecar.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    else:
        other = tmp_path / "other.db"
        store(generated_records(60, seed=8), other).close()
        with rollup_of(other) as rollup:
            rollup.refresh()
        shutil.copy(cache_path(other), sidecar)
        conn = sqlite3.connect(sidecar)
        if cache == "foreign":
            conn.execute("DROP TABLE windows")
            conn.execute("CREATE TABLE windows (x)")
        elif cache == "version":
            conn.execute("UPDATE meta SET value = '0' WHERE name = 'version'")
        conn.commit()
        conn.close()
    with Dashboard(path) as dashboard:
        shown = dashboard.summary()["report"]
    assert_same_numbers(shown, ledger_summary(CostLedger(path)).model_dump(mode="json"))
    with sqlite3.connect(sidecar) as conn:  # rebuilt in place, for the next start
        assert conn.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()


def test_reading_never_writes_the_ledger_nor_through_a_link(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store(generated_records(80, seed=2), path).close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    cache_path(path).symlink_to(elsewhere)
    with Dashboard(path) as dashboard:
        assert dashboard.summary()["report"]["calls"] > 0
        assert dashboard.decisions(DecisionFilter())["rows"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert elsewhere.read_text() == "not yours"


def test_the_cache_is_readable_by_no_more_than_its_ledger(tmp_path: Path) -> None:
    """The rollup holds the ledger's figures: it takes the ledger's permission bits."""
    path = tmp_path / "ledger.db"
    store(generated_records(40, seed=3), path).close()
    path.chmod(0o600)
    with Dashboard(path) as dashboard:
        assert dashboard.summary()["report"]["calls"] > 0
    assert cache_path(path).stat().st_mode & 0o777 == 0o600
    assert not any(
        item.stat().st_mode & 0o077 for item in tmp_path.iterdir() if item.name != "elsewhere"
    )


def test_a_ledger_written_after_the_dashboard_opened_is_read(tmp_path: Path) -> None:
    from langroute.dashboard import DashboardSettings

    path = tmp_path / "ledger.db"
    settings = DashboardSettings(refresh_seconds=0)
    with Dashboard(path, settings=settings) as dashboard:
        assert dashboard.summary()["report"]["calls"] == 0
        when = datetime(2026, 11, 2, tzinfo=timezone.utc)
        append(path, [LedgerRecord(route="small", cost=1.0, baseline_cost=3.0, timestamp=when)])
        summary = dashboard.summary()["report"]
        assert (summary["calls"], summary["savings"]) == (1, 2.0)
        assert dashboard.timeline()["monitor"]["windows"][0]["requests"] == 1


def test_a_postgres_row_that_commits_late_refolds(postgres_url: str) -> None:
    """A row under a smaller ``seq`` than the last folded (a writer committing late) counts."""
    import psycopg

    steps = split_requests()
    append(postgres_url, steps[0])
    with rollup_of(postgres_url) as rollup:
        rollup.refresh()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            # as if row 5 committed after the fold: the rows up to the last folded change
            conn.execute("DELETE FROM langroute_ledger WHERE seq = 5")
        append(postgres_url, steps[1])
        rollup.refresh()
        assert_same_numbers(panels(rollup), from_scratch(postgres_url))
