"""Recipe 9: watch the router in production: new topics arrive, and the monitor raises alarms.

What it shows:
    * ``track_costs(ledger, segment_keys=["tenant"])``: every routed call's ledger row
      carries the caller's tenant (from ``config={"metadata": {"tenant": ...}}``), the
      decision's reason and its nearest exemplar's similarity.
    * Three windows of traffic from two tenants of an IT help desk: two healthy ones,
      then one where tenant "globex" starts asking about things the exemplars never
      covered (a new product line: wine and cheese), and tenant "acme"'s users start
      giving the cheap model's answers a thumbs-down (its prompt was changed).
    * ``ledger.feedback(record_id, "good" | "bad")``: a user's verdict on one answer,
      by the ledger record id of the call; the monitor turns verdicts into quality per
      window, route and tenant.
    * ``langroute.monitoring.monitor``: per window and tenant, the route shares and the
      out-of-distribution and escalation rates and the share of good verdicts; alarms
      against the first window: the out-of-distribution rate jumped for globex, and
      the quality of acme's answers dropped.
      The same as ``langroute monitor costs.jsonl --window 5s --segment tenant``, which
      exits with status 2 on an alarm (for a scheduled job).
    * ``plot_monitor``: the time series as a PNG.

Run it:
    python cookbook/09_monitor_drift.py                      # offline stand-in models
    python cookbook/09_monitor_drift.py --provider openai    # langchain-openai + OPENAI_API_KEY

Real providers:
    The monitor reads only the ledger, so point ``langroute monitor`` at the ledger your
    application writes with real models (``track_costs("costs.db", segment_keys=[...])``);
    use windows of an hour or a day there.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from langchain_langroute import RoutingChatModel, track_costs
from langchain_langroute.demo import chat_models_for
from langroute import ExemplarRouter
from langroute.costs import CostLedger
from langroute.monitoring import MonitorThresholds, monitor, plot_monitor
from langroute.terminal import data_text

DATA = Path(__file__).parent / "data" / "helpdesk_exemplars.jsonl"
OUTPUT = Path(__file__).parent / "output"
WINDOW = timedelta(seconds=5)

HELPDESK = [
    "How do I reset my VPN password?",
    "Where do I download the Outlook app for my phone?",
    "My laptop will not connect to the office Wi-Fi",
    "How do I share my calendar with a colleague?",
    "Can you unlock my account? I typed the wrong password too often",
    "How do I map the shared finance drive?",
    "Our file server is slow every morning; how do we find the bottleneck?",
    "Design a backup plan that survives a ransomware attack with a 4-hour recovery objective",
    "Plan the migration of 400 mailboxes to a new tenant without losing calendar data",
    "Write a PowerShell script that disables accounts unused for 90 days and reports them",
]
NEW_TOPIC = [  # nothing in the help desk exemplars looks like these
    "Which red wine goes best with a mature comté?",
    "How long should a camembert ripen before it is served?",
    "Suggest a cheese board for twelve guests with three wines",
    "Is a Sauternes too sweet to pair with roquefort?",
    "What is the difference between a brie and a camembert?",
]


def wait_for_next_window() -> None:
    """Sleep until the next window starts, so each phase lands in a window of its own."""
    seconds = WINDOW.total_seconds()
    time.sleep(seconds - time.time() % seconds + 0.05)


def rate_answers(ledger: CostLedger, seen: set[str], phase: str) -> None:
    """Acme's users rate every answer; after the prompt change most cheap answers are bad."""
    ledger.flush()
    for number, record in enumerate(r for r in ledger.records() if r.record_id not in seen):
        seen.add(record.record_id)
        if record.is_feedback or record.metadata.get("tenant") != "acme":
            continue
        worse = phase == "globex drifts" and record.route == "small"
        verdict = "bad" if (worse and number % 5 < 4) or number % 10 == 9 else "good"
        ledger.feedback(record.record_id, verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    console = Console()

    cheap, strong = chat_models_for(args.provider)
    router = ExemplarRouter.from_file(DATA, routes=["small", "large"])
    router.route("warm up the encoder")  # the model loads now, not inside the first window
    llm = RoutingChatModel(router=router, models={"small": cheap, "large": strong})

    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "monitor_costs.jsonl"
    path.unlink(missing_ok=True)
    phases = {
        "healthy": {"acme": HELPDESK * 2, "globex": HELPDESK * 2},
        "healthy again": {"acme": HELPDESK * 2, "globex": HELPDESK * 2},
        "globex drifts": {"acme": HELPDESK * 2, "globex": HELPDESK + NEW_TOPIC * 2},
    }
    seen: set[str] = set()
    with track_costs(CostLedger(path), segment_keys=["tenant"]) as ledger:
        for name, traffic in phases.items():
            wait_for_next_window()
            for tenant, questions in traffic.items():
                llm.batch(questions, config={"metadata": {"tenant": tenant}})
            rate_answers(ledger, seen, name)
            console.print(f"phase {name!r}: {sum(map(len, traffic.values()))} requests")

    report = monitor(
        ledger.records(),
        window=WINDOW,
        segment_key="tenant",
        thresholds=MonitorThresholds(min_requests=10),
    )
    for window in report.windows:
        shares = ", ".join(f"{route} {share:.0%}" for route, share in window.route_shares.items())
        console.print(
            data_text(
                f"{window.start:%H:%M:%S} {window.segment:>6}: {window.requests} requests, "
                f"out of distribution {window.out_of_distribution_rate:.0%}, "
                f"escalated {window.escalation_rate:.0%}, "
                f"nearest exemplar {window.mean_best_similarity:.2f}, routes: {shares}"
                + ("" if window.quality is None else f", good answers {window.quality:.0%}")
            )
        )
    for alarm in report.alarms:
        console.print(data_text(f"ALARM {alarm.kind} [{alarm.segment}]: {alarm.message}"))
    if not report.alarms:
        console.print("no alarms")
    plot = plot_monitor(report, args.output / "monitor.png")
    console.print(f"ledger: {path}\nplot: {plot}")
    console.print(f"same figures: langroute monitor {path} --window 5s --segment tenant")


if __name__ == "__main__":
    main()
