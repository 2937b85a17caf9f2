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

* **learning cascade + exploration**: the same, with bounded exploration
  (``Exploration(share=0.1, half_life=500)``): a decaying share of the queries the router
  would route past try the weak model anyway, so a wrong skip is learned again.

The learning curve is the APGR on half B of the learning cascade's router after 0, 100,
300, 1,000 and 3,000 outcomes (the stream may end before the last). Per stream window
between checkpoints, each learning cascade's cost is compared with the cascade alone.
For the queries routed past the weak model, the replay also reports how often the weak
answer would in fact have been rejected: skipping pays on cost only when that rate is
above ``1 - 1/ratio`` (0.95 at 1:20, 0.75 at 1:4), since trying the weak model first
costs ``1 + rate * ratio`` weak calls against ``ratio`` for the skip.
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
from vector_cache import cached_embedder

from langroute import ExemplarRouter, load_exemplars
from langroute.embedders import as_embedder
from langroute.evaluation.datasets import is_contaminated
from langroute.evaluation.metrics import cost_quality_curve
from langroute.router.exemplar_router import STARTER_EXEMPLARS
from langroute.router.learning import CascadeLearner, Exploration

WEAK = "mixtral-8x7b-instruct-v0.1"
STRONG = "gpt-4-1106-preview"
CHECKPOINTS = (0, 100, 300, 1000, 3000)
NOISES = (0.0, 0.1, 0.2)
RATIOS = (20.0, 4.0)
ROUTE_PAST_AT = 0.8
SEED = 0
EXPLORATION = Exploration(share=0.1, half_life=500, seed=SEED)
LEARNERS = {"learning cascade": None, "learning cascade + exploration": EXPLORATION}


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
    learners = {
        name: CascadeLearner(
            ExemplarRouter.default(embedder=embedder, cache=False),
            ["small", "large"],
            route_past=True,
            route_past_at=ROUTE_PAST_AT,
            explore=explore or 0.0,
        )
        for name, explore in LEARNERS.items()
    }
    static = starter.route_batch([t for t, _, _ in stream])
    names = ["always-strong", "always-cascade", "static starter router", *learners]
    per: dict[str, tuple[list[float], list[int], list[int]]] = {
        name: ([], [], []) for name in names
    }
    weak_failed_when_skipped = {name: [0, 0] for name in learners}  # [weak failed, skipped]

    def add(name: str, quality: float, weak: int, strong: int) -> None:
        per[name][0].append(quality)
        per[name][1].append(weak)
        per[name][2].append(strong)

    curve = {name: [_point(0, 0, learner.router, held)] for name, learner in learners.items()}
    window_start = {name: 0 for name in learners}
    windows: dict[str, list[dict[str, Any]]] = {name: [] for name in learners}
    targets = {name: [c for c in CHECKPOINTS if c > 0] for name in learners}
    outcomes = dict.fromkeys(learners, 0)
    for i, ((text, w, s), flip, decision) in enumerate(zip(stream, flips, static)):
        verdict = bool(w) != bool(flip)  # the validator's (noisy) view of the weak answer
        add("always-strong", s, 0, 1)
        add("always-cascade", w if verdict else s, 1, 0 if verdict else 1)
        cheap = decision.route == "small"
        add("static starter router", w if cheap else s, int(cheap), int(not cheap))
        for name, learner in learners.items():
            if learner.plan(text) is not None:  # routed past the weak model
                add(name, s, 0, 1)
                weak_failed_when_skipped[name][0] += int(not w)
                weak_failed_when_skipped[name][1] += 1
            else:
                learner.router.learn(
                    text, "small", good=verdict, source="cascade", scorer="validator"
                )
                learner.stats.learned += 1
                outcomes[name] += 1
                add(name, w if verdict else s, 1, 0 if verdict else 1)
            if targets[name] and outcomes[name] >= targets[name][0]:
                curve[name].append(_point(outcomes[name], i + 1, learner.router, held))
                start = window_start[name]
                cascade = summarise(*(x[start : i + 1] for x in per["always-cascade"]))
                learned = summarise(*(x[start : i + 1] for x in per[name]))
                windows[name].append(
                    {
                        "outcomes": f"{curve[name][-2]['outcomes']}-{outcomes[name]}",
                        "queries": i + 1 - start,
                        "cascade": cascade,
                        "learning_cascade": learned,
                    }
                )
                window_start[name] = i + 1
                targets[name].pop(0)
    for name, learner in learners.items():
        if curve[name][-1]["outcomes"] != outcomes[name]:
            curve[name].append(_point(outcomes[name], len(stream), learner.router, held))
    table = {name: summarise(*values) for name, values in per.items()}
    for name, learner in learners.items():
        failed, skipped = weak_failed_when_skipped[name]
        table[name]["routed_past"] = learner.stats.routed_past
        table[name]["explored"] = learner.stats.explored
        table[name]["learned_exemplars"] = len(learner.router.learned_exemplars)
        table[name]["weak_failed_when_routed_past"] = failed / skipped if skipped else None
    table["static starter router"]["apgr_held_out"] = curve["learning cascade"][0]["apgr"]
    run = {
        "table": table,
        "curve": curve["learning cascade"],
        "windows": windows["learning cascade"],
        "exploration": {
            "settings": EXPLORATION.model_dump(),
            "curve": curve["learning cascade + exploration"],
            "windows": windows["learning cascade + exploration"],
        },
    }
    return run, curve["learning cascade"]


def _point(outcomes: int, seen: int, router: ExemplarRouter, held: list[Any]) -> dict[str, Any]:
    return {"outcomes": outcomes, "queries_seen": seen, "apgr": apgr(router, held)}


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
    for i, (noise, run) in enumerate(results["runs"].items()):
        xs = [max(p["outcomes"], 10) for p in run["curve"]]
        ax.plot(xs, [p["apgr"] for p in run["curve"]], marker="o", label=f"noise {noise}")
        explored = run["exploration"]["curve"]
        ax.plot(
            [max(p["outcomes"], 10) for p in explored],
            [p["apgr"] for p in explored],
            marker="x",
            linestyle="--",
            color=f"C{i}",
            label=f"noise {noise}, exploring",
        )
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
    embedder = cached_embedder(base, texts)  # the same cache as adaptive_dial.py
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
        run["exploration"]["break_even"] = {
            f"1:{r:g}": break_even(run["exploration"]["windows"], r) for r in RATIOS
        }
        results["runs"][f"{noise:g}"] = run
        print(f"noise {noise:.0%}")
        for name, row in run["table"].items():
            print(
                f"  {name:24s} quality {row['quality']:.4f}  cost 1:20 {row['cost_1:20']:.3f}  "
                f"cost 1:4 {row['cost_1:4']:.3f}  calls/query {row['calls_per_query']:.2f}"
            )
        print("  APGR:", ", ".join(f"{p['outcomes']}: {p['apgr']:.3f}" for p in run["curve"]))
        print("  learning cascade beats the cascade alone from window:", run["break_even"])
        print("  ... with exploration:", run["exploration"]["break_even"])
        for name in LEARNERS:
            rate = run["table"][name]["weak_failed_when_routed_past"]
            if rate is not None:
                print(f"  {name}: weak answer rejected on {rate:.1%} of the queries routed past")
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
