"""Cost ledger benchmark (issue 11 items 6 and 7): request-path cost and kill safety.

::

    python benchmarks/ledger.py                    # both sections
    python benchmarks/ledger.py --sections latency --records 5000
    python benchmarks/ledger.py --sections kill --kill-runs 20

Sections:

* ``latency``: how long ``CostLedger.record()`` keeps the caller, per sink (JSONL,
  SQLite), writing inline (``background=False``, the old behaviour) and in the
  background (the default); and how long one ``record()`` call takes while another
  process holds the ledger's lock for ``--hold`` seconds.
* ``kill``: ``--kill-runs`` times, a subprocess writing 32 MB records is killed with
  SIGKILL as soon as its big write starts; the ledger is then read, appended to and
  read again. Counts torn tails, readable ledgers and clean appends.

Run against another checkout (for example ``main``) with ``PYTHONPATH=that/checkout``:
on code without a background writer every ``record()`` is inline, the kill section then
shows how often the ledger became unreadable. Results go to ``--output PATH``, else the
scratch folder of ``results_path.py``; ``--save`` writes ``benchmarks/results/ledger.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_path import add_output_options, output_path

from langroute.costs import CostLedger, LedgerRecord

HAS_WRITER = hasattr(CostLedger, "flush")


def ledger_for(path: Path, background: bool) -> CostLedger:
    if HAS_WRITER:
        return CostLedger(path, auto_price=False, background=background)
    return CostLedger(path, auto_price=False)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "mean_us": statistics.fmean(ordered) * 1e6,
        "p50_us": pick(0.50) * 1e6,
        "p99_us": pick(0.99) * 1e6,
        "max_us": ordered[-1] * 1e6,
    }


def time_records(ledger: CostLedger, count: int) -> list[float]:
    samples = []
    for i in range(count):
        record = LedgerRecord(route="small", model="gpt-4o-mini", run_id=str(i), input_tokens=i)
        start = time.perf_counter()
        ledger.record(record)
        samples.append(time.perf_counter() - start)
    return samples


HOLDER = textwrap.dedent(
    """
    import fcntl, sqlite3, sys, time
    path, hold = sys.argv[1], float(sys.argv[2])
    if path.endswith(".jsonl"):
        handle = open(path, "ab")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(hold)
    """
)


def latency(folder: Path, count: int, hold: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for suffix in (".jsonl", ".db"):
        for background in (False, True) if HAS_WRITER else (False,):
            mode = "background" if background else "inline"
            path = folder / f"latency-{mode}{suffix}"
            ledger = ledger_for(path, background)
            time_records(ledger, 50)  # warm up: files, connections, the thread
            samples = time_records(ledger, count)
            end_to_end = time.perf_counter()
            if HAS_WRITER:
                ledger.flush()
            drained = time.perf_counter() - end_to_end
            stored = len(ledger)
            results[f"{suffix[1:]}/{mode}"] = {
                **percentiles(samples),
                "records": count,
                "stored": stored,
                "flush_after_s": drained,
            }
            ledger.close()

            path = folder / f"held-{mode}{suffix}"
            ledger = ledger_for(path, background)
            ledger.record(LedgerRecord(route="warm"))
            if HAS_WRITER:
                ledger.flush()
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(path), str(hold)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            start = time.perf_counter()
            ledger.record(LedgerRecord(route="held"))
            blocked = time.perf_counter() - start
            holder.wait()
            if HAS_WRITER:
                ledger.flush()
            results[f"{suffix[1:]}/{mode}"]["record_while_locked_s"] = blocked
            results[f"{suffix[1:]}/{mode}"]["landed_after_lock"] = len(ledger) == 2
            ledger.close()
    return results


KILLED = textwrap.dedent(
    """
    import sys
    from langroute.costs import CostLedger, LedgerRecord
    path = sys.argv[1]
    ledger = CostLedger(path, auto_price=False)
    ledger.record(LedgerRecord(route="small", run_id="before"))
    getattr(ledger, "flush", lambda: None)()
    print("ready", flush=True)
    blob = "x" * (32 * 1024 * 1024)
    for i in range(1000):
        ledger.record(LedgerRecord(route="big", run_id=f"big-{i}", metadata={"blob": blob}))
        getattr(ledger, "flush", lambda: None)()
    """
)


def kill_once(path: Path) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != b"ready\n":
        raise RuntimeError(proc.communicate()[1].decode())
    start = path.stat().st_size
    while path.stat().st_size == start and proc.poll() is None:
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    outcome: dict[str, Any] = {"torn_tail": not path.read_bytes().endswith(b"\n")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            before = [r.run_id for r in CostLedger.open(path).records()]
            outcome["readable"] = True
        except Exception as exc:  # the old reader: a torn line fails the whole ledger
            outcome["readable"] = False
            outcome["error"] = str(exc)[:200]
            before = None
        appender = CostLedger(path, auto_price=False)
        appender.record(LedgerRecord(route="small", run_id="after"))
        appender.close()
        try:
            reopened = CostLedger.open(path)
            after = [r.run_id for r in reopened.records()]
            outcome["torn_lines"] = getattr(reopened, "torn_lines", None)
        except Exception:
            after = None
    outcome["clean_append"] = before is not None and after == [*before, "after"]
    return outcome


def kill(folder: Path, runs: int) -> dict[str, Any]:
    outcomes = []
    for run in range(runs):
        path = folder / f"killed-{run}.jsonl"
        outcomes.append(kill_once(path))
        path.unlink()
    return {
        "runs": runs,
        "torn_tail": sum(o["torn_tail"] for o in outcomes),
        "readable": sum(o["readable"] for o in outcomes),
        "clean_append": sum(o["clean_append"] for o in outcomes),
        "outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="latency,kill")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--kill-runs", type=int, default=20)
    add_output_options(parser, "ledger.json", flag="--output")
    args = parser.parse_args()
    args.output = output_path(args.output, args.save, "ledger.json")
    sections = set(args.sections.split(","))
    results: dict[str, Any] = {"background_writer": HAS_WRITER, "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="langroute-ledger-bench-") as tmp:
        if "latency" in sections:
            results["latency"] = latency(Path(tmp), args.records, args.hold)
        if "kill" in sections:
            results["kill"] = kill(Path(tmp), args.kill_runs)
    text = json.dumps(results, indent=2)
    print(
        text
        if "kill" not in results
        else json.dumps(
            {**results, "kill": {k: v for k, v in results["kill"].items() if k != "outcomes"}},
            indent=2,
        )
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
