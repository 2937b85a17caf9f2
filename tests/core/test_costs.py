from __future__ import annotations

import asyncio
import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from rich.console import Console

import langroute
from langroute.costs import (
    CostLedger,
    JSONLSink,
    LedgerFormatError,
    LedgerRecord,
    LedgerSummary,
    MemorySink,
    ModelPrice,
    Pricer,
    SQLiteSink,
    UnpricedModelWarning,
    print_report,
    render_report,
    summarize,
)
from langroute.errors import LangrouteError

CHEAP = "gpt-4o-mini"
STRONG = "gpt-4o"


def per_mtok(model: str) -> tuple[float, float, float]:
    """The (input, output, cache read) USD per million tokens genai-prices lists."""
    prices = calc_price(Usage(input_tokens=0, output_tokens=0), model).model_price
    values = (prices.input_mtok, prices.output_mtok, prices.cache_read_mtok)
    assert all(isinstance(v, Decimal) for v in values), "expected flat (untiered) prices"
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def hand_cost(model: str, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    pin, pout, pcache = per_mtok(model)
    return ((input_tokens - cached) * pin + cached * pcache + output_tokens * pout) / 1e6


# --------------------------------------------------------------------------- pricer


def test_pricer_matches_hand_formula_from_genai_prices() -> None:
    pin, pout, pcache = per_mtok(CHEAP)
    assert pin > pcache > 0 and pout > pin  # sanity: cache reads are cheaper
    pricer = Pricer()
    cost = pricer.cost(CHEAP, 12_000, 3_000, cached_tokens=2_000)
    expected = (10_000 * pin + 2_000 * pcache + 3_000 * pout) / 1e6
    assert cost == pytest.approx(expected, rel=1e-12)
    # and the same figure as genai-prices' own calculation
    direct = calc_price(
        Usage(input_tokens=12_000, output_tokens=3_000, cache_read_tokens=2_000), CHEAP
    )
    assert cost == pytest.approx(float(direct.total_price), rel=1e-12)


def test_cached_tokens_are_cheaper_and_clamped_to_input() -> None:
    pricer = Pricer()
    uncached = pricer.cost(CHEAP, 10_000, 0)
    cached = pricer.cost(CHEAP, 10_000, 0, cached_tokens=10_000)
    assert uncached is not None and cached is not None
    assert cached < uncached
    assert pricer.cost(CHEAP, 100, 0, cached_tokens=500) == pytest.approx(
        hand_cost(CHEAP, 100, 0, cached=100)
    )


def test_negative_tokens_raise() -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        Pricer().cost(CHEAP, 1, -1)


def test_provider_prefixed_names_and_dated_names_resolve() -> None:
    pricer = Pricer()
    base = pricer.cost(CHEAP, 1000, 100)
    assert pricer.cost("openai:gpt-4o-mini", 1000, 100) == base
    assert pricer.cost("openai/gpt-4o-mini", 1000, 100) == base
    assert pricer.cost("gpt-4o-mini-2024-07-18", 1000, 100) == base
    assert Pricer(provider="openai").cost(CHEAP, 1000, 100) == base


def test_overrides_win_over_genai_prices() -> None:
    pricer = Pricer(
        {
            CHEAP: ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5),
            "Local-Llama": {"input_per_mtok": 0, "output_per_mtok": 0},
            "no-cache-rate": {"input_per_mtok": 3.0, "output_per_mtok": 4.0},
        }
    )
    assert pricer.cost(CHEAP, 1_000_000, 1_000_000, cached_tokens=500_000) == pytest.approx(
        0.5 * 1.0 + 0.5 * 0.5 + 2.0
    )
    assert pricer.cost("local-llama", 123, 456) == 0.0  # case-insensitive fallback
    # no cached rate: cached tokens cost the input rate
    assert pricer.cost("no-cache-rate", 1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(3.0)
    assert pricer.price(CHEAP) == ModelPrice(
        input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5
    )


def test_price_reads_genai_prices() -> None:
    pin, pout, pcache = per_mtok(CHEAP)
    assert Pricer().price(CHEAP) == ModelPrice(
        input_per_mtok=pin, output_per_mtok=pout, cached_input_per_mtok=pcache
    )
    assert Pricer().price("openai:gpt-4o-mini") == Pricer().price(CHEAP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Pricer().price("no-such-model-zz9") is None  # no warning from price()


def test_invalid_override_is_rejected() -> None:
    with pytest.raises(ValueError):
        Pricer({"m": {"input_per_mtok": -1, "output_per_mtok": 0}})


def test_unknown_model_warns_once_per_name_and_returns_none() -> None:
    pricer = Pricer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pricer.cost("no-such-model-zz9", 10, 10) is None
        assert pricer.cost("no-such-model-zz9", 20, 20) is None
        assert pricer.cost("no-such-model-zz9", 0, 0) is None
        assert pricer.cost("another-unknown-zz9", 1, 1) is None
        assert pricer.cost("ollama:llama3.1:8b", 1, 1) is None
    unpriced = [w for w in caught if issubclass(w.category, UnpricedModelWarning)]
    assert len(unpriced) == 3
    assert "no-such-model-zz9" in str(unpriced[0].message)
    assert "another-unknown-zz9" in str(unpriced[1].message)


def test_unknown_provider_is_unpriced_not_an_error() -> None:
    with pytest.warns(UnpricedModelWarning):
        assert Pricer(provider="no-such-provider").cost(CHEAP, 1, 1) is None


def test_pricing_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import genai_prices.data_snapshot as snapshot

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert Pricer().cost("claude-3-5-haiku-latest", 1000, 1000) is not None
    assert snapshot.get_snapshot().from_auto_update is False


# --------------------------------------------------------------------------- records


def test_record_timestamps_are_utc_and_metadata_json_safe() -> None:
    naive = LedgerRecord(timestamp=datetime(2025, 1, 1, 12, 0))
    assert naive.timestamp == datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    paris = timezone(timedelta(hours=1))
    aware = LedgerRecord(timestamp=datetime(2025, 1, 1, 13, 0, tzinfo=paris))
    assert aware.timestamp.utcoffset() == timedelta(0) and aware.timestamp.hour == 12
    rec = LedgerRecord(metadata={"tags": ("a", "b"), "path": Path("x")})
    assert rec.metadata == {"tags": ["a", "b"], "path": "x"}
    with pytest.raises(ValueError):
        LedgerRecord(input_tokens=-1)


def test_ledger_prices_cost_and_baseline_from_genai_prices() -> None:
    ledger = CostLedger()
    rec = ledger.record(
        LedgerRecord(
            framework="core",
            route="small",
            model=CHEAP,
            input_tokens=5_000,
            output_tokens=800,
            cached_tokens=1_000,
            baseline_model=STRONG,
        )
    )
    assert rec.cost == pytest.approx(hand_cost(CHEAP, 5_000, 800, cached=1_000))
    assert rec.baseline_cost == pytest.approx(hand_cost(STRONG, 5_000, 800, cached=1_000))
    assert ledger.records() == [rec]
    summary = ledger.summary()
    assert summary.cost == pytest.approx(rec.cost)
    assert summary.baseline_cost == pytest.approx(rec.baseline_cost)
    assert summary.savings == pytest.approx(rec.baseline_cost - rec.cost)
    assert summary.savings_pct == pytest.approx(100 * (1 - rec.cost / rec.baseline_cost))


def test_ledger_keeps_given_costs_and_respects_auto_price_false() -> None:
    ledger = CostLedger()
    rec = ledger.record(LedgerRecord(model=CHEAP, input_tokens=10, cost=1.25))
    assert rec.cost == 1.25
    raw = CostLedger(auto_price=False)
    assert raw.record(LedgerRecord(model=CHEAP, input_tokens=10)).cost is None


def test_ledger_uses_its_pricer_overrides() -> None:
    pricer = Pricer({"tiny": {"input_per_mtok": 1, "output_per_mtok": 10}})
    ledger = CostLedger(pricer=pricer)
    rec = ledger.record(LedgerRecord(model="tiny", input_tokens=1_000_000, output_tokens=100_000))
    assert rec.cost == pytest.approx(2.0)


def test_unknown_model_in_ledger_counts_as_unpriced() -> None:
    ledger = CostLedger()
    with pytest.warns(UnpricedModelWarning):
        ledger.record(LedgerRecord(route="local", model="my-private-zz9", input_tokens=5))
    ledger.record(LedgerRecord(route="local", model="my-private-zz9", input_tokens=5))
    ledger.record(LedgerRecord(route="small", model=CHEAP, input_tokens=1000))
    summary = ledger.summary()
    assert summary.unpriced_calls == 2
    assert summary.route("local").cost is None
    assert summary.route("local").unpriced_calls == 2
    assert summary.cost == pytest.approx(hand_cost(CHEAP, 1000, 0))


# --------------------------------------------------------------------------- sinks


def sample_records() -> list[LedgerRecord]:
    t0 = datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
    return [
        LedgerRecord(
            timestamp=t0,
            framework="langchain",
            run_id="r1",
            kind="cascade",
            route="small",
            model=CHEAP,
            input_tokens=100,
            output_tokens=20,
            cached_tokens=10,
            cost=0.000123,
            baseline_model=STRONG,
            baseline_cost=0.0021,
            latency_ms=123.5,
            reason="vote",
            confidence=0.87,
            tier=0,
            accepted=False,
            metadata={"scorer": "json", "nested": {"a": [1, 2.5, None]}},
        ),
        LedgerRecord(
            timestamp=t0 + timedelta(seconds=2),
            framework="langchain",
            run_id="r1",
            kind="cascade",
            route="large",
            model=STRONG,
            input_tokens=100,
            output_tokens=40,
            cost=0.0029,
            baseline_model=STRONG,
            baseline_cost=0.0029,
            latency_ms=900.0,
            escalated=True,
            escalated_from="small",
            tier=1,
            accepted=True,
        ),
        LedgerRecord(
            framework="llama_index",
            route="small",
            model=None,
            error="TimeoutError: took too long",
        ),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".db", ".sqlite", ".sqlite3"])
def test_file_ledgers_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "sub" / f"ledger{suffix}"
    records = sample_records()
    with CostLedger(path, auto_price=False) as ledger:
        for rec in records:
            ledger.record(rec)
        assert len(ledger) == 3
    reopened = CostLedger.open(path)
    assert reopened.records() == records
    assert len(reopened) == 3
    # appending to an existing ledger keeps the old records
    reopened.record(LedgerRecord(route="x", cost=1.0))
    assert len(CostLedger.open(path)) == 4


def test_ledger_picks_sink_from_target(tmp_path: Path) -> None:
    assert isinstance(CostLedger().sink, MemorySink)
    assert isinstance(CostLedger("memory").sink, MemorySink)
    assert isinstance(CostLedger(str(tmp_path / "a.jsonl")).sink, JSONLSink)
    assert isinstance(CostLedger(tmp_path / "a.DB").sink, SQLiteSink)
    custom = MemorySink()
    assert CostLedger(custom).sink is custom
    with pytest.raises(LedgerFormatError, match=r"\.csv"):
        CostLedger(tmp_path / "a.csv")
    with pytest.raises(LedgerFormatError, match="no suffix"):
        CostLedger(tmp_path / "ledger")
    with pytest.raises(TypeError):
        CostLedger(42)  # type: ignore[arg-type]


def test_jsonl_flushes_each_record(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    sink = JSONLSink(path)
    sink.write(LedgerRecord(route="a"))
    sink.write(LedgerRecord(route="b"))
    lines = path.read_text(encoding="utf-8").splitlines()  # sink still open
    assert [json.loads(line)["route"] for line in lines] == ["a", "b"]
    sink.close()


def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = LedgerRecord(route="a").model_dump_json()
    path.write_text(f"{good}\n\n{good}\n{{not json\n", encoding="utf-8")
    with pytest.raises(LedgerFormatError) as info:
        CostLedger.open(path)
    assert info.value.line == 4
    assert f"{path}:4:" in str(info.value)
    assert isinstance(info.value, LangrouteError) and isinstance(info.value, ValueError)


def test_jsonl_ledger_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = LedgerRecord(route="a").model_dump_json().encode()
    bad = LedgerRecord(route="caf\u00e9").model_dump_json().encode("latin-1")
    path.write_bytes(good + b"\n" + good + b"\n" + bad + b"\n")
    with pytest.raises(LedgerFormatError) as info:
        CostLedger.open(path)
    assert info.value.line == 3
    assert f"{path}:3: not valid UTF-8" in str(info.value)


def test_jsonl_invalid_field_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        LedgerRecord(route="a").model_dump_json() + '\n{"kind": "banana"}\n', encoding="utf-8"
    )
    with pytest.raises(LedgerFormatError, match=r"bad\.jsonl:2: field 'kind'"):
        JSONLSink(path).read()
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(LedgerFormatError, match=r":1: expected a JSON object"):
        JSONLSink(path).read()


def test_open_missing_ledger_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CostLedger.open(tmp_path / "nope.jsonl")


def test_ledger_format_error_pickles() -> None:
    err = LedgerFormatError("bad", path="x.jsonl", line=3)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) == "x.jsonl:3: bad"
    assert copy.line == 3


def test_sqlite_schema_is_typed_with_json_metadata_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    CostLedger(path, auto_price=False).record(sample_records()[0])
    conn = sqlite3.connect(path)
    try:
        columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(ledger)")}
        assert columns["input_tokens"] == "INTEGER"
        assert columns["cost"] == "REAL"
        assert columns["route"] == "TEXT"
        assert columns["escalated"] == "INTEGER"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (metadata,) = conn.execute("SELECT metadata FROM ledger").fetchone()
        assert json.loads(metadata)["nested"] == {"a": [1, 2.5, None]}
        total = conn.execute("SELECT SUM(cost) FROM ledger WHERE route = 'small'").fetchone()[0]
        assert total == pytest.approx(0.000123)
    finally:
        conn.close()


def test_sqlite_rejects_files_that_are_not_ledgers(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(LedgerFormatError, match=r"junk\.db"):
        CostLedger.open(junk)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerFormatError, match="not a langroute ledger"):
        CostLedger.open(other)
    wrong = tmp_path / "wrong.db"
    conn = sqlite3.connect(wrong)
    conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, route TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerFormatError, match="lacks columns"):
        CostLedger(wrong).record(LedgerRecord(route="a"))


@pytest.mark.parametrize("suffix", [".db", ".jsonl"])
def test_file_ledger_written_from_many_threads_loses_nothing(tmp_path: Path, suffix: str) -> None:
    ledger = CostLedger(tmp_path / f"threads{suffix}", auto_price=False)
    threads_n, per_thread = 8, 40
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                ledger.record(LedgerRecord(route=f"t{t}", run_id=f"{t}-{i}", input_tokens=i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    run_ids = [r.run_id for r in ledger.records()]
    assert len(run_ids) == threads_n * per_thread
    assert set(run_ids) == {f"{t}-{i}" for t in range(threads_n) for i in range(per_thread)}
    assert len(ledger) == threads_n * per_thread


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from langroute.costs import CostLedger, LedgerRecord

    path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    ledger = CostLedger(path, auto_price=False)
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for i in range(count):
        ledger.record(LedgerRecord(framework=name, route=name, run_id=f"{name}-{i}", cost=0.5))
    """
)


@pytest.mark.parametrize("suffix", [".db", ".jsonl"])
def test_file_ledger_written_from_two_processes_loses_nothing(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"shared{suffix}"
    go = tmp_path / "go"
    count = 150
    env = dict(os.environ)
    root = str(Path(langroute.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(count), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    # this process writes at the same time
    ledger = CostLedger(path, auto_price=False)
    go.touch()
    for i in range(count):
        ledger.record(LedgerRecord(framework="main", route="main", run_id=f"main-{i}", cost=0.5))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    records = CostLedger.open(path).records()
    assert len(records) == 3 * count
    expected = {f"{n}-{i}" for n in ("p1", "p2", "main") for i in range(count)}
    assert {r.run_id for r in records} == expected
    summary = summarize(records)
    assert summary.cost == pytest.approx(0.5 * 3 * count)
    assert [r.calls for r in summary.routes] == [count, count, count]


async def test_arecord_from_asyncio(tmp_path: Path) -> None:
    for target in (None, tmp_path / "async.jsonl", tmp_path / "async.db"):
        ledger = CostLedger(target, auto_price=False)
        stored = await asyncio.gather(
            *(ledger.arecord(LedgerRecord(route="a", run_id=str(i))) for i in range(20))
        )
        assert len(stored) == 20
        assert {r.run_id for r in ledger.records()} == {str(i) for i in range(20)}


# --------------------------------------------------------------------------- summary


def make(route: str, **fields: object) -> LedgerRecord:
    return LedgerRecord(route=route, **fields)  # type: ignore[arg-type]


def test_summary_percentiles_escalations_and_savings() -> None:
    records = [
        # request A: cheap answer accepted
        make(
            "small",
            run_id="A",
            model=CHEAP,
            cost=1.0,
            baseline_cost=10.0,
            latency_ms=100,
            input_tokens=10,
            output_tokens=1,
            cached_tokens=4,
            tier=0,
            accepted=True,
        ),
        # request B: cheap answer rejected, escalated to large
        make(
            "small",
            run_id="B",
            model=CHEAP,
            cost=1.0,
            baseline_cost=9.0,
            latency_ms=200,
            input_tokens=20,
            output_tokens=2,
            tier=0,
            accepted=False,
        ),
        make(
            "large",
            run_id="B",
            model=STRONG,
            cost=12.0,
            baseline_cost=12.0,
            latency_ms=1000,
            input_tokens=20,
            output_tokens=3,
            escalated=True,
            escalated_from="small",
            tier=1,
            accepted=True,
        ),
        # request C: small failed with an error (no tokens), fallback to large
        make(
            "small",
            run_id="C",
            model=CHEAP,
            cost=0.0,
            baseline_cost=0.0,
            latency_ms=300,
            error="TimeoutError: slow",
        ),
        make(
            "large",
            run_id="C",
            model=STRONG,
            cost=8.0,
            baseline_cost=8.0,
            latency_ms=400,
            input_tokens=30,
            output_tokens=4,
            escalated=True,
            escalated_from="small",
        ),
        # request D (no run_id): unpriced model, baseline known -> not in savings
        make("small", model="mystery", cost=None, baseline_cost=5.0),
    ]
    summary = summarize(records)
    assert [r.route for r in summary.routes] == ["small", "large"]
    small, large = summary.routes
    assert small.calls == 4 and small.errors == 1 and small.rejected == 1
    assert small.escalations == 0 and small.escalation_rate == 0.0
    assert small.models == [CHEAP, "mystery"]
    assert small.cost == pytest.approx(2.0) and small.unpriced_calls == 1
    assert small.input_tokens == 30 and small.output_tokens == 3 and small.cached_tokens == 4
    # latencies 100, 200, 300: p50 = 200; p95 at rank 1.9 -> 200 + 0.9 * 100
    assert small.latency_p50_ms == pytest.approx(200.0)
    assert small.latency_p95_ms == pytest.approx(290.0)
    assert large.calls == 2 and large.escalations == 2 and large.escalation_rate == 1.0
    assert large.cost == pytest.approx(20.0)
    assert large.latency_p50_ms == pytest.approx(700.0)
    assert large.latency_p95_ms == pytest.approx(400 + 0.95 * 600)

    assert summary.calls == 6 and summary.requests == 4
    assert summary.errors == 1 and summary.escalations == 2
    assert summary.escalated_requests == 2
    assert summary.escalation_rate == pytest.approx(2 / 4)
    assert summary.cost == pytest.approx(22.0) and summary.unpriced_calls == 1
    # baseline per request: A 10, B max(9, 12) = 12, C 8, D 5
    assert summary.baseline_cost == pytest.approx(35.0)
    # savings over fully priced requests A, B, C: (10 + 12 + 8) - (1 + 13 + 8)
    assert summary.savings == pytest.approx(8.0)
    assert summary.savings_pct == pytest.approx(100 * 8 / 30)
    # all six latencies: 100 200 300 400 1000 -> p50 300, p95 at rank 3.8
    assert summary.latency_p50_ms == pytest.approx(300.0)
    assert summary.latency_p95_ms == pytest.approx(400 + 0.8 * 600)
    assert summary.input_tokens == 80 and summary.output_tokens == 10


def test_summary_order_and_empty_cases() -> None:
    records = [make("b"), make("a"), make("b"), make("c")]
    assert [r.route for r in summarize(records).routes] == ["b", "a", "c"]
    ordered = summarize(records, order=["c", "a", "zz"])
    assert [r.route for r in ordered.routes] == ["c", "a", "b"]  # unused names dropped
    empty = summarize([])
    assert empty.calls == 0 and empty.cost is None and empty.savings is None
    assert empty.escalation_rate == 0.0 and empty.latency_p50_ms is None
    no_baseline = summarize([make("a", cost=1.0)])
    assert no_baseline.baseline_cost is None and no_baseline.savings is None
    with pytest.raises(KeyError):
        no_baseline.route("zz")


def test_summary_timestamps_span() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    summary = summarize([make("a", timestamp=t0 + timedelta(hours=1)), make("a", timestamp=t0)])
    assert summary.first_timestamp == t0
    assert summary.last_timestamp == t0 + timedelta(hours=1)


# --------------------------------------------------------------------------- report


def test_render_and_print_report(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    ledger = CostLedger(path, auto_price=False)
    for rec in sample_records():
        ledger.record(rec)
    console = Console(record=True, width=200, color_system=None)
    summary = print_report(path, console=console)
    text = console.export_text()
    assert isinstance(summary, LedgerSummary)
    for expected in ("small", "large", "total", CHEAP, "$0.002900", "saved", "(+1 unpriced)"):
        assert expected in text, expected
    assert "always gpt-4o" in text

    table = render_report(CostLedger().summary())
    assert table.row_count == 0
    console = Console(record=True, width=200, color_system=None)
    print_report(ledger, console=console, order=["large"])
    lines = console.export_text().splitlines()
    large_line = next(i for i, line in enumerate(lines) if "large" in line and "│" in line)
    small_line = next(i for i, line in enumerate(lines) if " small " in line)
    assert large_line < small_line


def test_print_report_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        print_report(tmp_path / "missing.db", console=Console(record=True))


# ------------------------------------------------------------------ unmeasured calls
def unmeasured_call() -> list[LedgerRecord]:
    """A request that escalated: small 429 (no output), large answered without usage."""
    from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage
    from langroute.router.decision import RouteDecision

    call = RoutedCall(
        decision=RouteDecision(route="small", confidence=0.9, reason="vote"),
        baseline_route="large",
        baseline_model="gpt-4o",
    )
    call.add_attempt(Attempt(route="small", model=CHEAP, error="RateLimitError: 429"))
    call.add_attempt(Attempt(route="large", model="gpt-4o"))
    measured = RoutedCall(
        decision=RouteDecision(route="small", confidence=0.9, reason="vote"),
        baseline_route="large",
        baseline_model="gpt-4o",
    )
    measured.add_attempt(
        Attempt(route="small", model=CHEAP, usage=TokenUsage(input_tokens=1000, output_tokens=10))
    )
    return call.ledger_records(framework="core") + measured.ledger_records(framework="core")


@pytest.mark.parametrize("suffix", [".jsonl", ".db"])
def test_unmeasured_calls_are_not_priced_and_left_out_of_savings(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"ledger{suffix}"
    with CostLedger(path) as ledger:
        for record in unmeasured_call():
            ledger.record(record)
    records = CostLedger.open(path).records()  # the mark survives the file
    assert [r.measured for r in records] == [True, False, True]
    assert records[0].cost == 0.0  # the 429 produced nothing to pay for
    assert records[1].cost is None and records[1].baseline_cost is None
    summary = CostLedger.open(path).summary()
    assert (summary.unmeasured_calls, summary.unmeasured_requests) == (1, 1)
    assert summary.unpriced_calls == 0
    assert summary.route("large").unmeasured_calls == 1
    only_measured = records[2]
    assert summary.baseline_cost == pytest.approx(only_measured.baseline_cost)
    assert summary.savings == pytest.approx(only_measured.baseline_cost - only_measured.cost)
    console = Console(record=True, width=200, color_system=None)
    print_report(path, console=console)
    text = console.export_text()
    assert "(+1 unmeasured)" in text
    assert "1 calls unmeasured (no usage reported; 1 requests left out of cost and savings)" in text


def test_report_csv_never_writes_a_name_a_spreadsheet_would_run():
    import csv
    import io

    from langroute.costs import report_csv
    from langroute.costs.summary import summarize

    records = [
        LedgerRecord(route="=HYPERLINK(1)", model="@SUM(A1)", cost=0.5),
        LedgerRecord(route="-small", model="+gpt", cost=-0.0),
    ]
    rows = list(csv.DictReader(io.StringIO(report_csv(summarize(records)))))
    assert [(r["route"], r["models"]) for r in rows[:2]] == [
        ("'=HYPERLINK(1)", "'@SUM(A1)"),
        ("'-small", "'+gpt"),
    ]
    assert float(rows[0]["cost"]) == 0.5
