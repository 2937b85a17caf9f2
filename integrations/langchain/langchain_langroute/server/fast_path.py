"""The fast path of ``langroute serve``: OpenAI-compatible routes relayed as they are.

A route whose model speaks the OpenAI chat-completions API (an ``openai:`` spec, with or
without a ``base_url``: OpenAI, vLLM, Ollama's ``/v1``, OpenRouter, Together, Groq, an
Azure OpenAI ``/openai/v1`` endpoint...) needs no LangChain model per request: the
client's JSON body is forwarded with ``model`` set to the route's model (and the
route's settings as defaults), through one shared :class:`aiohttp.ClientSession` per
process (a quarter of httpx's CPU per call), and the answer (or its SSE stream) is
relayed as it arrives. Usage is read from the provider's JSON (a stream asks for
``stream_options.include_usage`` and drops the usage chunk again when its client did not
ask for it).

What the LangChain path guarantees still holds: the router decides through the same
:class:`~langroute.dispatch.dispatcher.RouteDispatcher`, and each call runs along its
escalation path through the core's :class:`~langroute.dispatch.escalation.Escalation`
(with :data:`READERS`, which read the provider's JSON), so ledger rows, budgets,
escalation and client-fault errors are the same. Other providers (Anthropic, ...) and
routes with settings the fast path does not know keep the LangChain path
(:attr:`FastPath.skipped` says why, per route).

:meth:`FastPath.upstream_for` is the one place a route's upstream is chosen.

Example:
    >>> from langroute.models.config import ModelSpec
    >>> spec = ModelSpec(route="small", spec="openai:gpt-4o-mini", kind="chat",
    ...                  options={"base_url": "http://127.0.0.1:8001/v1", "api_key": "k"})
    >>> upstream = upstream_from_spec(spec)
    >>> upstream.url, upstream.model, upstream.defaults["max_tokens"]
    ('http://127.0.0.1:8001/v1/chat/completions', 'gpt-4o-mini', 1024)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from langroute.dispatch.dispatcher import AnswerReaders, RouteRequest
from langroute.dispatch.escalation import Escalation, max_usage
from langroute.dispatch.routed_call import TokenUsage
from langroute.models.config import ModelSpec, ServeConfig
from langroute.router.conversation import ChatTurn
from langroute.router.query_text import Query

__all__ = [
    "READERS",
    "FastPath",
    "OpenAIUpstream",
    "UpstreamError",
    "delivers",
    "relay_chunk",
    "route_request",
    "upstream_from_spec",
]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_DEFAULT_TIMEOUT_S = 600.0  # the openai SDK's own default
_DEFAULT_RETRIES = 2  # the openai SDK's own default
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_WAIT_S = 8.0
# ChatOpenAI options that say how to reach the provider (several spellings of each)
_BASE_URL_OPTIONS = ("base_url", "openai_api_base")
_API_KEY_OPTIONS = ("api_key", "openai_api_key")
_ORGANIZATION_OPTIONS = ("organization", "openai_organization")
_TIMEOUT_OPTIONS = ("timeout", "request_timeout")
# ChatOpenAI options that become request fields: defaults the client's own fields override
_BODY_OPTIONS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "reasoning_effort",
    "logprobs",
    "top_logprobs",
    "service_tier",
)
_MERGED_OPTIONS = ("model_kwargs", "extra_body")  # tables merged into the request body
_CLIENT_OPTIONS = ("max_retries", "default_headers")
# how LangChain calls the provider; the fast path streams when the client asks
_IGNORED_OPTIONS = ("streaming", "stream_usage")
_OUTPUT_CAPS = ("max_tokens", "max_completion_tokens")
_SERVER_FIELDS = ("metadata",)  # langroute's own (the session); not forwarded
_REASONING_MODEL = re.compile(r"(o\d|gpt-5)")
"""OpenAI's reasoning models: they refuse ``max_tokens`` (``max_completion_tokens``)."""
_DEVELOPER_ROLE_MODEL = re.compile(r"o\d")
"""o-series models, whose system messages langchain-openai sends as ``developer``."""


class UpstreamError(Exception):
    """An upstream answered with an HTTP error, or sent something that is no answer.

    Shaped like the ``openai`` SDK's ``APIStatusError`` where it matters here
    (``status_code``, ``body``, ``message``), so that
    :func:`~langchain_langroute.server.upstream.client_fault` and
    :class:`~langchain_langroute.server.upstream.EscalatingError` judge it alike.

    Args:
        message: What went wrong.
        status_code: The HTTP status (``None``: the answer, not the status, was wrong).
        body: The provider's JSON error body, if it sent one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}" if status_code else message)
        self.message = message
        self.status_code = status_code
        self.body = body


@dataclass(frozen=True)
class OpenAIUpstream:
    """Where one route's requests go on the fast path, and what the route adds to them.

    Attributes:
        route: The route.
        model: The model name sent upstream.
        url: The chat-completions URL.
        headers: Request headers (authorization, the route's default headers).
        defaults: Request fields the route sets unless the client gives them.
        timeout: Seconds to wait for the provider (connect, and between chunks).
        max_retries: Retries of one request on a rate limit, a 5xx or a lost connection
            before the route counts as failed (and the call escalates).
        proxy: The proxy its requests go through (``None``: straight to ``url``).
    """

    route: str
    model: str
    url: str
    headers: Mapping[str, str]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = _DEFAULT_TIMEOUT_S
    max_retries: int = _DEFAULT_RETRIES
    proxy: str | None = None

    def body(self, request: Mapping[str, Any], *, stream: bool) -> bytes:
        """The JSON body sent upstream for a client's request ``request``."""
        data = {name: value for name, value in request.items() if name not in _SERVER_FIELDS}
        capped = any(data.get(name) is not None for name in _OUTPUT_CAPS)
        for name, value in self.defaults.items():
            if name in data or (capped and name in _OUTPUT_CAPS):
                continue
            data[name] = value
        data["model"] = self.model
        if _REASONING_MODEL.match(self.model) and "max_tokens" in data:
            # as the route's LangChain model sends it (langchain-openai renames it)
            cap = data.pop("max_tokens")
            data.setdefault("max_completion_tokens", cap)
        if _DEVELOPER_ROLE_MODEL.match(self.model) and isinstance(data.get("messages"), list):
            data["messages"] = [_as_developer(message) for message in data["messages"]]
        if not stream:  # OpenAI refuses stream_options on an answer that is not streamed
            data.pop("stream_options", None)
        else:
            data["stream"] = True
            asked = data.get("stream_options")
            options = asked if isinstance(asked, dict) else {}
            data["stream_options"] = {**options, "include_usage": True}
        return json.dumps(data).encode("utf-8")


def _as_developer(message: Any) -> Any:
    if isinstance(message, Mapping) and message.get("role") == "system":
        return {**message, "role": "developer"}
    return message


def _first(options: Mapping[str, Any], names: Iterable[str]) -> Any:
    return next((options[name] for name in names if options.get(name) is not None), None)


def upstream_from_spec(
    spec: ModelSpec, settings: ServeConfig | None = None
) -> OpenAIUpstream | str:
    """The fast path's upstream of a route, or why the route keeps the LangChain path.

    Only ``openai:`` specs qualify (the provider's URL is their ``base_url`` option,
    else ``OPENAI_BASE_URL``/``OPENAI_API_BASE``, else OpenAI's); options the fast path
    does not know send the route through its LangChain model, which does.

    Args:
        spec: The route's spec from the models file.
        settings: The ``[serve]`` table (its ``timeout`` and ``max_retries`` win over the
            route's own, as they do for the LangChain models).
    """
    provider, _, model = spec.spec.partition(":")
    if spec.kind != "chat" or provider != "openai" or not model:
        return f"{spec.spec!r} is not an OpenAI chat-completions model"
    options = dict(spec.options)
    known = {
        *_BASE_URL_OPTIONS,
        *_API_KEY_OPTIONS,
        *_ORGANIZATION_OPTIONS,
        *_TIMEOUT_OPTIONS,
        *_BODY_OPTIONS,
        *_MERGED_OPTIONS,
        *_CLIENT_OPTIONS,
        *_IGNORED_OPTIONS,
    }
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        return f"options {unknown} are passed to its LangChain model"
    base = (
        _first(options, _BASE_URL_OPTIONS)
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or _DEFAULT_BASE_URL
    )
    headers = {"content-type": "application/json", "accept": "application/json"}
    api_key = _first(options, _API_KEY_OPTIONS) or os.environ.get("OPENAI_API_KEY")
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    organization = _first(options, _ORGANIZATION_OPTIONS) or os.environ.get("OPENAI_ORG_ID")
    if organization:
        headers["openai-organization"] = str(organization)
    extra_headers = options.get("default_headers")
    if isinstance(extra_headers, Mapping):
        headers.update({str(k).lower(): str(v) for k, v in extra_headers.items()})
    defaults: dict[str, Any] = {"max_tokens": spec.max_output_tokens}
    for name in _BODY_OPTIONS:
        if options.get(name) is not None:
            defaults[name] = options[name]
    if "max_completion_tokens" in defaults:
        defaults.pop("max_tokens")  # the provider takes one of the two
    for name in _MERGED_OPTIONS:
        if isinstance(options.get(name), Mapping):
            defaults.update(options[name])
    timeout = settings.timeout if settings is not None else None
    if timeout is None:
        given = _first(options, _TIMEOUT_OPTIONS)
        timeout = float(given) if isinstance(given, int | float) else _DEFAULT_TIMEOUT_S
    retries = settings.max_retries if settings is not None else None
    if retries is None:
        given = options.get("max_retries")
        retries = given if isinstance(given, int) and given >= 0 else _DEFAULT_RETRIES
    url = str(base).rstrip("/") + "/chat/completions"
    return OpenAIUpstream(
        route=spec.route,
        model=model,
        url=url,
        headers=headers,
        defaults=defaults,
        timeout=timeout,
        max_retries=retries,
        proxy=environment_proxy(url),
    )


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, as httpx (the openai SDK) reads it.

    ``HTTPS_PROXY``/``HTTP_PROXY`` by the URL's scheme, else ``ALL_PROXY``; none for a
    host ``NO_PROXY`` lists. Read once per upstream when the server starts: the shared
    session does not look the environment up on each request (aiohttp's ``trust_env``
    reads ``.netrc`` on a worker thread per request, a thread hop each time).

    Example (with ``HTTPS_PROXY=http://proxy:3128`` and ``NO_PROXY=intra.example``)::

        environment_proxy("https://api.openai.com/v1/chat/completions")  # 'http://proxy:3128'
        environment_proxy("https://vllm.intra.example/v1/chat/completions")  # None
    """
    from urllib.parse import urlsplit
    from urllib.request import getproxies_environment, proxy_bypass_environment

    proxies = getproxies_environment()
    parts = urlsplit(url)
    if not parts.hostname or proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all") or None


# ---------------------------------------------------------------- reading the JSON
def _usage_of(payload: Any) -> TokenUsage | None:
    usage = payload.get("usage") if isinstance(payload, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    try:
        return TokenUsage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(cached or 0),
        )
    except (TypeError, ValueError):  # a provider's nonsense is no usage, not a failure
        return None


def _model_of(route: str, payload: Any) -> str | None:
    model = payload.get("model") if isinstance(payload, Mapping) else None
    return model if isinstance(model, str) and model else None


def delivers(chunk: Any) -> bool:
    """Whether a ``chat.completion.chunk`` carries output (text, a refusal, tool calls)."""
    choices = chunk.get("choices") if isinstance(chunk, Mapping) else None
    for choice in choices or ():
        delta = choice.get("delta") if isinstance(choice, Mapping) else None
        if isinstance(delta, Mapping) and (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("function_call")
            or delta.get("refusal")
        ):
            return True
    return False


READERS = AnswerReaders(
    usage_of=_usage_of, model_of=_model_of, merge_usage=max_usage, delivers=delivers
)
"""How the escalation reads the provider's JSON: usage (a stream's last chunk, or running
totals some servers send on every chunk: the largest wins), the served model, and which
chunks deliver output (a stream escalates until one does)."""


def relay_chunk(
    chunk: dict[str, Any], response_id: str, include_usage: bool
) -> dict[str, Any] | None:
    """A provider's chunk as the client gets it (``None``: not for this client).

    The chunk takes the response's id; when the client did not ask for usage, the
    usage chunk (no choices) is dropped and the other chunks lose their ``usage`` field.

    Example:
        >>> relay_chunk({"id": "up-1", "choices": [], "usage": {"total_tokens": 3}},
        ...             "chatcmpl-1", include_usage=False) is None
        True
    """
    chunk["id"] = response_id
    if not include_usage:
        if not chunk.get("choices") and chunk.get("usage") is not None:
            return None
        chunk.pop("usage", None)
    return chunk


# ---------------------------------------------------------------- reading the request
_NOT_ATTACHMENTS = frozenset({"text", "input_text", "refusal"})


def _text_and_attachments(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content.strip(), 0
    texts: list[str] = []
    attachments = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"].strip())
        elif part.get("type") not in _NOT_ATTACHMENTS:
            attachments += 1
    return "\n".join(text for text in texts if text), attachments


_TURN_ROLES = {"user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}


def route_request(
    messages: Sequence[Mapping[str, Any]],
    *,
    forced: str | None,
    conversations: bool,
    session: str | None,
    scope: str,
) -> tuple[RouteRequest, str | None]:
    """What the dispatcher decides on, read from OpenAI messages; and the routed query.

    The same reading as the LangChain path's (``chat_turns``, ``last_human_message``):
    user turns are routed on; system and developer messages count as ``system`` turns.

    Example:
        >>> request, query = route_request(
        ...     [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi "}],
        ...     forced=None, conversations=False, session=None, scope="team-a")
        >>> request.query, query
        ('hi', 'hi')
    """
    turns: list[ChatTurn] = []
    query: str | None = None
    for message in messages:
        role = message.get("role")
        text, attachments = _text_and_attachments(message.get("content"))
        if role == "user" and text:
            query = Query(text, attachments=attachments) if attachments else text
        turn_role = _TURN_ROLES.get(str(role), "system")
        turns.append(ChatTurn(role=turn_role, text=text))
    if forced is not None:
        return RouteRequest(forced=forced), query
    if conversations:
        return RouteRequest(turns=turns, session_key=session, session_scope=scope), query
    # the scope also picks what the caller taught its own routing (scoped learning)
    return RouteRequest(query=query, session_scope=scope), query


# ---------------------------------------------------------------- the calls
class FastPath:
    """The fast path's upstreams and the one HTTP client they share.

    Args:
        upstreams: Route -> its upstream, for the routes the fast path serves.
        skipped: Route -> why it keeps the LangChain path.

    Use :meth:`from_config` to build it from a models file.
    """

    def __init__(
        self,
        upstreams: Mapping[str, OpenAIUpstream | Sequence[OpenAIUpstream]],
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        # route -> one upstream per equivalent model, in the models file's order
        self.upstreams: dict[str, list[OpenAIUpstream]] = {
            route: [found] if isinstance(found, OpenAIUpstream) else list(found)
            for route, found in upstreams.items()
        }
        self.skipped = dict(skipped or {})
        self._session: aiohttp.ClientSession | None = None
        self._draining: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(
        cls, routes: Mapping[str, ModelSpec | Sequence[ModelSpec]], settings: ServeConfig
    ) -> FastPath:
        """The fast path of a models file's routes (none when ``[serve] fast_path`` is off).

        ``routes``: route -> its spec, or its equivalent models' specs (preferred first).
        A route is served here only when every one of its models can be.
        """
        if not settings.fast_path:
            return cls({}, {route: "[serve] fast_path = false" for route in routes})
        upstreams: dict[str, list[OpenAIUpstream]] = {}
        skipped: dict[str, str] = {}
        for route, specs in routes.items():
            found = [
                upstream_from_spec(spec, settings)
                for spec in ([specs] if isinstance(specs, ModelSpec) else specs)
            ]
            refusals = [item for item in found if isinstance(item, str)]
            if refusals:
                skipped[route] = refusals[0]
            else:
                upstreams[route] = [item for item in found if not isinstance(item, str)]
        return cls(upstreams, skipped)

    def covers(self, routes: Iterable[str]) -> bool:
        """Whether every route of ``routes`` (a call's escalation path) is served here."""
        return all(route in self.upstreams for route in routes)

    def upstream_for(self, route: str) -> OpenAIUpstream:
        """Where an attempt goes: the one place an upstream is chosen.

        ``route`` is the attempt's target: a route name, or the
        :class:`~langroute.dispatch.equivalents.RouteTarget` of one of its equivalent
        models (its ``index`` picks that model's upstream).
        """
        return self.upstreams[route][getattr(route, "index", 0)]

    # ------------------------------------------------------------------ the client
    async def start(self) -> None:
        """Open the shared HTTP session (at server start, on the server's event loop)."""
        if self._session is None:
            self._session = _new_session()

    async def aclose(self) -> None:
        """Close the shared HTTP session and its connections (at server shutdown)."""
        for task in list(self._draining):  # finished streams: their connections go too
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (opened on first use when the server's start did not)."""
        if self._session is None or self._session.closed:
            self._session = _new_session()
        return self._session

    async def _send(self, upstream: OpenAIUpstream, body: bytes) -> aiohttp.ClientResponse:
        """POST ``body`` upstream, retrying what the openai SDK retries; an error raises.

        The answer's body is left to read (a stream, or JSON): the caller releases it.

        Raises:
            UpstreamError: The provider answered with an HTTP error.
            aiohttp.ClientError, TimeoutError: The provider could not be reached, or
                timed out.
        """
        # as the openai SDK's httpx timeout: each connect and each read, not the whole
        # answer (a long stream is no timeout)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=upstream.timeout, sock_read=upstream.timeout
        )
        for attempt in range(upstream.max_retries + 1):
            last = attempt == upstream.max_retries
            try:
                response = await self.session.post(
                    upstream.url,
                    data=body,
                    headers=upstream.headers,
                    timeout=timeout,
                    allow_redirects=False,
                    proxy=upstream.proxy,
                )
            except (aiohttp.ClientError, TimeoutError):
                if last:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status < 400:
                return response
            error = await _status_error(response)
            if last or response.status not in _RETRY_STATUSES:
                raise error
            await asyncio.sleep(_retry_wait(response, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def complete(
        self, escalation: Escalation[Any], request: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """One answer along ``escalation``'s path: ``(route, the provider's JSON)``."""

        async def invoke(route: str) -> dict[str, Any]:
            upstream = self.upstream_for(route)
            body = upstream.body(request, stream=False)
            response = await self._send(upstream, body)
            try:
                payload = json.loads(await response.read())
            except ValueError as exc:
                raise UpstreamError(f"the answer is not JSON: {exc}") from exc
            finally:
                response.release()  # however the read ended, the connection is given back
            if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
                raise UpstreamError("the answer is not a chat.completion object")
            return payload

        return await escalation.arun(invoke)

    def stream(
        self, escalation: Escalation[Any], request: Mapping[str, Any]
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The chunks of one streamed answer along ``escalation``'s path, as they arrive."""

        async def open_stream(route: str) -> AsyncIterator[dict[str, Any]]:
            upstream = self.upstream_for(route)
            body = upstream.body(request, stream=True)
            response = await self._send(upstream, body)
            whole = False  # read to its [DONE] or its end
            try:
                async for line in _lines(response.content):
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise UpstreamError(f"a stream chunk is not JSON: {exc}") from exc
                    if not isinstance(chunk, dict):
                        raise UpstreamError("a stream chunk is not a JSON object")
                    if "error" in chunk:  # an error sent mid-stream
                        raise UpstreamError(_error_message(chunk), body=chunk)
                    yield chunk
                whole = True
            finally:
                if whole:  # what follows [DONE] is read apart, the client is not kept
                    self._release_after_end(response)
                else:  # left early or broken: not reused half-read
                    response.close()

        return escalation.astream(open_stream)

    def _release_after_end(self, response: aiohttp.ClientResponse) -> None:
        """Give a finished stream's connection back to the pool once its body has ended.

        A stream's body still holds its end (the chunked terminator) after ``[DONE]``;
        a connection closed instead of read to there is not reused, and the next call
        connects again (a TLS handshake, with a real provider). Read in the background,
        for at most :data:`_DRAIN_S` and :data:`_DRAIN_BYTES`; else the connection closes.
        """

        async def drain() -> None:
            try:
                async with asyncio.timeout(_DRAIN_S):
                    left = _DRAIN_BYTES
                    while left > 0 and (piece := await response.content.read(left)):
                        left -= len(piece)
                if response.content.at_eof():
                    response.release()
                    return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            response.close()

        task = asyncio.get_running_loop().create_task(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)


_DRAIN_S = 1.0
"""Seconds a finished stream's connection may take to end its body, to be reused."""
_DRAIN_BYTES = 64 * 1024
"""What a finished stream's body may still hold after ``[DONE]``, to be reused."""


def _error_message(body: Any) -> str:
    inner = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(inner, Mapping) and inner.get("message"):
        return str(inner["message"])
    if isinstance(inner, str):
        return inner
    return json.dumps(body)[:500] if body is not None else "no details"


async def _status_error(response: aiohttp.ClientResponse) -> UpstreamError:
    """The error of an HTTP error answer (read, then released)."""
    try:
        raw = await response.read()
    finally:
        response.release()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    text = raw.decode("utf-8", "replace")[:500]
    message = _error_message(body) if body is not None else text
    return UpstreamError(message, status_code=response.status, body=body)


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The lines of a body as they arrive (any length: aiohttp's own lines stop at 64 KiB).

    Pieces of an unfinished line are joined once, when its end comes: linear time.
    """
    pending: list[bytes] = []
    async for data in content.iter_any():
        *ended, rest = data.split(b"\n")
        for piece in ended:
            pending.append(piece)
            yield b"".join(pending).rstrip(b"\r").decode("utf-8", "replace")
            pending = []
        if rest:
            pending.append(rest)
    if pending:
        yield b"".join(pending).rstrip(b"\r").decode("utf-8", "replace")


def _new_session() -> aiohttp.ClientSession:
    """The shared session: no cap on connections, CAs from the environment.

    As httpx (which the openai SDK uses) does: certificates are checked against
    ``SSL_CERT_FILE`` or certifi's bundle. Proxies are each upstream's own
    (:func:`environment_proxy`, read once), not looked up per request.
    """
    import ssl

    import certifi

    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=context)
    return aiohttp.ClientSession(connector=connector)


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, _MAX_RETRY_WAIT_S) * (0.75 + random.random() / 4)


def _retry_wait(response: aiohttp.ClientResponse, attempt: int) -> float:
    """The provider's ``retry-after-ms``/``retry-after`` when short, else a backoff."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(name)
        try:
            wait = float(value) * scale if value is not None else None
        except ValueError:
            wait = None
        if wait is not None and 0 <= wait <= _MAX_RETRY_WAIT_S:
            return wait
    return _backoff(attempt)
