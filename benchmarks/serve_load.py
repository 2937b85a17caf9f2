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

``--compare`` instead measures, side by side in one run on the same fake upstream, what
each server adds: the fake called directly, LiteLLM's proxy (a benchmark-only
dependency, in its own virtual environment: ``--litellm /work/venvs/litellm/bin/litellm``,
see ``benchmarks/requirements.txt``), ``langroute serve`` on its LangChain path
(``[serve] fast_path = false``) and on its fast path. For each: latency at concurrency 1
(median and p99 of ``--single`` plain requests, the ``x-langroute-routing-ms`` and
``x-langroute-encoder-ms`` the router reported, and for langroute the "ideal router":
the fake called directly with each answer delayed by the encoder's median, see
:func:`ideal_router`), the server's CPU time per request (``/proc``: user + system of the
server process and its children), and requests per second at 10, 64 and 200 clients::

    python benchmarks/serve_load.py --compare --litellm /work/venvs/litellm/bin/litellm
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
server = module.FakeProvider(keep_alive=sys.argv[2] == "keep-alive").start()
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
) -> httpx.Headers | None:
    """One request (read to its end); a plain answer's headers (``x-langroute-*``)."""
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
        return None
    response = await client.post(url, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    response.json()
    return response.headers


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


def start_provider(keep_alive: bool = False) -> tuple[subprocess.Popen[str], int]:
    """The fake provider in its own process: the process and its port.

    ``keep_alive``: its answers keep the connection open (as real providers' do), so
    clients and servers reuse pooled connections; otherwise each answer closes it.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PROVIDER,
            str(REPO / "tests" / "provider_server.py"),
            "keep-alive" if keep_alive else "close",
        ],
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


def start_serve(config: Path, python: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """``langroute serve CONFIG`` on a free port: the process and its base URL.

    ``python``: the interpreter to run it with (default: this one).
    """
    command = [python, *CLI[1:]] if python else CLI
    process = subprocess.Popen(
        [*command, "serve", str(config), "--port", "0"],
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


# ---------------------------------------------------------------- --compare
LITELLM_CONFIG = """model_list:
  - model_name: auto
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: x
litellm_settings:
  telemetry: false
  drop_params: true
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped and live children (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of /proc/PID/stat
        total += sum(int(value) for value in fields[11:15]) / ticks
    return total


async def single(url: str, count: int, model: str) -> dict[str, Any]:
    """``count`` plain requests one after another: latency and the reported routing time."""
    latencies: list[float] = []
    routing: list[float] = []
    encoder: list[float] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), headers=AUTH) as client:
        for number in range(count):
            query = f"{QUERIES[number % len(QUERIES)]} (single {number})"
            started = time.perf_counter()
            headers = await one_request(client, url, model, query, False)
            latencies.append((time.perf_counter() - started) * 1000)
            if headers is not None and "x-langroute-routing-ms" in headers:
                routing.append(float(headers["x-langroute-routing-ms"]))
            if headers is not None and "x-langroute-encoder-ms" in headers:
                encoder.append(float(headers["x-langroute-encoder-ms"]))
    return {
        "requests": count,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "routing_p50_ms": percentile(routing, 50),
        "encoder_p50_ms": percentile(encoder, 50),
    }


AUTH = {"Authorization": "Bearer x"}


def answer_delay(provider_port: int, seconds: float) -> None:
    """Make the fake provider wait ``seconds`` before each answer, as a real model takes time."""
    url = f"http://127.0.0.1:{provider_port}/_fake/answer-delay"
    httpx.post(url, json={"seconds": seconds}, timeout=10).raise_for_status()


def measure(url: str, model: str, pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """Concurrency 1, then throughput at each client count; CPU per request of ``pid``.

    With ``--answer-delay-ms``, the provider waits that long before each answer of the
    concurrency-1 requests (not of the load phases, whose throughput it would cap).
    """
    asyncio.run(phase(url, 8, 2.0, [model], AUTH))  # warm up: connections, the encoder
    before = cpu_seconds(pid) if pid else None
    if args.answer_delay_ms:
        answer_delay(args.provider_port, args.answer_delay_ms / 1000)
    try:
        one = asyncio.run(single(url, args.single, model))
    finally:
        if args.answer_delay_ms:
            answer_delay(args.provider_port, 0.0)
    one["answer_delay_ms"] = args.answer_delay_ms
    if before is not None and pid is not None:
        one["server_cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1000 / args.single
    loads = {}
    for clients in args.loads:
        before = cpu_seconds(pid) if pid else None
        result = asyncio.run(phase(url, clients, args.duration, [model], AUTH))
        if before is not None and pid is not None and result["served"]:
            result["server_cpu_ms_per_request"] = (
                (cpu_seconds(pid) - before) * 1000 / result["served"]
            )
        loads[str(clients)] = result
    return {"concurrency_1": one, "load": loads}


def ideal_router(args: argparse.Namespace, encoder_ms: float) -> dict[str, Any]:
    """The fake called directly, each answer delayed by a server's encoder median.

    What a router that added nothing but its encoder would give the client, on this
    machine: a client (and a provider) left idle for that long wakes more slowly than
    one answered at once, so "direct + the encoder's time" measured apart is below what
    any process that works that long can reach. A server's latency minus this is what it
    adds beyond its encoder, with the idle wake-ups counted on both sides.
    """
    answer_delay(args.provider_port, (args.answer_delay_ms + encoder_ms) / 1000)
    try:
        direct = f"http://127.0.0.1:{args.provider_port}/v1/chat/completions"
        asyncio.run(single(direct, 20, "gpt-4o-mini"))  # warm up at this pace
        result = asyncio.run(single(direct, args.single, "gpt-4o-mini"))
    finally:
        answer_delay(args.provider_port, 0.0)
    return {"answer_delay_ms": args.answer_delay_ms + encoder_ms, "p50_ms": result["p50_ms"]}


def start_litellm(
    litellm: str, folder: Path, provider_port: int
) -> tuple[subprocess.Popen[str], str]:
    """LiteLLM's proxy (its own venv) routing ``auto`` to the fake; process and base URL."""
    config = folder / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(base=f"http://127.0.0.1:{provider_port}/v1"))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # no key checks, as the langroute servers here have no keys file
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            "LITELLM_LOG": "ERROR",
            "PYTHONPATH": "",
        },
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/liveliness", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("LiteLLM's proxy did not start")


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Direct, LiteLLM's proxy, langroute's LangChain path and its fast path, in one run."""
    provider, port = start_provider(args.keep_alive)
    args.provider_port = port
    folder = Path(tempfile.mkdtemp(prefix="langroute-serve-compare-"))
    servers: dict[str, Any] = {}
    try:
        servers["direct"] = measure(
            f"http://127.0.0.1:{port}/v1/chat/completions", "gpt-4o-mini", None, args
        )
        if args.litellm:
            process, url = start_litellm(args.litellm, folder, port)
            try:
                servers["litellm_proxy"] = measure(
                    url + "/v1/chat/completions", "auto", process.pid, args
                )
            finally:
                process.terminate()
                process.wait(timeout=60)
        runs: list[tuple[str, bool, str | None]] = [
            ("langroute_langchain_path", False, None),
            ("langroute_fast_path", True, None),
        ]
        if args.uvloop_python:
            runs.append(("langroute_fast_path_uvloop_httptools", True, args.uvloop_python))
        for name, fast, python in runs:
            run = folder / name
            run.mkdir()
            config = run / "models.toml"
            config.write_text(
                routes_toml(port)
                + '\n[serve]\nledger = "costs.db"\nmax_retries = 0\ntimeout = 60\n'
                + f"fast_path = {'true' if fast else 'false'}\n",
                encoding="utf-8",
            )
            process, url = start_serve(config, python)
            try:
                servers[name] = measure(url + "/v1/chat/completions", "auto", process.pid, args)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
            one = servers[name]["concurrency_1"]
            if one.get("encoder_p50_ms"):
                one["ideal_router"] = ideal_router(args, one["encoder_p50_ms"])
    finally:
        provider.kill()
        provider.wait()
    direct = servers["direct"]["concurrency_1"]
    for result in servers.values():
        one = result["concurrency_1"]
        one["added_p50_ms"] = one["p50_ms"] - direct["p50_ms"]
        one["added_p99_ms"] = one["p99_ms"] - direct["p99_ms"]
        if one.get("routing_p50_ms") is not None:
            # the router's own time (the encoder, the search, the decision) is the
            # floor; what a server adds beyond it is its overhead
            one["added_beyond_routing_p50_ms"] = one["added_p50_ms"] - one["routing_p50_ms"]
        if one.get("encoder_p50_ms") is not None:
            # the encoder alone (embedding the query, from ``x-langroute-encoder-ms``):
            # what routing must add; everything else is the server's
            one["added_beyond_encoder_p50_ms"] = one["added_p50_ms"] - one["encoder_p50_ms"]
        if one.get("ideal_router"):
            one["added_beyond_ideal_router_p50_ms"] = one["p50_ms"] - one["ideal_router"]["p50_ms"]
    return {
        "benchmark": "serve_load --compare",
        "single_requests": args.single,
        "load_seconds": args.duration,
        "loads": args.loads,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "server_stack": server_stack(),
        "note": "concurrency 1: plain requests; loads: half of the clients stream; the fake "
        + (
            "upstream keeps connections open (pooled connections reused); "
            if args.keep_alive
            else "upstream closes each connection after its answer (every server reconnects); "
        )
        + "LiteLLM runs with uvloop (its venv has it), langroute as --uvloop-python says",
        "keep_alive": args.keep_alive,
        "servers": servers,
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
    parser.add_argument("--compare", action="store_true", help="see the module docs")
    parser.add_argument("--litellm", help="--compare: the litellm command (its own venv)")
    parser.add_argument("--single", type=int, default=90, help="--compare: requests at c=1")
    parser.add_argument(
        "--uvloop-python",
        help="--compare: also run the fast path with this interpreter (uvloop and httptools "
        "installed, as the serve extra does)",
    )
    parser.add_argument(
        "--loads", type=int, nargs="+", default=[10, 64, 200], help="--compare: client counts"
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="the fake provider keeps connections open (as real providers do): pooled "
        "connections are reused; by default each answer closes its connection",
    )
    parser.add_argument(
        "--answer-delay-ms",
        type=float,
        default=0.0,
        help="--compare: the fake provider waits this long before each concurrency-1 "
        "answer, as a real model does (every process then idles between requests)",
    )
    add_output_options(parser, "serve_load.json", flag="--output")
    args = parser.parse_args()
    name = "serve_compare.json" if args.compare else "serve_load.json"
    args.output = output_path(args.output, args.save, name)
    if args.compare:
        result = compare(args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
        return

    provider, port = start_provider(args.keep_alive)
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
