"""The dashboard's web app: the page, its assets, and one JSON endpoint per panel.

FastAPI and uvicorn are imported when the app is built (the ``dashboard`` extra), so
importing :mod:`langroute.dashboard` costs nothing without them.

Endpoints (under the app's root; ``langroute serve`` mounts it at ``/dashboard``):

* ``GET /`` the page; ``GET /static/...`` its script and style (shipped in the package).
* ``GET /api/summary``: ``report --json`` and the judge / LLM-router spend.
* ``GET /api/timeline``: ``monitor --json`` (windows, alarms) and the model mix.
* ``GET /api/latency``: p50 / p95 / p99 per route, errors and failovers.
* ``GET /api/segments?key=``: per segment (tenant, API key, tag), budget burn per key.
* ``GET /api/quality``: feedback per route.
* ``GET /api/decisions?route=&reason=&segment=&key=&since=&until=&offset=&limit=``.
* ``GET /api/why/{record_id}``: one call's record, its request, nearest exemplars.
* ``GET /api/exemplars``: the router's exemplars, learned ones by source.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from langroute.dashboard.data import Dashboard

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = ["DASHBOARD_EXTRA", "create_dashboard_app", "serve_dashboard"]

DASHBOARD_EXTRA = "pip install 'langroute[dashboard]'"
"""How to install what the dashboard needs (FastAPI and uvicorn)."""


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the dashboard needs {module}: {DASHBOARD_EXTRA}") from exc


def create_dashboard_app(
    dashboard: Dashboard, *, authorize: Callable[[Request], None] | None = None
) -> FastAPI:
    """The FastAPI app serving the dashboard page and its JSON endpoints.

    Args:
        dashboard: Where the numbers come from.
        authorize: Called with each API request; raises to refuse it (``langroute
            serve`` lets admin keys in). The page and its assets hold no data and are
            served to anyone; the page asks for a key when the API refuses it.

    Raises:
        ImportError: FastAPI is not installed (the message names the extra).

    Example:
        >>> from langroute.costs import CostLedger
        >>> app = create_dashboard_app(Dashboard(CostLedger()))  # doctest: +SKIP
    """
    _require("fastapi")
    from langroute.dashboard.web import build_app

    return build_app(dashboard, authorize=authorize)


def free_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def serve_dashboard(
    dashboard: Dashboard,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until interrupted; ``announce`` gets its URL once it listens.

    Raises:
        ImportError: FastAPI or uvicorn is missing (the message names the extra).
        OSError: The address is taken or cannot be bound.
    """
    uvicorn = _require("uvicorn")
    app = create_dashboard_app(dashboard)
    sock = free_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    announce(f"http://{shown}:{bound}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        dashboard.close()
