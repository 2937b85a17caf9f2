"""Decider chains against the kNN router alone, on RouteLLM's MMLU and GSM8K dev data.

Run: ``python benchmarks/chains.py [DATA] [--json benchmarks/results/chains.json]``
(``DATA`` defaults to ``../shared/data``; the data is not shipped with langroute).

Two-halves protocol as in ``benchmarks/tuning.py``: exemplars from one half (the router
``langroute build`` gives, tuned within that half) route the other half, and the other
way round; figures are the mean of both directions, contaminated rows left out. The
dial is calibrated within the exemplar half (a router of three quarters routes the
fourth; the cheapest threshold keeping 95% of GPT-4's quality). Each
row needs the weak model (Mixtral-8x7B) when it answered correctly, else the strong one
(GPT-4). Chains compared (:func:`langroute.evaluation.chains.evaluate_chain`):

* ``knn``: the kNN router alone (unsure queries go to the strong fallback);
* ``rules+knn``: a heuristic gate a team might write first (very long prompts and code
  to the strong model, very short ones to the weak one), then the kNN;
* ``knn+llm@A``: unsure kNN decisions (low confidence, out of distribution) go to an
  LLM router. No LLM can be called here, so the LLM router is **simulated**: a model
  that picks the route the row needs with probability ``A`` (0.70 and 0.85, drawn per
  row from a fixed seed), else the other one. Its prompt is the real one
  (:class:`langroute.chains.deciders.LLMRouter`: route descriptions and 8 labelled
  neighbours); its token counts are word counts, priced as gpt-4o-mini;
* ``rules+knn+llm@0.85``: all three stages.

Reported per chain: quality (mean correctness of the model each row was sent to),
strong share (the cost proxy), quality loss and cost inflation against the route each
row needs, the escalation rate, the share each stage decided, the LLM router's calls
and cost per 1,000 queries, and an **estimated** total cost per 1,000 queries (serving
priced as gpt-4o-mini / gpt-4o for the weak / strong model on the mean prompt's word
count and 200 output tokens, plus routing), to set routing's cost against.
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

from quality import STRONG, WEAK, console, embed_once
from rich.table import Table

from langroute import Exemplar, load_exemplars
from langroute.chains.deciders import (
    DeciderChain,
    HeuristicGate,
    LLMRouter,
    prompt_line,
    request_in_prompt,
)
from langroute.costs import Pricer
from langroute.evaluation import assign_folds, build_router, calibrate
from langroute.evaluation.chains import evaluate_chain
from langroute.evaluation.datasets import split_contaminated
from langroute.models.scripted import ScriptedCompletionModel

RULES = [
    {"name": "long prompt", "route": STRONG, "min_words": 250},
    {"name": "code", "route": STRONG, "code": True},
    {"name": "short question", "route": WEAK, "max_words": 12},
]
DESCRIPTIONS = {
    WEAK: "Mixtral-8x7B: a cheap open model, good at recall and simple questions",
    STRONG: "GPT-4: expensive, strong at multi-step reasoning, math and hard knowledge",
}


def simulated_llm_router(rows: list[Exemplar], accuracy: float, seed: int) -> Any:
    """A router model that names the route each row needs with probability ``accuracy``."""
    needed = {prompt_line(r.text): r.label_for([WEAK, STRONG]) for r in rows}

    def reply(prompt: str) -> str:
        query = request_in_prompt(prompt)
        truth = needed.get(query, STRONG)
        draw = int(hashlib.sha256(f"{seed}:{query}".encode()).hexdigest()[:8], 16) / 16**8
        return truth if draw < accuracy else (WEAK if truth == STRONG else STRONG)

    return ScriptedCompletionModel("gpt-4o-mini", reply=reply)


def chains_for(knn: Any, rows: list[Exemplar], seed: int) -> dict[str, DeciderChain]:
    gate = HeuristicGate(RULES)

    def llm(accuracy: float) -> LLMRouter:
        return LLMRouter(
            simulated_llm_router(rows, accuracy, seed),
            descriptions=DESCRIPTIONS,
            may_choose_cheaper=True,  # measured: how often a cheaper choice costs quality
        )

    return {
        "knn": DeciderChain(knn),
        "rules+knn": DeciderChain(knn, gate=gate),
        "knn+llm@0.70": DeciderChain(knn, llm=llm(0.70)),
        "knn+llm@0.85": DeciderChain(knn, llm=llm(0.85)),
        "rules+knn+llm@0.85": DeciderChain(knn, gate=gate, llm=llm(0.85)),
    }


def serving_per_1k(strong_share: float, prompt_tokens: float) -> float:
    """Estimated serving cost of 1,000 queries: gpt-4o-mini / gpt-4o prices for the weak /
    strong model, the mean prompt's word count as its tokens and 200 output tokens."""
    pricer = Pricer()
    weak = pricer.cost("gpt-4o-mini", round(prompt_tokens), 200) or 0.0
    strong = pricer.cost("gpt-4o", round(prompt_tokens), 200) or 0.0
    return 1000 * (strong_share * strong + (1 - strong_share) * weak)


def summarise(report: Any, prompt_tokens: float) -> dict[str, Any]:
    chain = report.chain
    routing = None if report.routing_cost is None else 1000 * report.routing_cost / report.n
    serving = serving_per_1k(chain.strong_share, prompt_tokens)
    return {
        "serving_cost_per_1k_estimate": serving,
        "total_cost_per_1k_estimate": serving + (routing or 0.0),
        "always_strong_cost_per_1k_estimate": serving_per_1k(1.0, prompt_tokens),
        "quality": chain.quality,
        "strong_share": chain.strong_share,
        "accuracy": chain.accuracy,
        "quality_loss": chain.quality_loss,
        "cost_inflation": chain.cost_inflation,
        "escalation_rate": chain.escalation_rate,
        "stage_shares": {s.stage: s.share for s in report.stages},
        "stage_accuracy": {s.stage: s.accuracy for s in report.stages},
        "routing_calls_per_1k": 1000 * report.routing_calls / report.n,
        "routing_cost_per_1k": routing,
        "knn_only": {
            "quality": report.knn_only.quality,
            "strong_share": report.knn_only.strong_share,
            "quality_loss": report.knn_only.quality_loss,
            "cost_inflation": report.knn_only.cost_inflation,
        },
    }


def mean_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of each number over the directions (nested dicts alike)."""
    out: dict[str, Any] = {}
    for key, value in results[0].items():
        if isinstance(value, dict):
            out[key] = mean_of([r[key] for r in results])
        elif isinstance(value, (int, float)):
            values = [r[key] for r in results if r[key] is not None]
            out[key] = sum(values) / len(values) if values else None
        else:
            out[key] = value
    return out


def run_dataset(name: str, path: Path, cache_dir: Path | None, seed: int) -> dict[str, Any]:
    rows = load_exemplars(path)
    embedder = embed_once(name, rows, cache_dir)
    halves = assign_folds([r.text for r in rows], 2, seed)
    per_chain: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for direction in (0, 1):
        train = [r for r, h in zip(rows, halves, strict=True) if h != direction]
        test, _ = split_contaminated(
            [r for r, h in zip(rows, halves, strict=True) if h == direction], True
        )
        knn = build_router(train, routes=[WEAK, STRONG], embedder=embedder)
        # the dial: the cheapest threshold keeping 95% of GPT-4's quality, chosen on a
        # quarter of the exemplar half routed by a router of the other three quarters
        inner = assign_folds([r.text for r in train], 4, seed)
        probe = build_router(
            [r for r, f in zip(train, inner, strict=True) if f != 0],
            routes=[WEAK, STRONG],
            embedder=embedder,
        )
        held = [r for r, f in zip(train, inner, strict=True) if f == 0]
        knn.threshold = calibrate(probe, held, target_quality=0.95).threshold
        words = sum(len(r.text.split()) for r in test) / len(test)
        for label, chain in chains_for(knn, test, seed).items():
            report = evaluate_chain(chain, test)
            per_chain.setdefault(label, []).append(summarise(report, words))
    return {
        "rows": len(rows),
        "seconds": round(time.perf_counter() - started, 1),
        "chains": {label: mean_of(results) for label, results in per_chain.items()},
    }


def show(name: str, result: dict[str, Any]) -> None:
    table = Table(title=f"{name}: decider chains vs the kNN router alone (mean of 2 halves)")
    for column in (
        "chain", "quality", "strong", "q loss", "cost infl", "esc", "stages (share)",
        "LLM calls/1k", "$ routing/1k", "$ total/1k (est.)",
    ):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("chain", "stages (share)") else "right"
        )
    for label, r in result["chains"].items():
        stages = ", ".join(f"{s} {v:.0%}" for s, v in r["stage_shares"].items())
        cost = r["routing_cost_per_1k"]
        table.add_row(
            label,
            f"{r['quality']:.3f}",
            f"{r['strong_share']:.1%}",
            f"{r['quality_loss']:.1%}",
            f"{r['cost_inflation']:.1%}",
            f"{r['escalation_rate']:.1%}",
            stages,
            f"{r['routing_calls_per_1k']:.0f}",
            "-" if cost is None else f"${cost:.4f}",
            f"${r['total_cost_per_1k_estimate']:.3f}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["mmlu", "gsm8k"], default=None)
    args = parser.parse_args()
    folder = args.data / "routellm"
    if not folder.is_dir():
        console.print(f"no RouteLLM data under {args.data}: nothing to measure")
        return
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "llm_router": "simulated (accuracy 0.70 / 0.85 on the needed route), priced as gpt-4o-mini",
    }
    for name in ("gsm8k", "mmlu"):
        if args.only and name != args.only:
            continue
        result = run_dataset(name, folder / f"{name}.dev.jsonl", args.cache_dir, args.seed)
        show(name, result)
        results[name] = result
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        console.print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
