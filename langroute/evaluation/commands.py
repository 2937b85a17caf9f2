"""The ``langroute eval`` and ``langroute calibrate`` commands (typer command functions).

Registered by :mod:`langroute.cli`. Heavy libraries load inside the functions, so
importing this module (and ``langroute --help``) stays fast.

Example:
    $ langroute eval mmlu.jsonl mmlu.jsonl --weak mixtral --strong gpt-4 --folds 5 --json out.json
    $ langroute calibrate heldout.jsonl --router routers/support --target-strong-share 0.3
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from langroute.terminal import data_text, printable

__all__ = ["calibrate_command", "eval_command"]


def _embedder(spec: str | None, fingerprint: str | None = None) -> Any:
    """Build an embedder from ``--embedder`` (or from a saved router's fingerprint)."""
    from langroute.embedders import HashingEmbedder, SentenceTransformerEmbedder

    if spec is None and fingerprint is not None and fingerprint.startswith("hashing:"):
        return HashingEmbedder(int(fingerprint.split(":")[1]))
    if spec is None or spec in ("minilm", "default"):
        return SentenceTransformerEmbedder()
    if spec == "hashing" or spec.startswith("hashing:"):
        size = int(spec.split(":")[1]) if ":" in spec else 256
        return HashingEmbedder(size)
    return SentenceTransformerEmbedder(spec)


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def _print_report(report: Any, title: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if report.scores is not None:
        s = report.scores
        table = Table(title=data_text(title, one_line=True))
        table.add_column("router", no_wrap=True)
        for column in ("APGR", "CPT50", "CPT80", "95% of S", "APGR 11pt", "strong", "quality"):
            table.add_column(column, justify="right")
        table.add_row(
            "this router",
            _fmt(s.apgr),
            _fmt(s.cpt50, True),
            _fmt(s.cpt80, True),
            _fmt(s.share_for_95, True),
            _fmt(s.routellm.get("apgr")),
            _fmt(s.strong_share, True),
            _fmt(s.quality),
            style="bold",
        )
        for b in report.baselines:
            table.add_row(
                data_text(b.name.replace(" seeds)", ")"), one_line=True),
                _fmt(b.apgr),
                _fmt(b.cpt50, True),
                _fmt(b.cpt80, True),
                _fmt(b.share_for_95, True),
                _fmt(b.routellm.get("apgr")) if b.routellm else "–",
                _fmt(b.strong_share, True),
                _fmt(b.quality),
            )
        console.print(table)
        console.print(
            data_text(
                f"weak {s.weak}: {s.weak_quality:.4f}   strong {s.strong}: "
                f"{s.strong_quality:.4f}   n={report.n} (contaminated left out: "
                f"{report.excluded_contaminated}); at threshold {report.threshold:.3g}: "
                f"PGR {_fmt(s.pgr)}"
            )
        )
    if report.labels is not None and report.scores is None:
        lab = report.labels
        table = Table(title=data_text(title, one_line=True))
        table.add_column("router")
        table.add_column("accuracy", justify="right")
        table.add_row("this router", _fmt(lab.accuracy, True), style="bold")
        for b in report.baselines:
            table.add_row(data_text(b.name, one_line=True), _fmt(b.accuracy, True))
        console.print(table)
        line = (
            f"n={lab.n}  escalation rate {_fmt(lab.escalation_rate, True)}  "
            f"cost inflation {_fmt(lab.cost_inflation, True)}  "
            f"quality loss {_fmt(lab.quality_loss, True)}"
        )
        if lab.oos_recall is not None:
            line += (
                f"  in-scope accuracy {_fmt(lab.in_scope_accuracy, True)}  "
                f"out-of-scope recall {_fmt(lab.oos_recall, True)} ({lab.out_of_scope} rows)"
            )
        console.print(line)
        for miss in lab.misrouted[:5]:
            console.print(
                Text.assemble(
                    "  ",
                    ("misrouted", "red"),
                    data_text(
                        f" {miss.text[:70]!r}: expected {miss.expected}, "
                        f"got {miss.predicted} ({miss.reason})",
                        one_line=True,
                    ),
                )
            )
    if report.folds:
        console.print(f"{report.folds}-fold cross-validation (identical texts share a fold)")


def eval_command(
    exemplars: Annotated[Path, typer.Argument(help="Exemplar file (JSONL or CSV).")],
    evalset: Annotated[
        Path, typer.Argument(help="Evaluation file; the same file as EXEMPLARS means k-fold CV.")
    ],
    weak: Annotated[Optional[str], typer.Option(help="Score key of the weak model.")] = None,
    strong: Annotated[Optional[str], typer.Option(help="Score key of the strong model.")] = None,
    folds: Annotated[
        Optional[int], typer.Option(help="Cross-validate with N folds (default 5 for one file).")
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write every figure as JSON here.")
    ] = None,
    plot: Annotated[Path, typer.Option(help="Write the cost-quality plot (PNG) here.")] = Path(
        "langroute-eval.png"
    ),
    routes: Annotated[
        Optional[str], typer.Option(help="Comma-separated routes, cheapest first.")
    ] = None,
    k: Annotated[Optional[int], typer.Option(help="Neighbours that decide.")] = None,
    rule: Annotated[
        Optional[str], typer.Option(help="threshold (ordered routes) or argmax (intents).")
    ] = None,
    weighting: Annotated[
        Optional[str], typer.Option(help="softmax, linear, uniform or power neighbour weights.")
    ] = None,
    threshold: Annotated[Optional[float], typer.Option(help="The dial.")] = None,
    temperature: Annotated[
        Optional[float], typer.Option(help="Softmax temperature of the weighting.")
    ] = None,
    power: Annotated[Optional[float], typer.Option(help="Exponent of weighting=power.")] = None,
    loss_weight: Annotated[
        Optional[float], typer.Option(help="Scores mode: weight of neighbours the cheap model won.")
    ] = None,
    min_margin: Annotated[
        Optional[float], typer.Option(help="Escalate decisions closer than this to the dial.")
    ] = None,
    min_similarity: Annotated[
        Optional[float], typer.Option(help="Out-of-distribution similarity floor.")
    ] = None,
    out_of_scope: Annotated[
        Optional[list[str]], typer.Option(help="A label that is never a route (repeatable).")
    ] = None,
    embedder: Annotated[
        Optional[str], typer.Option(help="minilm (default), hashing, or a model path.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Fold assignment seed.")] = 0,
) -> None:
    """Measure a router built from EXEMPLARS on EVALSET: table, plot and optional JSON."""
    from langroute.errors import LangrouteError
    from langroute.evaluation.evaluator import cross_validate, evaluate
    from langroute.evaluation.plot import plot_report
    from langroute.exemplars import load_exemplars
    from langroute.router import ExemplarRouter

    options: dict[str, Any] = {
        key: value
        for key, value in {
            "k": k,
            "rule": rule,
            "weighting": weighting,
            "threshold": threshold,
            "temperature": temperature,
            "power": power,
            "loss_weight": loss_weight,
            "min_margin": min_margin,
            "min_similarity": min_similarity,
        }.items()
        if value is not None
    }
    route_list = [r.strip() for r in routes.split(",") if r.strip()] if routes else None
    oos = list(out_of_scope or [])
    known = [*route_list, *oos] if route_list else None  # rows with other labels: errors
    try:
        same = exemplars.resolve() == evalset.resolve()
        if same or folds is not None:
            rows = load_exemplars(exemplars, routes=known)
            if not same:
                rows += load_exemplars(evalset, routes=known)
            report = cross_validate(
                rows,
                routes=route_list,
                embedder=_embedder(embedder),
                folds=folds or 5,
                seed=seed,
                weak=weak,
                strong=strong,
                out_of_scope=oos,
                show_progress=True,
                **options,
            )
        else:
            rows = [ex for ex in load_exemplars(exemplars, routes=known) if ex.route not in oos]
            if route_list is None and weak and strong:
                route_list = [weak, strong]
            router = ExemplarRouter(
                routes=route_list,
                exemplars=rows,
                embedder=_embedder(embedder),
                show_progress=True,
                **options,
            )
            report = evaluate(router, evalset, weak=weak, strong=strong, show_progress=True)
    except (LangrouteError, ValueError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    _print_report(report, f"langroute eval: {evalset.name}")
    written = plot_report(report, plot)
    typer.echo(f"plot written to {printable(written)}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_json_dict(), indent=2), encoding="utf-8")
        typer.echo(f"JSON written to {printable(json_path)}")


def calibrate_command(
    evalset: Annotated[Path, typer.Argument(help="Held-out scored or labelled file.")],
    router: Annotated[Path, typer.Option("--router", help="Saved router directory.")],
    target_strong_share: Annotated[
        Optional[float], typer.Option(help="Wanted share of calls to the strongest route.")
    ] = None,
    target_quality: Annotated[
        Optional[float],
        typer.Option(help="Wanted quality as a fraction of the strong model's (e.g. 0.95)."),
    ] = None,
    weak: Annotated[Optional[str], typer.Option(help="Score key of the weak model.")] = None,
    strong: Annotated[Optional[str], typer.Option(help="Score key of the strong model.")] = None,
    embedder: Annotated[
        Optional[str], typer.Option(help="Embedder (default: the one the router was saved with).")
    ] = None,
) -> None:
    """Set a saved router's dial from EVALSET and save it back (threshold + calibration record)."""
    import warnings

    from langroute.errors import LangrouteError
    from langroute.evaluation.calibration import calibrate
    from langroute.router import ExemplarRouter
    from langroute.store import read_manifest

    if (target_strong_share is None) == (target_quality is None):
        typer.echo("error: give exactly one of --target-strong-share or --target-quality", err=True)
        raise typer.Exit(2)
    try:
        manifest = read_manifest(router)
        loaded = ExemplarRouter.load(
            router, embedder=_embedder(embedder, manifest.embedder.fingerprint)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = calibrate(
                loaded,
                evalset,
                target_strong_share=target_strong_share,
                target_quality=target_quality,
                weak=weak,
                strong=strong,
                show_progress=True,
            )
        for warning in caught:
            typer.echo(f"warning: {printable(warning.message)}", err=True)
        loaded.save(router)
    except (LangrouteError, ValueError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    line = (
        f"threshold {result.previous_threshold:.4g} -> {result.threshold:.4g}: "
        f"strong share {result.strong_share:.1%}, quality {result.quality:.4f}"
    )
    if result.pgr is not None:
        line += f", PGR {result.pgr:.3f}"
    if not result.reached:
        line += " (target not reachable; closest point taken)"
    typer.echo(line)
    typer.echo(f"saved to {printable(router)}")
