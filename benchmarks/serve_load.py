"""Load test of ``langroute serve`` on loopback: what routing adds to each request.

Bounded and self-stopping. Two phases of the same workload (``--clients`` concurrent
clients for ``--duration`` seconds each, half of them streaming, every query unique):

1. *direct*: the clients call the fake upstream provider (``tests/provider_server.py``,
   in its own process) themselves;
2. *langroute*: the clients call ``langroute serve`` (a subprocess of the real CLI, the
   bundled starter router, a SQLite ledger), whose routes are ``ChatOpenAI`` models
   pointed at the same fake.

Reported: requests served and errors per phase, latency percentiles (whole answer,
stream read to ``[DONE]``), the latency langroute adds (p50/p99 difference), and
whether the ledger holds exactly one row per request served (read after the server
has stopped on SIGTERM).

    python benchmarks/serve_load.py --clients 200 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from results_path import add_output_options, output_path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from langroute.cli.app import main; main()"]
QUERIES = [
    "hi, how are you today?",
    "translate good morning into French",
    "what is the capital of Australia?",
    "thanks, that was helpful",
    "summarise this sentence in five words: the meeting moved to Friday",
    "prove that the square root of two is irrational",
    "design a fault-tolerant payment system for a global bank and analyse its failure modes",
    "derive the closed form of the Fibonacci recurrence and prove it by induction",
    "write a detailed migration plan from a monolith to microservices with risks",
    "explain the CAP theorem with a rigorous argument and counterexamples",
]
PROVIDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("provider_server", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["provider_server"] = module
spec.loader.exec_module(module)
server = module.FakeProvider().start()
print(server.port, flush=True)
while True:
    time.sleep(3600)
"""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def one_request(
    client: httpx.AsyncClient, url: str, model: str, query: str, stream: bool
) -> None:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": query}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            done = False
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"error"' in line[:12]:
                    raise RuntimeError(line[:200])
                if line == "data: [DONE]":
                    done = True
            if not done:
                raise RuntimeError("stream ended without [DONE]")
        return
    response = await client.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    response.json()


async def phase(
    url: str, clients: int, duration: float, models: list[str], headers: dict[str, str]
) -> dict[str, Any]:
    """``clients`` concurrent loops of requests until ``duration`` is over."""
    latencies: dict[bool, list[float]] = {False: [], True: []}
    errors: list[str] = []
    timeout = httpx.Timeout(60.0)
    counter = 0
    deadline = time.perf_counter() + duration

    async def loop(index: int) -> None:
        # one connection pool per client, as separate callers have: one pool shared by
        # hundreds of keep-alive connections makes httpcore scan them all on every request,
        # and the load generator, not the server, becomes what is measured
        nonlocal counter
        stream = index % 2 == 1
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            while time.perf_counter() < deadline:
                counter += 1
                number = counter
                query = f"{QUERIES[number % len(QUERIES)]} (request {number})"
                model = models[number % len(models)]
                started = time.perf_counter()
                try:
                    await one_request(client, url, model, query, stream)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                latencies[stream].append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    everything = latencies[False] + latencies[True]
    summary = {
        "served": len(everything),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(everything) / elapsed, 1),
        "p50_ms": percentile(everything, 50),
        "p99_ms": percentile(everything, 99),
        "mean_ms": statistics.fmean(everything) if everything else None,
    }
    for stream, values in latencies.items():
        name = "stream" if stream else "plain"
        summary[f"{name}_served"] = len(values)
        summary[f"{name}_p50_ms"] = percentile(values, 50)
        summary[f"{name}_p99_ms"] = percentile(values, 99)
    return summary


def start_provider() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", PROVIDER, str(REPO / "tests" / "provider_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def routes_toml(provider_port: int) -> str:
    """The ``[routes]`` table of two ``ChatOpenAI`` routes pointed at the fake provider."""
    base = f"http://127.0.0.1:{provider_port}/v1"
    return (
        "[routes]\n"
        f'small = {{ model = "openai:gpt-4o-mini", base_url = "{base}", api_key = "x" }}\n'
        f'large = {{ model = "openai:gpt-4o", base_url = "{base}", api_key = "x" }}\n'
    )


def start_serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    """``langroute serve CONFIG`` on a free port: the process and its base URL."""
    process = subprocess.Popen(
        [*CLI, "serve", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"langroute serve did not start: {line}{process.stderr.read()}")
    return process, line.split("listening on ")[1].split()[0]


def start_langroute(folder: Path, provider_port: int) -> tuple[subprocess.Popen[str], str]:
    config = folder / "models.toml"
    config.write_text(
        routes_toml(provider_port)
        + '\n[serve]\nledger = "costs.db"\nmax_retries = 0\ntimeout = 60\n',
        encoding="utf-8",
    )
    return start_serve(config)


def server_stack() -> dict[str, str]:
    """The event loop and HTTP parser uvicorn picks in the server (same environment)."""
    from importlib.util import find_spec

    return {
        "loop": "uvloop" if find_spec("uvloop") else "asyncio",
        "http": "httptools" if find_spec("httptools") else "h11",
    }


def ledger_counts(path: Path) -> dict[str, int]:
    from langroute.costs import CostLedger

    records = CostLedger.open(path).records()
    return {
        "rows": len(records),
        "error_rows": sum(r.error is not None for r in records),
        "requests_in_ledger": len({r.run_id for r in records}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    add_output_options(parser, "serve_load.json", flag="--output")
    args = parser.parse_args()
    args.output = output_path(args.output, args.save, "serve_load.json")

    provider, port = start_provider()
    folder = Path(tempfile.mkdtemp(prefix="langroute-serve-load-"))
    try:
        direct = asyncio.run(
            phase(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                args.clients,
                args.duration,
                ["gpt-4o-mini", "gpt-4o"],
                {"Authorization": "Bearer x"},
            )
        )
        server, url = start_langroute(folder, port)
        try:
            warm = asyncio.run(phase(url + "/v1/chat/completions", 8, 2.0, ["auto"], {}))
            routed = asyncio.run(
                phase(url + "/v1/chat/completions", args.clients, args.duration, ["auto"], {})
            )
            metrics = httpx.get(url + "/metrics", timeout=30).text
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
        counts = ledger_counts(folder / "costs.db")
    finally:
        provider.kill()
        provider.wait()
    route_lines = [
        line for line in metrics.splitlines() if line.startswith("langroute_requests_total{")
    ]
    requests = warm["served"] + routed["served"]
    result = {
        "benchmark": "serve_load",
        "clients": args.clients,
        "duration_s_per_phase": args.duration,
        "streaming_share": 0.5,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "server_stack": server_stack(),
        "direct": direct,
        "langroute": routed,
        "added_latency_ms": {
            "p50": (routed["p50_ms"] or 0) - (direct["p50_ms"] or 0),
            "p99": (routed["p99_ms"] or 0) - (direct["p99_ms"] or 0),
        },
        "ledger": {
            **counts,
            "requests_served": requests,
            "warm_up_requests": warm["served"],
            "rows_equal_requests": counts["rows"] == requests and counts["error_rows"] == 0,
        },
        "metrics_requests": route_lines,
        "server_exit_code": server.returncode,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
