"""The dashboard page at ``/dashboard`` of ``langroute serve``, for admin keys only.

The page itself (:mod:`langroute.dashboard`) reads the server's ledger through its own
connections and lists the server's router's exemplars; its JSON endpoints answer only
requests with an ``admin`` key (``langroute serve-key add CONFIG --name NAME --role
admin``). Without a keys file nobody is an admin, so the endpoints refuse everyone.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request
from langroute.dashboard import Dashboard, create_dashboard_app
from langroute.serving.keys import ApiKey

from langchain_langroute.server.gateway import Gateway
from langchain_langroute.server.openai_format import ApiError

__all__ = ["DASHBOARD_PATH", "mount_dashboard"]

DASHBOARD_PATH = "/dashboard"

NO_ADMIN = (
    "the dashboard needs an admin key: name a keys file in [serve] keys and add one "
    "with 'langroute serve-key add CONFIG --name NAME --role admin'"
)


def mount_dashboard(
    app: FastAPI, gateway: Gateway, authenticate: Callable[[Request], ApiKey | None]
) -> Dashboard:
    """Mount the dashboard on ``app`` at :data:`DASHBOARD_PATH`; returns its data source."""

    def admin_only(request: Request) -> None:
        if gateway.keyring is None:
            raise HTTPException(403, NO_ADMIN)
        try:
            key = authenticate(request)
        except ApiError as exc:
            raise HTTPException(exc.status, exc.message) from None
        if key is None or key.role != "admin":
            raise HTTPException(403, "the dashboard needs an admin key (this key is a client's)")

    def api_keys() -> list[ApiKey]:
        return [] if gateway.keyring is None else list(gateway.keyring.keys().keys)

    dashboard = Dashboard(gateway.ledger, router=gateway.router, api_keys=api_keys)
    app.mount(DASHBOARD_PATH, create_dashboard_app(dashboard, authorize=admin_only))
    return dashboard
