"""Ledger analytics at scale (issue 28): ``report`` and ``monitor`` on generated ledgers.

::

    python benchmarks/ledger_scale.py                       # 1M rows, SQLite and JSONL
    python benchmarks/ledger_scale.py --rows 1000000 10000000 --formats db
    python benchmarks/ledger_scale.py --code /tmp/before --label before --save

Generates ledgers of ``--rows`` rows in a temporary folder (SQLite ``.db`` and/or JSON
Lines ``.jsonl``, written directly, not through the ledger, so generating is quick):
routed requests of one to three calls (cascades, escalations, errors, rejected
answers), judge calls, labelling calls, unmeasured and unpriced calls, 2% feedback rows,
a week of traffic, ``--tenants`` distinct tenants in the metadata. Then it runs, each
in a fresh process whose time and peak memory (``ru_maxrss``) are measured:

* ``report LEDGER --json``
* ``monitor LEDGER --json``
* ``monitor LEDGER --json --segment tenant --window 1d`` (one window per tenant and day)

``--code PATH`` runs the commands of another checkout (for example the code before this
change: ``git archive <commit> | tar -x -C /tmp/before``), so both are measured on the
same ledgers; ``--skip-over ROWS`` leaves out runs on larger ledgers (the old code needs
minutes and gigabytes per million rows). Results are printed as a table; with ``--save``
they are merged into ``benchmarks/results/ledger_scale.json`` (``code`` names the
label).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
ROUTES = [("small", "gpt-4o-mini"), ("medium", "gpt-4.1-mini"), ("large", "gpt-4o")]
COLUMNS = [
    "timestamp",
    "framework",
    "run_id",
    "kind",
    "route",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost",
    "baseline_model",
    "baseline_cost",
    "latency_ms",
    "escalated",
    "escalated_from",
    "error",
    "reason",
    "confidence",
    "tier",
    "accepted",
    "metadata",
    "record_id",
    "query",
    "feedback_for",
    "verdict",
]


def generate(rows: int, tenants: int, seed: int = 0) -> Any:
    """Yield ledger rows as dicts (the record's fields), ``rows`` of them."""
    rng = random.Random(seed)
    made = 0
    request = 0
    calls: list[tuple[str, str | None, str, str, dict[str, Any]]] = []
    span = 7 * 86400
    while made < rows:
        request += 1
        when = START + timedelta(seconds=span * made / rows)
        tenant = f"t{rng.randrange(tenants)}"
        metadata: dict[str, Any] = {"tenant": tenant, "max_similarity": round(rng.random(), 4)}
        if rng.random() < 0.01:
            metadata["purpose"] = "labelling"
        if rng.random() < 0.01:
            metadata["unmeasured"] = True
        run_id = f"{request:032x}" if rng.random() < 0.95 else None
        reason = rng.choices(["vote", "low_confidence", "out_of_distribution"], [90, 6, 4])[0]
        attempts = rng.choices([1, 2, 3], [80, 15, 5])[0]
        for tier in range(attempts):
            if made >= rows:
                break
            route, model = ROUTES[min(tier, 2)]
            last = tier == attempts - 1
            cost = None if metadata.get("unmeasured") or rng.random() < 0.01 else rng.random() / 1e3
            record = {
                "timestamp": (when + timedelta(milliseconds=tier * 300)).isoformat(),
                "framework": "core",
                "run_id": run_id,
                "kind": "cascade" if attempts > 1 else "route",
                "route": route,
                "model": model,
                "input_tokens": rng.randrange(2000),
                "output_tokens": rng.randrange(600),
                "cached_tokens": 0,
                "cost": cost,
                "baseline_model": "gpt-4o",
                "baseline_cost": rng.random() / 100,
                "latency_ms": rng.lognormvariate(6, 0.6),
                "escalated": tier > 0,
                "escalated_from": "small" if tier else None,
                "error": None if last or rng.random() < 0.5 else "RateLimitError: 429",
                "reason": reason,
                "confidence": round(rng.random(), 4),
                "tier": tier if attempts > 1 else None,
                "accepted": last if attempts > 1 else None,
                "metadata": metadata,
                "record_id": f"{rng.getrandbits(128):032x}",
                "query": None,
                "feedback_for": None,
                "verdict": None,
            }
            made += 1
            yield record
            if len(calls) < 10_000:
                calls.append((record["record_id"], run_id, route, model, metadata))
            else:
                calls[rng.randrange(len(calls))] = (
                    record["record_id"], run_id, route, model, metadata,
                )  # fmt: skip
        if rng.random() < 0.02 and made < rows:  # a verdict on a recent call
            record_id, run, route, model, meta = rng.choice(calls)
            made += 1
            yield {
                **{name: None for name in COLUMNS},
                "timestamp": (when + timedelta(seconds=5)).isoformat(),
                "framework": "core",
                "run_id": run,
                "kind": "feedback",
                "route": route,
                "model": model,
                "input_tokens": 0,
                "output_tokens": 0,
                "cached_tokens": 0,
                "escalated": False,
                "metadata": {**meta, "source": "user"},
                "record_id": f"{rng.getrandbits(128):032x}",
                "feedback_for": record_id,
                "verdict": rng.choice(["good", "good", "good", "bad"]),
            }


def row_values(record: dict[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    """A generated record as the values of the ledger table's columns ``names``."""
    return tuple(
        json.dumps(record[name])
        if name == "metadata"
        else int(record[name])
        if name in ("escalated", "accepted") and record[name] is not None
        else record.get(name)  # a column the generator leaves empty (shadow_*)
        for name in names
    )


def write_sqlite(path: Path, rows: int, tenants: int) -> None:
    sys.path.insert(0, str(REPO))
    from langroute.costs.schema import COLUMN_NAMES
    from langroute.costs.sinks import _SQL_CREATE, _SQL_INDEXES, _SQL_INSERT

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_SQL_CREATE)
    conn.execute("BEGIN")
    batch = []
    for record in generate(rows, tenants):
        batch.append(row_values(record, COLUMN_NAMES))
        if len(batch) >= 50_000:
            conn.executemany(_SQL_INSERT, batch)
            batch.clear()
    conn.executemany(_SQL_INSERT, batch)
    conn.execute("COMMIT")
    for index in _SQL_INDEXES:
        conn.execute(index)
    conn.close()


def write_jsonl(path: Path, rows: int, tenants: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in generate(rows, tenants):
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
error = done.stderr.decode(errors="replace")[-300:].replace("\\n", " ")
cpu = usage.ru_utime + usage.ru_stime
print(done.returncode, seconds, cpu, usage.ru_maxrss, len(done.stdout), error)
"""


def measure(code: Path, args: list[str], timeout: float) -> dict[str, Any]:
    """Run the CLI of ``code`` with ``ARGS`` alone in a process: time, peak RSS.

    ``cpu_seconds`` (user + system) is printed beside the wall time because this machine's
    cores are shared: the wall time grows with the load, the CPU time much less.
    """
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    # the CLI moved into a package (issue 22): langroute.cli.app, formerly langroute.cli
    packaged = (code / "langroute" / "cli" / "app.py").exists()
    cli = "langroute.cli.app" if packaged else "langroute.cli"
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", cli, *args]
    try:
        # run from the checkout itself: `python -m` puts the working folder first on the path
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, cwd=code
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:g} s"}
    status, seconds, cpu, peak, output, *err = done.stdout.split(" ", 5)
    # exit 2 is monitor's "an alarm fired"; either way the JSON must have been written
    ok = status == "0" or (status == "2" and args[0] == "monitor")
    return {
        "status": "ok" if ok and int(output) > 0 else f"exit {status}: {' '.join(err)}",
        "seconds": round(float(seconds), 2),
        "cpu_seconds": round(float(cpu), 2),
        "peak_rss_mb": round(int(peak) / 1024, 1),
    }


COMMANDS = {
    "report": ["report", "{ledger}", "--json"],
    "monitor": ["monitor", "{ledger}", "--json"],
    "monitor --segment": ["monitor", "{ledger}", "--json", "--segment", "tenant", "--window", "1d"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--formats", nargs="+", choices=["db", "jsonl"], default=["db", "jsonl"])
    parser.add_argument("--jsonl-max", type=int, default=1_000_000, help="Largest JSONL ledger.")
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--code", type=Path, default=REPO, help="The checkout to run.")
    parser.add_argument("--label", default="after")
    parser.add_argument("--skip-over", type=int, default=None, help="Run no ledger bigger.")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--dir", type=Path, default=None, help="Keep ledgers here (reused).")
    parser.add_argument("--save", action="store_true", help="Write benchmarks/results/.")
    options = parser.parse_args()

    folder = options.dir or Path(tempfile.mkdtemp(prefix="ledger-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in options.rows:
        for fmt in options.formats:
            if fmt == "jsonl" and rows > options.jsonl_max:
                continue
            path = folder / f"ledger-{rows}-{options.tenants}.{fmt}"
            generated = None
            if not path.exists():
                began = time.perf_counter()
                (write_sqlite if fmt == "db" else write_jsonl)(path, rows, options.tenants)
                generated = round(time.perf_counter() - began, 1)
                print(f"generated {path.name} in {generated} s", flush=True)
            if options.skip_over is not None and rows > options.skip_over:
                continue
            for name, template in COMMANDS.items():
                args = [part.format(ledger=path) for part in template]
                result = measure(options.code, args, options.timeout)
                entry = {
                    "rows": rows,
                    "format": fmt,
                    "command": name,
                    "code": options.label,
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                    **result,
                }
                results.append(entry)
                print(json.dumps(entry), flush=True)
    header = f"{'rows':>10} {'format':6} {'command':18} {'seconds':>8} {'cpu s':>8} {'peak MB':>8}"
    print(f"\n{header}  status")
    for entry in results:
        print(
            f"{entry['rows']:>10,} {entry['format']:6} {entry['command']:18} "
            f"{entry.get('seconds', '-'):>8} {entry.get('cpu_seconds', '-'):>8} "
            f"{entry.get('peak_rss_mb', '-'):>8}  {entry['status']}"
        )
    if options.save:  # merged: a run replaces the entries it measured again
        target = REPO / "benchmarks" / "results" / "ledger_scale.json"
        saved = json.loads(target.read_text()) if target.exists() else {"results": []}
        measured = {(e["rows"], e["format"], e["command"], e["code"]) for e in results}
        kept = [
            entry
            for entry in saved["results"]
            if (entry["rows"], entry["format"], entry["command"], entry["code"]) not in measured
        ]
        saved.update(
            machine=f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores (shared)",
            python=platform.python_version(),
            tenants=options.tenants,
            results=kept + results,
        )
        target.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"saved {target}")
    if options.dir is None:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
