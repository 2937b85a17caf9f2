"""Shadow evaluation, replayed: does ``compare --ledger`` on live traffic match ``compare`` offline?

Run: ``python benchmarks/shadow_replay.py [DATA] [--limit N] [--json OUT.json]``
(``DATA`` defaults to ``/work/shared/data``; without the RouteLLM files the RouteLLM
part says so and is skipped).

Two workloads are replayed through a :class:`~langroute.dispatch.RouteDispatcher` with a
shadow candidate, as live traffic would be: each request is decided (the candidate
decides beside the live router, in the same batch, on the same cached query vectors),
answered by its live route (a stand-in answer, priced as gpt-4o-mini / gpt-4o), and
recorded in a SQLite ledger with its shadow decision; then
:func:`~langroute.evaluation.shadow.compare_ledger` reads the ledger back, and
:func:`~langroute.evaluation.comparison.compare` routes the same queries offline with
both routers. Printed for each: agreement, flips and the strong-route share delta from
both (they must be equal), the ledger's estimated cost delta and, where answers are
graded, its estimated quality delta next to the offline quality delta.

* **demo**: the 15 routed requests of ``langroute demo``; live = the starter router,
  candidate = the starter router with its dial at 0.3 (more traffic to the strong route);
  labelled with the route the demo's docs give each request (for ``compare``).
* **overhead**: the median time of one live decision without and with the candidate,
  decided inline (it shares the live embedder) or in a worker thread (each request new,
  so the live router embeds it; the candidate reuses that vector).
* **RouteLLM** (MMLU + GSM8K dev, clean rows): live = the starter router, candidate = a
  router built from half A's per-query scores (SHA-256 split of the prompt); half B is the
  traffic (``--limit`` rows of it). Each answer is graded with RouteLLM's correctness of
  the model the live route stands for (Mixtral-8x7B for small, GPT-4 for large), as
  feedback in the ledger.

Timings are not the point here (the machine is shared and noisy); the replay's wall time
is printed only to size runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from langroute import Exemplar, ExemplarRouter
from langroute.costs import CostLedger
from langroute.dispatch.dispatcher import RouteDispatcher
from langroute.dispatch.routed_call import Attempt, TokenUsage
from langroute.dispatch.shadow import ShadowRouter
from langroute.evaluation.comparison import compare
from langroute.evaluation.shadow import compare_ledger

ROUTES = ["small", "large"]
MODELS = {"small": "gpt-4o-mini", "large": "gpt-4o"}
WEAK, STRONG = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"
BATCH = 128
DEMO_LABELS = ["small"] * 10 + ["large"] * 5
"""The demo workload's routed requests, in order: ten everyday ones, then one ambiguous
and four hard ones (see ``langchain_langroute.demo.WORKLOAD``)."""


def replay(
    rows: Sequence[Exemplar],
    live: Any,
    candidate: Any,
    ledger_path: Path,
    *,
    grades: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Replay ``rows`` as live traffic with a shadow candidate; both comparisons' figures.

    ``grades`` (text -> route -> score in [0, 1]) turns each answer's score into
    feedback on its ledger record (good when the score is at least 0.5).
    """
    dispatcher = RouteDispatcher(
        live,
        MODELS,
        context=None,
        sessions=False,
        shadow=ShadowRouter(candidate, name="candidate", timeout_s=60.0),
    )
    started = time.perf_counter()
    with CostLedger(ledger_path) as ledger:
        texts = [row.text for row in rows]
        for first in range(0, len(texts), BATCH):
            chunk = texts[first : first + BATCH]
            for text, decision in zip(chunk, dispatcher.decide_batch(chunk)):
                assert decision is not None
                call = dispatcher.start(decision)
                route = decision.route
                usage = TokenUsage(input_tokens=len(text) // 4 + 1, output_tokens=120)
                call.add_attempt(Attempt(route=route, model=MODELS[route], usage=usage))
                for record in call.ledger_records(framework="replay", query=text):
                    ledger.record(record)
                if grades is not None:
                    verdict = "good" if grades[text][route] >= 0.5 else "bad"
                    ledger.feedback(call.record_id, verdict, source="replay")
        ledger.flush()
        records = ledger.records()
    replay_s = time.perf_counter() - started
    online = compare_ledger(records, routes=ROUTES, route_models=MODELS)
    offline = compare(live, candidate, list(rows))
    offline_agreement = 1 - offline.flipped_count / offline.n
    return {
        "n": online.n,
        "shadow_errors": online.shadow_errors,
        "ledger": {
            "agreement": online.agreement,
            "agreement_ci": online.agreement_ci,
            "flipped": online.flipped,
            "harmful_flips": online.harmful_flips,
            "strong_share_delta": online.strong_share_delta,
            "cost_delta": online.cost_delta,
            "cost_delta_ci": online.cost_delta_ci,
            "quality_delta": online.quality_delta,
            "quality_delta_ci": online.quality_delta_ci,
        },
        "offline": {
            "n": offline.n,
            "agreement": offline_agreement,
            "flipped": offline.flipped_count,
            "strong_share_delta": offline.deltas.get("strong_share"),
            "quality_delta": offline.deltas.get("quality"),
            "effects": offline.effects,
        },
        "replay_s": round(replay_s, 2),
    }


def demo_rows() -> list[Exemplar]:
    """The demo workload's routed requests, labelled as its docs describe them."""
    from langchain_langroute.demo import WORKLOAD

    routed = [r.text for r in WORKLOAD if r.kind == "route"]
    return [Exemplar(text=t, route=label) for t, label in zip(routed, DEMO_LABELS, strict=True)]


def run_demo(folder: Path) -> dict[str, Any]:
    live = ExemplarRouter.default()
    candidate = ExemplarRouter.default(embedder=live.embedder)
    candidate.threshold = 0.3
    return replay(demo_rows(), live, candidate, folder / "demo-shadow.db")


def overhead(rounds: int = 3) -> dict[str, Any]:
    """Median time of one live decision, without and with a shadow candidate (ms).

    The demo's routed requests, each made unique per round (so the live router embeds
    it: a cache miss, as for a new request); the candidate shares the live embedder.
    """
    from langroute.dispatch.dispatcher import RouteRequest

    live = ExemplarRouter.default()
    live.warm_up()
    candidate = ExemplarRouter.default(embedder=live.embedder)
    candidate.threshold = 0.3
    dispatchers = {
        "without": RouteDispatcher(live, MODELS, context=None, sessions=False),
        "inline": RouteDispatcher(
            live, MODELS, context=None, sessions=False, shadow=ShadowRouter(candidate, inline=True)
        ),
        "thread": RouteDispatcher(
            live, MODELS, context=None, sessions=False, shadow=ShadowRouter(candidate)
        ),
    }
    texts = [row.text for row in demo_rows()]
    timings: dict[str, list[float]] = {name: [] for name in dispatchers}
    for round_ in range(rounds):
        for i, text in enumerate(texts):
            for name, dispatcher in dispatchers.items():
                query = f"{text} (request {round_}-{i}-{name})"
                started = time.perf_counter()
                dispatcher.decide(RouteRequest(query=query))
                timings[name].append((time.perf_counter() - started) * 1000)
    median = {name: float(np.median(values)) for name, values in timings.items()}
    return {
        "decisions": len(timings["without"]),
        "median_ms_without_shadow": round(median["without"], 3),
        "median_ms_with_inline_shadow": round(median["inline"], 3),
        "median_ms_with_threaded_shadow": round(median["thread"], 3),
    }


def _half_a(prompt: str) -> bool:
    # the dev files hold the prompts whose first hex digit is even: split on the second
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[1], 16) % 2 == 0


def routellm_rows(data: Path) -> list[dict[str, Any]] | None:
    """The clean RouteLLM dev rows, or None when the files are absent."""
    files = [data / "routellm" / name for name in ("mmlu.dev.jsonl", "gsm8k.dev.jsonl")]
    if not all(f.is_file() for f in files):
        return None
    rows = []
    for path in files:
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            row = json.loads(line)
            if not row["contaminated"]:
                rows.append(row)
    return rows


def _every_nth(rows: list[Exemplar], limit: int) -> list[Exemplar]:
    """``limit`` rows spread over ``rows`` (a short run still mixes MMLU subjects and GSM8K)."""
    step = max(1, len(rows) // limit)
    return rows[::step][:limit]


def run_routellm(
    data: Path, folder: Path, limit: int, train_limit: int = 2000
) -> dict[str, Any] | None:
    rows = routellm_rows(data)
    if rows is None:
        return None
    if limit < 1 or train_limit < 1:
        raise ValueError("limit and train_limit must be at least 1")

    def scored(row: dict[str, Any]) -> Exemplar:
        scores = row["scores"]
        return Exemplar(text=row["prompt"], scores={"small": scores[WEAK], "large": scores[STRONG]})

    train = _every_nth([scored(r) for r in rows if _half_a(r["prompt"])], train_limit)
    traffic = _every_nth([scored(r) for r in rows if not _half_a(r["prompt"])], limit)
    live = ExemplarRouter.default()
    candidate = ExemplarRouter(
        routes=ROUTES, exemplars=train, embedder=live.embedder, min_similarity=0.0
    )
    grades = {row.text: dict(row.scores or {}) for row in traffic}
    return replay(traffic, live, candidate, folder / "routellm-shadow.db", grades=grades)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--limit", type=int, default=1000, help="RouteLLM traffic rows.")
    parser.add_argument(
        "--train", type=int, default=2000, help="RouteLLM rows the candidate is built from."
    )
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results: dict[str, Any] = {"demo": run_demo(folder), "overhead": overhead()}
        routellm = run_routellm(args.data, folder, args.limit, args.train)
        if routellm is None:
            print(f"RouteLLM data not found under {args.data}: that part is skipped")
        results["routellm"] = routellm
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
