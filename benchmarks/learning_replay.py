"""Replay: does a cascade that teaches its router pay off, and after how many outcomes?

Run: ``python benchmarks/learning_replay.py [DATA] [--json OUT.json]`` (default: the
scratch folder of ``results_path.py``; ``--save``: ``benchmarks/results/learning_replay.json``;
the plot beside it as ``.png``)
(``DATA`` defaults to ``/work/shared/data``; without the RouteLLM files it says so and
exits 0).

Data: RouteLLM's per-query correctness of a weak (Mixtral-8x7B) and a strong (GPT-4)
model on MMLU and GSM8K (clean rows). The rows are split in two halves by the SHA-256
of the prompt: half A is the stream of production traffic, half B is held out for the
learning curve. Every text is embedded once with the default encoder (bundled MiniLM);
routers reuse the vectors.

Policies replayed over the stream (cost in units of one weak call; the strong call
costs 20 or 4 of them; calls per query count model calls):

* **always-strong**: every query to the strong model.
* **always-cascade**: weak first; a validator that sees the weak answer's correctness,
  flipped with probability ``noise`` (0, 10%, 20%), accepts it or escalates.
* **static starter router**: the bundled starter router (``small`` = weak, ``large`` =
  strong), no validator, never learning.
* **learning cascade**: the starter router attached to the cascade
  (``langroute.router.learning.CascadeLearner``): route, then cascade (skip the weak attempt
  when the neighbours' escalation estimate reaches 0.8), and each validator verdict
  becomes a learned exemplar.

The learning curve is the APGR on half B of the learning cascade's router after 0, 100,
300, 1,000 and 3,000 outcomes (the stream may end before the last). Per stream window
between checkpoints, the learning cascade's cost is compared with the cascade alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from results_path import add_output_options, output_path

from langroute import ExemplarRouter, load_exemplars
from langroute.embedders import as_embedder
from langroute.evaluation.datasets import PrecomputedEmbedder, is_contaminated
from langroute.evaluation.metrics import cost_quality_curve
from langroute.router.exemplar_router import STARTER_EXEMPLARS
from langroute.router.learning import CascadeLearner

WEAK = "mixtral-8x7b-instruct-v0.1"
STRONG = "gpt-4-1106-preview"
CHECKPOINTS = (0, 100, 300, 1000, 3000)
NOISES = (0.0, 0.1, 0.2)
RATIOS = (20.0, 4.0)
ROUTE_PAST_AT = 0.8
SEED = 0


def load_rows(data: Path) -> list[tuple[str, float, float]]:
    """(prompt, weak correct, strong correct) of the clean MMLU and GSM8K dev rows."""
    rows = []
    for name in ("mmlu.dev.jsonl", "gsm8k.dev.jsonl"):
        for ex in load_exemplars(data / "routellm" / name):
            if not is_contaminated(ex) and ex.scores is not None:
                rows.append((ex.text, ex.scores[WEAK], ex.scores[STRONG]))
    return list({text: (text, w, s) for text, w, s in rows}.values())


def halves(rows: list[tuple[str, float, float]]) -> tuple[list[Any], list[Any]]:
    """Half A (the stream, shuffled) and half B (held out), split by prompt hash."""
    a = [r for r in rows if int(hashlib.sha256(r[0].encode()).hexdigest()[1], 16) % 2 == 0]
    b = [r for r in rows if int(hashlib.sha256(r[0].encode()).hexdigest()[1], 16) % 2 == 1]
    order = np.random.default_rng(SEED).permutation(len(a))
    return [a[i] for i in order], b


def apgr(router: ExemplarRouter, held: list[Any]) -> float:
    decisions = router.route_batch([t for t, _, _ in held])
    z = np.array([d.escalation for d in decisions])
    w = np.array([r[1] for r in held])
    s = np.array([r[2] for r in held])
    return float(cost_quality_curve(z, weak=w, strong=s).apgr)


def summarise(quality: list[float], weak_calls: list[int], strong_calls: list[int]) -> dict:
    n = max(len(quality), 1)
    out: dict[str, Any] = {
        "queries": len(quality),
        "quality": float(np.sum(quality) / n),
        "calls_per_query": float((np.sum(weak_calls) + np.sum(strong_calls)) / n),
        "strong_share": float(np.sum(strong_calls) / n),
    }
    for ratio in RATIOS:
        cost = (np.sum(weak_calls) + ratio * np.sum(strong_calls)) / n
        out[f"cost_1:{ratio:g}"] = float(cost / ratio)  # relative to always-strong
    return out


def replay(
    stream: list[Any], held: list[Any], embedder: Any, noise: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the four policies over the stream at one validator noise level."""
    rng = np.random.default_rng(SEED + int(noise * 100))
    flips = rng.random(len(stream)) < noise
    starter = ExemplarRouter.default(embedder=embedder, cache=False)
    learning = ExemplarRouter.default(embedder=embedder, cache=False)
    learner = CascadeLearner(
        learning, ["small", "large"], route_past=True, route_past_at=ROUTE_PAST_AT
    )
    static = starter.route_batch([t for t, _, _ in stream])
    per: dict[str, tuple[list[float], list[int], list[int]]] = {
        name: ([], [], [])
        for name in ("always-strong", "always-cascade", "static starter router", "learning cascade")
    }

    def add(name: str, quality: float, weak: int, strong: int) -> None:
        per[name][0].append(quality)
        per[name][1].append(weak)
        per[name][2].append(strong)

    curve = [{"outcomes": 0, "queries_seen": 0, "apgr": apgr(learning, held)}]
    window_start = 0
    windows: list[dict[str, Any]] = []
    targets = [c for c in CHECKPOINTS if c > 0]
    outcomes = 0
    for i, ((text, w, s), flip, decision) in enumerate(zip(stream, flips, static)):
        verdict = bool(w) != bool(flip)  # the validator's (noisy) view of the weak answer
        add("always-strong", s, 0, 1)
        add("always-cascade", w if verdict else s, 1, 0 if verdict else 1)
        cheap = decision.route == "small"
        add("static starter router", w if cheap else s, int(cheap), int(not cheap))
        if learner.plan(text) is not None:  # routed past the weak model
            add("learning cascade", s, 0, 1)
        else:
            learning.learn(text, "small", good=verdict, source="cascade", scorer="validator")
            learner.stats.learned += 1
            outcomes += 1
            add("learning cascade", w if verdict else s, 1, 0 if verdict else 1)
        if targets and outcomes >= targets[0]:
            curve.append(
                {"outcomes": outcomes, "queries_seen": i + 1, "apgr": apgr(learning, held)}
            )
            cascade = summarise(*(x[window_start : i + 1] for x in per["always-cascade"]))
            learned = summarise(*(x[window_start : i + 1] for x in per["learning cascade"]))
            windows.append(
                {
                    "outcomes": f"{curve[-2]['outcomes']}-{outcomes}",
                    "queries": i + 1 - window_start,
                    "cascade": cascade,
                    "learning_cascade": learned,
                }
            )
            window_start = i + 1
            targets.pop(0)
    if curve[-1]["outcomes"] != outcomes:
        curve.append(
            {"outcomes": outcomes, "queries_seen": len(stream), "apgr": apgr(learning, held)}
        )
    table = {name: summarise(*values) for name, values in per.items()}
    table["learning cascade"]["routed_past"] = learner.stats.routed_past
    table["learning cascade"]["learned_exemplars"] = len(learning.learned_exemplars)
    table["static starter router"]["apgr_held_out"] = curve[0]["apgr"]
    return {"table": table, "curve": curve, "windows": windows}, curve


def break_even(windows: list[dict[str, Any]], ratio: float) -> str | None:
    """The first outcome window where the learning cascade is cheaper at no quality loss."""
    key = f"cost_1:{ratio:g}"
    for window in windows:
        a, b = window["learning_cascade"], window["cascade"]
        if a[key] < b[key] and a["quality"] >= b["quality"] - 0.005:
            return window["outcomes"]
    return None


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for noise, run in results["runs"].items():
        xs = [max(p["outcomes"], 10) for p in run["curve"]]
        ax.plot(xs, [p["apgr"] for p in run["curve"]], marker="o", label=f"noise {noise}")
    ax.axhline(0.5, color="grey", linestyle=":", label="random (0.5)")
    ax.set_xscale("log")
    ax.set_xlabel("outcomes learned (0 plotted at 10)")
    ax.set_ylabel("APGR on held-out half")
    ax.set_title("Learning cascade: router quality vs outcomes learned")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="/work/shared/data", type=Path)
    add_output_options(parser, "learning_replay.json", dest="out")
    parser.add_argument("--limit", type=int, default=None, help="use at most N rows per half")
    args = parser.parse_args(argv)
    args.out = output_path(args.out, args.save, "learning_replay.json")
    if not (args.data / "routellm" / "mmlu.dev.jsonl").is_file():
        print(f"RouteLLM data not found under {args.data}; skipping the replay")
        return 0
    started = time.perf_counter()
    stream, held = halves(load_rows(args.data))
    if args.limit:
        stream, held = stream[: args.limit], held[: args.limit]
    base = as_embedder(None)
    starter_texts = [ex.text for ex in load_exemplars(STARTER_EXEMPLARS)]
    texts = [t for t, _, _ in stream] + [t for t, _, _ in held] + starter_texts
    embedder = PrecomputedEmbedder(base, texts)
    embedded = time.perf_counter() - started
    results: dict[str, Any] = {
        "benchmark": "learning_replay",
        "stream_queries": len(stream),
        "held_out_queries": len(held),
        "route_past_at": ROUTE_PAST_AT,
        "embedder": base.fingerprint,
        "runs": {},
    }
    for noise in NOISES:
        run, _ = replay(stream, held, embedder, noise)
        run["break_even"] = {f"1:{r:g}": break_even(run["windows"], r) for r in RATIOS}
        results["runs"][f"{noise:g}"] = run
        print(f"noise {noise:.0%}")
        for name, row in run["table"].items():
            print(
                f"  {name:24s} quality {row['quality']:.4f}  cost 1:20 {row['cost_1:20']:.3f}  "
                f"cost 1:4 {row['cost_1:4']:.3f}  calls/query {row['calls_per_query']:.2f}"
            )
        print("  APGR:", ", ".join(f"{p['outcomes']}: {p['apgr']:.3f}" for p in run["curve"]))
        print("  learning cascade beats the cascade alone from window:", run["break_even"])
    results["seconds"] = {"embed": embedded, "total": time.perf_counter() - started}
    results["machine"] = {"python": sys.version.split()[0], "platform": platform.platform()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))
    seconds = results["seconds"]["total"]
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
