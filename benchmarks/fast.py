"""Fast by default, and fast under load (issue 12): one command, results as JSON.

Measures the default install as a user gets it (``ExemplarRouter.default()``, no
backend argument, no environment variable), with queries never seen before::

    python benchmarks/fast.py --label after
    python benchmarks/fast.py --code ../main --label before

``--code`` is the checkout whose ``langroute`` is measured (default: this one), so the
same script measures before and after; a path with no ``langroute`` package is an error.
Results go to ``--output PATH``, else ``$LANGROUTE_BENCH_DIR`` or the temp dir
(``langroute-benchmarks/fast-LABEL.json``); ``--save`` writes the published
``benchmarks/results/fast-LABEL.json``. Every figure is stored with the load average
at the moment it was taken (``os.getloadavg()``): the machine may be shared.

Sections (``--sections``, comma list):

* ``single``: one query at a time, p50/p99;
* ``batch``: ``route_batch`` throughput, batches of 256;
* ``threads``: 32 threads, each sending single queries with ``route``;
* ``tasks``: 32 asyncio tasks, each sending single queries with ``aroute``;
* ``neighbour``: ``single`` again with one CPU-bound neighbour process running;
* ``fresh``: a fresh process to the first decision with a saved router: time and peak RSS;
* ``frameworks``: time routing adds to a LangChain ``chain.invoke`` and a LlamaIndex
  ``query_engine.query`` over fake models (median of 50), quiet and with the neighbour;
* ``semantic_router``: skipped with a message when semantic-router is not installed
  (``benchmarks/perf.py`` has the side by side when it is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_path import add_output_options, output_path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("single", "batch", "threads", "tasks", "neighbour", "fresh", "frameworks")
TARGETS = {
    "single_p50_ms": 3.0,
    "single_p99_ms": 6.0,
    "batch_qps": 1200,
    "concurrent_qps": 1000,
    "concurrent_p99_ms": 40.0,
    "neighbour_p50_ratio": 3.0,
    "fresh_s": 0.5,
    "fresh_rss_mb": 250,
}
TOPICS = [
    "what is the capital of {}",
    "translate '{}' into french",
    "write a haiku about {}",
    "prove a theorem about {} step by step",
    "design a distributed system for {} with failover",
    "summarise the history of {} in one sentence",
    "how do i sort a list of {} in python",
    "plan a week-long trip to see {} on a budget",
]
WORDS = [
    "apples", "rivers", "glaciers", "compilers", "violins", "meteors", "tulips", "bridges",
    "falcons", "volcanoes", "satellites", "lanterns", "harbours", "orchards", "deserts",
    "pianos", "cathedrals", "submarines", "forests", "telescopes",
]  # fmt: skip


def queries(count: int, salt: str) -> list[str]:
    """Distinct, realistic-looking queries (``salt`` keeps sections from sharing any)."""
    out = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        word = WORDS[(i // len(TOPICS)) % len(WORDS)]
        out.append(f"{topic.format(word)} ({salt} {i})")
    return out


def load() -> float:
    """The 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


def pct(samples: Sequence[float], q: float) -> float:
    """Percentile ``q`` of ``samples`` (nearest rank), rounded."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def _busy() -> None:  # pragma: no cover - runs in the neighbour process
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


@contextmanager
def neighbour() -> Iterator[None]:
    """One CPU-bound process running beside the measurement."""
    process = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True)
    process.start()
    time.sleep(1.0)  # let it get going
    try:
        yield
    finally:
        process.terminate()
        process.join()


def starter() -> Any:
    """The starter router with the default embedder, warmed up as a deployment would."""
    from langroute import ExemplarRouter

    router = ExemplarRouter.default()
    warm = getattr(router, "warm_up", None)
    if callable(warm):
        warm()
    else:  # before issue 12: a first query loads the model
        router.route("warm up the encoder")
    return router


# -- sections -----------------------------------------------------------------------------


def bench_single(router: Any, n: int, salt: str = "single") -> dict[str, Any]:
    """Single queries, one at a time."""
    samples = []
    load_before = load()
    for query in queries(n, salt):
        start = time.perf_counter()
        router.route(query)
        samples.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": pct(samples, 50),
        "p99_ms": pct(samples, 99),
        "queries": n,
        "load": [load_before, load()],
    }


def bench_batch(router: Any, n: int) -> dict[str, Any]:
    """route_batch throughput in batches of 256."""
    items = queries(n, "batch")
    load_before = load()
    start = time.perf_counter()
    for i in range(0, n, 256):
        router.route_batch(items[i : i + 256])
    seconds = time.perf_counter() - start
    return {"qps": round(n / seconds, 1), "queries": n, "load": [load_before, load()]}


def bench_threads(router: Any, callers: int, per_caller: int) -> dict[str, Any]:
    """``callers`` threads, each routing ``per_caller`` single queries in turn."""
    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(callers + 1)

    def caller(index: int) -> None:
        mine = queries(per_caller, f"thread{index}")
        barrier.wait()
        local = []
        for query in mine:
            start = time.perf_counter()
            router.route(query)
            local.append((time.perf_counter() - start) * 1000)
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    load_before = load()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return _concurrent(samples, seconds, callers, load_before, router)


def bench_tasks(router: Any, callers: int, per_caller: int) -> dict[str, Any]:
    """``callers`` asyncio tasks, each awaiting ``aroute`` on single queries in turn."""
    samples: list[float] = []

    async def caller(index: int) -> None:
        for query in queries(per_caller, f"task{index}"):
            start = time.perf_counter()
            await router.aroute(query)
            samples.append((time.perf_counter() - start) * 1000)

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        return time.perf_counter() - start

    load_before = load()
    seconds = asyncio.run(main())
    return _concurrent(samples, seconds, callers, load_before, router)


def _concurrent(
    samples: list[float], seconds: float, callers: int, load_before: float, router: Any
) -> dict[str, Any]:
    result = {
        "qps": round(len(samples) / seconds, 1),
        "p50_ms": pct(samples, 50),
        "p99_ms": pct(samples, 99),
        "callers": callers,
        "queries": len(samples),
        "load": [load_before, load()],
    }
    batcher = getattr(router, "batcher", None)
    if batcher is not None:
        before = getattr(router, "_bench_stats", {})
        now = batcher.stats()
        result["batcher"] = {k: v - before.get(k, 0) for k, v in now.items() if k != "largest"}
        result["batcher"]["largest_so_far"] = now["largest"]
        router._bench_stats = now
    return result


_FRESH = """
import json, time
start = time.perf_counter()
from langroute import ExemplarRouter
decision = ExemplarRouter.load({path!r}).route("write a rust function that parses a csv file")
elapsed = time.perf_counter() - start
import sys
with open("/proc/self/status") as status:
    peak = [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM")][0]
heavy = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
print(json.dumps({{"s": elapsed, "peak_rss_mb": peak, "route": decision.route, "heavy": heavy}}))
"""


def bench_fresh(router: Any, code: Path, repeats: int) -> dict[str, Any]:
    """A fresh interpreter: import, load a saved router, route once (export cached)."""
    env = dict(os.environ, PYTHONPATH=str(code))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(router.save(Path(tmp) / "router"))
        load_before = load()
        for _ in range(repeats):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _FRESH.format(path=path)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["process_s"] = time.perf_counter() - start
            runs.append(result)
    return {
        "first_decision_s": round(statistics.median(r["s"] for r in runs), 3),
        "with_interpreter_start_s": round(statistics.median(r["process_s"] for r in runs), 3),
        "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs), 1),
        "heavy_modules": runs[0]["heavy"],
        "repeats": repeats,
        "load": [load_before, load()],
    }


def _median_ms(fn: Callable[[str], Any], items: list[str]) -> float:
    samples = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def bench_frameworks(router: Any, calls: int, salt: str) -> dict[str, Any]:
    """Routing's added time per LangChain chain.invoke and LlamaIndex query (median)."""
    out: dict[str, Any] = {"calls": calls, "load": [load()]}
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from langchain_langroute import RoutingChatModel
    from langchain_langroute.testing import ScriptedChatModel

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    small, large = ScriptedChatModel(model="small"), ScriptedChatModel(model="large")
    routed = prompt | RoutingChatModel(router=router, models={"small": small, "large": large})
    plain = prompt | small | StrOutputParser()
    routed = routed | StrOutputParser()
    for chain in (plain, routed):  # warm both paths
        chain.invoke({"q": "hello"})
    items = queries(calls, f"{salt}-lc")
    base = _median_ms(lambda q: plain.invoke({"q": q}), items)
    with_routing = _median_ms(lambda q: routed.invoke({"q": q}), queries(calls, f"{salt}-lc2"))
    out["langchain_chain_ms"] = round(base, 3)
    out["langchain_routed_chain_ms"] = round(with_routing, 3)
    out["langchain_added_ms"] = round(with_routing - base, 3)

    from llama_index.core import Document, VectorStoreIndex
    from llama_index.llms.langroute import RoutingLLM
    from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderLLM

    docs = [
        Document(text=f"Fact {i}: {w} are discussed in chapter {i}.") for i, w in enumerate(WORDS)
    ]
    index = VectorStoreIndex.from_documents(docs, embed_model=HashingEmbedding())
    mock_small, mock_large = MockProviderLLM(model="small"), MockProviderLLM(model="large")
    routed_llm = RoutingLLM(router=router, models={"small": mock_small, "large": mock_large})
    plain_engine = index.as_query_engine(llm=mock_small, similarity_top_k=2)
    routed_engine = index.as_query_engine(llm=routed_llm, similarity_top_k=2)
    for engine in (plain_engine, routed_engine):
        engine.query("hello")
    base = _median_ms(plain_engine.query, queries(calls, f"{salt}-li"))
    with_routing = _median_ms(routed_engine.query, queries(calls, f"{salt}-li2"))
    out["llamaindex_query_ms"] = round(base, 3)
    out["llamaindex_routed_query_ms"] = round(with_routing, 3)
    out["llamaindex_added_ms"] = round(with_routing - base, 3)
    out["load"].append(load())
    return out


# -- driver -------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """What was measured: the embedder in use, threads, machine."""
    from langroute.embedders import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    info = {
        "backend": embedder.backend,
        "fingerprint": embedder.fingerprint,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "LANGROUTE_NUM_THREADS": os.environ.get("LANGROUTE_NUM_THREADS"),
    }
    try:
        from langroute.embedders import encoder_threads

        info["encoder_threads"] = encoder_threads()
    except ImportError:
        from langroute.embedders import num_threads

        info["encoder_threads"] = num_threads()
    return info


def summary(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's table: each target beside the measurement (and the load average)."""
    rows = []

    def add(what: str, value: Any, target: str, ok: bool | None, load_at: Any) -> None:
        rows.append({"what": what, "value": value, "target": target, "met": ok, "load": load_at})

    if "single" in sections:
        s = sections["single"]
        add("single query p50 (ms)", s["p50_ms"], "<= 3", s["p50_ms"] <= 3, s["load"])
        add("single query p99 (ms)", s["p99_ms"], "<= 6", s["p99_ms"] <= 6, s["load"])
    if "batch" in sections:
        b = sections["batch"]
        add("batch throughput (q/s)", b["qps"], ">= 1200", b["qps"] >= 1200, b["load"])
    for name, label in (("threads", "32 threads"), ("tasks", "32 asyncio tasks")):
        if name in sections:
            c = sections[name]
            ok = c["qps"] >= 1000 and c["p99_ms"] <= 40
            add(
                f"{label}: q/s, p99 (ms)",
                f"{c['qps']}, {c['p99_ms']}",
                ">= 1000, <= 40",
                ok,
                c["load"],
            )
    if "neighbour" in sections and "single" in sections:
        n = sections["neighbour"]
        ratio = round(n["p50_ms"] / sections["single"]["p50_ms"], 2)
        n["p50_ratio_to_quiet"] = ratio
        add(
            "busy neighbour: p50 (ms), x quiet",
            f"{n['p50_ms']}, {ratio}x",
            "<= 3x",
            ratio <= 3,
            n["load"],
        )
    if "fresh" in sections:
        f = sections["fresh"]
        ok = f["first_decision_s"] <= 0.5 and f["peak_rss_mb"] <= 250
        value = f"{f['first_decision_s']} s, {f['peak_rss_mb']} MB"
        add("fresh process to first decision", value, "<= 0.5 s, <= 250 MB", ok, f["load"])
    if "frameworks" in sections:
        for key, label in (("quiet", "quiet"), ("neighbour", "busy neighbour")):
            fw = sections["frameworks"].get(key)
            if fw:
                value = f"{fw['langchain_added_ms']} / {fw['llamaindex_added_ms']}"
                add(
                    f"routing added, LangChain / LlamaIndex (ms), {label}",
                    value,
                    "report",
                    None,
                    fw["load"],
                )
    return rows


def run(sections: Sequence[str], code: Path, quick: bool) -> dict[str, Any]:
    """Run the sections on the starter router with the default embedder."""
    n = 60 if quick else 400
    per_caller = 4 if quick else 50
    results: dict[str, Any] = {"started_load": load(), "sections": {}}
    router = starter()
    results["environment"] = environment()
    runs: dict[str, Callable[[], Any]] = {
        "single": lambda: bench_single(router, n),
        "batch": lambda: bench_batch(router, 256 if quick else 2048),
        "threads": lambda: bench_threads(router, 32, per_caller),
        "tasks": lambda: bench_tasks(router, 32, per_caller),
        "fresh": lambda: bench_fresh(router, code, 1 if quick else 5),
    }
    for name in sections:
        if name in runs:
            results["sections"][name] = runs[name]()
        elif name == "neighbour":
            with neighbour():
                results["sections"][name] = bench_single(router, n, "neighbour")
        elif name == "frameworks":
            calls = 5 if quick else 50
            quiet = bench_frameworks(router, calls, "quiet")
            with neighbour():
                busy = bench_frameworks(router, calls, "busy")
            results["sections"][name] = {"quiet": quiet, "neighbour": busy}
        print(f"{name}: {json.dumps(results['sections'].get(name))}", flush=True)
    try:
        import semantic_router  # noqa: F401
    except ImportError:
        results["semantic_router"] = "skipped: semantic-router is not installed here"
    else:
        results["semantic_router"] = "installed: see benchmarks/perf.py --sections semantic_router"
    results["summary"] = summary(results["sections"])
    results["finished_load"] = load()
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose langroute runs")
    parser.add_argument("--label", default="after", help="name of this run in the JSON")
    add_output_options(parser, "fast-LABEL.json", flag="--output")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    code = args.code.resolve()
    if not (code / "langroute" / "__init__.py").is_file():
        parser.error(f"--code {args.code}: no langroute checkout there (no langroute/__init__.py)")
    sys.path.insert(0, str(code))
    for extra in ("integrations/langchain", "integrations/llama-index"):
        sys.path.insert(1, str(code / extra))
    results = {"label": args.label, "code": str(code), **run(sections, code, args.quick)}
    output = output_path(args.output, args.save, f"fast-{args.label}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(row["what"]) for row in results["summary"]) if results["summary"] else 10
    for row in results["summary"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        print(
            f"{row['what']:<{width}}  {row['value']!s:>22}  target {row['target']:<20} "
            f"met {met:<3}  load {row['load']}"
        )
    print(f"saved {output}")
    return results


if __name__ == "__main__":
    main()
