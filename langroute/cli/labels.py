"""The ``langroute label`` command (a typer command function, registered by the CLI).

Heavy modules load inside the function, so ``langroute --help`` stays fast.

Example:
    $ langroute label queries.jsonl --models models.toml -o scored.jsonl --budget 5.00
    $ langroute label queries.jsonl -m models.toml -o scored.jsonl --grader judge --answers a.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from langroute.terminal import data_text

__all__ = ["label_command"]

_SHOWN_FAILURES = 10


def label_command(
    queries: Annotated[
        Path,
        typer.Argument(help="Queries to label (.jsonl or .csv): text, optional reference."),
    ],
    models: Annotated[
        Path, typer.Option("--models", "-m", help="Models file (.toml): route -> model.")
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Scored exemplars (.jsonl); re-runs resume it."),
    ],
    grader: Annotated[
        str,
        typer.Option(
            help="exact, normalised, numeric, contains, regex, json-schema (need a "
            "reference), judge, validators, json, or package.module:object."
        ),
    ] = "normalised",
    budget: Annotated[
        Optional[float],
        typer.Option(help="USD the output may cost over all runs; stops before passing it."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Model requests in flight at most.")] = 16,
    answers: Annotated[
        Optional[Path], typer.Option(help="Also write every answer and grade here (.jsonl).")
    ] = None,
    ledger: Annotated[
        Optional[Path],
        typer.Option(help="Cost ledger (.jsonl or .db); default: <output>.ledger.jsonl."),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(help="Retries of a rate-limited, timed-out or 5xx request.")
    ] = 6,
    retry_delay: Annotated[float, typer.Option(help="First backoff in seconds (doubles).")] = 1.0,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds one model request may take; then it is retried (0: none)."),
    ] = 300.0,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar with spend and ETA.")
    ] = True,
) -> None:
    """Label queries with every route's model and a grader: scored exemplars for build.

    Each finished query is appended to the output at once; run the same command again
    to resume (done queries are skipped, finished calls are never paid twice). Exit
    status 0 when every query is labelled or the budget stopped the run cleanly, 1 when
    the run could not start, some queries failed, or a model that ignored its output cap
    took the spend past the budget (the run stops at once and says by how much).
    """
    from rich.console import Console
    from rich.text import Text

    from langroute.errors import LangrouteError
    from langroute.labels.graders import grader_from_name
    from langroute.labels.runner import label

    console = Console()
    errors = Console(stderr=True)
    try:
        chosen = grader_from_name(grader, folder=models.parent)
        report = label(
            queries,
            models,
            output,
            grader=chosen,
            budget=budget,
            concurrency=concurrency,
            answers=answers,
            ledger=ledger,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout if timeout > 0 else None,
            show_progress=progress,
        )
    except (LangrouteError, ValueError) as exc:
        errors.print(Text.assemble(("error:", "bold red"), " ", data_text(exc)))
        raise typer.Exit(code=1) from exc
    console.print(data_text(report.summary()))
    if report.overrun > 0:
        console.print(
            Text.assemble(
                ("budget: ", "bold red"),
                data_text(
                    f"overrun by ${report.overrun:.4f} (spent ${report.spent_total:.4f} of "
                    f"${budget or 0.0:.2f}): {report.overrun_reason}. "
                    f"{report.not_started} queries not labelled; set the model's output cap "
                    "(max_output_tokens / max_tokens) before running again."
                ),
            )
        )
    elif report.stopped_by_budget:
        console.print(
            Text.assemble(
                ("budget: ", "bold yellow"),
                f"stopped cleanly; ${report.budget_left or 0.0:.4f} of ${budget:.2f} left, "
                f"{report.not_started} queries not labelled. Raise --budget and run the same "
                "command to go on.",
            )
        )
    for failure in report.failed[:_SHOWN_FAILURES]:
        where = f"line {failure.line}" if failure.line is not None else failure.id
        errors.print(Text.assemble(("failed ", "red"), data_text(f"{where}: {failure.error}")))
    if len(report.failed) > _SHOWN_FAILURES:
        errors.print(f"... and {len(report.failed) - _SHOWN_FAILURES} more failed queries")
    console.print(Text.assemble("scored exemplars in ", data_text(output, "bold")))
    if report.failed or report.overrun > 0:
        raise typer.Exit(code=1)
