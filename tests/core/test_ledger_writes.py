"""The cost ledger under stress: torn JSONL lines, locked files, a full queue, exit.

Issue 11 items 6 and 7. Kill and lock tests use real subprocesses (SIGKILL, ``flock``, an
open SQLite write transaction); ordering is checked with pipes and events, never with a
timing threshold: a lock holder reports whether it was still holding its lock when the
test told it to let go.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

import langroute
from langroute.costs import (
    CostLedger,
    JSONLSink,
    LedgerFormatError,
    LedgerRecord,
    LedgerWriteWarning,
    SQLiteSink,
    TornLinesWarning,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="flock and SIGKILL are POSIX")

ROOT = str(Path(langroute.__file__).resolve().parents[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "400"  # rich: keep long temporary paths on one line
    return env


def line(record: LedgerRecord) -> bytes:
    return record.model_dump_json().encode("utf-8") + b"\n"


# --------------------------------------------------------------------------- torn lines

KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from langroute.costs import CostLedger, LedgerRecord

    path, size = sys.argv[1], int(sys.argv[2])
    ledger = CostLedger(path, auto_price=False)
    ledger.record(LedgerRecord(route="small", run_id="before"))
    ledger.flush()
    print("ready", flush=True)
    blob = "x" * size
    for i in range(1000):
        ledger.record(LedgerRecord(route="big", run_id=f"big-{i}", metadata={"blob": blob}))
        ledger.flush()
    """
)


def kill_mid_write(path: Path, size: int = 32 * 1024 * 1024) -> None:
    """Start a writer of large records and SIGKILL it as soon as its big write starts."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), str(size)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.stderr else ""
        start = path.stat().st_size
        while path.stat().st_size == start and proc.poll() is None:
            pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()


@posix_only
def test_killed_writer_leaves_a_torn_tail_that_is_skipped_reported_and_appended_after(
    tmp_path: Path,
) -> None:
    for attempt in range(5):  # the kill lands mid-write nearly always; retry if it did not
        path = tmp_path / f"killed{attempt}.jsonl"
        kill_mid_write(path)
        if not path.read_bytes().endswith(b"\n"):
            break
    else:
        pytest.fail("the writer was never killed in the middle of a write")

    with pytest.warns(TornLinesWarning, match=rf"{re.escape(str(path))}: skipped 1 torn line"):
        ledger = CostLedger.open(path)
    assert [r.run_id for r in ledger.records()] == ["before"]
    assert ledger.torn_lines == [2]

    ledger.record(LedgerRecord(route="small", run_id="after"))
    ledger.flush()
    raw_lines = path.read_bytes().split(b"\n")
    assert json.loads(raw_lines[2])["run_id"] == "after"  # its own line, not glued
    assert raw_lines[3:] == [b""]
    with pytest.warns(TornLinesWarning, match=r"line 2\b"):
        reopened = CostLedger.open(path)
    assert [r.run_id for r in reopened.records()] == ["before", "after"]
    assert reopened.torn_lines == [2]

    result = subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", "report", str(path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "small" in result.stdout
    assert f"skipped 1 torn line: {path}:2" in result.stdout


def test_reader_skips_torn_lines_anywhere_and_keeps_records_glued_to_them(
    tmp_path: Path,
) -> None:
    records = [LedgerRecord(route=f"r{i}", run_id=str(i), metadata={"é": "😀"}) for i in range(7)]
    a, b, c, d, e, f, g = (line(r) for r in records)
    path = tmp_path / "torn.jsonl"
    path.write_bytes(
        a
        + b[:40]
        + b"\n"  # a torn line a later writer terminated
        + c[:55]
        + d  # an old writer glued record 3 onto a torn record 2
        + e
        + f[: f.index("😀".encode()) + 2]
        + b"\n"  # cut in the middle of a UTF-8 character
        + g
        + records[0].model_dump_json().encode()[:-1]  # torn tail: no closing brace, no newline
    )
    sink = JSONLSink(path)
    with pytest.warns(TornLinesWarning) as caught:
        kept = sink.read()
    assert [r.run_id for r in kept] == ["0", "3", "4", "6"]
    assert sink.torn_lines == [2, 3, 5, 7]
    (warning,) = caught
    assert str(warning.message) == f"{path}: skipped 4 torn lines (lines 2, 3, 5, 7)"


def test_every_cut_of_a_record_is_a_torn_tail(tmp_path: Path) -> None:
    record = LedgerRecord(
        route="small",
        cost=1.5e-05,
        latency_ms=12.25,
        accepted=True,
        metadata={"a": [1, 2.5, None, 'x\\y"é😀\u0001'], "b": {"c": False}, "n": -3e-7},
    )
    head, body = line(LedgerRecord(route="head")), record.model_dump_json().encode()
    path = tmp_path / "cut.jsonl"
    sink = JSONLSink(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TornLinesWarning)
        for cut in range(1, len(body)):
            path.write_bytes(head + body[:cut])
            assert [r.route for r in sink.read()] == ["head"], body[:cut]
            assert sink.torn_lines == [2], body[:cut]


def test_complete_lines_that_are_not_records_still_raise(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = line(LedgerRecord(route="a"))
    for bad, message in [
        (b'{"route": "a"} trailing\n', "not valid JSON"),
        (b"\xff\xfe{}\n", "not valid UTF-8"),
        (b"{not json", "not valid JSON"),  # not the start of an object, even at the end
    ]:
        path.write_bytes(good + bad)
        with pytest.raises(LedgerFormatError, match=message) as info:
            JSONLSink(path).read()
        assert info.value.line == 2


def test_writer_never_glues_onto_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "partial.jsonl"
    first = LedgerRecord(route="a", run_id="1")
    path.write_bytes(line(first) + line(LedgerRecord(route="b"))[:30])
    with CostLedger(path, auto_price=False) as ledger:
        ledger.record(LedgerRecord(route="c", run_id="3"))
        ledger.record(LedgerRecord(route="d", run_id="4"))
    assert path.read_bytes().count(b"\n") == 4
    sink = JSONLSink(path)
    with pytest.warns(TornLinesWarning, match="line 2"):
        assert [r.run_id for r in sink.read()] == ["1", "3", "4"]
    assert sink.torn_lines == [2]


# --------------------------------------------------------------------------- locks

HOLD_JSONL_LOCK = textwrap.dedent(
    """
    import fcntl, select, sys

    path, guard = sys.argv[1], float(sys.argv[2])
    handle = open(path, "ab")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    asked, _, _ = select.select([sys.stdin], [], [], guard)
    print("held until asked" if asked else "let go unasked", flush=True)
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    """
)

HOLD_SQLITE_LOCK = textwrap.dedent(
    """
    import select, sqlite3, sys

    path, guard = sys.argv[1], float(sys.argv[2])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    asked, _, _ = select.select([sys.stdin], [], [], guard)
    print("held until asked" if asked else "let go unasked", flush=True)
    conn.execute("COMMIT")
    """
)


class LockHolder:
    """Another process holding a ledger's lock until told to let go.

    ``guard`` only keeps a broken test from hanging: a holder that lets go on its own
    says so, and the test fails.
    """

    def __init__(self, script: str, path: Path, guard: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(guard)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        assert self.proc.stdout.readline() == "locked\n"

    def release(self) -> str:
        """Tell the holder to let go; its answer says whether it held the lock until now."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        answer = self.proc.stdout.readline().strip()
        self.proc.communicate(timeout=60)
        return answer


HOLDERS = {".jsonl": HOLD_JSONL_LOCK, ".db": HOLD_SQLITE_LOCK}


@posix_only
@pytest.mark.parametrize("suffix", [".jsonl", ".db"])
def test_record_returns_while_another_process_holds_the_lock_and_lands_after(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"locked{suffix}"
    ledger = CostLedger(path, auto_price=False)
    ledger.record(LedgerRecord(route="a", run_id="first"))
    ledger.flush()
    holder = LockHolder(HOLDERS[suffix], path)
    stored = ledger.record(LedgerRecord(route="a", run_id="second"))
    assert stored.run_id == "second"
    assert holder.release() == "held until asked"  # record() returned under the lock
    assert ledger.flush()
    assert [r.run_id for r in CostLedger.open(path).records()] == ["first", "second"]
    stats = ledger.stats
    assert (stats.written, stats.pending, stats.dropped, stats.failed) == (2, 0, 0, 0)


@posix_only
def test_a_sqlite_ledger_locked_past_its_timeout_holds_the_records_and_writes_them_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stuck.db"
    ledger = CostLedger(SQLiteSink(path, timeout=0.1), auto_price=False)
    ledger.record(LedgerRecord(route="a", run_id="first"))
    ledger.flush()
    holder = LockHolder(HOLDERS[".db"], path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LedgerWriteWarning)  # nothing may be lost
        for number in range(300):  # more than one batch
            ledger.record(LedgerRecord(route="a", run_id=f"held-{number}"))
        assert not ledger.flush(timeout=30)  # the sink is unavailable: flush says so
        held = ledger.stats
        assert (held.written, held.pending, held.failed, held.dropped) == (1, 300, 0, 0)
        assert held.retries >= 1
        assert holder.release() == "held until asked"
        deadline = time.monotonic() + 60  # retries back off up to 5 s between tries
        while ledger.stats.written < 301 and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = ledger.stats
    assert (stats.written, stats.pending, stats.failed, stats.dropped) == (301, 0, 0, 0)
    stored = [r.run_id for r in ledger.records()]
    assert stored == ["first", *(f"held-{number}" for number in range(300))]


@posix_only
def test_a_sqlite_ledger_still_locked_at_close_counts_the_held_records_as_failed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "closing.db"
    ledger = CostLedger(SQLiteSink(path, timeout=0.1), auto_price=False)
    ledger.record(LedgerRecord(route="a", run_id="first"))
    ledger.flush()
    holder = LockHolder(HOLDERS[".db"], path)
    ledger.record(LedgerRecord(route="a", run_id="held"))
    ledger.flush(timeout=30)
    with pytest.warns(LedgerWriteWarning, match=r"1 record.*lost.*locked"):
        ledger.close()
    assert holder.release() == "held until asked"
    assert (ledger.stats.written, ledger.stats.failed) == (1, 1)


@posix_only
@pytest.mark.parametrize("suffix", [".jsonl"])
def test_a_write_that_cannot_get_the_lock_is_counted_as_failed_with_a_warning(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"stuck{suffix}"
    sink = JSONLSink(path, timeout=0.2)
    ledger = CostLedger(sink, auto_price=False)
    ledger.record(LedgerRecord(route="a", run_id="first"))
    ledger.flush()
    holder = LockHolder(HOLDERS[suffix], path)
    with pytest.warns(LedgerWriteWarning, match=rf"{re.escape(str(path))}.*1 record.*lost"):
        ledger.record(LedgerRecord(route="a", run_id="lost"))
        ledger.flush()
    assert holder.release() == "held until asked"
    stats = ledger.stats
    assert (stats.written, stats.pending, stats.failed) == (1, 0, 1)
    # the ledger keeps working once the lock is free
    ledger.record(LedgerRecord(route="a", run_id="third"))
    assert [r.run_id for r in ledger.records()] == ["first", "third"]
    assert ledger.stats.written == 2


# --------------------------------------------------------------------------- queue, exit


class GateSink:
    """A sink whose writes wait for a gate (a slow disk, a remote store)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.stored: list[LedgerRecord] = []

    def write(self, record: LedgerRecord) -> None:
        self.entered.set()
        self.gate.wait()
        self.stored.append(record)

    def read(self) -> list[LedgerRecord]:
        return list(self.stored)

    def close(self) -> None:
        pass


def test_a_full_queue_drops_records_with_a_count_and_one_warning_per_overflow() -> None:
    sink = GateSink()
    ledger = CostLedger(sink, auto_price=False, max_pending=2)
    ledger.record(LedgerRecord(run_id="0"))
    sink.entered.wait()  # the writer holds record 0 inside the sink
    ledger.record(LedgerRecord(run_id="1"))
    with pytest.warns(LedgerWriteWarning, match="queue full") as caught:
        ledger.record(LedgerRecord(run_id="2"))
        ledger.record(LedgerRecord(run_id="3"))
    assert len(caught) == 1
    stats = ledger.stats
    assert (stats.written, stats.pending, stats.dropped, stats.failed) == (0, 2, 2, 0)
    sink.gate.set()
    assert ledger.flush()
    assert [r.run_id for r in ledger.records()] == ["0", "1"]
    stats = ledger.stats
    assert (stats.written, stats.pending, stats.dropped, stats.failed) == (2, 0, 2, 0)
    ledger.close()


EXITING_WRITER = textwrap.dedent(
    """
    import sys
    from langroute.costs import CostLedger, LedgerRecord

    ledger = CostLedger(sys.argv[1], auto_price=False)
    for i in range(int(sys.argv[2])):
        ledger.record(LedgerRecord(route="a", run_id=str(i)))
    """
)


@pytest.mark.parametrize("suffix", [".jsonl", ".db"])
def test_pending_records_are_written_when_the_interpreter_exits(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"exit{suffix}"
    result = subprocess.run(
        [sys.executable, "-c", EXITING_WRITER, str(path), "500"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(CostLedger.open(path)) == 500


def test_records_are_written_off_the_callers_thread(tmp_path: Path) -> None:
    seen: list[str] = []

    class ThreadSink(GateSink):
        def write(self, record: LedgerRecord) -> None:
            seen.append(threading.current_thread().name)
            self.stored.append(record)

    ledger = CostLedger(ThreadSink(), auto_price=False)
    ledger.record(LedgerRecord(run_id="a"))
    assert len(ledger) == 1  # reading waits for pending writes
    assert seen and threading.current_thread().name not in seen
    inline = CostLedger(ThreadSink(), auto_price=False, background=False)
    seen.clear()
    inline.record(LedgerRecord(run_id="b"))
    assert seen == [threading.current_thread().name]


def test_an_unavailable_sink_keeps_records_queued_until_it_returns():
    """SinkUnavailableError: records stay pending and are retried, not counted lost."""
    from langroute.costs import MemorySink
    from langroute.costs.writer import LedgerWriter
    from langroute.errors import SinkUnavailableError

    class Flaky(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.down = threading.Event()
            self.down.set()
            self.refused = 0

        def write_many(self, records):
            if self.down.is_set():
                self.refused += 1
                raise SinkUnavailableError("database restarting")
            for record in records:
                self.write(record)

    sink = Flaky()
    writer = LedgerWriter(sink, max_pending=3)
    accepted = [writer.submit(LedgerRecord(route=str(n))) for n in range(3)]
    assert accepted == [True, True, True]
    deadline = time.monotonic() + 10
    while sink.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.flush(0.1) is False  # returns at once while unavailable
    with pytest.warns(LedgerWriteWarning, match="queue full"):
        assert writer.submit(LedgerRecord(route="x")) is False  # past the bound: counted
    stats = writer.stats
    assert (stats.pending, stats.dropped, stats.failed, stats.written) == (3, 1, 0, 0)
    assert stats.retries >= 2
    sink.down.clear()
    deadline = time.monotonic() + 10
    while writer.stats.written < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.route for r in sink.read()] == ["0", "1", "2"]  # in order, none twice
    sink.down.set()
    writer.submit(LedgerRecord(route="late"))
    with pytest.warns(LedgerWriteWarning, match="database restarting"):
        writer.close()  # close gives up on a sink still down: counted failed, warned
    assert writer.stats.failed == 1 and writer.stats.pending == 0
