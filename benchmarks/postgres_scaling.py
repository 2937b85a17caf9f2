"""Shared state on Postgres: propagation time, ledger write throughput, router load time.

    python benchmarks/postgres_scaling.py postgresql://...   (or LANGROUTE_TEST_POSTGRES)

Writes ``--output PATH``, else the scratch folder of ``results_path.py`` (``--save``:
benchmarks/results/postgres_scaling.json). Uses the hashing embedder (384 dims,
the size of MiniLM vectors), so the figures are about the database path, not a model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from results_path import add_output_options, output_path

from langroute import Exemplar, ExemplarRouter
from langroute.costs import CostLedger, LedgerRecord
from langroute.embedders import HashingEmbedder
from langroute.postgres import PostgresSink, load_shared_router, publish_router

DIM = 384


def fresh_database(server: str) -> tuple[str, str]:
    name = f"langroute_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}")), name


def router_of(n: int) -> ExemplarRouter:
    exemplars = [
        Exemplar(
            text=f"question {i} about topic {i % 97} detail {i % 13}",
            route="small" if i % 2 else "large",
        )
        for i in range(n)
    ]
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(DIM)
    )


def propagation(url: str, adds: int = 20) -> list[float]:
    publish_router(router_of(200), url)
    writer = load_shared_router(url, embedder=HashingEmbedder(DIM))
    reader = load_shared_router(url, embedder=HashingEmbedder(DIM))
    times = []
    try:
        for i in range(adds):
            ex = Exemplar(text=f"freshly learned exemplar number {i}", route="small")
            start = time.perf_counter()
            writer.add_exemplars([ex])
            while ex.id not in reader.router._exemplars:
                time.sleep(0.0005)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        writer.close()
        reader.close()
    return times


def ledger_throughput(url: str, n: int = 20_000) -> dict[str, float]:
    records = [
        LedgerRecord(route="small", model="gpt-4o-mini", input_tokens=i, output_tokens=10, cost=0.0)
        for i in range(n)
    ]
    ledger = CostLedger(url, auto_price=False, max_pending=n + 1)
    start = time.perf_counter()
    for record in records:
        ledger.record(record)
    submitted = time.perf_counter()
    ledger.flush()
    done = time.perf_counter()
    ledger.close()
    single = PostgresSink(url)
    k = 1000
    s0 = time.perf_counter()
    for record in records[:k]:
        single.write(record)
    s1 = time.perf_counter()
    single.close()
    return {
        "batched_rows_per_s": n / (done - start),
        "submit_us_per_record": (submitted - start) / n * 1e6,
        "one_row_per_transaction_rows_per_s": k / (s1 - s0),
    }


def load_times(url: str, n: int = 10_000) -> dict[str, float]:
    router = router_of(n)
    folder = Path(tempfile.mkdtemp()) / "router"
    router.save(folder)
    t0 = time.perf_counter()
    publish_router(router, url, name="big")
    t1 = time.perf_counter()
    ExemplarRouter.load(folder, embedder=HashingEmbedder(DIM))
    t2 = time.perf_counter()
    replica = load_shared_router(url, name="big", embedder=HashingEmbedder(DIM), follow=False)
    t3 = time.perf_counter()
    assert len(replica.router) == n
    return {
        "exemplars": n,
        "publish_s": t1 - t0,
        "load_from_directory_s": t2 - t1,
        "load_from_postgres_s": t3 - t2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", nargs="?", default=os.environ.get("LANGROUTE_TEST_POSTGRES"))
    add_output_options(parser, "postgres_scaling.json", flag="--output")
    args = parser.parse_args()
    if not args.server:
        parser.error("name a Postgres server URL or set LANGROUTE_TEST_POSTGRES")
    server = args.server
    url, name = fresh_database(server)
    try:
        prop = propagation(url)
        results = {
            "propagation_ms": {
                "median": statistics.median(prop),
                "p90": sorted(prop)[int(0.9 * len(prop)) - 1],
                "max": max(prop),
                "n": len(prop),
            },
            "ledger": ledger_throughput(url),
            "load": load_times(url),
        }
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    out = output_path(args.output, args.save, "postgres_scaling.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
