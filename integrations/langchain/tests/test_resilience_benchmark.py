"""A smoke run of ``benchmarks/resilience.py`` on a few requests (nothing is timed).

It proves the script still runs end to end against the fake provider and writes the
JSON its readers expect; the figures themselves are the benchmark's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_resilience_benchmark_runs_and_writes_its_results(tmp_path):
    out = tmp_path / "resilience.json"
    args = ["--requests", "12", "--streams", "4", "--timeout", "0.2", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "resilience.py"), *args],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    configs = {(row["scenario"], row["config"]) for row in result["configs"]}
    assert len(configs) == 6
    for row in result["configs"]:
        assert 0 <= row["failed_requests"] <= row["requests"] == 12
        assert row["ledger_rows"] >= row["requests"] - row["failed_requests"]
    continuation = result["continuation"]
    assert continuation["streams"] == 4
    assert continuation["seamless"] + continuation["ended_in_error"] <= 4
