"""The HTTP API of ``langroute serve`` (FastAPI): OpenAI chat completions, feedback, health.

Endpoints:

* ``POST /v1/chat/completions``: an answer, or an SSE stream of chunks ending with
  ``data: [DONE]``; ``model`` is an alias (``"auto"``: the router chooses), a route or
  a route's model (forced). The decision is in ``x-langroute-*`` headers.
* ``GET /v1/models``: the aliases, then each route.
* ``POST /v1/feedback``: ``{"id": "<response id>", "verdict": "good" | "bad"}``.
* ``GET /healthz`` and ``GET /metrics`` (Prometheus text; both need no key).

Errors are OpenAI-shaped bodies: 400 (the field at fault named), 401 (no or unknown
key), 404 (unknown model or response id), 429 (a key past its budget with
``over_budget = "reject"``), 502 (every route failed).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from langchain_core.messages import AIMessage, AIMessageChunk
from langroute.dispatch.routed_call import RouteMetadata, error_text
from langroute.errors import AllRoutesFailedError, UnknownRecordError
from langroute.serving.keys import ApiKey
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

from langchain_langroute.server.gateway import Gateway, response_id
from langchain_langroute.server.openai_format import (
    ApiError,
    ChatCompletionRequest,
    ChunkWriter,
    completion_body,
    error_body,
    parse_request,
    to_messages,
)

__all__ = ["FeedbackRequest", "create_app", "decision_headers"]

HEADER_PREFIX = "x-langroute-"


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    verdict: Literal["good", "bad"]


def decision_headers(meta: RouteMetadata | None) -> dict[str, str]:
    """The ``x-langroute-*`` headers of an answer: its route, model, reason, confidence."""
    if meta is None:
        return {}
    headers = {
        "route": meta.route or "",
        "model": meta.model or "",
        "decided-route": meta.decided_route,
        "reason": meta.reason,
        "confidence": f"{meta.confidence:.4f}",
        "escalated": "true" if meta.escalated else "false",
        "routing-ms": f"{meta.routing_ms:.2f}",
    }
    if meta.escalated_from:
        headers["escalated-from"] = meta.escalated_from
    # header values are latin-1: a model name outside it is sent escaped
    return {
        HEADER_PREFIX + name: value.encode("ascii", "backslashreplace").decode("ascii")
        for name, value in headers.items()
    }


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def create_app(gateway: Gateway) -> FastAPI:
    """The FastAPI app serving a :class:`Gateway`."""
    app = FastAPI(title="langroute", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(f"{request.method} {request.url.path}: {exc.detail}", type=kind),
            status_code=exc.status_code,
        )

    def authenticate(request: Request) -> ApiKey | None:
        if gateway.keyring is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )
        key = gateway.keyring.find(secret.strip())
        if key is None:
            raise ApiError(401, "invalid API key", code="invalid_api_key")
        return key

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        stats = gateway.ledger.stats
        return {
            "status": "ok",
            "routes": gateway.routes,
            "aliases": list(gateway.settings.aliases),
            "ledger": {"pending": stats.pending, "dropped": stats.dropped, "failed": stats.failed},
        }

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authenticate(request)
        created = int(time.time())
        entries = [
            {"id": alias, "object": "model", "created": created, "owned_by": "langroute"}
            for alias in gateway.settings.aliases
        ]
        entries += [
            {
                "id": route,
                "object": "model",
                "created": created,
                "owned_by": "langroute",
                "model": model,
            }
            for route, model in gateway.llm.route_models.items()
        ]
        return {"object": "list", "data": entries}

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        key = authenticate(request)
        try:
            body = FeedbackRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ApiError(400, f"{field}: {error['msg']}" if field else error["msg"]) from exc
        try:
            stored, learned = await gateway.feedback(body.id, body.verdict, key)
        except UnknownRecordError as exc:
            raise ApiError(
                404, f"no answer has id {body.id!r}", code="response_not_found", param="id"
            ) from exc
        return {
            "id": body.id,
            "verdict": stored.verdict,
            "feedback_id": stored.record_id,
            "route": stored.route,
            "learned_route": learned,
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        key = authenticate(request)
        body = parse_request(await request.body())
        messages = to_messages(body.messages)
        try:
            forced = gateway.forced_route(body.model)
        except LookupError as exc:
            known = [*gateway.settings.aliases, *gateway.routes]
            raise ApiError(
                404,
                f"the model {body.model!r} does not exist; models: {known}",
                code="model_not_found",
                param="model",
            ) from exc
        extra_headers: dict[str, str] = {}
        if gateway.over_budget(key):
            assert key is not None
            if gateway.settings.over_budget == "reject":
                gateway.metrics.budget(key=key.name, action="rejected")
                raise ApiError(
                    429,
                    f"key {key.name!r} has spent its budget of ${key.budget:g} this {key.period}",
                    type="insufficient_quota",
                    code="budget_exhausted",
                )
            gateway.metrics.budget(key=key.name, action="degraded")
            forced = gateway.cheapest_route
            extra_headers[HEADER_PREFIX + "budget"] = "degraded"
        runnable: Any = gateway.llm
        if body.tools:
            try:
                runnable = gateway.llm.bind_tools(body.tools, **body.tool_options())
            except (ValueError, TypeError, KeyError) as exc:
                raise ApiError(400, f"tools: {exc}", param="tools") from exc
        record_id = gateway.new_record_id()
        config = gateway.call_config(key, gateway.query_of(messages), record_id)
        kwargs = body.model_kwargs()
        if forced is not None:
            kwargs["model"] = forced
        call = _Call(gateway, body, started, record_id, extra_headers)
        if body.stream:
            stream = runnable.astream(messages, config, stop=body.stop_list(), **kwargs)
            return await call.streamed(stream)
        try:
            message = await runnable.ainvoke(messages, config, stop=body.stop_list(), **kwargs)
        except AllRoutesFailedError as exc:
            raise call.failed(exc) from exc
        return call.answered(message)

    return app


class _Call:
    """One chat completion on its way out: headers, metrics, the body or the stream."""

    def __init__(
        self,
        gateway: Gateway,
        body: ChatCompletionRequest,
        started: float,
        record_id: str,
        headers: dict[str, str],
    ) -> None:
        self.gateway = gateway
        self.body = body
        self.started = started
        self.id = response_id(record_id)
        self.headers = {**headers, HEADER_PREFIX + "response-id": self.id}

    def _count(self, meta: RouteMetadata | None, status: int) -> None:
        self.gateway.metrics.request(
            route=meta.route if meta else None,
            status=status,
            stream=self.body.stream,
            seconds=time.perf_counter() - self.started,
            escalated_from=meta.escalated_from if meta else None,
        )

    def failed(self, exc: AllRoutesFailedError) -> ApiError:
        self._count(None, 502)
        tried = "; ".join(f"{route}: {error_text(error)}" for route, error in exc.attempts)
        return ApiError(
            502, f"every route failed ({tried or exc})", type="api_error", code="upstream_error"
        )

    def answered(self, message: AIMessage) -> JSONResponse:
        meta = RouteMetadata.from_metadata(message.response_metadata)
        self._count(meta, 200)
        payload = completion_body(
            message, response_id=self.id, model=(meta.model if meta else None) or self.body.model
        )
        return JSONResponse(payload, headers={**self.headers, **decision_headers(meta)})

    async def streamed(self, stream: AsyncIterator[AIMessageChunk]) -> Response:
        """Wait for the first chunk (it carries the decision, for the headers), then stream."""
        iterator = stream.__aiter__()
        try:
            first: AIMessageChunk | None = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        except AllRoutesFailedError as exc:
            raise self.failed(exc) from exc
        meta = RouteMetadata.from_metadata(first.response_metadata) if first else None
        writer = ChunkWriter(
            response_id=self.id,
            model=(meta.model if meta else None) or self.body.model,
            include_usage=self.body.include_usage,
        )

        async def events() -> AsyncIterator[str]:
            status = 200
            try:
                if first is not None:
                    for data in writer.chunks(first):
                        yield _sse(data)
                async for chunk in iterator:
                    for data in writer.chunks(chunk):
                        yield _sse(data)
                for data in writer.closing():
                    yield _sse(data)
            except Exception as exc:  # the stream broke after the answer began
                status = 502
                message = error_text(exc)
                yield _sse(error_body(message, type="api_error", code="upstream_error"))
            finally:
                self._count(meta, status)
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**self.headers, **decision_headers(meta), "cache-control": "no-cache"},
        )


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
