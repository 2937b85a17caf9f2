"""Core router figures: latency, throughput, cold start, starter-pack accuracy.

Run: ``python benchmarks/core.py [--data ../shared/data] [--json benchmarks/results/core.json]``

Measures, on this machine, with the bundled all-MiniLM-L6-v2 (PyTorch backend):
warm single-query routing latency p50/p99 split into embed/search/decide; batch
routing throughput; cold start (fresh interpreter: import, build the starter router,
first decision, peak RSS); leave-one-out accuracy of the starter pack; and kNN
accuracy on the shared intent data (CLINC150 and Banking77 train files, a
deterministic 20% of each label held out) when the data is present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from results_path import add_output_options, output_path
from rich.console import Console
from rich.table import Table

from langroute import Exemplar, ExemplarRouter, load_exemplars
from langroute.embedders import SentenceTransformerEmbedder
from langroute.evaluation.datasets import PrecomputedEmbedder
from langroute.router.exemplar_router import STARTER_EXEMPLARS

QUERIES = [
    "hey there, how's it going?",
    "What's the capital of Canada?",
    "Translate 'see you tomorrow' into Italian",
    "Turn this into a bullet list: eggs, milk, bread, butter",
    "Write a Python async web scraper with retries and rate limiting",
    "Prove that the sum of the first n odd numbers is n squared",
    "Compare PostgreSQL and MongoDB for a multi-tenant SaaS billing system",
    "Plan a two-week onboarding program for new backend engineers",
    "Summarise in one line: the meeting moved to Thursday because the client is travelling",
    "Why does my React component re-render infinitely when I set state in useEffect?",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def warm_latency(router: ExemplarRouter, rounds: int) -> dict[str, float]:
    router.embedder.clear()  # measure real embedding, not cache hits
    router.embedder.max_size = 0
    for query in QUERIES:  # warm-up
        router.route(query)
    totals, embeds, searches, decides = [], [], [], []
    for i in range(rounds):
        decision = router.route(QUERIES[i % len(QUERIES)])
        totals.append(decision.elapsed_ms)
        embeds.append(decision.timings_ms["embed"])
        searches.append(decision.timings_ms["search"])
        decides.append(decision.timings_ms["decide"])
    router.embedder.max_size = 4096
    return {
        "p50_ms": percentile(totals, 50),
        "p99_ms": percentile(totals, 99),
        "embed_p50_ms": percentile(embeds, 50),
        "search_p50_ms": percentile(searches, 50),
        "decide_p50_ms": percentile(decides, 50),
        "embed_share_p50": percentile(embeds, 50) / percentile(totals, 50),
    }


def batch_throughput(router: ExemplarRouter, size: int) -> float:
    router.embedder.clear()
    router.embedder.max_size = 0
    queries = [f"{QUERIES[i % len(QUERIES)]} (variant {i})" for i in range(size)]
    router.route_batch(queries[:16])
    start = time.perf_counter()
    router.route_batch(queries)
    elapsed = time.perf_counter() - start
    router.embedder.max_size = 4096
    return size / elapsed


COLD_START = """
import time, resource
t0 = time.perf_counter()
import langroute
t1 = time.perf_counter()
router = langroute.ExemplarRouter.default()
t2 = time.perf_counter()
router.route("hello, how are you?")
t3 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{t1 - t0} {t2 - t1} {t3 - t2} {t3 - t0} {rss}")
"""


def cold_start() -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", COLD_START], capture_output=True, text=True, check=True
    ).stdout.split()
    values = [float(v) for v in out]
    return {
        "import_s": values[0],
        "build_starter_router_s": values[1],
        "first_decision_s": values[2],
        "import_to_first_decision_s": values[3],
        "peak_rss_mb": values[4],
    }


def leave_one_out(pack: list[Exemplar], embedder: PrecomputedEmbedder) -> dict[str, float]:
    router = ExemplarRouter(routes=["small", "large"], exemplars=pack, embedder=embedder)
    correct = routed_small = wrong_cheap = wrong_strong = escalated = 0
    for exemplar in pack:
        router.remove_exemplars([exemplar.id])
        decision = router.route(exemplar.text)
        router.add_exemplars([exemplar])
        correct += decision.route == exemplar.route
        routed_small += decision.route == "small"
        wrong_cheap += exemplar.route == "large" and decision.route == "small"
        wrong_strong += exemplar.route == "small" and decision.route == "large"
        escalated += decision.escalated
    n = len(pack)
    return {
        "exemplars": n,
        "accuracy": correct / n,
        "quality_loss_rate": wrong_cheap / n,
        "cost_inflation_rate": wrong_strong / n,
        "escalation_rate": escalated / n,
        "small_share": routed_small / n,
    }


def held_out(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 5 == 0


def intent_accuracy(path: Path, embedder: SentenceTransformerEmbedder) -> dict[str, float]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    in_scope = [r for r in rows if r["label"] != "oos"]
    train = [r for r in in_scope if not held_out(r["text"])]
    test = [r for r in in_scope if held_out(r["text"])]
    routes = sorted({r["label"] for r in in_scope})
    start = time.perf_counter()
    router = ExemplarRouter(
        routes=routes,
        exemplars=[Exemplar(text=r["text"], route=r["label"]) for r in train],
        embedder=embedder,
        rule="argmax",
        min_similarity=-1.0,
        min_margin=0.0,
        show_progress=True,
    )
    built = time.perf_counter()
    decisions = router.route_batch([r["text"] for r in test])
    routed = time.perf_counter()
    correct = sum(d.route == r["label"] for d, r in zip(decisions, test))
    return {
        "train": len(train),
        "test": len(test),
        "labels": len(routes),
        "accuracy": correct / len(test),
        "build_exemplars_per_s": len(train) / (built - start),
        "route_queries_per_s": len(test) / (routed - built),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    add_output_options(parser, "core.json")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no intent data")
    args = parser.parse_args()
    args.json = output_path(args.json, args.save, "core.json")
    console = Console()
    rounds = 30 if args.quick else args.rounds

    embedder = SentenceTransformerEmbedder()
    pack = load_exemplars(STARTER_EXEMPLARS)
    start = time.perf_counter()
    router = ExemplarRouter.default(embedder=embedder)
    build_s = time.perf_counter() - start

    results: dict[str, object] = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "starter_build_s": build_s,
        "warm_single_query": warm_latency(router, rounds),
        "batch_queries_per_s": {
            str(size): batch_throughput(router, size)
            for size in ((16, 64) if args.quick else (16, 64, 256))
        },
        "cold_start": cold_start(),
        "starter_leave_one_out": leave_one_out(
            pack, PrecomputedEmbedder(embedder, [ex.text for ex in pack])
        ),
    }
    if not args.quick:
        for name in ("clinc150", "banking77"):
            file = args.data / "intents" / f"{name}.train.jsonl"
            if file.is_file():
                results[f"{name}_knn"] = intent_accuracy(file, embedder)
            else:
                console.print(f"[yellow]{file} not found: skipping {name}[/]")

    table = Table(title="langroute core benchmark", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    warm = results["warm_single_query"]
    table.add_row("warm single query p50 / p99", f"{warm['p50_ms']:.1f} / {warm['p99_ms']:.1f} ms")
    table.add_row(
        "  embed / search / decide (p50)",
        f"{warm['embed_p50_ms']:.2f} / {warm['search_p50_ms']:.3f} / "
        f"{warm['decide_p50_ms']:.3f} ms",
    )
    table.add_row("  embedding share of p50", f"{warm['embed_share_p50']:.0%}")
    for size, qps in results["batch_queries_per_s"].items():
        table.add_row(f"batch throughput (batch {size})", f"{qps:.0f} queries/s")
    cold = results["cold_start"]
    table.add_row("import langroute", f"{cold['import_s']:.2f} s")
    table.add_row(
        "cold start: import to first decision", f"{cold['import_to_first_decision_s']:.2f} s"
    )
    table.add_row("peak RSS (cold start process)", f"{cold['peak_rss_mb']:.0f} MB")
    loo = results["starter_leave_one_out"]
    table.add_row(
        f"starter pack leave-one-out accuracy ({loo['exemplars']})",
        f"{loo['accuracy']:.1%} (quality loss {loo['quality_loss_rate']:.1%}, "
        f"cost inflation {loo['cost_inflation_rate']:.1%}, escalated {loo['escalation_rate']:.1%})",
    )
    for name in ("clinc150", "banking77"):
        if f"{name}_knn" in results:
            knn = results[f"{name}_knn"]
            table.add_row(
                f"{name} kNN accuracy (20% held out, {knn['labels']} labels)",
                f"{knn['accuracy']:.1%} ({knn['test']} queries)",
            )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    console.print(f"saved {args.json}")


if __name__ == "__main__":
    main()
