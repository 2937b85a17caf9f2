"""The dashboard's FastAPI app (imported only once FastAPI is known to be installed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from langroute.dashboard.data import Dashboard
from langroute.dashboard.queries import DecisionFilter
from langroute.errors import LangrouteError

__all__ = ["STATIC", "build_app"]

STATIC = Path(__file__).parent / "static"
"""The page and its assets, shipped in the package (the page works offline)."""


def _when(value: str | None, name: str) -> datetime | None:
    from langroute.monitoring import utc

    if value is None or value == "":
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise ValueError(f"{name}: not an ISO date or time: {value!r}") from exc


def build_app(
    dashboard: Dashboard, *, authorize: Callable[[Request], None] | None = None
) -> FastAPI:
    """The app of :func:`langroute.dashboard.create_dashboard_app` (FastAPI imported)."""

    def check(request: Request) -> None:
        if authorize is not None:
            authorize(request)

    app = FastAPI(title="langroute dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(prefix="/api", dependencies=[Depends(check)])
    app.state.dashboard = dashboard

    @app.exception_handler(LangrouteError)
    async def ledger_error(request: Request, exc: LangrouteError) -> JSONResponse:
        # an unreadable ledger or database: said on the page, as text
        return JSONResponse({"error": str(exc)}, status_code=500)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Any:
        if not request.url.path.endswith("/"):  # the page's asset links are relative
            return RedirectResponse(request.url.path + "/")
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.get("/summary")
    def summary() -> dict[str, Any]:
        return dashboard.summary()

    @api.get("/timeline")
    def timeline() -> dict[str, Any]:
        return dashboard.timeline()

    @api.get("/latency")
    def latency() -> dict[str, Any]:
        return dashboard.latency()

    @api.get("/segments")
    def segments(key: str | None = None) -> dict[str, Any]:
        return dashboard.segments(key)

    @api.get("/quality")
    def quality() -> dict[str, Any]:
        return dashboard.quality()

    @api.get("/decisions")
    def decisions(
        route: str | None = None,
        reason: str | None = None,
        segment: str | None = None,
        key: str | None = None,
        since: str | None = None,
        until: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        where = DecisionFilter(
            route=route or None,
            reason=reason or None,
            segment=segment or None,
            since=_when(since, "since"),
            until=_when(until, "until"),
        )
        return dashboard.decisions(where, segment_key=key or None, offset=offset, limit=limit)

    @api.get("/why/{record_id}")
    def why(record_id: str) -> dict[str, Any]:
        try:
            return dashboard.why(record_id)
        except KeyError:
            raise HTTPException(404, f"no call has record id {record_id!r}") from None

    @api.get("/exemplars")
    def exemplars() -> dict[str, Any]:
        return dashboard.exemplars()

    app.include_router(api)
    return app
