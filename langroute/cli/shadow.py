"""Shadow evaluation on the command line: ``compare --ledger``, ``promote`` and ``revert``.

Registered by :mod:`langroute.cli.app`.

Example:
    $ langroute compare --ledger costs.db                 # agreement, flips, deltas
    $ langroute compare --ledger costs.db --json
    $ langroute promote routers/candidate routers/prod    # prod's router kept for revert
    $ langroute revert routers/prod                        # the kept router back
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from langroute.terminal import data_text, json_text, printable

__all__ = [
    "PREVIOUS_SUFFIX",
    "REVERTED_SUFFIX",
    "compare_ledger_command",
    "promote",
    "promote_command",
    "revert",
    "revert_command",
]

PREVIOUS_SUFFIX = ".previous"
"""``promote`` keeps the router it replaced beside the target, under this suffix."""
REVERTED_SUFFIX = ".reverted"
"""``revert`` keeps the router it took out beside the target, under this suffix."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _ci(interval: Any) -> str:
    return "" if interval is None else f" (95% CI {interval[0]:+.1%} .. {interval[1]:+.1%})"


def print_shadow_comparison(report: Any, show: int = 10) -> None:
    """Print a :class:`~langroute.evaluation.shadow.ShadowComparison` as tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    low, high = report.agreement_ci
    console.print(
        data_text(
            f"candidate {report.candidate}: {report.n} requests compared"
            + (f", {report.shadow_errors} shadow errors" if report.shadow_errors else ""),
            one_line=True,
        )
    )
    console.print(
        f"agreement {report.agreement:.1%} (95% CI {low:.1%} .. {high:.1%})   "
        f"flipped {report.flipped} (harmful: {report.harmful_flips})"
    )
    shares = Table(title="route shares", title_justify="left")
    for column in ("route", "live", "candidate"):
        shares.add_column(column, justify="left" if column == "route" else "right")
    for route in report.routes:
        shares.add_row(
            data_text(route, one_line=True),
            f"{report.live_share[route]:.1%}",
            f"{report.shadow_share[route]:.1%}",
        )
    console.print(shares)
    cost = (
        f"estimated cost delta {_pct(report.cost_delta)}{_ci(report.cost_delta_ci)} "
        f"(${report.cost_live:.4f} -> ${report.cost_shadow:.4f}"
        + (f", {report.unpriced} unpriced" if report.unpriced else "")
        + ")"
    )
    console.print(cost)
    if report.quality_delta is None:
        console.print("estimated quality delta: - (no feedback on every route involved)")
    else:
        console.print(
            f"estimated quality delta {_pct(report.quality_delta)}{_ci(report.quality_delta_ci)} "
            f"({report.quality_live:.1%} -> {report.quality_shadow:.1%}, from feedback)"
        )
    if report.flips and show > 0:
        flips = Table(title="flips (harmful first)", title_justify="left")
        for column in ("live -> candidate", "requests", "share", "harmful", "example"):
            flips.add_column(column)
        for group in report.flips[:show]:
            example = next((e.query for e in group.examples if e.query), None)
            flips.add_row(
                data_text(f"{group.live} -> {group.shadow}", one_line=True),
                str(group.count),
                f"{group.share:.1%}",
                "yes" if group.harmful else "no",
                data_text(" ".join(example.split())[:60] if example else "-", one_line=True),
            )
        console.print(flips)


def compare_ledger_command(
    ledger: str,
    *,
    candidate: str | None,
    routes: str | None,
    show: int,
    as_json: bool,
    config: Path | None = None,
) -> None:
    """``langroute compare --ledger``: the shadow candidate against the live router.

    ``config`` (a models file) gives each route's model and the prices to estimate with.
    """
    from langroute.costs import CostLedger
    from langroute.errors import LangrouteError
    from langroute.evaluation.shadow import compare_ledger
    from langroute.postgres.database import is_postgres_url

    try:
        source: str | Path = ledger if is_postgres_url(ledger) else Path(ledger)
        records = CostLedger.open(source).records()
        route_models, pricer = _models_of(config) if config is not None else (None, None)
        report = compare_ledger(
            records,
            candidate=candidate,
            routes=[r.strip() for r in routes.split(",") if r.strip()] if routes else None,
            route_models=route_models,
            pricer=pricer,
        )
    except (LangrouteError, ValueError, OSError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json_text(report.to_json_dict()))
    else:
        print_shadow_comparison(report, show)


def _models_of(config: Path) -> tuple[dict[str, str], Any]:
    """A models file's route -> model name to price with, and its pricer."""
    from langroute.costs import Pricer
    from langroute.models.config import load_models_config

    models = load_models_config(config)
    names = {route: spec.price_as or spec.spec for route, spec in models.routes.items()}
    return names, Pricer(models.prices)


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


def _checked_load(path: Path) -> Any:
    from langroute.router.exemplar_router import load_saved_router

    return load_saved_router(path)


def promote(candidate: Path, target: Path) -> Path:
    """Put the saved router ``candidate`` in place of the one at ``target``.

    The router at ``target`` is first saved beside it as ``TARGET.previous`` (for
    :func:`revert`); then the candidate is saved over ``target``. Each save swaps a
    complete copy in atomically (see :mod:`langroute.router.store`): a process loading
    ``target`` meanwhile reads the old router or the new, never a mix, and a crash at any
    point loses no router. A running ``langroute serve`` picks it up when restarted.

    Returns:
        Where the replaced router was kept.

    Raises:
        RouterStoreError: A folder holds no saved router.
        RouterConfigError: The candidate's routes differ from the target's (the models
            configured for the target would not match).
    """
    from langroute.errors import RouterConfigError

    new = _checked_load(candidate)
    current = _checked_load(target)
    if list(new.routes) != list(current.routes):
        raise RouterConfigError(
            f"{candidate} routes {list(new.routes)}, {target} routes {list(current.routes)}: "
            "a promoted router must have the same routes"
        )
    previous = _sibling(target, PREVIOUS_SUFFIX)
    current.save(previous)
    new.save(target)
    return previous


def revert(target: Path) -> Path:
    """Put back the router :func:`promote` replaced at ``target`` (``TARGET.previous``).

    The router taken out is kept as ``TARGET.reverted``; ``TARGET.previous`` stays, so a
    crash at any point loses no router.

    Returns:
        Where the router taken out was kept.

    Raises:
        RouterStoreError: There is no ``TARGET.previous`` (nothing was promoted there).
    """
    from langroute.errors import RouterStoreError

    previous = _sibling(target, PREVIOUS_SUFFIX)
    if not previous.is_dir():
        raise RouterStoreError(f"nothing to revert: {previous} does not exist")
    old = _checked_load(previous)
    current = _checked_load(target)
    reverted = _sibling(target, REVERTED_SUFFIX)
    current.save(reverted)
    old.save(target)
    return reverted


def promote_command(
    candidate: Annotated[Path, typer.Argument(help="The candidate router's directory.")],
    router: Annotated[
        Optional[Path],
        typer.Argument(help="The live router's directory (default: [serve] router of --config)."),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="A models file whose [serve] router is replaced.")
    ] = None,
) -> None:
    """Promote a candidate router: it replaces ROUTER, whose router is kept for `revert`."""
    from langroute.errors import LangrouteError

    try:
        target = _target(router, config)
        kept = promote(candidate, target)
    except (LangrouteError, OSError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"promoted {printable(candidate)} to {printable(target)}; "
        f"previous kept at {printable(kept)}"
    )


def revert_command(
    router: Annotated[
        Optional[Path],
        typer.Argument(help="The live router's directory (default: [serve] router of --config)."),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="A models file whose [serve] router is reverted.")
    ] = None,
) -> None:
    """Undo the last `promote` of ROUTER: its previous router comes back."""
    from langroute.errors import LangrouteError

    try:
        target = _target(router, config)
        kept = revert(target)
    except (LangrouteError, OSError) as exc:
        typer.echo(f"error: {printable(exc)}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"reverted {printable(target)}; the router taken out is kept at {printable(kept)}")


def _target(router: Path | None, config: Path | None) -> Path:
    from langroute.errors import RouterConfigError

    if (router is None) == (config is None):
        raise RouterConfigError("give the router directory or --config, one of them")
    if router is not None:
        return router
    from langroute.models.config import load_models_config

    assert config is not None
    serve = load_models_config(config).serve
    if serve.router is None:
        raise RouterConfigError(f"{config}: [serve] names no router directory")
    return serve.router
