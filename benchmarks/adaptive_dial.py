"""Replay: does the adaptive dial hold a spend target on a drifting workload?

Run: ``python benchmarks/adaptive_dial.py [DATA] [--json OUT.json]`` (default: the
scratch folder of ``results_path.py``; ``--save``: ``benchmarks/results/adaptive_dial.json``,
the plot beside it as ``.png``). ``DATA`` defaults to ``/work/shared/data``; without the
RouteLLM files the replay runs on the bundled starter pack (labels read as scores:
the cheap route is right on queries labelled ``small``), which says little about quality.

Data: RouteLLM's per-query correctness of a weak (Mixtral-8x7B) and a strong (GPT-4)
model on MMLU and GSM8K (clean rows), split in two halves by the SHA-256 of the prompt.
Half A builds the router (scored exemplars; the dial calibrated by cross-validation to
keep 95% of the strong model's quality at the estimate, ``langroute build
--standard-errors 0``); half B is the traffic.

Traffic: ``--per-hour`` requests an hour for ``--hours`` hours. The workload drifts:
the share of *hard* queries (those the weak model gets wrong) rises linearly from
``--hard-from`` to ``--hard-to``, so a fixed dial sends more and more to the strong
model and spends more. A strong call costs ``--strong-cost`` USD, a weak one
``--weak-cost``.

Policies, over the same stream:

* **fixed dial**: the calibrated threshold, never moved;
* **adaptive dial**: :class:`langroute.adaptive_dial.AdaptiveDial` with a
  :class:`SpendTarget` of the fixed dial's spend in the first hour (``--target`` to name
  one), reading the ledger of the replay (a simulated clock; every call a ledger row)
  and never going cheaper than the threshold that keeps 90% of the strong model's
  quality (its default floor).

Per hour: spend, strong share, quality (share of queries answered correctly) and the
quality kept (against always-strong), and whether the adaptive dial held the spend
within 10% of the target. An hour is *feasible* when the dial at its floor would spend
no more than the target on that hour's queries; in an infeasible hour the floor wins.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from results_path import add_output_options, output_path

from langroute import Exemplar, ExemplarRouter, load_exemplars
from langroute.adaptive_dial import AdaptiveDial, SpendTarget, quality_floor
from langroute.costs import CostLedger, LedgerRecord
from langroute.embedders import HashingEmbedder, as_embedder
from langroute.evaluation.calibration import calibrate_by_cross_validation
from langroute.router.exemplar_router import STARTER_EXEMPLARS

SEED = 0
START = datetime(2026, 11, 2, tzinfo=timezone.utc)
ROUTES = ["small", "large"]
Row = tuple[str, float, float]  # prompt, weak correct, strong correct


def routellm_rows(data: Path, per_half: int | None) -> list[Row]:
    """The clean RouteLLM rows: the first ``per_half`` of each of ``learning_replay.py``'s halves.

    The same rows as ``learning_replay.py --limit per_half``, so one embedding cache
    serves both replays.
    """
    from learning_replay import halves, load_rows

    stream, held = halves(load_rows(data))
    return stream[:per_half] + held[:per_half]


def starter_rows() -> list[Row]:
    """The bundled starter pack: the weak route is right where the label says ``small``."""
    return [(ex.text, float(ex.route == "small"), 1.0) for ex in load_exemplars(STARTER_EXEMPLARS)]


def split(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Half A (exemplars) and half B (traffic), by the prompt's hash."""
    a, b = [], []
    for row in rows:
        (a if int(hashlib.sha256(row[0].encode()).hexdigest()[2], 16) % 2 == 0 else b).append(row)
    return a, b


def drifting_stream(
    rows: list[Row], hours: int, per_hour: int, hard_from: float, hard_to: float
) -> list[tuple[datetime, Row]]:
    """``per_hour`` requests an hour, evenly spaced; the hard share rises linearly."""
    rng = np.random.default_rng(SEED)
    hard = [r for r in rows if r[1] < 0.5]
    easy = [r for r in rows if r[1] >= 0.5]
    total = hours * per_hour
    stream = []
    for i in range(total):
        share = hard_from + (hard_to - hard_from) * i / max(total - 1, 1)
        pool = hard if rng.random() < share else easy
        row = pool[int(rng.integers(len(pool)))]
        stream.append((START + timedelta(hours=1) * i / per_hour, row))
    return stream


class Replay:
    """One policy over the stream: route each minute's requests, write them to a ledger."""

    def __init__(self, router: ExemplarRouter, costs: tuple[float, float]) -> None:
        self.router = router
        self.costs = costs
        self.ledger = CostLedger()
        self.now = START
        self.rows: list[dict[str, Any]] = []

    def clock(self) -> datetime:
        return self.now

    def serve(self, batch: list[tuple[datetime, Row]]) -> None:
        decisions = self.router.route_batch([row[0] for _, row in batch])
        for (when, (_, weak, strong)), decision in zip(batch, decisions):
            large = decision.route == ROUTES[-1]
            cost = self.costs[1] if large else self.costs[0]
            self.ledger.record(
                LedgerRecord(
                    route=decision.route,
                    model="strong" if large else "weak",
                    cost=cost,
                    baseline_cost=self.costs[1],
                    timestamp=when,
                )
            )
            self.rows.append(
                {
                    "at": when,
                    "cost": cost,
                    "large": large,
                    "quality": strong if large else weak,
                    "strong_quality": strong,
                    "threshold": decision.threshold,
                }
            )


def run_policy(
    router: ExemplarRouter,
    stream: list[tuple[datetime, Row]],
    costs: tuple[float, float],
    dial_options: dict[str, Any] | None,
) -> tuple[Replay, AdaptiveDial | None]:
    """Replay the stream minute by minute; the dial (if any) checks once a simulated minute."""
    replay = Replay(router, costs)
    dial = None
    if dial_options is not None:
        dial = AdaptiveDial(router, replay.ledger, clock=replay.clock, **dial_options)
    minute = timedelta(minutes=1)
    i = 0
    while i < len(stream):
        end = replay.now + minute
        batch = []
        while i < len(stream) and stream[i][0] < end:
            batch.append(stream[i])
            i += 1
        if batch:
            replay.serve(batch)
        replay.now = end
        if dial is not None:
            dial.update()
    return replay, dial


def hourly(replay: Replay, hours: int) -> list[dict[str, Any]]:
    out = []
    for h in range(hours):
        start, end = START + timedelta(hours=h), START + timedelta(hours=h + 1)
        rows = [r for r in replay.rows if start <= r["at"] < end]
        n = max(len(rows), 1)
        strong_quality = sum(r["strong_quality"] for r in rows) / n
        quality = sum(r["quality"] for r in rows) / n
        out.append(
            {
                "hour": h,
                "requests": len(rows),
                "spend": sum(r["cost"] for r in rows),
                "strong_share": sum(r["large"] for r in rows) / n,
                "quality": quality,
                "quality_kept": quality / strong_quality if strong_quality else None,
                "threshold_end": rows[-1]["threshold"] if rows else None,
            }
        )
    return out


def spend_at(router: ExemplarRouter, threshold: float, texts: list[str], costs: tuple) -> float:
    """What routing ``texts`` at ``threshold`` would cost."""
    previous = router.threshold
    router.threshold = threshold
    try:
        decisions = router.route_batch(texts)
    finally:
        router.threshold = previous
    return sum(costs[1] if d.route == ROUTES[-1] else costs[0] for d in decisions)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    hours = [h["hour"] + 0.5 for h in results["fixed"]["hours"]]
    target = results["target_per_hour"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(hours, [h["spend"] for h in results["fixed"]["hours"]], marker="o", label="fixed dial")
    top.plot(
        hours, [h["spend"] for h in results["adaptive"]["hours"]], marker="o", label="adaptive dial"
    )
    top.plot(hours, results["spend_at_floor"], linestyle=":", color="grey", label="dial at floor")
    top.axhspan(target * 0.9, target * 1.1, color="green", alpha=0.15, label="target ± 10%")
    top.set_ylabel("spend per hour (USD)")
    top.legend(fontsize=8)
    top.set_title("Adaptive dial on a drifting workload (hard share rising)")
    changes = results["adaptive"]["changes"]
    xs = [0.0] + [c["hours"] for c in changes] + [len(hours)]
    ys = [results["fixed"]["threshold"]] + [c["threshold"] for c in changes]
    bottom.step(xs, ys + ys[-1:], where="post", label="adaptive threshold")
    bottom.axhline(results["floor"], color="red", linestyle="--", label="quality floor (90%)")
    bottom.axhline(results["fixed"]["threshold"], color="C0", linestyle=":", label="fixed dial")
    bottom.set_xlabel("hour")
    bottom.set_ylabel("threshold (higher = cheaper)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="/work/shared/data", type=Path)
    add_output_options(parser, "adaptive_dial.json", dest="out")
    parser.add_argument("--hours", type=int, default=10)
    parser.add_argument("--per-hour", type=int, default=240)
    parser.add_argument("--hard-from", type=float, default=0.1)
    parser.add_argument("--hard-to", type=float, default=0.9)
    parser.add_argument("--weak-cost", type=float, default=0.001)
    parser.add_argument("--strong-cost", type=float, default=0.02)
    parser.add_argument("--target", type=float, default=None, help="USD per hour")
    parser.add_argument(
        "--min-interval", type=float, default=1200, help="seconds between two dial changes"
    )
    parser.add_argument(
        "--per-half", type=int, default=1500,
        help="RouteLLM rows from each half of learning_replay.py's split (0: all)",
    )  # fmt: skip
    parser.add_argument(
        "--embedder", choices=["default", "hashing"], default="default",
        help="hashing: a quick model-free run (smoke tests; says nothing about quality)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out = output_path(args.out, args.save, "adaptive_dial.json")
    started = time.perf_counter()
    have_routellm = (args.data / "routellm" / "mmlu.dev.jsonl").is_file()
    rows = routellm_rows(args.data, args.per_half or None) if have_routellm else starter_rows()
    exemplar_rows, traffic_rows = split(rows)
    if args.embedder == "hashing":
        embedder: Any = HashingEmbedder()
    else:
        from vector_cache import cached_embedder

        embedder = cached_embedder(as_embedder(None), [r[0] for r in rows])
    embedded = time.perf_counter() - started
    exemplars = [
        Exemplar(text=text, scores={"small": weak, "large": strong})
        for text, weak, strong in exemplar_rows
    ]
    router = ExemplarRouter(routes=ROUTES, exemplars=exemplars, embedder=embedder, mode="scores")
    # the dial at the estimate of its 95% target (`--standard-errors 0`): a fixed dial
    # there drifts with the workload; `build`'s default margin sends more to the strong
    # model from the start, and the drift then barely moves spend (all 10 hours within
    # 10% of the first: nothing for the controller to show)
    calibration = calibrate_by_cross_validation(router, standard_errors=0.0)
    fixed_threshold = router.threshold
    floor = quality_floor(router, 0.90)
    stream = drifting_stream(traffic_rows, args.hours, args.per_hour, args.hard_from, args.hard_to)
    costs = (args.weak_cost, args.strong_cost)
    fixed, _ = run_policy(router, stream, costs, None)
    fixed_hours = hourly(fixed, args.hours)
    target = args.target if args.target is not None else fixed_hours[0]["spend"]
    options = {
        "target": SpendTarget(per_hour=target, tolerance=0.05),
        "floor_threshold": floor,
        "window_s": 3600,
        "check_every_s": 60,
        "min_interval_s": args.min_interval,
        "max_step": 0.05,
        "gain": 0.25,
        "min_requests": 20,
    }
    router.threshold = fixed_threshold
    adaptive, dial = run_policy(router, stream, costs, options)
    assert dial is not None
    adaptive_hours = hourly(adaptive, args.hours)
    floor_spend = []
    for h in range(args.hours):
        texts = [row[0] for when, row in stream if when - START < timedelta(hours=h + 1)]
        texts = texts[h * args.per_hour :]
        floor_spend.append(spend_at(router, floor, texts, costs))
    for h, row in enumerate(adaptive_hours):
        row["within_10pct"] = abs(row["spend"] / target - 1) <= 0.10
        row["feasible"] = floor_spend[h] <= target
    feasible = [row for row in adaptive_hours if row["feasible"]]
    judged = [row for row in feasible if row["hour"] > 0]  # hour 0 is where the target was read

    def total(hours: list[dict[str, Any]], key: str) -> float:
        return float(np.mean([h[key] for h in hours]))

    results: dict[str, Any] = {
        "benchmark": "adaptive_dial",
        "data": (
            f"routellm ({len(rows)} rows)" if have_routellm else "starter pack (labels as scores)"
        ),
        "embedder": router.embedder.fingerprint,
        "exemplars": len(exemplars),
        "traffic_pool": len(traffic_rows),
        "hours": args.hours,
        "per_hour": args.per_hour,
        "hard_share": [args.hard_from, args.hard_to],
        "costs": {"weak": args.weak_cost, "strong": args.strong_cost},
        "target_per_hour": target,
        "calibration": calibration.summary(),
        "floor": floor,
        "spend_at_floor": floor_spend,
        "fixed": {
            "threshold": fixed_threshold,
            "hours": fixed_hours,
            "spend_within_10pct_hours": sum(
                abs(h["spend"] / target - 1) <= 0.10 for h in fixed_hours
            ),
            "quality": total(fixed_hours, "quality"),
            "quality_kept": total(fixed_hours, "quality_kept"),
            "spend": sum(h["spend"] for h in fixed_hours),
        },
        "adaptive": {
            "hours": adaptive_hours,
            "feasible_hours": len(feasible),
            "held_within_10pct_of_feasible": sum(h["within_10pct"] for h in judged),
            "judged_feasible_hours": len(judged),
            "quality": total(adaptive_hours, "quality"),
            "quality_kept": total(adaptive_hours, "quality_kept"),
            "spend": sum(h["spend"] for h in adaptive_hours),
            "changes": [
                {
                    "hours": (c.at - START).total_seconds() / 3600,
                    "threshold": c.threshold,
                    "limit": c.limit,
                    "reason": c.reason,
                }
                for c in dial.changes
            ],
            "settings": {k: (v.describe() if k == "target" else v) for k, v in options.items()},
        },
        "seconds": {"embed": embedded, "total": time.perf_counter() - started},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    print(f"fixed threshold {fixed_threshold:.3f}, floor (90% quality) {floor:.3f}")
    print(f"target ${target:.3f}/h; {calibration.summary()}")
    print(" hour  hard   fixed $  adaptive $  at floor $  within 10%  feasible  q fixed  q adapt")
    for h, (f, a) in enumerate(zip(fixed_hours, adaptive_hours)):
        hard = args.hard_from + (args.hard_to - args.hard_from) * (h + 0.5) / args.hours
        print(
            f" {h:4d}  {hard:.2f}  {f['spend']:8.3f}  {a['spend']:10.3f}  {floor_spend[h]:10.3f}"
            f"  {a['within_10pct']!s:>10}  {a['feasible']!s:>8}  {f['quality_kept']:.3f}"
            f"    {a['quality_kept']:.3f}"
        )
    held = results["adaptive"]
    print(
        f"adaptive dial: {held['held_within_10pct_of_feasible']} of {held['judged_feasible_hours']}"
        f" feasible hours (after the first) within 10%; {len(dial.changes)} changes; quality kept"
        f" {held['quality_kept']:.3f} (fixed {results['fixed']['quality_kept']:.3f}); spend"
        f" ${held['spend']:.2f} (fixed ${results['fixed']['spend']:.2f})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
