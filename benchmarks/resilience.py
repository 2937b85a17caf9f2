"""Provider resilience on a faulty fake provider: equivalents, breakers, stream continuation.

Real ``ChatOpenAI`` / ``ChatAnthropic`` clients behind a ``RoutingChatModel`` talk HTTP
to the fake provider of ``tests/provider_server.py`` (in this process), whose answers
fail at random: every request fails with a 500 with probability ``--fail`` (0.20) and
hangs past the client's timeout with probability ``--hang`` (0.05), drawn per model
from a seeded sequence. Each configuration answers the same ``--requests`` queries
(``--workers`` at a time, a mix routed to ``small`` and ``large``):

* ``single``: one model per route; a failure escalates to the strong route;
* ``equivalents``: two equivalent models per route (OpenAI, then Anthropic);
* ``equivalents+breakers``: the same with per-model circuit breakers (the default
  :class:`~langroute.dispatch.breakers.BreakerPolicy`: open after 5 failures in a row or
  50% of the last 50, probe after 30 s).

Two scenarios: ``flaky`` (every model fails at the rates above) and ``outage`` (the cheap
route's first model hangs on every request; the others are flaky). Reported per
configuration: failed requests, cost (ledger, genai-prices), cost per answered request,
escalations, and p50/p99 latency of a request (answered or not).

Stream continuation: ``--streams`` streamed answers of ``--words`` words whose first
model breaks after a random number of chunks; the fake continues a prefix perfectly
(:attr:`FakeProvider.answer_words`), so "seamless" (the streamed text equals the full
answer, both attempts in the ledger) measures langroute's plumbing at the seam, not how
well a real model continues a text.

    python benchmarks/resilience.py --save     # writes benchmarks/results/resilience.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import random
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_path import add_output_options, output_path

REPO = Path(__file__).resolve().parents[1]
SMALL_QUERIES = ["hello", "what is the capital of france", "thanks a lot", "hi there"]
LARGE_QUERIES = [
    "prove that there are infinitely many primes",
    "design a distributed consensus protocol and analyse its failure modes",
]
MODELS = {
    "small": [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-latest")],
    "large": [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-0")],
}


def load_provider() -> Any:
    spec = importlib.util.spec_from_file_location(
        "provider_server", REPO / "tests" / "provider_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["provider_server"] = module
    spec.loader.exec_module(module)
    return module.FakeProvider().start()


def make_router() -> Any:
    from langroute import Exemplar, ExemplarRouter
    from langroute.embedders import HashingEmbedder

    exemplars = [Exemplar(text=t, route="small") for t in SMALL_QUERIES]
    exemplars += [Exemplar(text=t, route="large") for t in LARGE_QUERIES]
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        k=1,
        min_similarity=0.0,
        min_margin=0.0,
    )


def chat_model(provider: Any, api: str, name: str, timeout: float) -> Any:
    if api == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=name,
            base_url=provider.openai_url,
            api_key="bench",
            timeout=timeout,
            max_retries=0,
        )
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(
        model=name,
        base_url=provider.anthropic_url,
        api_key="bench",
        default_request_timeout=timeout,
        max_retries=0,
    )


def script_faults(provider: Any, args: argparse.Namespace, scenario: str, seed: int) -> None:
    rng = random.Random(seed)
    steps_per_model = args.requests * 2 + 10
    for route_models in MODELS.values():
        for _index, (_, name) in enumerate(route_models):
            if scenario == "outage" and name == "gpt-4o-mini":
                provider.script(name, "hang")
                continue
            steps = []
            for _ in range(steps_per_model):
                draw = rng.random()
                steps.append(
                    "500" if draw < args.fail else "hang" if draw < args.fail + args.hang else "ok"
                )
            provider.script(name, *steps)


def routing_model(provider: Any, config: str, timeout: float) -> Any:
    from langchain_langroute import RoutingChatModel
    from langroute.dispatch.breakers import BreakerPolicy, BreakerRegistry

    models: dict[str, Any] = {}
    for route, route_models in MODELS.items():
        built = [chat_model(provider, api, name, timeout) for api, name in route_models]
        models[route] = built if config != "single" else built[0]
    breakers = (
        BreakerRegistry(BreakerPolicy())  # the defaults: 5 in a row, or 50% of the last 50
        if config == "equivalents+breakers"
        else None
    )
    return RoutingChatModel(router=make_router(), models=models, breakers=breakers)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run_config(provider: Any, args: argparse.Namespace, scenario: str, config: str) -> dict:
    from langchain_langroute import CostCallbackHandler
    from langroute.errors import AllRoutesFailedError

    provider.reset()
    script_faults(provider, args, scenario, args.seed)
    llm = routing_model(provider, config, args.timeout)
    handler = CostCallbackHandler()
    queries = [
        (SMALL_QUERIES + LARGE_QUERIES)[i % (len(SMALL_QUERIES) + len(LARGE_QUERIES))]
        for i in range(args.requests)
    ]
    latencies: list[float] = []
    failed = 0

    def one(query: str) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            llm.invoke(query, config={"callbacks": [handler]})
            ok = True
        except AllRoutesFailedError:
            ok = False
        return (time.perf_counter() - started) * 1000, ok

    started = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        for latency, ok in pool.map(one, queries):
            latencies.append(latency)
            failed += not ok
    wall = time.perf_counter() - started
    records = [r for r in handler.ledger.records() if not r.is_feedback]
    cost = sum(r.cost or 0.0 for r in records)
    answered = args.requests - failed
    return {
        "scenario": scenario,
        "config": config,
        "requests": args.requests,
        "failed_requests": failed,
        "provider_requests": len(provider.requests),
        "ledger_rows": len(records),
        "escalated_rows": sum(bool(r.escalated) and r.error is None for r in records),
        "cost_usd": round(cost, 8),
        "cost_per_answer_usd": round(cost / answered, 10) if answered else None,
        "latency_p50_ms": round(percentile(latencies, 0.50) or 0.0, 1),
        "latency_p99_ms": round(percentile(latencies, 0.99) or 0.0, 1),
        "latency_mean_ms": round(statistics.fmean(latencies), 1),
        "wall_s": round(wall, 2),
    }


def run_continuation(provider: Any, args: argparse.Namespace) -> dict:
    from langchain_langroute import CostCallbackHandler

    provider.reset()
    provider.answer_words = args.words
    full = " ".join(f"word{index}" for index in range(1, args.words + 1))
    rng = random.Random(args.seed + 1)
    # chunk 0 is the role chunk: breaking after 2..words chunks leaves 1..words-1 words sent
    cuts = [rng.randint(2, args.words) for _ in range(args.streams)]
    provider.script("gpt-4o-mini", *[f"break:{cut}" for cut in cuts])
    llm = routing_model(provider, "equivalents", args.timeout)
    seamless = 0
    errors = 0
    for _ in range(args.streams):
        handler = CostCallbackHandler()
        text = ""
        try:
            for chunk in llm.stream("hello", config={"callbacks": [handler]}):
                text += chunk.content if isinstance(chunk.content, str) else ""
        except Exception:
            errors += 1
            continue
        rows = [(r.model, r.error is not None) for r in handler.ledger.records()]
        both_recorded = len(rows) == 2 and rows[0][1] and not rows[1][1]
        seamless += text == full and both_recorded
    return {
        "streams": args.streams,
        "words": args.words,
        "seamless": seamless,
        "seamless_share": round(seamless / args.streams, 3),
        "ended_in_error": errors,
        "note": "the fake continues a prefix perfectly: this measures the seam's plumbing "
        "(no chunk lost or repeated, both attempts recorded), not a real model's continuation",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fail", type=float, default=0.20)
    parser.add_argument("--hang", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=0.5, help="client timeout (s)")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--words", type=int, default=12)
    parser.add_argument("--seed", type=int, default=25)
    add_output_options(parser, "resilience.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    provider = load_provider()
    try:
        rows = [
            run_config(provider, args, scenario, config)
            for scenario in ("flaky", "outage")
            for config in ("single", "equivalents", "equivalents+breakers")
        ]
        continuation = run_continuation(provider, args)
    finally:
        provider.stop()
    result = {
        "benchmark": "resilience",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "save")},
        "machine": f"{platform.machine()}, {platform.python_version()} (shared, noisy timings)",
        "configs": rows,
        "continuation": continuation,
    }
    for row in rows:
        print(
            f"{row['scenario']:7} {row['config']:22} failed {row['failed_requests']:3}/"
            f"{row['requests']}  cost ${row['cost_usd']:.5f}  p50 {row['latency_p50_ms']:7.1f} ms"
            f"  p99 {row['latency_p99_ms']:7.1f} ms  escalated {row['escalated_rows']}"
        )
    print(f"continuation: {continuation['seamless']}/{continuation['streams']} seamless")
    out = output_path(args.json, args.save, "resilience.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
