"""The ``langroute`` command line.

Heavy libraries are imported inside the commands, so ``langroute --help`` is fast.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer

from langroute.cli.dashboard import dashboard_command
from langroute.cli.evaluation import (
    calibrate_command,
    compare_command,
    eval_command,
    tune_command,
)
from langroute.cli.labels import label_command
from langroute.cli.shadow import promote_command, revert_command
from langroute.terminal import data_text, json_text, printable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.text import Text

    from langroute.monitoring import MonitorReport, WindowStats
    from langroute.router.decision import RouteDecision
    from langroute.router.exemplar_router import ExemplarRouter

app = typer.Typer(
    name="langroute",
    help="Route each LLM request to the cheapest model that can handle it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RouterOption = Annotated[
    Optional[Path],
    typer.Option(
        "--router", "-r", help="A saved router directory (default: the bundled starter router)."
    ),
]


LEDGER_HELP = "Cost ledger: a .jsonl or .db/.sqlite file, or a postgresql:// URL."


def _ledger_source(ledger: str) -> str | Path:
    """A ledger argument: a ``postgresql://`` URL stays a string, anything else is a path."""
    from langroute.postgres.database import is_postgres_url

    return ledger if is_postgres_url(ledger) else Path(ledger)


def _quiet_model_loading() -> None:
    """Keep transformers' progress bars and hub lookups out of CLI output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass


def _fail(message: str) -> typer.Exit:
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True).print(Text.assemble(("error:", "bold red"), " ", data_text(message)))
    return typer.Exit(code=1)


def _load_router(path: Path | None) -> ExemplarRouter:
    from langroute.errors import LangrouteError
    from langroute.router.exemplar_router import ExemplarRouter, load_saved_router

    _quiet_model_loading()
    try:
        return ExemplarRouter.default() if path is None else load_saved_router(path)
    except LangrouteError as exc:
        raise _fail(str(exc)) from exc


def decision_table(decision: RouteDecision) -> object:
    """A rich renderable explaining one decision: the route, then its neighbours."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    evidence = decision.estimates or decision.probabilities
    header = Text.assemble(
        ("route ", "bold"),
        data_text(decision.route, "bold green", one_line=True),
        f"   reason {decision.reason}   confidence {decision.confidence:.2f}   ",
        f"escalation {decision.escalation:.2f} (dial {decision.threshold:.2f})   ",
        f"{decision.elapsed_ms:.1f} ms",
    )
    per_route = "   ".join(f"{route}: {value:.2f}" for route, value in evidence.items())
    label = "estimated quality" if decision.estimates else "vote share"
    table = Table(title="nearest exemplars", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("similarity", justify="right")
    table.add_column("route")
    table.add_column("exemplar")
    for rank, neighbour in enumerate(decision.neighbours, start=1):
        flat = " ".join(neighbour.text.split())
        text = flat if len(flat) <= 90 else flat[:87] + "..."
        table.add_row(
            str(rank),
            f"{neighbour.similarity:.3f}",
            data_text(neighbour.route or "-", one_line=True),
            data_text(text, one_line=True),
        )
    lines = [header, data_text(f"{label}: {per_route}", one_line=True)]
    if decision.context is not None:
        lines.append(data_text(f"context: {decision.context}", one_line=True))
    session = decision.session
    if session is not None:
        similarity = "-" if session.similarity is None else f"{session.similarity:.2f}"
        lines.append(
            data_text(
                f"session {session.key}: {session.action} (router chose {session.routed}, "
                f"session held {session.previous or '-'}, similarity to earlier turns "
                f"{similarity}, turn {session.turn})",
                one_line=True,
            )
        )
    return Group(*lines, table)


@app.command()
def route(
    query: Annotated[str, typer.Argument(help="The request to route.")],
    router: RouterOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Route one query and explain the decision."""
    from rich.console import Console

    from langroute.errors import LangrouteError

    loaded = _load_router(router)
    try:
        decision = loaded.route(query)
    except LangrouteError as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json_text(decision.model_dump(mode="json")))
        return
    Console().print(decision_table(decision))


def _dial_line(router: ExemplarRouter, fixed: float | None = None) -> str:
    """What the dial is set to and why: the calibration's operating point, or a reason."""
    from langroute.evaluation.calibration import (
        CalibrationResult,
        cross_validation_skip_reason,
    )

    if router.calibration:
        return "dial: " + CalibrationResult.model_validate(router.calibration).summary()
    if fixed is not None:
        return f"dial: threshold {router.threshold:.3g} as given (not calibrated)"
    why = cross_validation_skip_reason(router) or "no target"
    return f"dial: threshold {router.threshold:.3g}, the default (not calibrated: {why})"


@app.command()
def build(
    exemplars: Annotated[Path, typer.Argument(help="Exemplars file (.jsonl or .csv).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to save the router in.")
    ],
    routes: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated routes, cheapest first (default: labels in file order)."
        ),
    ] = None,
    k: Annotated[
        Optional[int], typer.Option(help="Neighbours that vote (default: tuned, else 10).")
    ] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            help="A fixed dial (higher sends more to cheap routes); default: set for "
            "--quality-target by cross-validation within the exemplars."
        ),
    ] = None,
    quality_target: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Set the dial to keep this fraction of the strongest route's quality "
            "(scored exemplars), or to send this share of queries to a route at least as "
            "strong as they need (labelled), by cross-validation within the exemplars.",
        ),
    ] = 0.95,
    strong_share: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            help="Instead of --quality-target: send this share of queries to the strongest route.",
        ),
    ] = None,
    standard_errors: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            help="Aim this many standard errors of the cross-validated quality estimate "
            "inside --quality-target (default: 1, the target holds with about 84% "
            "confidence; 0: the estimate itself, cheaper, met on new data about half the "
            "time).",
        ),
    ] = None,
    min_similarity: Annotated[float, typer.Option(help="Below this: out of distribution.")] = 0.3,
    index: Annotated[str, typer.Option(help="flat (exact), hnsw (approximate) or auto.")] = "flat",
    tune: Annotated[
        Optional[bool],
        typer.Option(
            "--tune/--no-tune",
            help="Cross-validate the decision settings (k, weighting, loss weight, length "
            "evidence, ...) within the exemplars and keep the best (default: from 100 "
            "exemplars on; settings given as options are kept).",
        ),
    ] = None,
    embedder: Annotated[
        Optional[str], typer.Option(help="minilm (default), hashing, or a model path.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Fold assignment seed of tuning.")] = 0,
    mode: Annotated[
        str,
        typer.Option(
            help="vote (on labels), scores (on per-route quality; labels count as scores) "
            "or auto: scores when the exemplars carry scores. A file mixing labelled and "
            "scored rows needs vote or scores."
        ),
    ] = "auto",
) -> None:
    """Embed an exemplars file and save a router, tuned by cross-validation by default."""
    from rich.console import Console

    from langroute.embedders.adapters import embedder_from_spec
    from langroute.errors import LangrouteError
    from langroute.evaluation.tuning import TuningRecord, build_router, tuning_skip_reason
    from langroute.router.exemplars import (
        check_one_kind,
        check_route_labels,
        load_exemplar_rows,
    )

    _quiet_model_loading()
    console = Console()
    route_list = [r.strip() for r in routes.split(",")] if routes else None
    options = {
        key: value
        for key, value in {
            "k": k,
            "threshold": threshold,
            "min_similarity": min_similarity,
            "mode": mode,
        }.items()
        if value is not None
    }
    try:
        rows = load_exemplar_rows(exemplars, routes=route_list)
        check_one_kind(rows, exemplars, mode)
        if route_list is None:  # the routes are the labels: a typo must not become one
            check_route_labels([(f"{exemplars}:{line}", ex) for line, ex in rows])
        loaded = [ex for _, ex in rows]
        built = build_router(
            loaded,
            routes=route_list,
            embedder=embedder_from_spec(embedder),
            tune=tune,
            seed=seed,
            index=index,
            show_progress=True,
            quality_target=quality_target,
            strong_share=strong_share,
            standard_errors=standard_errors,
            **options,
        )
        built.save(output)
    except (LangrouteError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if built.tuning is not None:
        record = TuningRecord.model_validate(built.tuning)
        console.print(
            data_text(f"tuned in {record.seconds:.1f}s ({record.trials} settings): ").append(
                data_text(record.summary())
            )
        )
    else:
        why = "--no-tune" if tune is False else tuning_skip_reason(built)
        console.print(data_text(f"not tuned ({why}); settings as given or defaults"))
    console.print(data_text(_dial_line(built, threshold)))
    counts = ", ".join(f"{r}: {n}" for r, n in built.counts().items())
    console.print(data_text(f"mode: {built.mode} ({built.mode_reason})"))
    console.print(
        data_text(f"saved router with {len(built)} exemplars ({counts}) to ").append(
            data_text(output, "bold")
        )
    )


@app.command()
def add(
    exemplars: Annotated[Path, typer.Argument(help="Exemplars file (.jsonl or .csv) to add.")],
    router: Annotated[Path, typer.Option("--router", "-r", help="Saved router directory.")],
) -> None:
    """Add exemplars to a saved router (same ids are replaced) and save it again."""
    from rich.console import Console

    from langroute.errors import LangrouteError
    from langroute.router.exemplars import check_one_kind, load_exemplar_rows

    loaded_router = _load_router(router)
    try:
        rows = load_exemplar_rows(exemplars, routes=loaded_router.routes)
        check_one_kind(rows, exemplars, loaded_router.settings.mode)
        new = [ex for _, ex in rows]
        before = len(loaded_router)
        loaded_router.add_exemplars(new, show_progress=True)
        loaded_router.save(router)
    except LangrouteError as exc:
        raise _fail(str(exc)) from exc
    Console().print(
        data_text(
            f"added {len(new)} exemplars ({len(loaded_router) - before} new ids); "
            f"router now holds {len(loaded_router)}; saved to "
        ).append(data_text(router, "bold"))
    )


@app.command()
def publish(
    router: Annotated[Path, typer.Argument(help="A saved router directory.")],
    url: Annotated[str, typer.Argument(help="The Postgres database: postgresql://...")],
    name: Annotated[
        str, typer.Option(help="The shared router's name (replicas open it by name).")
    ] = "default",
) -> None:
    """Publish a saved router to Postgres, vectors included, for replicas to share."""
    from rich.console import Console

    from langroute.errors import LangrouteError
    from langroute.postgres import publish_router

    loaded = _load_router(router)
    try:
        seq = publish_router(loaded, url, name=name)
    except LangrouteError as exc:
        raise _fail(str(exc)) from exc
    from langroute.postgres.database import redact

    Console().print(
        data_text(
            f"published {len(loaded)} exemplars as router {name!r} (change {seq}) to "
        ).append(data_text(redact(url), "bold"))
    )


@app.command()
def info(router: RouterOption = None) -> None:
    """Describe a router: routes, exemplar counts, embedder and settings."""
    from rich.console import Console
    from rich.table import Table

    loaded = _load_router(router)
    table = Table(title=data_text(f"router: {router or 'bundled starter'}"), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        ("routes (cheap -> strong)", " -> ".join(loaded.routes)),
        ("exemplars", ", ".join(f"{r}: {n}" for r, n in loaded.counts().items())),
        ("mode", f"{loaded.mode} ({loaded.mode_reason})"),
        ("embedder", f"{loaded.embedder.fingerprint} ({loaded.embedder.dimension} dims)"),
    ]
    rows += [(k, str(v)) for k, v in loaded.settings.model_dump().items() if k != "routes"]
    rows += tuning_rows(loaded.tuning)
    rows.append(("dial", _dial_line(loaded).removeprefix("dial: ")))
    if loaded.calibration:
        rows.append(("calibration", json.dumps(loaded.calibration)))
    for key, value in rows:
        table.add_row(data_text(key), data_text(value, one_line=True))
    Console().print(table)


def tuning_rows(tuning: dict[str, object] | None) -> list[tuple[str, str]]:
    """``info``'s lines about tuning: what was chosen, the validation figures, the run."""
    if tuning is None:
        return [("tuning", "not tuned")]
    from langroute.evaluation.tuning import TuningRecord

    record = TuningRecord.model_validate(tuning)
    chosen = ", ".join(f"{key}={value}" for key, value in record.chosen.items())
    untuned = "–" if record.untuned is None else f"{record.untuned:.4f}"
    rows = [
        ("tuning: chosen", chosen or "the settings as they were"),
        (
            f"tuning: validation {record.metric}",
            f"{record.validation:.4f} (sd {record.validation_sd:.4f}; untuned {untuned})",
        ),
        (
            "tuning: run",
            f"{record.folds}-fold CV x{record.repeats} (seed {record.seed}) over "
            f"{record.exemplars} exemplars, {record.trials} settings, {record.seconds:.1f}s",
        ),
    ]
    if record.fixed:
        rows.append(("tuning: kept as given", json.dumps(record.fixed)))
    return rows


@app.command()
def report(
    ledger: Annotated[str, typer.Argument(help=LEDGER_HELP)],
    order: Annotated[
        Optional[str], typer.Option(help="Comma-separated routes to list first.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
    as_csv: Annotated[
        bool,
        typer.Option("--csv", help="Print CSV instead of a table: a row per route and a total."),
    ] = False,
) -> None:
    """Print the per-route cost table of a ledger: calls, tokens, cost, latency, savings.

    The table fits the terminal (80 columns in pipes and CI logs: a compact layout that
    keeps every cost visible); ``--json`` and ``--csv`` print machine-readable output.
    """
    from langroute.costs import (
        CostLedger,
        TornLinesWarning,
        print_report,
        report_csv,
        report_json,
    )
    from langroute.errors import LangrouteError

    if as_json and as_csv:
        raise _fail("choose one of --json and --csv")
    route_order = [r.strip() for r in order.split(",")] if order else None
    try:
        if not (as_json or as_csv):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TornLinesWarning)  # the report notes them
                print_report(_ledger_source(ledger), order=route_order)
            return
        # torn lines are warned about on stderr; stdout stays data
        summary = CostLedger.open(_ledger_source(ledger), validate=False).summary(order=route_order)
    except (FileNotFoundError, LangrouteError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(report_json(summary) if as_json else report_csv(summary), nl=as_json)


@app.command()
def monitor(
    ledger: Annotated[str, typer.Argument(help=LEDGER_HELP)],
    window: Annotated[str, typer.Option(help="Window length: 30m, 1h, 1d, ...")] = "1h",
    segment: Annotated[
        Optional[str],
        typer.Option(help="A metadata key to watch per segment (tenant, metadata.language)."),
    ] = None,
    baseline: Annotated[
        str,
        typer.Option(
            help="The period to compare with: 'first' (the first window) or START/END "
            "in ISO format (2026-11-01T00:00/2026-11-08T00:00, UTC unless given)."
        ),
    ] = "first",
    ood_factor: Annotated[
        float, typer.Option(help="Alarm when the out-of-distribution rate grows this much.")
    ] = 2.0,
    route_shift: Annotated[
        float, typer.Option(help="Alarm when a route's share moves by more (0.15 = 15 points).")
    ] = 0.15,
    escalation_floor: Annotated[
        float, typer.Option(help="Alarm when fewer requests escalate (0.02 = 2%).")
    ] = 0.02,
    min_requests: Annotated[
        int, typer.Option(help="Windows with fewer requests raise no alarm.")
    ] = 20,
    quality_drop: Annotated[
        float,
        typer.Option(help="Alarm when the share of good verdicts falls by more (0.1 = 10 points)."),
    ] = 0.10,
    min_feedback: Annotated[
        int, typer.Option(help="Quality alarms need this many verdicts in window and baseline.")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also write the time series to this PNG.")
    ] = None,
    dial_journal: Annotated[
        Optional[Path],
        typer.Option(
            help="An adaptive dial's journal of changes (default: beside a file ledger, "
            "costs.dial.jsonl for costs.jsonl, when it exists)."
        ),
    ] = None,
) -> None:
    """Watch a ledger over time: rates per window, and alarms when traffic drifts.

    The adaptive dial's changes (langroute.adaptive_dial) are listed after the
    windows. Exits with status 2 when an alarm fires, so a scheduled job can page someone.
    """
    from datetime import datetime

    from langroute.costs import CostLedger
    from langroute.errors import LangrouteError
    from langroute.monitoring import (
        MonitorThresholds,
        monitor_ledger,
        parse_duration,
        plot_monitor,
        utc,
    )

    try:
        period = None
        if baseline != "first":
            start, sep, end = baseline.partition("/")
            if not sep:
                raise ValueError(f"baseline must be 'first' or START/END, not {baseline!r}")
            period = (utc(datetime.fromisoformat(start)), utc(datetime.fromisoformat(end)))
        thresholds = MonitorThresholds(
            ood_factor=ood_factor,
            route_shift_points=route_shift,
            escalation_floor=escalation_floor,
            min_requests=min_requests,
            quality_drop_points=quality_drop,
            min_feedback=min_feedback,
        )
        report = monitor_ledger(
            CostLedger.open(_ledger_source(ledger), validate=False),
            window=parse_duration(window),
            segment_key=segment,
            baseline=period,
            thresholds=thresholds,
        )
        changes = _dial_changes(ledger, dial_journal)
    except (FileNotFoundError, LangrouteError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if plot is not None:
        plot_monitor(report, plot)
    if as_json:
        typer.echo(json_text(report.model_dump(mode="json") | {"dial_changes": changes}))
    else:
        _print_monitor(report)
        _print_dial_changes(changes)
    if report.alarms:
        raise typer.Exit(2)


def _dial_changes(ledger: str, journal: Path | None) -> list[dict[str, Any]]:
    """The adaptive dial's changes as JSON data: from ``journal``, else beside the ledger."""
    from langroute.postgres.database import is_postgres_url
    from langroute.router.dial_targets import DialJournal, dial_journal_path

    if journal is None:
        if is_postgres_url(ledger) or not dial_journal_path(ledger).is_file():
            return []
        journal = dial_journal_path(ledger)
    elif not journal.is_file():
        raise FileNotFoundError(f"no dial journal at {journal}")
    return [change.model_dump(mode="json") for change in DialJournal(journal).read()]


_DIAL_CHANGES_SHOWN = 20


def _print_dial_changes(changes: Sequence[dict[str, Any]]) -> None:
    """The adaptive dial's latest changes (the JSON output has them all)."""
    if not changes:
        return
    from rich.console import Console
    from rich.table import Table

    shown = changes[-_DIAL_CHANGES_SHOWN:]
    title = f"dial changes ({len(shown)} latest of {len(changes)})"
    table = Table(title=title, title_justify="left")
    for name in ("at (UTC)", "threshold", "reason"):
        table.add_column(name, no_wrap=name != "reason")
    for change in shown:
        at = change["at"][:16].replace("T", " ")
        move = f"{change['previous']:.4g} -> {change['threshold']:.4g}"
        table.add_row(data_text(at), data_text(move), data_text(change["reason"]))
    Console().print(table)


def _print_monitor(report: MonitorReport) -> None:
    """Two tables that fit 80 columns: the traffic per window, then its routes and money."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    span = {w.start.year for w in report.windows}
    when = "%Y-%m-%d %H:%M" if len(span) > 1 else "%m-%d %H:%M"

    def table(title: str, columns: Sequence[str]) -> Table:
        made = Table(title=title, title_justify="left")
        made.add_column("start (UTC)", no_wrap=True)
        if report.segment_key:
            made.add_column("segment", max_width=12)
        for name in columns:
            made.add_column(name, justify="right", no_wrap=True)
        return made

    def key(item: WindowStats) -> list[Text]:
        cells = [data_text(item.start.strftime(when))]
        if report.segment_key:
            cells.append(data_text(item.segment or "", one_line=True))
        return cells

    def rate(value: float | None) -> str:
        return "" if value is None else f"{value:.0%}"

    def usd(value: float | None) -> str:
        return "" if value is None else f"${value:.4f}"

    traffic = table(
        f"windows of {report.window}", ("reqs", "esc", "OOD", "low conf", "rej", "err", "sim")
    )
    money = table("routes, quality and spend", ("good (n)", "cost", "saved"))
    money.add_column("route shares")
    for item in report.windows:
        sim = item.mean_best_similarity
        traffic.add_row(
            *key(item),
            str(item.requests),
            rate(item.escalation_rate),
            rate(item.out_of_distribution_rate),
            rate(item.low_confidence_rate),
            rate(item.cascade_rejection_rate),
            rate(item.error_rate),
            "" if sim is None else f"{sim:.2f}",
        )
        shares = ", ".join(f"{route} {share:.0%}" for route, share in item.route_shares.items())
        money.add_row(
            *key(item),
            "" if item.quality is None else f"{item.quality:.0%} ({item.feedback})",
            usd(item.cost),
            usd(item.savings),
            data_text(shares),
        )
    console.print(traffic)
    console.print(money)
    if not report.alarms:
        console.print("no alarms")
    for alarm in report.alarms:
        line = data_text(f"ALARM {alarm.start:%Y-%m-%d %H:%M} {alarm.kind}: ", "bold red")
        line.append_text(data_text(alarm.message, one_line=True))
        console.print(line)


app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)
app.command("tune")(tune_command)
app.command("compare")(compare_command)
app.command("promote")(promote_command)
app.command("revert")(revert_command)
app.command("label")(label_command)
app.command("dashboard")(dashboard_command)

DEMO_ENTRY_POINTS = "langroute.demo"


@app.command()
def demo(
    provider: Annotated[
        Optional[str],
        typer.Option(
            "--provider",
            envvar="LANGROUTE_DEMO_PROVIDER",
            help="Run against real models: openai, anthropic or ollama (default: local stand-ins).",
        ),
    ] = None,
    openai: Annotated[bool, typer.Option("--openai", help="Same as --provider openai.")] = False,
    anthropic: Annotated[
        bool, typer.Option("--anthropic", help="Same as --provider anthropic.")
    ] = False,
    ollama: Annotated[bool, typer.Option("--ollama", help="Same as --provider ollama.")] = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the ledger and the plot are written.")
    ] = Path("langroute-demo"),
    tiers: Annotated[
        int,
        typer.Option(
            min=2,
            max=3,
            help="2 (small, large) or 3 (small, medium, large through a decider chain: "
            "rules, the kNN router, an LLM router).",
        ),
    ] = 2,
) -> None:
    """Run the offline demo: route a mixed workload, then print costs and savings.

    The demo ships with the LangChain integration (``pip install langchain-langroute``);
    the core finds it through the ``langroute.demo`` entry point, so it never imports
    an integration itself.
    """
    from importlib.metadata import entry_points

    chosen = [
        name
        for name, flag in (("openai", openai), ("anthropic", anthropic), ("ollama", ollama))
        if flag
    ]
    if len(chosen) > 1 or (chosen and provider and provider != chosen[0]):
        raise _fail("choose one provider")
    provider = chosen[0] if chosen else provider
    found = list(entry_points(group=DEMO_ENTRY_POINTS))
    if not found:
        raise _fail(
            "the demo needs the LangChain integration: pip install -e ./integrations/langchain"
        )
    from langroute.errors import LangrouteError

    _quiet_model_loading()
    run_demo = found[0].load()
    try:
        run_demo(provider=provider, output=output, tiers=tiers)
    except LangrouteError as exc:  # setup problems: missing package, API key, provider
        raise _fail(str(exc)) from exc


SERVE_ENTRY_POINTS = "langroute.serve"
"""Entry-point group of the OpenAI-compatible server (registered by langchain-langroute)."""

ConfigArgument = Annotated[
    Path, typer.Argument(help="The models file (TOML) with the routes and its [serve] table.")
]


def _load_config(path: Path) -> object:
    from langroute.models.config import ModelsConfigError, load_models_config

    try:
        return load_models_config(path)
    except ModelsConfigError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def serve(
    config: ConfigArgument,
    host: Annotated[
        Optional[str], typer.Option("--host", help="Address to listen on (default: [serve] host).")
    ] = None,
    port: Annotated[
        Optional[int],
        typer.Option("--port", help="Port; 0 picks a free one (default: [serve] port)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes sharing the port (more than 1: a SQLite or Postgres "
            "ledger, and keys only on Postgres; see docs/serving.md).",
        ),
    ] = 1,
) -> None:
    """Serve the routes as an OpenAI-compatible endpoint (POST /v1/chat/completions).

    The server ships with the LangChain integration (``pip install
    'langchain-langroute[serve]'``); the core finds it through the ``langroute.serve``
    entry point, so it never imports an integration itself.
    """
    from importlib.metadata import entry_points

    from langroute.errors import LangrouteError

    models = _load_config(config)
    found = list(entry_points(group=SERVE_ENTRY_POINTS))
    if not found:
        raise _fail(
            "langroute serve needs the LangChain integration: "
            "pip install 'langchain-langroute[serve]'"
        )
    _quiet_model_loading()
    try:
        run_server = found[0].load()
    except ImportError as exc:
        raise _fail(f"{exc}: pip install 'langchain-langroute[serve]'") from exc
    try:
        run_server(models, host=host, port=port, **({"workers": workers} if workers > 1 else {}))
    except LangrouteError as exc:  # setup problems: router, models, keys file, ledger
        raise _fail(str(exc)) from exc


serve_key_app = typer.Typer(
    help="Manage the API keys of langroute serve (the keys file named in [serve] keys).",
    no_args_is_help=True,
)
app.add_typer(serve_key_app, name="serve-key")


def _keys_path(config: Path) -> Path:
    models = _load_config(config)
    keys = models.serve.keys  # type: ignore[attr-defined]
    if keys is None:
        raise _fail(f'{config}: [serve] names no keys file (add: keys = "keys.jsonl")')
    return Path(keys)


@serve_key_app.command("add")
def serve_key_add(
    config: ConfigArgument,
    name: Annotated[str, typer.Option("--name", help="Who uses the key (named in the ledger).")],
    budget: Annotated[
        Optional[float], typer.Option("--budget", help="Spend budget in USD per period.")
    ] = None,
    period: Annotated[
        str, typer.Option("--period", help="day, week, month (UTC calendar) or total.")
    ] = "day",
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="client (its feedback teaches the router once enough keys agree) or admin "
            "(its feedback teaches at once).",
        ),
    ] = "client",
) -> None:
    """Create an API key; the secret is printed once, only its SHA-256 is stored."""
    from langroute.errors import ApiKeysFileError
    from langroute.serving.keys import add_api_key

    if period not in ("day", "week", "month", "total"):
        raise _fail(f"--period must be day, week, month or total, not {period!r}")
    if role not in ("client", "admin"):
        raise _fail(f"--role must be client or admin, not {role!r}")
    path = _keys_path(config)
    try:
        secret, key = add_api_key(
            path,
            name,
            budget=budget,
            period=period,  # type: ignore[arg-type]
            role=role,  # type: ignore[arg-type]
        )
    except ApiKeysFileError as exc:
        raise _fail(str(exc)) from exc
    limit = "no budget" if key.budget is None else f"budget ${key.budget:g} per {key.period}"
    typer.echo(
        f"{key.role} key {printable(key.name)} added to {printable(str(path))} ({limit}).",
        err=True,
    )
    typer.echo("Store it now; it is not shown again:", err=True)
    typer.echo(secret)


@serve_key_app.command("list")
def serve_key_list(config: ConfigArgument) -> None:
    """List the API keys (names and budgets; secrets are never stored)."""
    from langroute.errors import ApiKeysFileError
    from langroute.serving.keys import load_api_keys

    path = _keys_path(config)
    try:
        keys = load_api_keys(path).keys
    except ApiKeysFileError as exc:
        raise _fail(str(exc)) from exc
    for key in keys:
        limit = "-" if key.budget is None else f"{key.budget:g}/{key.period}"
        typer.echo(f"{printable(key.name)}\t{limit}\t{key.created.isoformat()}")


@serve_key_app.command("remove")
def serve_key_remove(
    config: ConfigArgument,
    name: Annotated[str, typer.Option("--name", help="The key to delete.")],
) -> None:
    """Delete an API key (a running server stops accepting it at its next request)."""
    from langroute.errors import ApiKeysFileError
    from langroute.serving.keys import remove_api_key

    path = _keys_path(config)
    try:
        remove_api_key(path, name)
    except ApiKeysFileError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"key {printable(name)} removed from {printable(str(path))}.", err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one escaped line: warnings quote route names and file paths."""
    typer.echo(f"warning: {printable(message)}", err=True)


def _escape_help_markup(*apps: typer.Typer) -> None:
    """Escape rich markup in the help of every command and parameter of ``apps``.

    Help text names TOML tables (``[chain]``, ``[serve] keys``) that rich would read as
    markup tags and drop; escaped, they are shown as written. Parameter help shared by
    several commands (one ``Annotated`` alias) is escaped once.
    """
    import inspect
    from typing import get_type_hints

    from rich.markup import escape
    from typer.models import ParameterInfo

    done: set[int] = set()
    for group in apps:
        if group.info.help:
            group.info.help = escape(group.info.help)
        for command in group.registered_commands:
            callback = command.callback
            if callback is None:
                continue
            command.help = escape(command.help or inspect.getdoc(callback) or "") or None
            # resolved once and kept, so typer reads the very objects escaped here
            hints = get_type_hints(callback, include_extras=True)
            callback.__annotations__ = hints
            for hint in hints.values():
                for info in getattr(hint, "__metadata__", ()):
                    if isinstance(info, ParameterInfo) and info.help and id(info) not in done:
                        done.add(id(info))
                        info.help = escape(info.help)


_escape_help_markup(app, serve_key_app)


def main() -> None:
    """Entry point of the ``langroute`` script."""
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
