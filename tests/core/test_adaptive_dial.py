"""The adaptive dial: direction, bounded steps, the quality floor, the record of changes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute import Exemplar, ExemplarRouter
from langroute.adaptive_dial import (
    AdaptiveDial,
    AdaptiveDialConfig,
    DialJournal,
    EscalationBand,
    SpendTarget,
    StrongShareTarget,
    dial_journal_path,
    quality_floor,
)
from langroute.cli.app import app
from langroute.costs import CostLedger, LedgerFormatError, LedgerRecord
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError

START = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_router(threshold: float = 0.5) -> ExemplarRouter:
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="hello there", route="small"),
            Exemplar(text="prove the theorem", route="large"),
        ],
        embedder=HashingEmbedder(),
    )
    router.threshold = threshold
    return router


def traffic(ledger: CostLedger, clock: Clock, n: int, strong_share: float, **row: object) -> None:
    """``n`` requests over the next ``n`` minutes, strong ones spread evenly among them.

    A strong call costs 0.1, a cheap one 0.01.
    """
    for i in range(n):
        large = int((i + 1) * strong_share + 1e-9) > int(i * strong_share + 1e-9)
        ledger.record(
            LedgerRecord(
                run_id=f"{clock.now.isoformat()}-{i}",
                route="large" if large else "small",
                model="big" if large else "mini",
                cost=0.1 if large else 0.01,
                baseline_cost=0.1,
                timestamp=clock.now + timedelta(minutes=i),
                **row,
            )
        )
    clock.advance(minutes=n)


def spend_dial(ledger: CostLedger, clock: Clock, router: ExemplarRouter, **options: object):
    settings = {
        "floor_threshold": 0.8,
        "max_step": 0.05,
        "min_interval_s": 600,
        "check_every_s": 0,
        "window_s": 3600,
        "min_requests": 10,
        **options,
    }
    return AdaptiveDial(router, ledger, target=SpendTarget(per_hour=1.0), clock=clock, **settings)


def test_overspending_moves_the_dial_cheaper_and_underspending_stronger() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.5)
    dial = spend_dial(ledger, clock, router)
    traffic(ledger, clock, 60, strong_share=0.5)  # 60 requests/h, $3.3/h
    change = dial.update()
    assert change is not None and change.direction == "cheaper"
    assert change.previous == 0.5 and router.threshold == pytest.approx(0.55)
    assert change.limit == "max_step" and "above the target" in change.reason
    assert change.measured == pytest.approx(3.3) and change.requests == 60
    clock.advance(minutes=10)
    traffic(ledger, clock, 60, strong_share=0.0)  # $0.6/h: room to be stronger
    change = dial.update()
    assert change is not None and change.direction == "stronger"
    assert router.threshold == pytest.approx(0.55 - 0.05)
    # only requests since the last change counted: the $3.3/h hour before it is ignored
    assert change.measured == pytest.approx(0.6)


def test_steps_are_bounded_and_spaced() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.2)
    dial = spend_dial(ledger, clock, router, max_step=0.03, min_interval_s=1800)
    traffic(ledger, clock, 60, strong_share=1.0)
    assert dial.update() is not None
    traffic(ledger, clock, 20, strong_share=1.0)  # 20 minutes later: too soon
    assert dial.update() is None and router.threshold == pytest.approx(0.23)
    clock.advance(minutes=15)
    assert dial.update() is not None
    thresholds = [c.previous for c in dial.changes] + [router.threshold]
    assert all(abs(b - a) <= 0.03 + 1e-9 for a, b in zip(thresholds, thresholds[1:]))
    assert [c.at for c in dial.changes] == [START + timedelta(minutes=60), clock.now]


def test_the_dial_never_goes_cheaper_than_the_floor_but_may_go_stronger() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.7)
    dial = spend_dial(ledger, clock, router, floor_threshold=0.78, min_interval_s=0)
    for _ in range(6):  # far over budget however cheap the dial goes
        traffic(ledger, clock, 30, strong_share=1.0)
        dial.update()
        assert router.threshold <= 0.78
    assert router.threshold == pytest.approx(0.78)
    assert dial.changes[-1].limit == "floor" and len(dial.changes) == 2
    assert dial.last_reading is not None and "held at the quality floor" in dial.last_reading.action
    traffic(ledger, clock, 90, strong_share=0.0)  # the last hour all cheap: $0.6/h
    change = dial.update()
    assert change is not None and change.direction == "stronger"


def test_a_router_cheaper_than_the_floor_is_moved_to_it_at_once() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.9)
    dial = spend_dial(ledger, clock, router, floor_threshold=0.6)
    assert router.threshold == pytest.approx(0.6)
    (change,) = dial.changes
    assert change.limit == "floor" and change.previous == 0.9 and "quality floor" in change.reason


def test_nothing_moves_within_the_tolerance_or_without_enough_requests() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.5)
    dial = spend_dial(ledger, clock, router, min_requests=50)
    traffic(ledger, clock, 20, strong_share=1.0)
    assert dial.update() is None and "waiting" in dial.last_reading.action
    clock, ledger, router = Clock(), CostLedger(), make_router(0.5)
    dial = spend_dial(ledger, clock, router)
    # 60 requests/h, 9 strong: 0.9 + 0.51 = $1.41/h; target $1.41 ± 5%
    dial.config = dial.config.model_copy(update={"target": SpendTarget(per_hour=1.45)})
    traffic(ledger, clock, 60, strong_share=0.15)
    assert dial.update() is None and router.threshold == 0.5 and not dial.changes


def test_strong_share_and_escalation_band_move_the_right_way() -> None:
    clock, ledger, router = Clock(), CostLedger(), make_router(0.5)
    share = AdaptiveDial(
        router, ledger, target=StrongShareTarget(share=0.2), clock=clock,
        floor_threshold=0.9, check_every_s=0, min_requests=10,
    )  # fmt: skip
    traffic(ledger, clock, 50, strong_share=0.6)
    change = share.update()
    assert change is not None and change.direction == "cheaper" and change.measured == 0.6

    clock, ledger, router = Clock(), CostLedger(), make_router(0.5)
    band = AdaptiveDial(
        router, ledger, target=EscalationBand(low=0.05, high=0.15), clock=clock,
        floor_threshold=0.9, check_every_s=0, min_requests=10,
    )  # fmt: skip
    traffic(ledger, clock, 50, strong_share=0.0, escalated=True)  # every request sent up
    change = band.update()
    assert change is not None and change.direction == "stronger" and change.measured == 1.0
    clock.advance(minutes=10)
    traffic(ledger, clock, 50, strong_share=0.0)  # nothing sent up: room to be cheaper
    change = band.update()
    assert change is not None and change.direction == "cheaper"


def test_changes_are_journalled_beside_a_file_ledger_and_shown_by_monitor(tmp_path: Path) -> None:
    path = tmp_path / "costs.jsonl"
    clock, router = Clock(), make_router(0.5)
    with CostLedger(path) as ledger:
        dial = spend_dial(ledger, clock, router, min_interval_s=0)
        traffic(ledger, clock, 60, strong_share=0.8)
        first = dial.update()
        traffic(ledger, clock, 60, strong_share=0.8)
        second = dial.update()
    assert first is not None and second is not None
    journal = dial_journal_path(path)
    assert journal == tmp_path / "costs.dial.jsonl" and dial.journal is not None
    assert DialJournal(journal).read() == [first, second]

    runner = CliRunner()
    result = runner.invoke(app, ["monitor", str(path), "--json"])
    assert result.exit_code in (0, 2), result.output
    shown = json.loads(result.output)["dial_changes"]
    assert [c["threshold"] for c in shown] == [first.threshold, second.threshold]
    assert shown[0]["reason"] == first.reason
    table = runner.invoke(app, ["monitor", str(path)], env={"COLUMNS": "160"})
    assert "dial changes" in table.output and "0.5 -> 0.55" in table.output
    assert "above the target" in table.output


def test_a_damaged_journal_line_is_named(tmp_path: Path) -> None:
    journal = tmp_path / "costs.dial.jsonl"
    journal.write_text('{"at": "2026-11-02T09:00:00Z"}\n', encoding="utf-8")
    with pytest.raises(LedgerFormatError, match=r"costs.dial.jsonl:1: .*previous"):
        DialJournal(journal).read()


def test_the_quality_floor_comes_from_cross_validation_and_leaves_the_router_alone() -> None:
    exemplars = [
        Exemplar(text=f"easy question number {i}", scores={"small": 1.0, "large": 1.0})
        for i in range(15)
    ] + [
        Exemplar(text=f"hard proof problem {i}", scores={"small": float(i % 3 == 0), "large": 1.0})
        for i in range(15)
    ]
    router = ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder()
    )
    before = router.threshold, router.calibration
    loose, strict = quality_floor(router, 0.6), quality_floor(router, 0.99)
    assert loose >= strict  # a lower quality floor allows a cheaper dial
    assert (router.threshold, router.calibration) == before
    dial = AdaptiveDial(router, CostLedger(), target=SpendTarget(per_hour=1), floor_quality=0.99)
    assert dial.floor == pytest.approx(strict)
    with pytest.raises(RouterConfigError, match="floor_threshold"):
        AdaptiveDial(make_router(), CostLedger(), target=SpendTarget(per_hour=1))


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(RouterConfigError, match="exactly one"):
        AdaptiveDial(make_router(), CostLedger())
    with pytest.raises(RouterConfigError, match="max_step"):
        AdaptiveDial(make_router(), CostLedger(), target=SpendTarget(per_hour=1), max_step=2)
    with pytest.raises(ValueError, match="below high"):
        EscalationBand(low=0.3, high=0.1)
    config = AdaptiveDialConfig.model_validate(
        {"target": {"kind": "strong_share", "share": 0.4}, "floor_threshold": 0.7}
    )
    dial = AdaptiveDial(make_router(), CostLedger(), config=config)
    assert dial.status()["target"] == "strong share 40% ± 2 points"


def test_the_timer_starts_and_stops() -> None:
    dial = spend_dial(CostLedger(), Clock(), make_router())
    with dial:
        assert dial._thread is not None and dial._thread.is_alive()
    assert dial._thread is None


def test_a_window_reads_only_its_recent_rows_with_the_figures_of_a_whole_read(
    tmp_path: Path,
) -> None:
    """window_stats reads from REQUEST_SPAN before the window (by the timestamp index)
    and gives what a read of the whole ledger gives, requests astride the start too."""
    import numpy as np

    from langroute import monitoring
    from langroute.costs.analytics import open_session, read_calls

    ledger = CostLedger(tmp_path / "costs.db")
    end = START + timedelta(hours=6)
    start = end - timedelta(minutes=15)
    for minute in range(0, 360, 3):  # a request every 3 minutes for 6 hours
        at = START + timedelta(minutes=minute)
        ledger.record(LedgerRecord(route="small", cost=0.01, run_id=f"r{minute}", timestamp=at))
    # began before the window, escalated inside it: not one of the window's requests
    ledger.record(
        LedgerRecord(
            route="small", cost=0.5, run_id="astride", timestamp=start - timedelta(minutes=5)
        )
    )
    ledger.record(
        LedgerRecord(
            route="large",
            cost=0.5,
            run_id="astride",
            timestamp=start + timedelta(minutes=1),
            escalated=True,
        )
    )
    ledger.close()

    ledger = CostLedger(tmp_path / "costs.db")
    stats = monitoring.window_stats(ledger, start, end)
    whole = monitoring._read_requests(ledger, None)
    inside = (whole.time >= monitoring.micros(start)) & (whole.time < monitoring.micros(end))
    folded = monitoring._fold(whole, np.zeros(len(whole), dtype=np.int64), inside)
    assert stats == folded[(None, 0)].stats(start, end, None)
    assert stats.requests == 5 and stats.cost == pytest.approx(0.05)
    with open_session(ledger, copy=False) as session:
        since = start - monitoring.REQUEST_SPAN
        recent = read_calls(session, since=since)
    assert len(recent.time) == 25 + 2  # the last 75 minutes, not the 6 hours
    assert recent.time.min() >= monitoring.micros(since)
