"""The dashboard's API on a big ledger (issue 26): time for every call the page makes.

::

    python benchmarks/dashboard.py                      # 1M rows, SQLite
    python benchmarks/dashboard.py --rows 100000 --save
    python benchmarks/dashboard.py --ledger /tmp/ledger.db

Generates a SQLite ledger with ``benchmarks/ledger_scale.py``'s generator (unless
``--ledger`` names one), then calls each endpoint the page reads, through the FastAPI
app (in process, no network), three times:

* **cold**: the first page load after the dashboard opens. The totals and timeline are
  computed (``report`` and ``monitor``'s functions, the SQL of the other panels).
* **warm**: the next loads, while the ledger has not changed: results are kept.
* **decision log**: filtered pages (route, reason, segment, time) are queried each time
  (a filter's match count is kept with the results).

Results go to ``benchmarks/results/dashboard.json`` with ``--save``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

PANELS = ["summary", "timeline", "latency", "segments", "quality", "exemplars"]
"""The endpoints the page's views read (each once per page load)."""
FILTERS = [
    "segments?key=tenant",  # the first use of another segment key copies the calls again
    "decisions",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--ledger", type=Path, default=None, help="Use this ledger.")
    parser.add_argument("--save", action="store_true", help="Write benchmarks/results/.")
    options = parser.parse_args()

    from fastapi.testclient import TestClient
    from ledger_scale import write_sqlite

    from langroute.dashboard import Dashboard, create_dashboard_app

    folder = None
    path = options.ledger
    if path is None:
        folder = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
        path = folder / f"ledger-{options.rows}.db"
        began = time.perf_counter()
        write_sqlite(path, options.rows, options.tenants)
        print(f"generated {path} in {time.perf_counter() - began:.1f} s", flush=True)
    cpu = time.process_time()
    began = time.perf_counter()
    dashboard = Dashboard(path)
    client = TestClient(create_dashboard_app(dashboard))
    cold = timed(client, [*PANELS, "decisions"])
    cold_cpu = time.process_time() - cpu
    record_id = client.get("/api/decisions?limit=1").json()["rows"][0]["record_id"]
    warm = timed(client, [*PANELS, "decisions", f"why/{record_id}"])
    filters = timed(client, FILTERS)
    dashboard.close()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        "shared with other sessions (wall times vary with their load)",
        "python": platform.python_version(),
        "ledger_rows": options.rows if options.ledger is None else None,
        "ledger_mb": round(path.stat().st_size / 2**20, 1),
        "cold_page_seconds": round(sum(cold.values()), 2),
        "cold_page_cpu_seconds": round(cold_cpu, 2),
        "warm_page_seconds": round(sum(v for k, v in warm.items() if not k.startswith("why")), 3),
        "cold": cold,
        "warm": warm,
        "decision_log_filters": filters,
        "total_seconds": round(time.perf_counter() - began, 2),
    }
    print(json.dumps(result, indent=2))
    if options.save:
        target = REPO / "benchmarks" / "results" / "dashboard.json"
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {target}")
    if folder is not None:
        for item in folder.iterdir():
            item.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
