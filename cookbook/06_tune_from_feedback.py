"""Recipe 6: tune from feedback: log misrouted requests, add them as exemplars, save, re-evaluate.

What it shows:
    * Measuring a router on held-out labelled requests (``langroute.evaluation.evaluate``):
      accuracy, per-route recall, escalation rate, and the misrouted requests with the
      neighbours that decided them.
    * A misrouting log, as production would write it: one JSON line per request that
      went to the wrong route (a cheap answer the validator rejected, or a strong call a
      cheap retry proved unnecessary). ``log_misrouted`` appends to it.
    * ``router.feedback(query, route)``: each logged request becomes a labelled exemplar
      (embedded once, no rebuild), then ``router.save`` and a reload.
    * Re-evaluating: the numbers move.

Run it:
    python cookbook/06_tune_from_feedback.py
    python cookbook/06_tune_from_feedback.py --log my_misrouted.jsonl --eval my_heldout.jsonl

Real providers:
    Tuning needs no LLM. In production, fill the log from your traffic: cascade
    rejections (recipe 5) are "should have been large"; accepted cheap retries of strong
    calls are "could have been small".
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from langroute import ExemplarRouter
from langroute.evaluation import EvalReport, evaluate

DATA = Path(__file__).parent / "data"


def log_misrouted(log: Path, query: str, served_by: str, correct_route: str, signal: str) -> None:
    """Append one misrouted request to a JSONL log (what a production hook would do)."""
    row = {"query": query, "served_by": served_by, "correct_route": correct_route}
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**row, "signal": signal}) + "\n")


def figures(report: EvalReport) -> dict[str, float]:
    labels = report.labels
    assert labels is not None  # a labelled evaluation set
    return {
        "accuracy": labels.accuracy,
        "recall small": labels.recall["small"] or 0.0,
        "recall large": labels.recall["large"] or 0.0,
        "escalation rate": labels.escalation_rate,
        "cost inflation": labels.cost_inflation,
        "quality loss": labels.quality_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exemplars", type=Path, default=DATA / "helpdesk_exemplars.jsonl")
    parser.add_argument("--eval", type=Path, default=DATA / "helpdesk_eval.jsonl")
    parser.add_argument("--log", type=Path, default=DATA / "misrouted_log.jsonl")
    parser.add_argument("--output", type=Path, help="folder for the tuned router (default: temp)")
    args = parser.parse_args()
    console = Console(width=120)
    output = args.output or Path(tempfile.mkdtemp(prefix="langroute-"))
    output.mkdir(parents=True, exist_ok=True)

    router = ExemplarRouter.from_file(args.exemplars, routes=["small", "large"])
    report = evaluate(router, args.eval)
    before = figures(report)
    console.print(f"[bold]before[/]: {len(router)} exemplars, accuracy {before['accuracy']:.3f}")
    for miss in report.labels.misrouted if report.labels else []:
        console.print(
            f"  misrouted: {miss.text[:70]!r} expected {miss.expected}, got "
            f"{miss.predicted} ({miss.reason})"
        )

    # The log: copy the shipped example, then append one more entry the way a hook would.
    log = output / "misrouted.jsonl"
    log.write_text(args.log.read_text(encoding="utf-8"), encoding="utf-8")
    log_misrouted(
        log,
        "Put these steps in a numbered list: unplug the dock, restart, plug it back in.",
        served_by="large",
        correct_route="small",
        signal="a cheap retry was accepted (cost inflation)",
    )

    # Feedback: every logged request becomes an exemplar with its correct route.
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    for entry in entries:
        router.feedback(
            entry["query"], entry["correct_route"], metadata={"signal": entry["signal"]}
        )
    console.print(f"added {len(entries)} feedback exemplars from {log.name}")

    # Save, reload (no re-embedding), re-evaluate on the same held-out set.
    saved = router.save(output / "helpdesk-router")
    tuned = ExemplarRouter.load(saved)
    after = figures(evaluate(tuned, args.eval))

    table = Table(title="held-out evaluation: before and after feedback")
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, value in before.items():
        table.add_row(name, f"{value:.3f}", f"{after[name]:.3f}", f"{after[name] - value:+.3f}")
    console.print(table)
    print(f"ACCURACY {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    print(f"saved the tuned router ({len(tuned)} exemplars) to {saved}")


if __name__ == "__main__":
    main()
