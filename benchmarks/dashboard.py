"""The dashboard's API on a big ledger (issue 26): time for every call the page makes.

::

    python benchmarks/dashboard.py                      # 1M rows, SQLite
    python benchmarks/dashboard.py --rows 100000 --save
    python benchmarks/dashboard.py --ledger /tmp/ledger.db   # read from a copy of it

Generates a SQLite ledger with ``benchmarks/ledger_scale.py``'s generator (or copies
``--ledger``: the benchmark appends rows), then calls each endpoint the page reads,
through the FastAPI app (in process, no network), in these states:

* **first fold**: no rollup kept beside the ledger yet (``LEDGER.dashboard-cache``):
  the page's first load folds the whole ledger into it.
* **cold**: a new dashboard on the same ledger (a restart): the kept rollup is read.
* **warm**: the next loads, while the ledger has not changed: results are kept.
* **decision log**: filtered pages (route, reason, segment, time), and the first use of
  another segment key (its segments folded from the ledger once).
* **appended**: after ``--append`` rows more (a day later, new requests), the next
  load folds only them.

Each state's seconds are the sum of its calls (wall) and the process's CPU time over
them. Results go to ``benchmarks/results/dashboard.json`` with ``--save``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

PANELS = ["summary", "timeline", "latency", "segments", "quality", "exemplars", "decisions"]
"""The endpoints the page's views read (each once per page load)."""
FILTERS = [
    "segments?key=tenant",  # the first use of another segment key folds its segments
    "decisions?route=large",
    "decisions?reason=out_of_distribution",
    "decisions?key=tenant&segment=t42",
    "decisions?since=2026-11-03T00:00&until=2026-11-03T01:00",
    "decisions?offset=5000",
]


def timed(client: Any, paths: list[str]) -> dict[str, float]:
    seconds = {}
    for path in paths:
        began = time.perf_counter()
        response = client.get("/api/" + path)
        seconds[path] = round(time.perf_counter() - began, 3)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return seconds


def page_load(client: Any, paths: list[str]) -> dict[str, Any]:
    """Each call's seconds, their sum (wall) and the CPU seconds the process spent."""
    cpu = time.process_time()
    calls = timed(client, paths)
    return {
        "wall_seconds": round(sum(calls.values()), 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "calls": calls,
    }


def append_rows(path: Path, rows: int, tenants: int) -> None:
    """``rows`` more rows, a week after the generated ones (new requests, their verdicts)."""
    from datetime import datetime, timedelta

    from ledger_scale import generate, row_values

    from langroute.costs.schema import COLUMN_NAMES

    conn = sqlite3.connect(path, isolation_level=None)
    present = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    names = [name for name in COLUMN_NAMES if name in present]  # an older ledger has fewer
    later = timedelta(days=7)
    batch = []
    for record in generate(rows, tenants, seed=1):
        record["timestamp"] = (datetime.fromisoformat(record["timestamp"]) + later).isoformat()
        if record["run_id"] is not None:
            record["run_id"] = "appended-" + record["run_id"]
        batch.append(row_values(record, names))
    conn.execute("BEGIN")
    insert = f"INSERT INTO ledger ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    conn.executemany(insert, batch)
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--ledger", type=Path, default=None, help="Copy this ledger and use it.")
    parser.add_argument("--append", type=int, default=10_000, help="Rows to append at the end.")
    parser.add_argument("--save", action="store_true", help="Write benchmarks/results/.")
    options = parser.parse_args()

    from fastapi.testclient import TestClient
    from ledger_scale import write_sqlite

    from langroute.dashboard import Dashboard, DashboardSettings, create_dashboard_app
    from langroute.dashboard.rollup import cache_path

    folder = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    path = folder / "ledger.db"
    began = time.perf_counter()
    if options.ledger is None:
        write_sqlite(path, options.rows, options.tenants)
        print(f"generated {path} in {time.perf_counter() - began:.1f} s", flush=True)
    else:
        shutil.copy(options.ledger, path)
    ledger_mb = round(path.stat().st_size / 2**20, 1)
    began = time.perf_counter()
    settings = DashboardSettings(refresh_seconds=0)  # every load checks the ledger

    def client() -> tuple[Any, Any]:
        dashboard = Dashboard(path, settings=settings)
        return dashboard, TestClient(create_dashboard_app(dashboard))

    dashboard, api = client()
    first = page_load(api, PANELS)
    dashboard.close()
    dashboard, api = client()  # a restart: the rollup kept beside the ledger is read
    cold = page_load(api, PANELS)
    record_id = api.get("/api/decisions?limit=1").json()["rows"][0]["record_id"]
    warm = page_load(api, PANELS)
    why = page_load(api, [f"why/{record_id}"])
    filters = page_load(api, FILTERS)
    append_rows(path, options.append, options.tenants)
    appended = page_load(api, PANELS)
    dashboard.close()
    load = os.getloadavg()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "shared with other sessions (wall times vary with their load)",
        "load_average": [round(value, 2) for value in load],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "ledger_rows": options.rows if options.ledger is None else None,
        "ledger_mb": ledger_mb,
        "rollup_mb": round(cache_path(path).stat().st_size / 2**20, 1),
        "first_fold_page": first,
        "cold_page": cold,
        "warm_page": warm,
        "why_card": why,
        "decision_log_filters": filters,
        "appended_rows": options.append,
        "page_after_append": appended,
        "total_seconds": round(time.perf_counter() - began, 2),
    }
    print(json.dumps(result, indent=2))
    if options.save:
        target = REPO / "benchmarks" / "results" / "dashboard.json"
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {target}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
