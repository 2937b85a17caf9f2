"""langroute monitor: per-window rates from a ledger, and alarms on a synthetic drift."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from langroute.calls import Attempt, RoutedCall
from langroute.costs import CostLedger, LedgerRecord
from langroute.decision import RouteDecision
from langroute.monitoring import MonitorThresholds, monitor, parse_duration

from .test_cli import assert_clean, run_cli

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def request(
    number: int,
    minute: float,
    *,
    tenant: str,
    route: str,
    reason: str = "vote",
    escalated: bool = False,
    similarity: float = 0.8,
) -> list[LedgerRecord]:
    """The ledger rows of one routed request, as the integrations write them."""
    decided = "small" if escalated else route
    call = RoutedCall(
        call_id=f"{tenant}-{number}",
        decision=RouteDecision(
            route=decided, confidence=0.9, reason=reason, max_similarity=similarity
        ),
        baseline_route="large",
        baseline_model="gpt-4o",
    )
    if escalated:
        call.add_attempt(Attempt(route="small", model="gpt-4o-mini", error="RateLimitError: 429"))
    call.add_attempt(Attempt(route=route, model="gpt-4o" if route == "large" else "gpt-4o-mini"))
    when = START + timedelta(minutes=minute)
    return [
        r.model_copy(update={"timestamp": when})
        for r in call.ledger_records(framework="test", metadata={"tenant": tenant})
    ]


def drifting_traffic(seed: int = 7) -> list[LedgerRecord]:
    """Two healthy hours, then an hour where new topics reach tenant a and b is downgraded."""
    rng = random.Random(seed)
    records: list[LedgerRecord] = []
    number = 0
    for hour in range(3):
        for tenant in ("a", "b"):
            for _ in range(60):
                number += 1
                minute = hour * 60 + rng.uniform(0, 59.9)
                drift = hour == 2
                draw = rng.random()
                if drift and tenant == "a" and draw < 0.35:  # new topics: nothing resembles them
                    rows = request(
                        number,
                        minute,
                        tenant=tenant,
                        route="large",
                        reason="out_of_distribution",
                        similarity=0.2,
                    )
                elif drift and tenant == "b":  # tenant b: everything to small, no escalation
                    rows = request(number, minute, tenant=tenant, route="small")
                elif draw < 0.3:
                    rows = request(number, minute, tenant=tenant, route="large")
                elif draw < 0.4:
                    rows = request(number, minute, tenant=tenant, route="large", escalated=True)
                else:
                    rows = request(number, minute, tenant=tenant, route="small")
                records += rows
    return records


def test_healthy_windows_raise_no_alarm_and_rates_are_per_request():
    records = [r for r in drifting_traffic() if r.timestamp < START + timedelta(hours=2)]
    report = monitor(records, window=timedelta(hours=1))
    assert [w.requests for w in report.windows] == [120, 120]
    assert report.alarms == []
    first = report.windows[0]
    escalated_requests = {
        r.run_id for r in records if r.escalated and r.timestamp < START + timedelta(hours=1)
    }
    assert first.escalation_rate == pytest.approx(len(escalated_requests) / 120)
    assert first.calls == first.requests + len(escalated_requests)  # a failed attempt is a call
    assert sum(first.route_shares.values()) == pytest.approx(1.0)
    assert first.mean_best_similarity == pytest.approx(0.8)


def test_drift_fires_out_of_distribution_and_the_downgraded_segment_shifts():
    report = monitor(drifting_traffic(), window=timedelta(hours=1), segment_key="metadata.tenant")
    kinds = {segment: {a.kind for a in report.alarms if a.segment == segment} for segment in "ab"}
    assert "out_of_distribution" in kinds["a"] and "too_greedy" not in kinds["a"]
    assert kinds["b"] == {"route_shift", "too_greedy"}
    assert all(a.start == START + timedelta(hours=2) for a in report.alarms)
    downgraded = [a for a in report.alarms if a.kind == "route_shift" and a.segment == "b"]
    assert {a.message.split("'")[1] for a in downgraded} == {"small", "large"}
    drifted = {w.segment: w for w in report.windows if w.start == START + timedelta(hours=2)}
    assert drifted["a"].mean_best_similarity < 0.8 == drifted["b"].mean_best_similarity


def test_without_segments_the_downgraded_tenant_hides_in_the_average():
    report = monitor(drifting_traffic(), window=timedelta(hours=1))
    kinds = {a.kind for a in report.alarms}
    # tenant b stopped escalating, but tenant a's new topics keep the average up
    assert "out_of_distribution" in kinds and "too_greedy" not in kinds


def test_small_windows_raise_no_alarm():
    records = drifting_traffic()
    quiet = MonitorThresholds(min_requests=1000)
    assert monitor(records, window=timedelta(hours=1), thresholds=quiet).alarms == []


def test_a_baseline_period_is_used_for_every_window():
    records = drifting_traffic()
    third_hour = (START + timedelta(hours=2), START + timedelta(hours=3))
    report = monitor(records, window=timedelta(hours=1), baseline=third_hour)
    # compared with the drifted hour, the healthy hours have fewer OOD: no OOD alarm
    assert "out_of_distribution" not in {a.kind for a in report.alarms}
    with pytest.raises(ValueError, match="no request in the baseline"):
        monitor(records, baseline=(START - timedelta(days=2), START - timedelta(days=1)))


def test_durations():
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1d") == timedelta(days=1)
    for bad in ("", "1", "-1h", "0h", "1y"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_monitor_cli_exits_2_on_alarm_with_json_and_a_plot(tmp_path: Path):
    ledger = CostLedger(tmp_path / "costs.jsonl")
    for record in drifting_traffic():
        ledger.record(record)
    ledger.close()
    plot = tmp_path / "monitor.png"
    result = run_cli(
        "monitor", "costs.jsonl", "--segment", "tenant", "--json", "--plot", plot, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr.decode()
    data = json.loads(assert_clean(result))
    assert {(a["kind"], a["segment"]) for a in data["alarms"]} >= {("route_shift", "b")}
    assert plot.stat().st_size > 10_000

    calm = run_cli("monitor", "costs.jsonl", "--min-requests", "1000", cwd=tmp_path)
    assert calm.returncode == 0
    assert "no alarms" in assert_clean(calm)

    bad = run_cli("monitor", "costs.jsonl", "--window", "soon", cwd=tmp_path)
    assert bad.returncode == 1 and b"not a duration" in bad.stderr
