"""Ledger analytics in the database: the same numbers as the in-Python summary and monitor.

One generated ledger (requests of several calls, escalations, errors, rejected cascade
attempts, judge calls, labelling calls, unmeasured and unpriced calls, feedback with
ties, segments of every JSON type, hours of traffic) is stored in each kind of sink;
:func:`ledger_summary` and :func:`monitor_ledger` on the sink must equal
:func:`summarize` and :func:`monitor` on its records, field for field (floats exactly).
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from langroute.costs import CostLedger, JSONLSink, LedgerRecord, SQLiteSink, summarize
from langroute.costs.analytics import latest_verdicts, ledger_summary, request_groups
from langroute.costs.report import report_json
from langroute.monitoring import MonitorThresholds, monitor, monitor_ledger

from .test_cli import assert_clean, run_cli

START = datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc)
TENANTS: list[object] = ["a", "b", "c d", 7, 2.5, True, None, {"x": 1}]


def generated_records(count: int = 600, seed: int = 3) -> list[LedgerRecord]:
    """A ledger of ``count`` requests over five hours, with every kind of row."""
    rng = random.Random(seed)
    records: list[LedgerRecord] = []
    for number in range(count):
        when = START + timedelta(seconds=rng.uniform(0, 5 * 3600))
        tenant = rng.choice(TENANTS)
        metadata: dict[str, object] = {} if tenant is None else {"tenant": tenant}
        if rng.random() < 0.9:
            metadata["max_similarity"] = rng.choice([round(rng.random(), 3), 1, "high"])
        run_id = None if rng.random() < 0.15 else f"run-{number % (count - 7)}"
        reason = rng.choice(["vote", "vote", "low_confidence", "out_of_distribution"])
        labelling = rng.random() < 0.05
        if labelling:
            metadata["purpose"] = "labelling"
        attempts = rng.choice([1, 1, 1, 2, 3])
        for tier in range(attempts):
            last = tier == attempts - 1
            route = ["small", "medium", "large"][min(tier + rng.randint(0, 1), 2)]
            unmeasured = rng.random() < 0.03
            meta = {**metadata, **({"unmeasured": True} if unmeasured else {})}
            cost = None if rng.random() < 0.05 else rng.uniform(0, 0.01)
            records.append(
                LedgerRecord(
                    timestamp=when + timedelta(milliseconds=tier * 150),
                    run_id=run_id,
                    kind="cascade" if attempts > 1 else "route",
                    route=route,
                    model=f"{route}-model-{rng.randint(1, 2)}",
                    input_tokens=rng.randint(0, 2000),
                    output_tokens=rng.randint(0, 500),
                    cached_tokens=rng.randint(0, 100),
                    cost=None if unmeasured else cost,
                    baseline_model=rng.choice(["gpt-4o", "gpt-4o", None]),
                    baseline_cost=None if rng.random() < 0.1 else rng.uniform(0.005, 0.02),
                    latency_ms=None if rng.random() < 0.1 else rng.lognormvariate(6, 0.5),
                    escalated=tier > 0,
                    escalated_from="small" if tier > 0 else None,
                    error="RateLimitError: 429" if not last and rng.random() < 0.5 else None,
                    reason=reason,
                    confidence=rng.random(),
                    tier=tier,
                    accepted=(last or rng.random() < 0.2) if attempts > 1 else None,
                    metadata=meta,
                )
            )
        if rng.random() < 0.1:  # an LLM judge's call, counted against the request
            records.append(
                LedgerRecord(
                    timestamp=when + timedelta(seconds=1),
                    run_id=run_id,
                    route="judge",
                    model="judge-model",
                    cost=rng.uniform(0, 0.001),
                    metadata={**metadata, "role": "judge"},
                )
            )
    # verdicts: some calls judged several times, some at the same instant, a dangling one
    calls = [r for r in records if r.route != "judge"]
    for target in rng.sample(calls, len(calls) // 4):
        for _ in range(rng.choice([1, 1, 2, 3])):
            same_time = rng.random() < 0.3
            records.append(
                LedgerRecord(
                    timestamp=START + timedelta(hours=6 if same_time else rng.uniform(0, 9)),
                    run_id=target.run_id,
                    kind="feedback",
                    route=target.route,
                    feedback_for=target.record_id,
                    verdict=rng.choice(["good", "bad"]),
                    metadata=dict(target.metadata),
                )
            )
    records.append(LedgerRecord(kind="feedback", feedback_for="no-such-call", verdict="bad"))
    return records


def store(records: list[LedgerRecord], target: object) -> CostLedger:
    ledger = CostLedger(target, auto_price=False)
    for record in records:
        ledger.record(record)
    ledger.flush()
    return ledger


@pytest.fixture(scope="module")
def records() -> list[LedgerRecord]:
    return generated_records()


@pytest.fixture(params=["memory", ".db", ".jsonl"])
def ledger(request: pytest.FixtureRequest, records, tmp_path: Path) -> CostLedger:
    kind = request.param
    return store(records, None if kind == "memory" else tmp_path / f"ledger{kind}")


def dump(model) -> str:
    """Exact JSON (floats by repr), so 0.1 + 0.2 != 0.3 shows."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True)


MONITOR_CASES = [
    {"window": timedelta(hours=1)},
    {"window": timedelta(minutes=20), "segment_key": "tenant"},
    {"window": timedelta(hours=2), "segment_key": "metadata.tenant"},
    {"window": timedelta(minutes=45), "segment_key": "absent"},
    {
        "window": timedelta(minutes=30),
        "segment_key": "tenant",
        "baseline": (START + timedelta(minutes=10), START + timedelta(minutes=100)),
        "thresholds": MonitorThresholds(min_requests=2, min_feedback=1, route_shift_points=0.05),
    },
]


def test_summary_in_the_database_equals_summarize(ledger: CostLedger, records) -> None:
    expected = summarize(records)
    assert expected.labelling is not None and expected.savings is not None  # all parts ran
    assert dump(ledger_summary(ledger)) == dump(expected)
    assert dump(ledger.summary()) == dump(expected)
    order = ["large", "nowhere", "small"]
    assert dump(ledger_summary(ledger, order=order)) == dump(summarize(records, order=order))


@pytest.mark.parametrize("case", range(len(MONITOR_CASES)))
def test_monitor_in_the_database_equals_monitor(ledger: CostLedger, records, case: int) -> None:
    options = MONITOR_CASES[case]
    expected = monitor(records, **options)
    assert expected.windows and any(w.feedback for w in expected.windows)
    assert dump(monitor_ledger(ledger, **options)) == dump(expected)


def test_monitor_with_many_segments_equals_monitor(tmp_path: Path) -> None:
    rows = [
        LedgerRecord(
            run_id=f"r{i}",
            route="small" if i % 3 else "large",
            reason="vote",
            timestamp=START + timedelta(minutes=i % 180),
            metadata={"tenant": f"t{i % 500}"},
        )
        for i in range(3000)
    ]
    ledger = store(rows, tmp_path / "segments.db")
    options = {"segment_key": "tenant", "thresholds": MonitorThresholds(min_requests=1)}
    report = monitor_ledger(ledger, **options)
    assert len(report.baselines) == 500
    assert dump(report) == dump(monitor(rows, **options))


def test_a_segment_key_that_json_paths_cannot_name(tmp_path: Path) -> None:
    rows = [
        LedgerRecord(run_id=str(i), route="small", metadata={'we"ird\\key': i % 2})
        for i in range(10)
    ]
    ledger = store(rows, tmp_path / "quoted.db")
    report = monitor_ledger(ledger, segment_key='we"ird\\key')
    assert [w.segment for w in report.windows] == ["0", "1"]
    assert dump(report) == dump(monitor(rows, segment_key='we"ird\\key'))


def test_empty_and_missing_ledgers(tmp_path: Path) -> None:
    for path in (tmp_path / "none.db", tmp_path / "none.jsonl"):
        ledger = CostLedger(path)
        assert dump(ledger_summary(ledger)) == dump(summarize([]))
        assert monitor_ledger(ledger).windows == []
    with pytest.raises(ValueError, match="no request in the baseline"):
        monitor_ledger(
            store(generated_records(20), tmp_path / "some.db"),
            baseline=(START - timedelta(days=2), START - timedelta(days=1)),
        )


def test_requests_come_whole_and_verdicts_are_the_latest(ledger: CostLedger, records) -> None:
    groups = list(request_groups(ledger))
    calls = [r for r in records if not r.is_feedback]
    assert sum(len(group) for group in groups) == len(calls)
    with_run = [group[0].run_id for group in groups if group[0].run_id is not None]
    assert len(with_run) == len(set(with_run))  # each request once, whole
    verdicts = latest_verdicts(ledger)
    feedback = sorted((r for r in records if r.is_feedback), key=lambda r: r.timestamp)
    expected = {r.feedback_for: r.verdict for r in feedback}
    assert {target: seen[2] for target, seen in verdicts.items()} == expected


def test_metadata_python_wrote_with_nan_is_read(tmp_path: Path) -> None:
    rows = [
        LedgerRecord(run_id="1", route="small", cost=0.5, metadata={"max_similarity": 0.5}),
        LedgerRecord(run_id="2", route="small", cost=0.25, metadata={"x": float("nan")}),
    ]
    ledger = store(rows, tmp_path / "nan.db")
    assert json.loads(SQLiteSink(ledger.sink.path).read()[1].model_dump_json())["metadata"]
    assert dump(ledger_summary(ledger)) == dump(summarize(rows))
    assert monitor_ledger(ledger).windows[0].mean_best_similarity == 0.5


def test_a_bad_jsonl_line_is_named_by_the_one_pass_summary(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    store(generated_records(5), path)
    with path.open("a") as handle:
        handle.write('{"timestamp": "2026-11-01T00:00:00Z", "input_tokens": -1, "metadata": {}}\n')
    lines = path.read_text().count("\n")
    with pytest.raises(Exception, match=rf"bad\.jsonl:{lines}: field 'input_tokens'"):
        ledger_summary(CostLedger(path))


def test_an_older_sqlite_ledger_without_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, "
        "framework TEXT NOT NULL, run_id TEXT, kind TEXT NOT NULL, route TEXT, model TEXT, "
        "input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_tokens "
        "INTEGER NOT NULL, cost REAL, baseline_model TEXT, baseline_cost REAL, latency_ms "
        "REAL, escalated INTEGER NOT NULL, escalated_from TEXT, error TEXT, reason TEXT, "
        "confidence REAL, tier INTEGER, accepted INTEGER, metadata TEXT NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO ledger (timestamp, framework, run_id, kind, route, input_tokens, "
        "output_tokens, cached_tokens, cost, escalated, metadata) "
        "VALUES (?, 'core', ?, 'route', ?, 10, 5, 0, ?, 0, '')",
        [
            ("2026-11-01T00:00:00+00:00", "a", "small", 0.5),
            ("2026-11-01T00:10:00+00:00", None, "large", 1.0),
        ],
    )
    conn.commit()
    conn.close()
    sink = SQLiteSink(path)
    records = sink.read()
    assert dump(ledger_summary(sink)) == dump(summarize(records))
    assert dump(monitor_ledger(sink)) == dump(monitor(records))


def test_report_and_monitor_json_from_the_cli_equal_the_python_path(
    tmp_path: Path, records
) -> None:
    for suffix in (".db", ".jsonl"):
        path = tmp_path / f"cli{suffix}"
        store(records, path)
        shown = assert_clean(run_cli("report", str(path), "--json", cwd=tmp_path))
        assert json.loads(shown) == json.loads(report_json(summarize(records)))
        result = run_cli(
            "monitor", str(path), "--json", "--segment", "tenant", "--window", "30m", cwd=tmp_path
        )
        expected = monitor(records, window=timedelta(minutes=30), segment_key="tenant")
        shown_report = json.loads(assert_clean(result))
        assert shown_report.pop("dial_changes") == []  # no dial journal: none to show
        assert shown_report == json.loads(expected.model_dump_json())


def test_postgres_analytics_equal_the_python_path(postgres_url: str, records) -> None:
    ledger = store(records, postgres_url)
    try:
        assert dump(ledger_summary(ledger)) == dump(summarize(records))
        for options in MONITOR_CASES:
            assert dump(monitor_ledger(ledger, **options)) == dump(monitor(records, **options))
    finally:
        ledger.close()


def test_jsonl_lookups_by_id_use_an_index_that_follows_appends(tmp_path: Path) -> None:
    path = tmp_path / "index.jsonl"
    ledger = store(generated_records(30), path)
    sink = ledger.sink
    assert isinstance(sink, JSONLSink)
    first = ledger.records()[3]
    assert ledger.get(first.record_id) == first
    later = ledger.record(LedgerRecord(route="small", run_id="later"))
    assert ledger.get(later.record_id) == later  # appended after the index was built
    assert sink.find("missing") is None
    path.write_text(later.model_dump_json() + "\n")  # rewritten in place: indexed again
    assert sink.find(first.record_id) is None
    assert sink.find(later.record_id) == later


@pytest.mark.parametrize(
    ("column", "value"),
    [("cost", -5.0), ("latency_ms", float("inf")), ("timestamp", "0001-01-01T00:00:00+05:00")],
)
def test_a_database_row_the_record_checks_refuse_is_refused_by_the_sql_path(
    tmp_path, column, value
):
    import sqlite3

    from langroute.costs import CostLedger, LedgerFormatError, LedgerRecord
    from langroute.costs.analytics import ledger_summary

    path = tmp_path / "ledger.db"
    ledger = CostLedger(str(path))
    ledger.record(LedgerRecord(route="small", model="gpt-4o-mini", input_tokens=10))
    ledger.close()
    with sqlite3.connect(path) as conn:  # another tool wrote this row
        conn.execute(f"UPDATE ledger SET {column} = ?", (value,))
    with pytest.raises(LedgerFormatError, match="must be finite and not negative"):
        ledger_summary(CostLedger.open(str(path), validate=False))


def _plain_percentile(values: list[float], q: float) -> float | None:
    """numpy's default percentile, written out (linear between the closest ranks)."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low, high = ordered[math.floor(at)], ordered[math.ceil(at)]
    return low + (high - low) * (at - math.floor(at))


def _plain_requests(calls: list[dict]) -> dict[object, list[dict]]:
    """The calls of each request: those sharing a run_id; a call without one alone."""
    requests: dict[object, list[dict]] = {}
    for number, call in enumerate(calls):
        key = call["run_id"] if call["run_id"] is not None else ("alone", number)
        requests.setdefault(key, []).append(call)
    return requests


def test_report_and_monitor_json_equal_a_plain_python_computation(tmp_path: Path, records) -> None:
    """The CLI's numbers, recomputed from the stored rows without the library's helpers."""
    path = tmp_path / "plain.db"
    store(records, path)
    rows = [json.loads(record.model_dump_json()) for record in records]
    calls = [row for row in rows if row["kind"] != "feedback"]
    serving = [row for row in calls if row["metadata"].get("purpose") != "labelling"]

    report = json.loads(assert_clean(run_cli("report", str(path), "--json", cwd=tmp_path)))
    assert report["calls"] == len(serving)
    assert report["requests"] == len(_plain_requests(serving))
    assert report["cost"] == math.fsum(row["cost"] for row in serving if row["cost"] is not None)
    latencies = [row["latency_ms"] for row in serving if row["latency_ms"] is not None]
    assert report["latency_p50_ms"] == _plain_percentile(latencies, 50)
    assert report["latency_p95_ms"] == _plain_percentile(latencies, 95)
    for route in report["routes"]:
        mine = [row for row in serving if row["route"] == route["route"]]
        assert route["calls"] == len(mine)
        assert route["errors"] == sum(row["error"] is not None for row in mine)
        known = [row["cost"] for row in mine if row["cost"] is not None]
        assert route["cost"] == (math.fsum(known) if known else None)
        timed = [row["latency_ms"] for row in mine if row["latency_ms"] is not None]
        assert route["latency_p95_ms"] == _plain_percentile(timed, 95)
    baselines, compared_baselines, compared_costs = [], [], []
    for group in _plain_requests(serving).values():
        if any(row["metadata"].get("unmeasured") for row in group):
            continue
        known = [row["baseline_cost"] for row in group if row["baseline_cost"] is not None]
        if known:
            baselines.append(max(known))
            if all(row["cost"] is not None for row in group):
                compared_baselines.append(max(known))
                compared_costs += [row["cost"] for row in group]
    assert report["baseline_cost"] == math.fsum(baselines)
    assert report["savings"] == math.fsum(compared_baselines) - math.fsum(compared_costs)
    assert report["labelling"]["calls"] == len(calls) - len(serving)

    shown = run_cli("monitor", str(path), "--json", "--window", "1h", cwd=tmp_path)
    windows = json.loads(assert_clean(shown))["windows"]
    by_hour: dict[str, list[list[dict]]] = {}
    for group in _plain_requests(calls).values():
        first = min(datetime.fromisoformat(row["timestamp"]) for row in group)
        by_hour.setdefault(first.strftime("%Y-%m-%dT%H:00:00Z"), []).append(group)
    assert [w["start"] for w in windows] == sorted(by_hour)
    for window in windows:
        groups = by_hour[window["start"]]
        assert window["requests"] == len(groups)
        assert window["calls"] == sum(len(group) for group in groups)
        routes: dict[str, int] = {}
        for group in groups:
            answered = [
                row
                for row in group
                if row["error"] is None
                and row["accepted"] is not False
                and row["metadata"].get("role") not in ("judge", "router")
            ]
            if answered and answered[-1]["route"] is not None:
                routes[answered[-1]["route"]] = routes.get(answered[-1]["route"], 0) + 1
        assert window["route_shares"] == {r: n / len(groups) for r, n in sorted(routes.items())}
        unsure = ("low_confidence", "out_of_distribution")
        escalated = sum(
            any(row["escalated"] for row in group) or group[0]["reason"] in unsure
            for group in groups
        )
        assert window["escalation_rate"] == escalated / len(groups)
        spent = [
            row["cost"]
            for group in groups
            for row in group
            if row["cost"] is not None and row["metadata"].get("purpose") != "labelling"
        ]
        assert window["cost"] == (math.fsum(spent) if spent else None)


def test_postgres_reads_metadata_python_wrote_with_nan(postgres_url: str) -> None:
    rows = [
        LedgerRecord(run_id="1", route="small", cost=0.5, metadata={"max_similarity": 0.5}),
        LedgerRecord(
            run_id="2", route="small", cost=0.25, metadata={"x": float("nan"), "y": [float("inf")]}
        ),
    ]
    ledger = store(rows, postgres_url)
    try:
        assert dump(ledger_summary(ledger)) == dump(summarize(rows))
        assert monitor_ledger(ledger).windows[0].mean_best_similarity == 0.5
    finally:
        ledger.close()


def test_a_postgres_analytics_session_leaves_the_writer_free(postgres_url: str) -> None:
    import threading

    from langroute.costs.analytics import open_session

    ledger = store([LedgerRecord(run_id="1", route="small", cost=0.5)], postgres_url)
    try:
        with open_session(ledger) as session:
            writer = threading.Thread(
                target=ledger.sink.write, args=(LedgerRecord(route="large"),), daemon=True
            )
            writer.start()
            writer.join(20)
            assert not writer.is_alive()  # the write did not wait for the session
            assert list(session.query("SELECT COUNT(*) FROM langroute_calls")) == [(1,)]
        assert ledger.sink.count() == 2
    finally:
        ledger.close()


def test_timestamps_read_as_columns_equal_the_records(tmp_path: Path) -> None:
    """The vectorised reading of langroute's own form, and every other form read apart."""
    from langroute.costs.analytics import epoch_micros, micros, parse_timestamp

    stamps = [
        "2026-11-01T00:00:00.604800+00:00",
        "2026-11-01T00:00:00+00:00",
        "2024-02-29T23:59:59.000001+00:00",  # a leap day
        "1970-01-01T00:00:00+00:00",
        "2999-12-31T23:59:59.999999+00:00",
        "2026-11-01T05:00:00+05:00",  # another offset
        "2026-11-01T00:00:00Z",
        "2026-11-01T00:00:00.5+00:00",  # a short fraction
        "2026-11-01 00:00:00+00:00",
    ]
    expected = [micros(parse_timestamp(stamp)) for stamp in stamps]
    assert epoch_micros(stamps).tolist() == expected
    assert epoch_micros([stamp.encode() for stamp in stamps]).tolist() == expected
    with pytest.raises(ValueError, match="day value is outside"):
        epoch_micros(["2023-02-29T00:00:00+00:00"])  # no leap day that year: refused


def test_run_ids_group_exactly(tmp_path: Path) -> None:
    """Calls group by their exact run id: empty, NUL-ended, long, and ids whose hashes meet."""
    run_ids = ["", "\x01", "a", "a\x00", "é", "x" * 70, "x" * 69 + "y", None, None, "a", ""]
    rows = [
        LedgerRecord(run_id=run_id, route="small", cost=0.5, baseline_cost=1.0 + number)
        for number, run_id in enumerate(run_ids)
    ]
    ledger = store(rows, tmp_path / "ids.db")
    summary = ledger_summary(ledger)
    assert summary.requests == len(rows) - 2  # "a" and "" twice; each None alone
    assert dump(summary) == dump(summarize(rows))
    assert dump(monitor_ledger(ledger)) == dump(monitor(rows))


def test_metadata_read_in_python_as_the_records_read_it(tmp_path: Path) -> None:
    """Keys spelled with escapes, repeated keys and NaN in metadata another tool wrote."""
    path = tmp_path / "meta.db"
    ledger = store([LedgerRecord(run_id=f"r{i}", route="small", cost=0.5) for i in range(6)], path)
    texts = [
        '{"\\u0070urpose": "labelling"}',
        '{"purpose": "x", "purpose": "labelling"}',
        '{"role": "judge", "x": NaN, "max_similarity": 0.25}',
        '{"unmeasured": true, "max_similarity": "high"}',
        '{"note": "a \\"role\\" in a string", "max_similarity": 1}',
        '{"max_similarity": Infinity, "tenant": "t"}',
    ]
    with sqlite3.connect(path) as conn:
        for number, text in enumerate(texts, start=1):
            conn.execute("UPDATE ledger SET metadata = ? WHERE id = ?", (text, number))
    records = ledger.sink.read()
    assert [r.labelling for r in records] == [True, True, False, False, False, False]
    assert dump(ledger_summary(ledger)) == dump(summarize(records))
    report = monitor_ledger(ledger, segment_key="tenant")
    assert report.windows[0].mean_best_similarity == (0.25 + 1.0) / 2  # "high", Infinity: none
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ledger SET metadata = '{\"purpose\": ' WHERE id = 1")
    with pytest.raises(Exception, match="metadata is not JSON"):
        ledger_summary(CostLedger.open(str(path), validate=False))


def test_token_counts_past_the_packed_range(tmp_path: Path) -> None:
    rows = [
        LedgerRecord(run_id="a", route="small", input_tokens=2**21, output_tokens=3),
        LedgerRecord(run_id="b", route="small", input_tokens=5, output_tokens=2**40),
        LedgerRecord(run_id="c", route="large", input_tokens=7, cached_tokens=2**21 - 1),
    ]
    ledger = store(rows, tmp_path / "tokens.db")
    assert dump(ledger_summary(ledger)) == dump(summarize(rows))


def test_report_and_monitor_write_nothing_to_the_ledger(tmp_path: Path, records) -> None:
    """The calls are read through temporary views: the ledger's file is left as it was."""
    import hashlib

    path = tmp_path / "read-only.db"
    store(records, path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    sink = SQLiteSink(path)
    assert dump(ledger_summary(sink)) == dump(summarize(records))
    assert dump(monitor_ledger(sink, segment_key="tenant")) == dump(
        monitor(records, segment_key="tenant")
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
