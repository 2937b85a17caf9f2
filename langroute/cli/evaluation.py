"""The ``eval``, ``calibrate``, ``tune`` and ``compare`` commands (typer command functions).

Registered by :mod:`langroute.cli.app`. Heavy libraries load inside the functions, so
importing this module (and ``langroute --help``) stays fast.

Example:
    $ langroute eval mmlu.jsonl mmlu.jsonl --weak mixtral --strong gpt-4 --folds 5 --json out.json
    $ langroute calibrate heldout.jsonl --router routers/support --target-strong-share 0.3
    $ langroute tune exemplars.jsonl --routes small,large --output routers/support
    $ langroute compare routers/prod routers/candidate golden.jsonl --tolerance 0.01
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from langroute.terminal import data_text, json_text, printable

__all__ = [
    "calibrate_command",
    "compare_command",
    "eval_command",
    "tune_command",
]

COMPARE_WORSE_EXIT = 1
"""``langroute compare`` exit status when B is worse than A beyond the tolerance."""
COMPARE_ERROR_EXIT = 2
"""``langroute compare`` exit status when the comparison could not be made."""


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
                f"{report.excluded_contaminated})"
            )
        )
        fraction = s.quality / s.strong_quality if s.strong_quality else None
        console.print(
            data_text(
                f"operating point at the router's threshold {report.threshold:.3g}: "
                f"{_fmt(s.strong_share, True)} sent to {s.strong}, quality {s.quality:.4f} "
                f"({_fmt(fraction, True)} of always-{s.strong}), PGR {_fmt(s.pgr)}"
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
    if report.tuning is not None:
        from langroute.evaluation.tuning import TuningRecord

        record = TuningRecord.model_validate(report.tuning)
        console.print(data_text(f"tuned within the exemplars: {record.summary()}"))
    elif report.fold_tuning:
        chosen = "; ".join(
            ", ".join(f"{k}={v}" for k, v in fold.items()) or "defaults"
            for fold in report.fold_tuning
        )
        console.print(data_text(f"tuned within each fold's exemplars: {chosen}"))
    elif not report.folds:
        console.print("not tuned: settings as given or defaults")


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
    tune: Annotated[
        Optional[bool],
        typer.Option(
            "--tune/--no-tune",
            help="Tune the decision settings within the exemplars as `build` does "
            "(default: from 100 exemplars on; settings given as options are kept).",
        ),
    ] = None,
    baseline: Annotated[
        Optional[Path],
        typer.Option(
            help="A saved router to compare with on EVALSET (as `langroute compare "
            "BASELINE <this router> EVALSET`); exits 1 when this router is worse."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="With --baseline: how far the headline figure may trail.")
    ] = 0.01,
    context: Annotated[
        Optional[str],
        typer.Option(
            help="How rows given as `messages` are routed: current_only (the last user "
            "turn), window[:N[:DECAY]] (earlier user turns mixed in embedding space) or "
            "window_text[:N] (joined)."
        ),
    ] = None,
    chain: Annotated[
        Optional[Path],
        typer.Option(
            help="A models file with a [chain] table: measure that decider chain (rules, "
            "this router, an LLM router) stage by stage against this router alone."
        ),
    ] = None,
) -> None:
    """Measure the router `build` would give from EXEMPLARS on EVALSET: table, plot, JSON.

    With no flags the router is tuned by cross-validation within EXEMPLARS, as `build`
    tunes it, so the default figure is the one a user gets.
    """
    from langroute.embedders.adapters import embedder_from_spec
    from langroute.errors import LangrouteError
    from langroute.evaluation.comparison import compare
    from langroute.evaluation.datasets import load_eval_set
    from langroute.evaluation.evaluator import cross_validate, evaluate
    from langroute.evaluation.plot import plot_report
    from langroute.evaluation.tuning import build_router
    from langroute.models.config import load_models_config
    from langroute.router.exemplar_router import load_saved_router
    from langroute.router.exemplars import check_route_labels, load_exemplars, located_rows

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
    comparison = None
    chain_report = None
    try:
        from langroute.router.conversation import ConversationContext

        strategy = ConversationContext.parse(context) if context is not None else None
        same = exemplars.resolve() == evalset.resolve()
        if strategy is not None and (same or folds is not None):
            raise ValueError("--context needs an evaluation file apart from the exemplars")
        if baseline is not None and (same or folds is not None):
            raise ValueError("--baseline needs an evaluation file apart from the exemplars")
        if chain is not None and (same or folds is not None or strategy is not None):
            raise ValueError(
                "--chain needs an evaluation file apart from the exemplars, and no --context"
            )
        # every input is read and checked before anything is embedded or tuned
        infer = route_list is None and not (weak and strong)
        if same or folds is not None:
            rows = load_exemplars(exemplars, routes=known)
            load_eval_set(exemplars, route_list, out_of_scope=oos, infer_routes=infer)
            if not same:
                rows += load_exemplars(evalset, routes=known)
                load_eval_set(evalset, route_list, out_of_scope=oos, infer_routes=infer)
            report = cross_validate(
                rows,
                routes=route_list,
                embedder=embedder_from_spec(embedder),
                folds=folds or 5,
                seed=seed,
                weak=weak,
                strong=strong,
                out_of_scope=oos,
                show_progress=True,
                tune=tune,
                **options,
            )
        else:
            rows = [ex for ex in load_exemplars(exemplars, routes=known) if ex.route not in oos]
            if route_list is None and weak and strong:
                route_list = [weak, strong]
            build_routes = route_list or check_route_labels(
                located_rows(exemplars), out_of_scope=oos
            )
            eval_rows = load_eval_set(evalset, build_routes)
            decider_config = load_models_config(chain) if chain is not None else None
            baseline_router = load_saved_router(baseline) if baseline is not None else None
            router = build_router(
                rows,
                routes=route_list,
                embedder=embedder_from_spec(embedder),
                tune=tune,
                seed=seed,
                show_progress=True,
                **options,
            )
            if decider_config is not None:
                from langroute.chains.deciders import chain_from_models_config
                from langroute.evaluation.chains import evaluate_chain

                decider = chain_from_models_config(decider_config, router)
                chain_report = evaluate_chain(
                    decider, eval_rows, pricer=decider_config.pricer(), show_progress=True
                )
                report = evaluate(decider, eval_rows, weak=weak, strong=strong, show_progress=True)
            else:
                report = evaluate(
                    router,
                    eval_rows,
                    weak=weak,
                    strong=strong,
                    show_progress=True,
                    context=strategy,
                )
            if baseline_router is not None:
                comparison = compare(
                    baseline_router,
                    router,
                    eval_rows,
                    tolerance=tolerance,
                    weak=weak,
                    strong=strong,
                )
    except (LangrouteError, ValueError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    _print_report(report, f"langroute eval: {evalset.name}")
    if chain_report is not None:
        print_chain_report(chain_report)
    written = plot_report(report, plot)
    typer.echo(f"plot written to {printable(written)}")
    if json_path is not None:
        figures = report.to_json_dict()
        if comparison is not None:
            figures["comparison"] = comparison.to_json_dict()
        if chain_report is not None:
            figures["chain"] = chain_report.model_dump(mode="json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
        typer.echo(f"JSON written to {printable(json_path)}")
    if comparison is not None:
        print_comparison(comparison, str(baseline), "this router")
        if comparison.worse:
            raise typer.Exit(COMPARE_WORSE_EXIT)


def print_chain_report(report: Any) -> None:
    """The per-stage table of a decider chain against its kNN router alone."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="decider chain, stage by stage", title_justify="left")
    table.add_column("stage")
    for name in ("rows", "share", "acc", "q loss", "cost infl", "esc", "strong"):
        table.add_column(name, justify="right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    for item in [*report.stages, report.chain, report.knn_only]:
        table.add_row(
            data_text(item.stage),
            str(item.n),
            pct(item.share),
            pct(item.accuracy),
            pct(item.quality_loss),
            pct(item.cost_inflation),
            pct(item.escalation_rate),
            pct(item.strong_share),
        )
    console = Console()
    console.print(table)
    cost = "unknown" if report.routing_cost is None else f"${report.routing_cost:.4f}"
    console.print(
        data_text(
            f"routing: {report.routing_calls} LLM router calls ({report.routing_failures} "
            f"failed or unparsed), {report.routing_input_tokens:,} in / "
            f"{report.routing_output_tokens:,} out tokens, cost {cost}"
            + (
                f" (no price for {', '.join(report.unpriced_models)})"
                if report.unpriced_models
                else ""
            )
        )
    )


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

    from langroute.embedders.adapters import embedder_from_spec
    from langroute.errors import LangrouteError
    from langroute.evaluation.calibration import calibrate
    from langroute.evaluation.datasets import load_eval_set
    from langroute.router.exemplar_router import ExemplarRouter
    from langroute.router.store import read_manifest

    if (target_strong_share is None) == (target_quality is None):
        typer.echo("error: give exactly one of --target-strong-share or --target-quality", err=True)
        raise typer.Exit(2)
    try:
        load_eval_set(evalset)  # a bad file fails before the router is loaded
        manifest = read_manifest(router)
        loaded = ExemplarRouter.load(
            router, embedder=embedder_from_spec(embedder, manifest.embedder.fingerprint)
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


def _cut(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def print_comparison(comparison: Any, name_a: str, name_b: str, show: int = 10) -> None:
    """Print a :class:`~langroute.evaluation.comparison.Comparison`: figures, flips, verdict."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    table = Table(title=data_text(f"A: {name_a}   B: {name_b}   n={comparison.n}", one_line=True))
    table.add_column("figure")
    for column in ("A", "B", "B - A"):
        table.add_column(column, justify="right")
    for key, value in comparison.a.items():
        delta = comparison.deltas.get(key)
        style = "bold" if key == comparison.metric else ""
        table.add_row(
            key,
            _fmt(value),
            _fmt(comparison.b.get(key)),
            "–" if delta is None else f"{delta:+.4f}",
            style=style,
        )
    console.print(table)
    effects = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in comparison.effects.items() if v)
    console.print(
        f"quality loss added {comparison.quality_loss_added:+.2%}   "
        f"cost inflation removed {comparison.cost_inflation_removed:+.2%}   "
        f"routes flipped: {comparison.flipped_count}" + (f" ({effects})" if effects else "")
    )
    if comparison.flipped and show > 0:
        flips = Table(title="flipped queries (harmful first)", title_justify="left")
        for column in ("query", "A -> B", "expected", "effect", "A's nearest", "B's nearest"):
            flips.add_column(column)
        for flip in comparison.flipped[:show]:
            nearest = []
            for neighbours in (flip.neighbours_a, flip.neighbours_b):
                top = neighbours[0] if neighbours else None
                nearest.append(
                    data_text(
                        f"{top['route']} {top['similarity']:.2f}: {_cut(top['text'], 30)}"
                        if top
                        else "-",
                        one_line=True,
                    )
                )
            flips.add_row(
                data_text(_cut(flip.text, 50), one_line=True),
                data_text(f"{flip.route_a} -> {flip.route_b}", one_line=True),
                data_text(flip.expected or "-", one_line=True),
                flip.effect.replace("_", " "),
                *nearest,
            )
        console.print(flips)
    console.print(
        Text.assemble(
            (
                "FAIL " if comparison.worse else "OK ",
                "bold red" if comparison.worse else "bold green",
            ),
            data_text(comparison.verdict),
        )
    )


def compare_command(
    router_a: Annotated[
        Optional[Path], typer.Argument(help="Baseline router directory (A).")
    ] = None,
    router_b: Annotated[
        Optional[Path], typer.Argument(help="Candidate router directory (B).")
    ] = None,
    evalset: Annotated[
        Optional[Path],
        typer.Argument(help="Fixed evaluation file (scored or labelled JSONL/CSV)."),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            help="How far B's headline figure (APGR, or the weighted error for labelled "
            "data) may trail A's before B counts as worse."
        ),
    ] = 0.01,
    weak: Annotated[Optional[str], typer.Option(help="Score key of the weak model.")] = None,
    strong: Annotated[Optional[str], typer.Option(help="Score key of the strong model.")] = None,
    show: Annotated[int, typer.Option(help="Flipped queries to list.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the comparison as JSON instead of tables.")
    ] = False,
    embedder: Annotated[
        Optional[str],
        typer.Option(help="Embedder for both (default: the one each router was saved with)."),
    ] = None,
    ledger: Annotated[
        Optional[str],
        typer.Option(
            help="Instead of A, B and EVALSET: a ledger of live traffic with shadow "
            "decisions (.jsonl, .db or postgresql://): the shadow candidate against live."
        ),
    ] = None,
    candidate: Annotated[
        Optional[str],
        typer.Option(help="With --ledger: the candidate to report (default: the latest)."),
    ] = None,
    routes: Annotated[
        Optional[str],
        typer.Option(
            help="With --ledger: routes cheapest first, comma-separated (default: by price)."
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            help="With --ledger: a models file giving each route's model and prices "
            "(default: the model that answered each route most in the ledger)."
        ),
    ] = None,
) -> None:
    """Compare router B with baseline A on EVALSET; exit 1 when B is worse (CI gate).

    Both routers route every row of the same evaluation set. Shown: each figure and
    its delta, quality loss added and cost inflation removed, and the queries whose
    route flipped with both decisions' nearest exemplars. Exit status: 0 when B is not
    worse than A beyond --tolerance, 1 when it is, 2 when the comparison failed.

    With --ledger LEDGER instead: the shadow candidate's decisions on live traffic
    against the live router's (agreement, flips harmful first, estimated cost and
    quality deltas with 95% intervals); exit status 0, or 2 when it failed.
    """
    if ledger is not None:
        from langroute.cli.shadow import compare_ledger_command

        if router_a is not None or router_b is not None or evalset is not None:
            typer.echo("error: give --ledger or A, B and EVALSET, not both", err=True)
            raise typer.Exit(COMPARE_ERROR_EXIT)
        compare_ledger_command(
            ledger, candidate=candidate, routes=routes, show=show, as_json=as_json, config=config
        )
        return
    if router_a is None or router_b is None or evalset is None:
        typer.echo("error: give A, B and EVALSET (or --ledger LEDGER)", err=True)
        raise typer.Exit(COMPARE_ERROR_EXIT)
    from langroute.errors import LangrouteError
    from langroute.evaluation.comparison import compare
    from langroute.evaluation.datasets import load_eval_set
    from langroute.router.exemplar_router import load_saved_router

    try:
        load_eval_set(evalset)  # a bad file fails before the routers are loaded
        comparison = compare(
            load_saved_router(router_a, embedder),
            load_saved_router(router_b, embedder),
            evalset,
            tolerance=tolerance,
            weak=weak,
            strong=strong,
        )
    except (LangrouteError, ValueError, OSError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(COMPARE_ERROR_EXIT) from exc
    if as_json:
        typer.echo(json_text(comparison.to_json_dict()))
    else:
        print_comparison(comparison, str(router_a), str(router_b), show)
    if comparison.worse:
        raise typer.Exit(COMPARE_WORSE_EXIT)


def tune_command(
    exemplars: Annotated[Path, typer.Argument(help="Exemplars file (.jsonl or .csv).")],
    routes: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated routes, cheapest first (default: labels in order)."),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Save the tuned router here.")
    ] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    repeats: Annotated[
        Optional[int],
        typer.Option(help="Repeat the split with other seeds and average (default 2)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Fold assignment seed.")] = 0,
    embedder: Annotated[
        Optional[str], typer.Option(help="minilm (default), hashing, or a model path.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tuning record as JSON instead of tables.")
    ] = False,
) -> None:
    """Cross-validate the decision settings within EXEMPLARS and show what wins.

    Sweeps k, neighbour weighting, loss weight and length evidence (scored exemplars,
    ranked by APGR) or k, weighting and the dial (labelled exemplars, ranked by the
    quality-loss-weighted error); every exemplar is embedded once. With --output the
    tuned router is saved, as `langroute build` would save it.
    """
    from rich.console import Console
    from rich.table import Table

    from langroute.embedders.adapters import embedder_from_spec
    from langroute.errors import LangrouteError
    from langroute.evaluation.tuning import build_router
    from langroute.router.exemplars import check_route_labels, load_exemplars, located_rows

    route_list = [r.strip() for r in routes.split(",") if r.strip()] if routes else None
    try:
        rows = load_exemplars(exemplars, routes=route_list)
        if route_list is None:
            check_route_labels(located_rows(exemplars))
        router = build_router(
            rows,
            routes=route_list,
            embedder=embedder_from_spec(embedder),
            tune=True,
            folds=folds,
            seed=seed,
            show_progress=not as_json,
            **({} if repeats is None else {"repeats": repeats}),
        )
        if output is not None:
            router.save(output)
    except (LangrouteError, ValueError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    from langroute.evaluation.tuning import TuningRecord

    record = TuningRecord.model_validate(router.tuning)
    if as_json:
        typer.echo(json_text(record.model_dump(mode="json")))
        return
    console = Console()
    better = "higher" if record.higher_is_better else "lower"
    table = Table(
        title=data_text(
            f"langroute tune: {exemplars.name} ({record.exemplars} exemplars, "
            f"{record.folds}-fold CV, {record.metric}: {better} is better)",
            one_line=True,
        )
    )
    table.add_column("#", justify="right")
    table.add_column("settings")
    table.add_column(record.metric, justify="right")
    table.add_column("sd", justify="right")
    for rank, row in enumerate(record.top, start=1):
        shown = {k: v for k, v in row.items() if k not in (record.metric, f"{record.metric}_sd")}
        table.add_row(
            str(rank),
            data_text(", ".join(f"{k}={v}" for k, v in shown.items()) or "untuned", one_line=True),
            f"{row[record.metric]:.4f}",
            f"{row[f'{record.metric}_sd']:.4f}",
            style="bold" if rank == 1 else "",
        )
    console.print(table)
    console.print(
        data_text(f"{record.summary()}; {record.trials} settings in {record.seconds:.1f}s")
    )
    if output is not None:
        console.print(data_text(f"tuned router saved to {output}"))
