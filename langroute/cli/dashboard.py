"""The ``langroute dashboard`` command (a typer command function, registered by the CLI).

Example:
    $ langroute dashboard langroute-demo/ledger.db
    dashboard: http://127.0.0.1:8765/  (Ctrl+C to stop)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from langroute.terminal import printable

__all__ = ["dashboard_command"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code=1)


def dashboard_command(
    ledger: Annotated[
        str,
        typer.Argument(help="A .jsonl or .db/.sqlite ledger, or a postgresql:// URL."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.")] = 8765,
    router: Annotated[
        Optional[Path],
        typer.Option(
            "--router", "-r", help="A saved router: list its exemplars, explain decisions."
        ),
    ] = None,
    window: Annotated[str, typer.Option(help="Timeline window: 30m, 1h, 1d, ...")] = "1h",
    segment: Annotated[
        Optional[list[str]],
        typer.Option(help="Metadata keys to segment by (repeat; default: api_key, tenant, tag)"),
    ] = None,
    keys: Annotated[
        Optional[Path], typer.Option(help="The keys file of langroute serve: budget burn per key.")
    ] = None,
    refresh: Annotated[
        float, typer.Option(help="Look for new ledger rows at most every this many seconds.")
    ] = 10.0,
) -> None:
    """Serve a web page over a ledger: spend, savings, routes, latency, segments, decisions.

    Prints the URL and serves until Ctrl+C; it opens no browser. Needs FastAPI and
    uvicorn: pip install 'langroute[dashboard]'.
    """
    from importlib.util import find_spec

    from langroute.costs.ledger import CostLedger
    from langroute.dashboard import DASHBOARD_EXTRA, Dashboard, DashboardSettings, serve_dashboard
    from langroute.errors import LangrouteError
    from langroute.monitoring import parse_duration
    from langroute.postgres.database import is_postgres_url

    if find_spec("fastapi") is None or find_spec("uvicorn") is None:
        raise _fail(f"the dashboard needs FastAPI and uvicorn: {DASHBOARD_EXTRA}")
    try:
        settings = DashboardSettings(
            window=parse_duration(window),
            refresh_seconds=refresh,
            **({"segment_keys": tuple(segment)} if segment else {}),
        )
        api_keys = None
        if keys is not None:
            from langroute.serving.keys import load_api_keys

            loaded = load_api_keys(keys).keys
            api_keys = lambda: loaded  # noqa: E731
        saved_router = None
        if router is not None:
            from langroute.router.exemplar_router import load_saved_router

            saved_router = load_saved_router(router)
        source: str | Path = ledger if is_postgres_url(ledger) else Path(ledger)
        if isinstance(source, Path) and not source.exists():
            raise FileNotFoundError(f"no ledger at {source}")
        CostLedger.open(source, validate=False).close()  # a bad file fails here, named
        dashboard = Dashboard(source, router=saved_router, settings=settings, api_keys=api_keys)
    except (FileNotFoundError, LangrouteError, ValueError) as exc:
        raise _fail(str(exc)) from exc

    dashboard.warm_up()  # a big ledger takes a while: start before the first page load

    def announce(url: str) -> None:
        typer.echo(f"dashboard: {url}  (Ctrl+C to stop)")

    try:
        serve_dashboard(dashboard, host=host, port=port, announce=announce)
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc}") from exc
