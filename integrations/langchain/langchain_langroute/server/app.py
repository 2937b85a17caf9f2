"""The HTTP API of ``langroute serve`` (FastAPI): OpenAI chat completions, feedback, health.

Endpoints:

* ``POST /v1/chat/completions``: an answer, or an SSE stream of chunks ending with
  ``data: [DONE]``; ``model`` is an alias (``"auto"``: the router chooses), a route or
  a route's model (forced). The decision is in ``x-langroute-*`` headers.
* ``GET /v1/models``: the aliases, then each route.
* ``POST /v1/feedback``: ``{"id": "<response id>", "verdict": "good" | "bad"}``.
* ``GET /healthz`` and ``GET /metrics`` (Prometheus text; both need no key).

Errors are OpenAI-shaped bodies: 400 (the field at fault named, or the upstream's
refusal of the request, passed back unescalated), 401 (no or unknown key), 404 (unknown
model or response id), 413 (a body past ``[serve] max_body_bytes``), 429 (a key past its
budget with ``over_budget = "reject"``), 502 (every route failed), 503 (the ledger is
unreachable: ``/healthz``, and feedback, with ``Retry-After``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from langchain_core.messages import AIMessage, AIMessageChunk
from langroute.dispatch.dispatcher import RouteDispatcher
from langroute.dispatch.escalation import Escalation
from langroute.dispatch.routed_call import RoutedCall, RouteMetadata, error_text
from langroute.embedders.threads import REQUESTS_IN_FLIGHT
from langroute.errors import (
    AllRoutesFailedError,
    DatabaseUnavailableError,
    SinkUnavailableError,
    UnknownRecordError,
)
from langroute.router.conversation import session_key_from
from langroute.serving.keys import ApiKey
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

from langchain_langroute.server.budgets import Reservation, StreamTally, media_parts
from langchain_langroute.server.dashboard import mount_dashboard
from langchain_langroute.server.fast_path import READERS, delivers, relay_chunk, route_request
from langchain_langroute.server.gateway import ANONYMOUS, Gateway, response_id
from langchain_langroute.server.openai_format import (
    ApiError,
    ChatCompletionRequest,
    ChunkWriter,
    completion_body,
    error_body,
    parse_request_json,
    to_messages,
)
from langchain_langroute.server.redaction import redact_secrets
from langchain_langroute.server.upstream import client_fault
from langchain_langroute.server.validation import (
    check_depth_and_text,
    check_messages,
    check_tools,
    read_body,
)

__all__ = ["FeedbackRequest", "create_app", "decision_headers"]

_log = logging.getLogger("langroute.serve")

HEADER_PREFIX = "x-langroute-"
SESSION_HEADER = HEADER_PREFIX + "session"
"""Request header naming the conversation (or ``metadata.session_id`` in the body, first)."""
CHAT_PATH = "/v1/chat/completions"
PATH_HEADER = HEADER_PREFIX + "path"
"""Response header: ``fast`` (relayed to an OpenAI-compatible provider) or ``langchain``."""


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
        "encoder-ms": f"{meta.encoder_ms:.2f}",
    }
    if meta.escalated_from:
        headers["escalated-from"] = meta.escalated_from
    return {HEADER_PREFIX + name: header_value(value) for name, value in headers.items()}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_value(value: str) -> str:
    r"""``value`` safe for a header: ASCII (others escaped), control characters as spaces.

    A model name comes from the provider: a CR/LF in it would end the header block.

    Example:
        >>> header_value("gpt\r\nx-evil: 1")
        'gpt  x-evil: 1'
    """
    return _CONTROL.sub(" ", value.encode("ascii", "backslashreplace").decode("ascii"))


def _error(error: ApiError) -> JSONResponse:
    headers = {"retry-after": str(RETRY_AFTER_S)} if error.status == 503 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _internal_error(exc: Exception) -> JSONResponse:
    # a bug, not the client's fault: still an OpenAI-shaped body, with no secret in it
    message = redact_secrets(f"internal error: {error_text(exc)}")
    return JSONResponse(error_body(message, type="server_error"), status_code=500)


RETRY_AFTER_S = 5
"""``Retry-After`` (seconds) of a 503: the ledger is unreachable for now."""
_UNREACHABLE = (SinkUnavailableError, DatabaseUnavailableError, OSError)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with the request bodies the handlers read themselves."""
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version="1", routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in (
        ("/v1/chat/completions", ChatCompletionRequest),
        ("/v1/feedback", FeedbackRequest),
    ):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return schema


def create_app(gateway: Gateway, *, close_gateway: bool = False) -> FastAPI:
    """The FastAPI app serving a :class:`Gateway` (its OpenAPI schema at ``/openapi.json``).

    The fast path's shared HTTP client opens when the server starts and closes when it
    stops (the app's lifespan); with ``close_gateway``, the gateway is closed then too
    (an app a worker process made for itself).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.fast.start()
        try:
            yield
        finally:
            await gateway.fast.aclose()
            if close_gateway:
                gateway.close()

    app = _ServeApp(title="langroute", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.gateway = gateway
    settings = gateway.settings

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(exc)

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

    app.state.dashboard = mount_dashboard(app, gateway, authenticate)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        stats = gateway.ledger.stats
        degraded = stats.unavailable
        body = {
            "status": "degraded" if degraded else "ok",
            "routes": gateway.routes,
            "aliases": list(gateway.settings.aliases),
            "ledger": {
                "pending": stats.pending,
                "dropped": stats.dropped,
                "failed": stats.failed,
                "unavailable": stats.unavailable,
            },
            "breakers": gateway.breakers.health() if gateway.breakers is not None else None,
        }
        dial = getattr(gateway, "dial", None)
        if dial is not None:
            body["adaptive_dial"] = dial.status()
        return JSONResponse(body, status_code=503 if degraded else 200)

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
            body = FeedbackRequest.model_validate_json(
                await read_body(request, settings.max_body_bytes)
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ApiError(400, f"{field}: {error['msg']}" if field else error["msg"]) from exc
        if key is not None and not gateway.feedback_rate.allow(key.name):
            raise ApiError(
                429,
                f"key {key.name!r} posted more than {settings.feedback_per_minute} verdicts "
                "in a minute; try again later",
                type="rate_limit_exceeded",
                code="feedback_rate_limited",
            )
        try:
            stored, learned, agreeing, own = await gateway.feedback(body.id, body.verdict, key)
        except UnknownRecordError as exc:
            raise ApiError(
                404, f"no answer has id {body.id!r}", code="response_not_found", param="id"
            ) from exc
        except _UNREACHABLE as exc:
            raise ApiError(
                503,
                redact_secrets(f"the ledger is unreachable, try again later: {error_text(exc)}"),
                type="api_error",
                code="ledger_unavailable",
            ) from exc
        return {
            "id": body.id,
            "verdict": stored.verdict,
            "feedback_id": stored.record_id,
            "route": stored.route,
            "learned_route": learned,
            "learned_for_key": own,
            **(
                {"agreement": {"keys": agreeing, "needed": settings.learn_quorum}}
                if agreeing is not None
                else {}
            ),
        }

    def check_input(data: dict[str, Any]) -> None:
        check_depth_and_text(data, settings.max_json_depth)
        if isinstance(data.get("messages"), list):
            check_messages(data["messages"], max_messages=settings.max_messages)
        if isinstance(data.get("tools"), list):
            check_tools(data["tools"], max_tools=settings.max_tools)

    @app.post(CHAT_PATH)
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        key = authenticate(request)
        raw = await read_body(request, settings.max_body_bytes)
        data, body = parse_request_json(raw, check_input)
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
        model: Any = gateway.llm
        record_id = gateway.new_record_id()
        # the conversation: the request's metadata or header, within the key (its scope)
        extra = body.model_extra or {}
        session = session_key_from(
            extra.get("metadata") if isinstance(extra.get("metadata"), dict) else None,
            {"session_id": request.headers.get(SESSION_HEADER)},
        )
        try:
            reservation = await gateway.aadmit(
                key, raw, body.output_limit, forced, media=media_parts(body.messages)
            )
        except _UNREACHABLE as exc:  # budgets shared on Postgres: never admit unbudgeted
            raise ApiError(
                503,
                redact_secrets(
                    f"the budget store is unreachable, try again later: {error_text(exc)}"
                ),
                type="api_error",
                code="budget_store_unavailable",
            ) from exc
        if reservation is False:
            assert key is not None
            shown = gateway.metrics_key(key)
            if settings.over_budget == "reject" or key.budget == 0:  # $0: no use at all
                gateway.metrics.budget(key=shown, action="rejected")
                raise ApiError(
                    429,
                    gateway.budgets.refusal(key),
                    type="insufficient_quota",
                    code="budget_exhausted",
                )
            gateway.metrics.budget(key=shown, action="degraded")
            forced = gateway.cheapest_route
            model = gateway.degraded_llm
            extra_headers[HEADER_PREFIX + "budget"] = "degraded"
        dispatcher = gateway.fast_dispatcher(forced, degraded=model is gateway.degraded_llm)
        if dispatcher is not None:
            fast = _FastCall(gateway, body, started, record_id, extra_headers, reservation)
            try:
                return await fast.run(dispatcher, data, raw, key, session, forced)
            finally:
                fast.release_unless_response_owns()
        messages = to_messages(body.messages)
        extra_headers[PATH_HEADER] = "langchain"
        call = _Call(gateway, body, started, record_id, extra_headers, reservation)
        try:
            runnable: Any = model
            if body.tools:
                try:
                    runnable = model.bind_tools(body.tools, **body.tool_options())
                except (ValueError, TypeError, KeyError) as exc:
                    raise ApiError(400, f"tools: {exc}", param="tools") from exc
            config = gateway.call_config(
                key, gateway.query_of(messages), record_id, session=session
            )
            kwargs = body.model_kwargs()
            if forced is not None:
                kwargs["model"] = forced
            if body.stream:
                stream = runnable.astream(messages, config, stop=body.stop_list(), **kwargs)
                return await call.streamed(stream, StreamTally.estimate_input(raw))
            try:
                message = await runnable.ainvoke(messages, config, stop=body.stop_list(), **kwargs)
            except Exception as exc:
                error = call.client_error(exc)
                if error is None:
                    raise
                raise error from exc
            return call.answered(message)
        finally:
            call.release_unless_response_owns()

    app.chat_completions = chat_completions
    return app


class _ServeApp(FastAPI):
    """The FastAPI app, with ``POST /v1/chat/completions`` answered straight from ASGI.

    The request every client sends skips the middleware stack and the router (0.3 to
    0.4 ms per request in Python): the handler is the one the app registers (its OpenAPI
    entry included), its errors are the same OpenAI-shaped bodies, and every other
    request goes through FastAPI as usual. Once middleware is added to the app (CORS,
    say), every request goes through it, chat completions included.
    """

    chat_completions: Callable[[Request], Awaitable[Response]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # counted until its last byte is sent: the encoder takes every core only for a
        # request alone in the process
        with REQUESTS_IN_FLIGHT:
            await self._http(scope, receive, send)

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        handler = self.chat_completions
        if (
            handler is None
            or self.user_middleware
            or scope["path"] != CHAT_PATH
            or scope["method"] != "POST"
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        try:
            response = await handler(Request(scope, receive))
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:
            # as FastAPI's server-error middleware does: an answer, and the error logged
            _log.error("%s %s: internal error", scope["method"], CHAT_PATH, exc_info=exc)
            response = _internal_error(exc)
        await response(scope, receive, send)


class _Call:
    """One chat completion on its way out: headers, metrics, the body or the stream.

    It holds the call's budget reservation and releases it once the call's cost was
    counted: when the answer is back, or when its stream ended (however it ended).
    """

    def __init__(
        self,
        gateway: Gateway,
        body: ChatCompletionRequest,
        started: float,
        record_id: str,
        headers: dict[str, str],
        reservation: Reservation | bool,
    ) -> None:
        self.gateway = gateway
        self.body = body
        self.started = started
        self.record_id = record_id
        self.id = response_id(record_id)
        self.headers = {**headers, HEADER_PREFIX + "response-id": self.id}
        self.reservation = reservation
        self.response_owns = False

    def _end_stream(self) -> None:
        """Stop counting the stream and release its reservation (idempotent)."""
        self.gateway.streams.close(self.record_id)
        self.gateway.budgets.release(self.reservation)

    def release_unless_response_owns(self) -> None:
        """Release the reservation, unless the response now owns it.

        A stream releases it at its end; a fast-path answer once its bytes went out.
        """
        if not self.response_owns:
            self.gateway.budgets.release(self.reservation)

    def client_error(self, exc: Exception) -> ApiError | None:
        """What the client gets for a call that raised ``exc`` (``None``: let it raise).

        Every route failed: a 502; an upstream refusal of the request: the same 4xx.
        """
        if isinstance(exc, AllRoutesFailedError):
            return self.failed(exc)
        return self.refused(exc)

    def refused(self, exc: Exception) -> ApiError | None:
        """The client's error for an upstream refusal of its request (``None``: not one)."""
        error = client_fault(exc)
        if error is not None:
            self._count(None, error.status)
        return error

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
            502,
            redact_secrets(f"every route failed ({tried or exc})"),
            type="api_error",
            code="upstream_error",
        )

    def answered(self, message: AIMessage) -> JSONResponse:
        meta = RouteMetadata.from_metadata(message.response_metadata)
        self._count(meta, 200)
        payload = completion_body(
            message, response_id=self.id, model=(meta.model if meta else None) or self.body.model
        )
        return JSONResponse(payload, headers={**self.headers, **decision_headers(meta)})

    async def streamed(self, stream: AsyncIterator[AIMessageChunk], input_tokens: int) -> Response:
        """Wait for the first chunk (it carries the decision, for the headers), then stream.

        What the stream sends is counted (:class:`StreamTally`), so that a stream left
        before its end is charged for it; the reservation is released at the end.
        """
        iterator = stream.__aiter__()
        try:
            first: AIMessageChunk | None = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            error = self.client_error(exc)
            if error is None:
                raise
            raise error from exc
        meta = RouteMetadata.from_metadata(first.response_metadata) if first else None
        writer = ChunkWriter(
            response_id=self.id,
            model=(meta.model if meta else None) or self.body.model,
            include_usage=self.body.include_usage,
        )
        tally = self.gateway.streams.open(
            self.record_id,
            StreamTally(
                route=meta.route if meta else None,
                model=meta.model if meta else None,
                input_tokens=input_tokens,
            ),
        )

        async def events() -> AsyncIterator[str]:
            status = 499  # until it ends otherwise: the client left
            try:
                # a chunk counts once it was handed to the connection (the yield returned)
                if first is not None:
                    for data in writer.chunks(first):
                        yield _sse(data)
                        tally.chunks += 1
                async for chunk in iterator:
                    for data in writer.chunks(chunk):
                        yield _sse(data)
                        tally.chunks += 1
                tally.finished = True
                for data in writer.closing():
                    yield _sse(data)
                status = 200
            except Exception as exc:  # the stream broke after the answer began
                status = 502
                message = redact_secrets(error_text(exc))
                yield _sse(error_body(message, type="api_error", code="upstream_error"))
            finally:
                if not tally.finished:  # left early: end the upstream call, so it is recorded
                    close = getattr(iterator, "aclose", None)
                    if close is not None:
                        await close()
                self._end_stream()
                self._count(meta, status)
            yield "data: [DONE]\n\n"

        body = events()
        self.response_owns = True
        # a response whose body never starts (the client left at once) still ends it
        weakref.finalize(body, self._end_stream)
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={**self.headers, **decision_headers(meta), "cache-control": "no-cache"},
        )


class _FastCall(_Call):
    """One chat completion on the fast path: the provider's JSON relayed as it arrives.

    The router decides through the routing model's dispatcher and the call runs along
    its escalation path (:class:`~langroute.dispatch.escalation.Escalation`, reading the
    provider's JSON with :data:`~langchain_langroute.server.fast_path.READERS`); the
    call's ledger rows are written by :meth:`Gateway.record_call`.
    """

    async def run(
        self,
        dispatcher: RouteDispatcher,
        data: Mapping[str, Any],
        raw: bytes,
        key: ApiKey | None,
        session: str | None,
        forced: str | None,
    ) -> Response:
        """Decide, call the provider (escalating on failures), and answer or stream."""
        self.headers[PATH_HEADER] = "fast"
        request, query = route_request(
            data["messages"],
            forced=forced,
            conversations=dispatcher.routes_conversations,
            session=session,
            scope=key.name if key is not None else ANONYMOUS,
        )
        call = dispatcher.start(await dispatcher.adecide(request))
        call.record_id = self.record_id
        escalation = dispatcher.escalation(call, readers=READERS)
        if self.body.stream:
            return await self._streamed(call, escalation, data, raw, key, query)
        try:
            _, answer = await self.gateway.fast.complete(escalation, data)
        except Exception as exc:
            self._fail(exc, call, key, query)
            raise
        meta = call.route_metadata()
        answer["id"] = self.id

        def settle() -> None:
            # the answer's ledger rows, then its reservation (never a moment uncounted)
            try:
                self.gateway.record_call(call, key, query)
            finally:
                self.gateway.budgets.release(self.reservation)
                self._count(meta, 200)

        self.response_owns = True  # settle releases the reservation
        headers = {**self.headers, **decision_headers(meta)}
        return SettledResponse(answer, headers, self.gateway.settlement(settle))

    def _fail(
        self, exc: Exception, call: RoutedCall, key: ApiKey | None, query: str | None
    ) -> None:
        """Record a call that got no answer; raise what the client gets, if ``exc`` is one.

        Every route failed: a 502; the provider refused the request: the same 4xx; any
        other error returns, for the caller to raise on.
        """
        self.gateway.record_call(call, key, query)
        error = self.client_error(exc)
        if error is not None:
            raise error from exc

    async def _streamed(
        self,
        call: RoutedCall,
        escalation: Escalation[Any],
        data: Mapping[str, Any],
        raw: bytes,
        key: ApiKey | None,
        query: str | None,
    ) -> Response:
        """Wait for the first chunk with output (escalating until one comes), then relay."""
        gateway = self.gateway
        chunks = gateway.fast.stream(escalation, data)
        try:
            _, first = await chunks.__anext__()
        except Exception as exc:
            self._fail(exc, call, key, query)
            raise
        meta = call.route_metadata()
        tally = gateway.streams.open(
            self.record_id,
            StreamTally(
                route=call.route, model=call.model, input_tokens=StreamTally.estimate_input(raw)
            ),
        )
        include_usage = self.body.include_usage
        ended = False

        def end(status: int) -> None:
            # once, however the stream ended: its rows (a stream left early is charged
            # for what it sent), the reservation, the metrics
            nonlocal ended
            if ended:
                return
            ended = True
            try:
                gateway.record_call(call, key, query, tally)
            finally:
                self._end_stream()
                self._count(meta, status)

        async def events() -> AsyncIterator[str]:
            status = 499  # until it ends otherwise: the client left
            try:
                chunk = first
                while True:
                    relayed = relay_chunk(chunk, self.id, include_usage)
                    if relayed is not None:
                        yield _sse(relayed)
                        tally.chunks += delivers(chunk)  # counted once the yield returned
                    try:
                        _, chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                tally.finished = True
                status = 200
            except Exception as exc:  # the stream broke after the answer began
                status = 502
                message = redact_secrets(error_text(exc))
                # charged before the client hears of it: a client may stop reading at
                # the error event, and its next look at its spend must include this
                end(status)
                yield _sse(error_body(message, type="api_error", code="upstream_error"))
            finally:
                try:
                    if not tally.finished:  # left early: end the provider's stream
                        await chunks.aclose()
                finally:
                    end(status)
            yield "data: [DONE]\n\n"

        body = events()
        self.response_owns = True
        # a response whose body never starts (the client left at once) still ends it
        weakref.finalize(body, end, 499)
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={**self.headers, **decision_headers(meta), "cache-control": "no-cache"},
        )


class SettledResponse(JSONResponse):
    """A JSON answer whose call is settled (``settle``) once its bytes went out.

    The client does not wait for the bookkeeping: the ledger rows, the budget and the
    metrics come right after the body was handed to the connection, before this event
    loop turns to anything else (so a client's next request, feedback on this answer
    included, finds them). Settled once, however sending ended, or when the response is
    dropped unsent.
    """

    def __init__(
        self, content: Any, headers: Mapping[str, str], settle: Callable[[], None]
    ) -> None:
        super().__init__(content, headers=dict(headers))
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                settle()

        self._settle = once
        weakref.finalize(self, once)  # ``once`` holds no reference to the response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._settle()


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
