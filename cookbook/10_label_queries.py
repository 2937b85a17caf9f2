"""Recipe 10: label your own queries with your own models: scored exemplars, then a router.

What it shows:
    * A queries file of your traffic (``{"text": ..., "reference": ...}`` per line) and
      a models file (``models.toml``: route -> model, cheapest first).
    * ``langroute.labels.label``: every route's model answers every query, a reference
      grader (``contains``: the reference appears in the answer) scores each answer,
      and one scored exemplar per query is appended to ``scored.jsonl`` as it finishes,
      under a hard budget, with every paid call in a ledger.
    * ``langroute label`` (the CLI) run again on the same output: it resumes, skips the
      done queries and pays for nothing twice.
    * A router built from the scored exemplars, and the labelling spend in the cost
      report, apart from serving spend.

Run it:
    python cookbook/10_label_queries.py
    python cookbook/10_label_queries.py --queries my_queries.jsonl --models my_models.toml

Real providers:
    Put LangChain specs in the models file (``small = "openai:gpt-4o-mini"``,
    ``large = "anthropic:claude-sonnet-4-5"``; needs langchain-langroute and the
    provider's package and key) and keep ``--budget``: the run stops before a call
    that could pass it and says what is left. Without references, grade with
    ``--grader judge`` and a ``[judge]`` model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from langroute import ExemplarRouter
from langroute.costs import print_report
from langroute.labels import label
from langroute.router.exemplars import load_exemplars
from langroute.terminal import data_text

DATA = Path(__file__).parent / "data" / "labelling"
NEW_QUERIES = [
    "What port does SSH use by default?",
    "A server costs $40 per month. What do 13 servers cost over 3 years?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, default=DATA / "support_queries.jsonl")
    parser.add_argument("--models", type=Path, default=DATA / "models.toml")
    parser.add_argument("--budget", type=float, default=1.00, help="USD, over all runs")
    parser.add_argument("--output", type=Path, help="folder for the outputs (default: temp)")
    args = parser.parse_args()
    console = Console(width=120)
    output = args.output or Path(tempfile.mkdtemp(prefix="langroute-"))
    output.mkdir(parents=True, exist_ok=True)
    scored = output / "scored.jsonl"

    # 1. Label with the Python API.
    report = label(
        args.queries,
        args.models,
        scored,
        grader="contains",
        budget=args.budget,
        answers=output / "answers.jsonl",
    )
    console.print(data_text(report.summary()))
    print(f"LABELLED {report.labelled} of {report.total}; spent ${report.spent:.6f}")

    # 2. The same run from the command line: it resumes, nothing is paid twice.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "langroute.cli.app", "label", str(args.queries)]
    command += ["--models", str(args.models), "-o", str(scored), "--grader", "contains"]
    command += ["--budget", str(args.budget), "--no-progress"]
    console.print(data_text("$ langroute label " + " ".join(command[4:])))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    console.print(data_text(done.stdout.strip()))

    # 3. What the grader gave each route.
    exemplars = load_exemplars(scored)
    table = Table(title="scored exemplars (1 = the answer held the reference)")
    for column in ("query", "small", "large"):
        table.add_column(column, justify="left" if column == "query" else "right")
    for ex in exemplars:
        scores = ex.scores or {}
        table.add_row(data_text(ex.text[:70]), f"{scores['small']:.0f}", f"{scores['large']:.0f}")
    console.print(table)
    needs_large = sum((ex.scores or {})["small"] < (ex.scores or {})["large"] for ex in exemplars)
    print(f"THE SMALL MODEL FELL SHORT ON {needs_large} of {len(exemplars)} queries")

    # 4. A router from the scored exemplars.
    router = ExemplarRouter(routes=["small", "large"], exemplars=exemplars, k=3)
    for query in NEW_QUERIES:
        decision = router.route(query)
        console.print(data_text(f"ROUTE {decision.route}: {query}"))

    # 5. The labelling spend, reported apart from serving spend.
    print_report(scored.with_name("scored.ledger.jsonl"), console=console)


if __name__ == "__main__":
    main()
