"""The dashboard's JSON API: its numbers against the CLI's and the records'.

The page reads these endpoints; ``test_dashboard_browser.py`` checks the page itself.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from langroute.costs import CostLedger, LedgerRecord
from langroute.costs.summary import _percentile
from langroute.dashboard import Dashboard, DashboardSettings, create_dashboard_app
from langroute.dashboard.rollup import LATENCY_RELATIVE_ERROR

from .test_cli import REPO, assert_clean, run_cli
from .test_ledger_analytics import START, generated_records, store

pytest.importorskip("fastapi", reason="the dashboard needs the dashboard extra (FastAPI)")
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def records() -> list[LedgerRecord]:
    return generated_records(400, seed=11)


_OPEN: list[Dashboard] = []


def close_dashboards() -> None:
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture(autouse=True)
def _close_dashboards() -> Any:
    yield
    close_dashboards()


def client_for(ledger: Any, **options: Any) -> TestClient:
    dashboard = Dashboard(ledger, **options)
    _OPEN.append(dashboard)
    return TestClient(create_dashboard_app(dashboard))


def get(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get("/api/" + path)
    assert response.status_code == 200, response.text
    return response.json()


SUM_TOLERANCE = 1e-9
"""Relative tolerance between the page's sums and the command line's.

The page adds costs in SQL (doubles, in row order, per window and then over windows);
``report`` and ``monitor`` add the same values exactly and round once
(:func:`math.fsum`). Each addition may round by 1e-16 of the running total, so the two
differ in the last digits (1e-13 relative at most on these ledgers); 1e-9 is far
tighter than any number the page shows (costs to 1e-6 USD, rates to 0.1 %) and far
looser than that rounding. Latency percentiles come from the rollup's histogram:
``LATENCY_RELATIVE_ERROR`` (0.1 %).
"""


def assert_same_numbers(shown: Any, expected: Any, where: str = "") -> None:
    """``shown`` (the page's JSON) equals ``expected`` (the CLI's), floats to rounding."""
    if isinstance(expected, dict):
        assert isinstance(shown, dict) and shown.keys() == expected.keys(), where
        for key in expected:
            assert_same_numbers(shown[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(shown, list) and len(shown) == len(expected), where
        for index, (one, other) in enumerate(zip(shown, expected, strict=True)):
            assert_same_numbers(one, other, f"{where}[{index}]")
    elif isinstance(expected, float) and isinstance(shown, (int, float)):
        tolerance = LATENCY_RELATIVE_ERROR if "latency" in where else SUM_TOLERANCE
        assert shown == pytest.approx(expected, rel=tolerance, abs=1e-12), where
    else:
        assert shown == expected, where


def cli_json(*args: str, cwd: Path) -> Any:
    result = run_cli(*args, "--json", cwd=cwd)
    assert result.returncode in (0, 2), result.stderr.decode()  # 2: monitor's alarms
    return json.loads(assert_clean(result))


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledger ``langroute demo`` writes (local stand-in models)."""
    folder = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--output", str(folder), cwd=folder)
    output = assert_clean(result)
    assert result.returncode == 0, result.stderr.decode()
    assert f"langroute dashboard {folder / 'ledger.db'}" in output  # the demo's last hint
    return folder / "ledger.db"


@pytest.mark.parametrize("kind", ["demo", ".db", ".jsonl"])
def test_totals_and_timeline_equal_report_and_monitor_json(
    kind: str, demo_ledger: Path, records, tmp_path: Path
) -> None:
    path = demo_ledger if kind == "demo" else tmp_path / f"ledger{kind}"
    if kind != "demo":
        store(records, path).close()
    if kind == ".db":  # an adaptive dial's journal beside the ledger: monitor lists it
        from langroute.router.dial_targets import DialChange, DialJournal, dial_journal_path

        DialJournal(dial_journal_path(path)).append(
            DialChange(at=START, previous=0.6, threshold=0.65, target="spend", reason="<b>up</b>")
        )
    client = client_for(path)
    summary = get(client, "summary")
    assert_same_numbers(summary["report"], cli_json("report", str(path), cwd=tmp_path))
    timeline = get(client, "timeline")
    assert_same_numbers(timeline["monitor"], cli_json("monitor", str(path), cwd=tmp_path))
    assert summary["report"]["calls"] > 0 and timeline["monitor"]["windows"]
    assert len(timeline["monitor"]["dial_changes"]) == (kind == ".db")


def test_postgres_totals_equal_report_json(postgres_url: str, records, tmp_path: Path) -> None:
    store(records, postgres_url).close()
    client = client_for(postgres_url)
    try:
        reported = cli_json("report", postgres_url, cwd=tmp_path)
        assert_same_numbers(get(client, "summary")["report"], reported)
        monitored = cli_json("monitor", postgres_url, cwd=tmp_path)
        assert_same_numbers(get(client, "timeline")["monitor"], monitored)
        _check_panels(client, records)
        page = get(client, "decisions?route=large&limit=5")
        assert page["total"] == sum(r.route == "large" for r in _serving(records))
    finally:
        close_dashboards()  # before the test database is dropped


def _serving(records: list[LedgerRecord]) -> list[LedgerRecord]:
    return [r for r in records if not r.is_feedback and not r.labelling]


def _latest_verdicts(records: list[LedgerRecord]) -> dict[str, str]:
    latest: dict[str, tuple[datetime, int, str]] = {}
    for order, record in enumerate(records):
        if record.is_feedback and record.feedback_for and record.verdict:
            seen = latest.get(record.feedback_for)
            if seen is None or (record.timestamp, order) >= seen[:2]:
                latest[record.feedback_for] = (record.timestamp, order, record.verdict)
    return {target: verdict for target, (_, _, verdict) in latest.items()}


def _check_panels(client: TestClient, records: list[LedgerRecord]) -> None:
    """The panels' SQL against the same numbers computed from the records in Python."""
    serving = _serving(records)
    latency = get(client, "latency")
    for row in latency["latency"]:
        values = [
            r.latency_ms
            for r in serving
            if r.latency_ms is not None and (row["route"] is None or r.route == row["route"])
        ]
        assert row["calls"] == len(values)
        for q in (50, 95, 99):
            exact = _percentile(values, q)
            assert row[f"p{q}_ms"] == pytest.approx(exact, rel=LATENCY_RELATIVE_ERROR)
    for row in latency["errors"]:
        calls = [r for r in serving if r.route == row["route"] and not r.overhead]
        assert (row["calls"], row["errors"]) == (
            len(calls),
            sum(r.error is not None for r in calls),
        )

    requests: dict[str, list[LedgerRecord]] = {}
    for order, record in enumerate(serving):
        if not record.overhead:
            requests.setdefault(record.run_id or f"solo-{order}", []).append(record)
    failovers: dict[str | None, list[int]] = {}
    for calls in requests.values():
        failed = [r for r in calls if r.error is not None]
        if failed:
            answered = any(r.error is None and r.accepted is not False for r in calls)
            counts = failovers.setdefault(failed[0].route, [0, 0])
            counts[0 if answered else 1] += 1
    shown_failovers = {
        row["route"]: [row["failed_over"], row["unanswered"]]
        for row in latency["errors"]
        if row["failed_over"] or row["unanswered"]
    }
    assert shown_failovers == failovers and failovers

    verdicts = _latest_verdicts(records)
    by_route: dict[str, list[str]] = {}
    for record in serving:
        if record.record_id in verdicts:
            by_route.setdefault(record.route or "", []).append(verdicts[record.record_id])
    quality = {row["route"]: row for row in get(client, "quality")["routes"]}
    assert set(quality) == set(by_route)
    for route, seen in by_route.items():
        assert quality[route]["judged"] == len(seen)
        assert quality[route]["good"] == seen.count("good")

    segments = get(client, "segments?key=tenant")
    spend: dict[str, float] = {}
    for record in serving:
        tenant = record.metadata.get("tenant")
        name = "(none)" if tenant is None else str(tenant)
        if record.cost is not None:
            spend[name] = spend.get(name, 0.0) + record.cost
    shown = {row["segment"]: row["cost"] for row in segments["segments"]}
    assert shown.keys() == spend.keys()
    for name, cost in spend.items():
        assert shown[name] == pytest.approx(cost)
    costs = [row["cost"] for row in segments["segments"]]
    assert costs == sorted(costs, reverse=True)  # the biggest spenders first


def test_panels_equal_the_records(records, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store(records, path).close()
    _check_panels(client_for(path), records)


def test_the_decision_log_filters_and_pages(records, tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    store(records, path).close()
    client = client_for(path)
    serving = _serving(records)
    newest_first = list(reversed(serving))

    def ids(rows: list[dict[str, Any]]) -> list[str]:
        return [row["record_id"] for row in rows]

    page = get(client, "decisions?limit=20")
    assert page["total"] == len(serving)
    assert ids(page["rows"]) == [r.record_id for r in newest_first[:20]]
    second = get(client, "decisions?limit=20&offset=20")
    assert ids(second["rows"]) == [r.record_id for r in newest_first[20:40]]
    past_the_end = get(client, "decisions?offset=" + "9" * 40)  # a client's number
    assert past_the_end["rows"] == [] and past_the_end["total"] == len(serving)
    first = page["rows"][0]
    record = newest_first[0]
    assert (first["confidence"], first["route"], first["reason"]) == (
        record.confidence,
        record.route,
        record.reason,
    )

    cases = {
        "route=medium": lambda r: r.route == "medium",
        "reason=out_of_distribution": lambda r: r.reason == "out_of_distribution",
        "key=tenant&segment=c d": lambda r: r.metadata.get("tenant") == "c d",
        "key=tenant&segment=7": lambda r: r.metadata.get("tenant") == 7,
        "key=tenant&segment=(none)": lambda r: r.metadata.get("tenant") is None,
        "since=2026-11-01T01:00&until=2026-11-01T02:30": lambda r: (
            START + timedelta(hours=1) <= r.timestamp < START + timedelta(hours=2.5)
        ),
        "route=large&reason=vote&since=2026-11-01T03:00": lambda r: (
            r.route == "large" and r.reason == "vote" and r.timestamp >= START + timedelta(hours=3)
        ),
    }
    for query, keep in cases.items():
        expected = [r.record_id for r in newest_first if keep(r)]
        assert expected, query
        shown = get(client, f"decisions?{query}&limit=500")
        assert (shown["total"], ids(shown["rows"])) == (len(expected), expected), query
    # a value with SQL in it is a value, not SQL
    assert get(client, "decisions?route=x' OR '1'='1")["total"] == 0
    bad = client.get("/api/decisions?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["error"]
    assert client.get("/api/segments?key=nope").status_code == 400


def test_the_why_card_shows_the_request_and_the_nearest_exemplars(tmp_path: Path) -> None:
    from langroute import Exemplar, ExemplarRouter
    from langroute.embedders import HashingEmbedder

    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="say hello to my friend", route="small"),
            Exemplar(text="prove the theorem about primes", route="large"),
        ],
        embedder=HashingEmbedder(),
    )
    router.learn("translate this poem into Latin verse", "small", good=False, source="cascade")
    ledger = CostLedger(tmp_path / "ledger.db", auto_price=False)
    first = ledger.record(
        LedgerRecord(run_id="r1", route="small", model="m", error="RateLimitError: 429")
    )
    answer = ledger.record(
        LedgerRecord(
            run_id="r1",
            route="large",
            model="M",
            escalated=True,
            reason="vote",
            confidence=0.8,
            query="prove the theorem about primes, please",
            metadata={"stage": "knn"},
            shadow_router="candidate",
            shadow_route="small",
            shadow_reason="vote",
        )
    )
    ledger.close()
    client = client_for(tmp_path / "ledger.db", router=router)
    why = get(client, f"why/{answer.record_id}")
    assert why["record"]["query"] == "prove the theorem about primes, please"
    assert [row["record_id"] for row in why["request"]] == [first.record_id, answer.record_id]
    assert why["neighbours"]["source"] == "router"
    assert why["neighbours"]["items"][0]["text"] == "prove the theorem about primes"
    assert why["shadow"] == {
        "router": "candidate",
        "route": "small",
        "reason": "vote",
        "confidence": None,
        "error": None,
    }
    no_query = get(client, f"why/{first.record_id}")
    assert no_query["neighbours"]["items"] == [] and "no query" in no_query["neighbours"]["note"]
    assert no_query["shadow"] is None
    assert client.get("/api/why/nope").status_code == 404
    exemplars = get(client, "exemplars")
    assert exemplars["counts"] == {"small": 1, "large": 2}
    (learned,) = exemplars["sources"]["cascade"]
    assert learned["route"] == "large"
    assert learned["provenance"]["source"] == "cascade"
    assert learned["provenance"]["outcomes"] == {"small": [0, 1]}
    assert get(client_for(tmp_path / "ledger.db"), "exemplars")["router"] is False


def test_new_rows_show_after_the_refresh_interval(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = CostLedger(path)
    ledger.record(LedgerRecord(route="small", cost=1.0, baseline_cost=2.0))
    ledger.flush()
    with Dashboard(path, settings=DashboardSettings(refresh_seconds=0)) as dashboard:
        assert dashboard.summary()["report"]["calls"] == 1
        ledger.record(LedgerRecord(route="large", cost=2.0, baseline_cost=2.0))
        ledger.flush()
        assert dashboard.summary()["report"]["calls"] == 2
        assert dashboard.summary()["report"]["savings"] == 1.0
    ledger.close()


def test_budget_burn_per_api_key(tmp_path: Path) -> None:
    from langroute.serving.keys import add_api_key, load_api_keys

    keys = tmp_path / "keys.jsonl"
    add_api_key(keys, "team-a", budget=4.0, period="total")
    add_api_key(keys, "team-b", budget=10.0, period="day")
    ledger = CostLedger(tmp_path / "ledger.db")
    now = datetime.now(timezone.utc)
    for key, cost, when in [
        ("team-a", 1.0, now),
        ("team-a", 2.0, now - timedelta(days=40)),
        ("team-b", 5.0, now),
        ("team-b", 7.0, now - timedelta(days=2)),  # an earlier day's spend
    ]:
        ledger.record(
            LedgerRecord(route="small", cost=cost, timestamp=when, metadata={"api_key": key})
        )
    ledger.close()
    client = client_for(tmp_path / "ledger.db", api_keys=lambda: load_api_keys(keys).keys)
    budgets = {row["key"]: row for row in get(client, "segments")["budgets"]}
    assert budgets["team-a"]["spent"] == 3.0 and budgets["team-a"]["burn"] == 0.75
    assert budgets["team-b"]["spent"] == 5.0 and budgets["team-b"]["burn"] == 0.5


def test_the_page_and_its_assets_are_served_from_the_package(tmp_path: Path) -> None:
    client = client_for(CostLedger())
    page = client.get("/")
    assert page.status_code == 200 and "static/dashboard.js" in page.text
    script = client.get("/static/dashboard.js").text
    assert "innerHTML" not in script  # data goes in with textContent only
    assert "http://" not in page.text.replace("http://www.w3.org", "")  # nothing from a CDN
    assert "https://" not in page.text + script
    empty = get(client, "summary")
    assert empty["report"]["calls"] == 0 and get(client, "timeline")["monitor"]["windows"] == []


def test_the_dashboard_command_prints_its_url_and_serves(tmp_path: Path, records) -> None:
    import urllib.request

    path = tmp_path / "ledger.db"
    store(records, path).close()
    missing = run_cli("dashboard", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert missing.returncode == 1 and b"no ledger at" in missing.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "langroute.cli.app", "dashboard", str(path), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split()[1]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "api/summary", timeout=30) as response:
                    body = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert body["report"]["requests"] == cli_json("report", str(path), cwd=tmp_path)["requests"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_costs_are_finite_in_the_json(records, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store(records, path).close()
    client = client_for(path)
    for name in ("summary", "timeline", "latency", "segments", "quality"):
        text = client.get("/api/" + name).text
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text, parse_constant=lambda c: math.nan)


def test_the_benchmark_script_runs_on_a_small_ledger(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    script = REPO / "benchmarks" / "dashboard.py"
    done = subprocess.run(
        [sys.executable, str(script), "--rows", "3000", "--tenants", "20"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["ledger_rows"] == 3000
    assert set(result["warm_page"]["calls"]) >= {"summary", "timeline", "latency", "decisions"}
    assert result["page_after_append"]["calls"]["summary"] >= 0


def test_a_malformed_ledger_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    store([LedgerRecord(route="small", cost=1.0)], path).close()
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"route": "small", "cost": -1}\n{"route": "small"}\n')
    response = client_for(path).get("/api/summary")
    assert response.status_code == 500
    assert f"{path}:2" in response.json()["error"]


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from langroute.cli.app import app

    path = tmp_path / "ledger.jsonl"
    path.touch()
    dashboard = Dashboard(path)
    _OPEN.append(dashboard)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    with pytest.raises(ImportError, match=r"langroute\[dashboard\]"):
        create_dashboard_app(dashboard)
    result = CliRunner().invoke(app, ["dashboard", str(path)])
    assert result.exit_code == 1
    assert "pip install 'langroute[dashboard]'" in result.output
