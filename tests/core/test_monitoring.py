"""langroute monitor: per-window rates from a ledger, and alarms on a synthetic drift."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from langroute.costs import CostLedger, LedgerRecord
from langroute.dispatch.routed_call import Attempt, RoutedCall
from langroute.monitoring import MonitorReport, MonitorThresholds, monitor, parse_duration
from langroute.router.decision import RouteDecision

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


def traffic_by_reason(tenant: str, hours: list[dict[str, int]]) -> list[LedgerRecord]:
    """One tenant's requests: per hour, how many were decided for each reason."""
    records: list[LedgerRecord] = []
    for hour, reasons in enumerate(hours):
        spread = 59.0 / sum(reasons.values())  # evenly inside the hour
        reasons_in_order = [reason for reason, count in reasons.items() for _ in range(count)]
        for number, reason in enumerate(reasons_in_order):
            records += request(
                hour * 100 + number,
                hour * 60 + number * spread,
                tenant=tenant,
                route="large" if reason == "out_of_distribution" else "small",
                reason=reason,
            )
    return records


def test_the_ood_alarm_fires_on_ood_drift_and_not_on_low_confidence_drift():
    records = traffic_by_reason(  # OOD 5% -> 25%, low confidence steady at 30%
        "ood-drift",
        [
            {"vote": 26, "low_confidence": 12, "out_of_distribution": 2},
            {"vote": 18, "low_confidence": 12, "out_of_distribution": 10},
        ],
    )
    records += traffic_by_reason(  # low confidence 0% -> 40%, OOD steady at 10%
        "unsure-drift",
        [
            {"vote": 36, "out_of_distribution": 4},
            {"vote": 20, "low_confidence": 16, "out_of_distribution": 4},
        ],
    )
    report = monitor(records, window=timedelta(hours=1), segment_key="tenant")
    drifted = {w.segment: w for w in report.windows if w.start == START + timedelta(hours=1)}
    assert drifted["ood-drift"].out_of_distribution_rate == pytest.approx(0.25)
    assert drifted["unsure-drift"].low_confidence_rate == pytest.approx(0.40)
    ood = [a for a in report.alarms if a.kind == "out_of_distribution"]
    assert [(a.segment, a.value, a.baseline) for a in ood] == [
        ("ood-drift", pytest.approx(0.25), pytest.approx(0.05))
    ]


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


def judge(records: list[LedgerRecord], verdict_for: dict[str, str]) -> list[LedgerRecord]:
    """Feedback records for the answering call of the requests named, written a day later."""
    answers = {r.run_id: r for r in records if r.error is None}
    ledger = CostLedger()
    for record in answers.values():
        ledger.record(record)
    verdicts = []
    for run_id, verdict in verdict_for.items():
        stored = ledger.feedback(answers[run_id].record_id, verdict)  # type: ignore[arg-type]
        verdicts.append(stored.model_copy(update={"timestamp": START + timedelta(days=1)}))
    return verdicts


def test_feedback_gives_quality_per_route_in_the_window_of_the_call_and_alarms_on_a_drop():
    records = drifting_traffic()
    rng = random.Random(3)
    verdict_for: dict[str, str] = {}
    for record in records:
        if record.error is not None or record.run_id is None or rng.random() > 0.5:
            continue
        hour = int((record.timestamp - START) / timedelta(hours=1))
        tenant = record.metadata["tenant"]
        bad = 0.6 if (hour == 2 and tenant == "b") else 0.1  # b's downgraded answers are worse
        verdict_for[record.run_id] = "bad" if rng.random() < bad else "good"
    verdicts = judge(records, verdict_for)
    # a user changes their mind about the first judged answer, a minute later
    changed = verdicts[0]
    later = changed.model_copy(
        update={
            "verdict": "bad" if changed.verdict == "good" else "good",
            "record_id": "later",
            "timestamp": changed.timestamp + timedelta(minutes=1),
        }
    )

    plain = monitor(records, window=timedelta(hours=1), segment_key="tenant")
    before = monitor(records + verdicts, window=timedelta(hours=1), segment_key="tenant")
    report = monitor(records + verdicts + [later], window=timedelta(hours=1), segment_key="tenant")

    # feedback changes no request, call, cost or window (its timestamp is a day later)
    assert [(w.start, w.requests, w.calls, w.cost) for w in report.windows] == [
        (w.start, w.requests, w.calls, w.cost) for w in plain.windows
    ]
    assert sum(w.feedback for w in report.windows) == len(verdict_for)
    hour3 = {w.segment: w for w in report.windows if w.start == START + timedelta(hours=2)}
    assert hour3["b"].quality < 0.6 < hour3["a"].quality
    assert set(hour3["b"].quality_by_route) == {"small"}
    drops = [a for a in report.alarms if a.kind == "quality_drop"]
    assert [(a.segment, a.start) for a in drops] == [("b", START + timedelta(hours=2))]
    assert "judged answers are good in segment 'b'" in drops[0].message
    # the latest verdict on a call wins: one good answer more or less in its window
    call = next(r for r in records if r.record_id == changed.feedback_for)
    hour = START + int((call.timestamp - START) / timedelta(hours=1)) * timedelta(hours=1)

    def good(monitored: MonitorReport) -> float:
        [window] = [
            w for w in monitored.windows if w.start == hour and w.segment == call.metadata["tenant"]
        ]
        return (window.quality or 0.0) * window.feedback

    assert good(report) - good(before) == pytest.approx(1 if later.verdict == "good" else -1)
    quiet = MonitorThresholds(min_feedback=10_000)
    assert not any(
        a.kind == "quality_drop"
        for a in monitor(records + verdicts, segment_key="tenant", thresholds=quiet).alarms
    )


def test_judge_calls_count_against_savings_and_never_as_the_answering_route():
    answer = LedgerRecord(
        timestamp=START,
        run_id="c1",
        route="small",
        model="gpt-4o-mini",
        baseline_model="gpt-4o",
        input_tokens=1000,
        output_tokens=100,
        reason="vote",
    )
    judge_call = LedgerRecord(
        timestamp=START,
        run_id=answer.run_id,
        route="judge",
        model="gpt-4o",
        input_tokens=500,
        output_tokens=10,
        metadata={"role": "judge"},
    )
    ledger = CostLedger()
    priced = [ledger.record(answer), ledger.record(judge_call)]
    without = monitor(priced[:1]).windows[0]
    with_judge = monitor(priced).windows[0]
    assert with_judge.route_shares == {"small": 1.0}
    assert with_judge.requests == 1 and with_judge.calls == 2
    assert with_judge.cost == pytest.approx(without.cost + priced[1].cost)
    assert with_judge.savings == pytest.approx(without.savings - priced[1].cost)


def test_cascade_rejections_errors_and_unmeasured_requests_are_counted():
    base = {"framework": "test", "timestamp": START}
    rows = [
        # a cascade: the cheap answer is rejected, the strong one accepted
        LedgerRecord(run_id="c", kind="cascade", tier=0, route="small", accepted=False, **base),
        LedgerRecord(
            run_id="c", kind="cascade", tier=1, route="large", accepted=True, escalated=True,
            **base,
        ),
        # a cascade accepted at the first tier
        LedgerRecord(run_id="d", kind="cascade", tier=0, route="small", accepted=True, **base),
        # a routed call that failed, then a fallback that answered without usage
        LedgerRecord(run_id="e", route="small", error="APITimeoutError: slow", **base),
        LedgerRecord(
            run_id="e", route="large", escalated=True, metadata={"unmeasured": True}, **base
        ),
        LedgerRecord(run_id="f", route="small", **base),
    ]  # fmt: skip
    window = monitor(rows).windows[0]
    assert window.requests == 4 and window.calls == 6
    assert window.cascade_rejection_rate == pytest.approx(1 / 3)
    assert window.error_rate == pytest.approx(1 / 4)
    assert window.escalation_rate == pytest.approx(2 / 4)
    assert window.unmeasured_requests == 1
    assert window.route_shares == {"large": 0.5, "small": 0.5}


def test_monitor_cli_takes_a_baseline_period_and_shows_quality(tmp_path: Path):
    records = drifting_traffic()
    ledger = CostLedger(tmp_path / "costs.db")
    for record in records:
        ledger.record(record)
    answer = next(r for r in records if r.error is None)
    ledger.feedback(answer.record_id, "good")
    ledger.close()
    third_hour = (
        f"{START + timedelta(hours=2):%Y-%m-%dT%H:%M}/{START + timedelta(hours=3):%Y-%m-%dT%H:%M}"
    )
    result = run_cli(
        "monitor", "costs.db", "--baseline", third_hour, "--min-requests", "1000", cwd=tmp_path
    )
    out = assert_clean(result)
    assert result.returncode == 0, out
    assert "100% (1)" in out  # the one verdict, in the first window's "good" column
    assert "11-01 00:00" in out and "…" not in out  # 80 columns, nothing cut

    as_json = run_cli("monitor", "costs.db", "--baseline", third_hour, "--json", cwd=tmp_path)
    data = json.loads(assert_clean(as_json))
    assert data["baselines"][0]["start"].startswith("2026-11-01T02:00")
    assert "out_of_distribution" not in {a["kind"] for a in data["alarms"]}

    bad = run_cli("monitor", "costs.db", "--baseline", "yesterday", cwd=tmp_path)
    assert bad.returncode == 1 and b"START/END" in bad.stderr
