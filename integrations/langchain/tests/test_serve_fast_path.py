"""The fast path of ``langroute serve``: OpenAI-compatible routes relayed without LangChain.

The real server (uvicorn in a thread) and the official ``openai`` client against the
fake provider (``tests/provider_server.py``), as in ``test_serve.py``. Each response
names the path it took in ``x-langroute-path``; the LangChain models of the routes are
made to fail if they are called at all, so a fast answer cannot have come from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from langroute.costs import CostLedger
from langroute.models.config import ModelSpec, ServeConfig, load_models_config
from langroute.serving.keys import add_api_key

from langchain_langroute.server import Gateway, create_app, serve_in_thread
from langchain_langroute.server.budgets import ESTIMATED_METADATA
from langchain_langroute.server.fast_path import route_request, upstream_from_spec

from .conftest import make_router
from .test_serve import HELLO, LARGE_SERVED, PROOF, SMALL_SERVED, Server, write_config


@pytest.fixture
def no_langchain_calls(monkeypatch):
    """Every call of a ``ChatOpenAI`` model fails: only the fast path can answer."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a LangChain chat model was called on the fast path")

    for name in ("_generate", "_agenerate", "_stream", "_astream"):
        monkeypatch.setattr(ChatOpenAI, name, refuse)


@pytest.fixture
def serve(tmp_path: Path, provider: Any):
    with contextlib.ExitStack() as stack:

        def start(config: Path | None = None, **settings: Any) -> Server:
            config = config or write_config(tmp_path, provider, **settings)
            gateway = Gateway(load_models_config(config), router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            return Server(url, gateway, config)

        yield start


async def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in 10 s"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- which path
def test_an_openai_route_is_answered_on_the_fast_path(serve, provider, no_langchain_calls):
    server = serve()
    raw = server.client().chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, temperature=0.3
    )
    answer = raw.parse()
    assert raw.headers["x-langroute-path"] == "fast"
    assert raw.headers["x-langroute-route"] == "small"
    assert raw.headers["x-langroute-model"] == SMALL_SERVED
    assert answer.choices[0].message.content == "answer from gpt-4o-mini"
    assert answer.id.startswith("chatcmpl-") and answer.usage.completion_tokens == 3
    sent = provider.requests[0].body
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.3
    assert sent["max_tokens"] == 1024  # the route's own cap, as its LangChain model sends
    [row] = server.calls()
    assert row.record_id == answer.id.removeprefix("chatcmpl-")
    assert (row.route, row.model, row.input_tokens, row.output_tokens) == (
        "small",
        SMALL_SERVED,
        4,
        3,
    )
    assert row.metadata["api_key"] == "anonymous" and row.cost and row.cost > 0
    # the encoder's part of the routing time, for what the server adds beyond it
    encoder, routing = (float(raw.headers[f"x-langroute-{n}-ms"]) for n in ("encoder", "routing"))
    assert 0 < encoder <= routing


def test_fast_path_false_sends_requests_through_the_langchain_models(serve, provider):
    server = serve(fast_path=False)
    raw = server.client().chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-langroute-path"] == "langchain"
    assert raw.parse().choices[0].message.content == "answer from gpt-4o-mini"


def test_an_anthropic_route_keeps_the_langchain_path(serve, tmp_path, provider):
    config = tmp_path / "mixed.toml"
    config.write_text(
        "[routes]\n"
        f'small = {{ model = "anthropic:claude-3-5-haiku-latest", '
        f'base_url = "{provider.anthropic_url}", api_key = "upstream-test" }}\n'
        f'large = {{ model = "openai:gpt-4o", base_url = "{provider.openai_url}", '
        'api_key = "upstream-test" }\n\n[serve]\nledger = "costs.db"\nmax_retries = 0\n',
        encoding="utf-8",
    )
    server = serve(config)
    client = server.client()
    assert server.gateway.fast.skipped == {
        "small": "'anthropic:claude-3-5-haiku-latest' is not an OpenAI chat-completions model"
    }
    # "auto" may reach the anthropic route: the whole call stays on the LangChain path
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-langroute-path"] == "langchain"
    assert raw.headers["x-langroute-route"] == "small"
    assert provider.requests[0].api == "anthropic"
    # a call forced to the OpenAI route, which escalates nowhere else, is relayed
    raw = client.chat.completions.with_raw_response.create(model="large", messages=HELLO)
    assert raw.headers["x-langroute-path"] == "fast" and raw.parse().model == LARGE_SERVED


# ---------------------------------------------------------------- streams
async def test_a_stream_is_relayed_chunk_by_chunk_with_its_usage(
    serve, provider, no_langchain_calls
):
    provider.script("gpt-4o", "long:6")
    server = serve()
    client = server.aclient()
    async with client.chat.completions.with_streaming_response.create(
        model="auto", messages=PROOF, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-langroute-path"] == "fast"
        assert response.headers["x-langroute-route"] == "large"
        chunks = [chunk async for chunk in await response.parse()]
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(words) == 6  # one chunk per word the provider sent, none merged
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}
    [row] = server.calls()
    assert row.record_id == chunks[0].id.removeprefix("chatcmpl-")
    assert (row.route, row.output_tokens) == ("large", 6) and ESTIMATED_METADATA not in row.metadata


def test_a_client_that_did_not_ask_for_usage_gets_no_usage_chunk(
    serve, provider, no_langchain_calls
):
    server = serve()
    chunks = list(
        server.client().chat.completions.create(model="auto", messages=HELLO, stream=True)
    )
    assert chunks and all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    # the server asked the provider for usage anyway, and the ledger has it
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}
    assert server.calls()[0].output_tokens == 3


async def test_an_abandoned_fast_stream_is_charged_for_what_it_was_sent(
    tmp_path, serve, provider, no_langchain_calls
):
    provider.script("gpt-4o-mini", "long:20")
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=5.0)
    server = serve(keys="keys.jsonl")
    key = server.gateway.keyring.keys().named("team-a")
    stream = await server.aclient(secret).chat.completions.create(
        model="auto", messages=HELLO, stream=True
    )
    words, response_id = 0, None
    async for chunk in stream:
        response_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            words += 1
            if words == 5:
                break
    await stream.close()
    await _until(server.calls)
    [row] = server.calls()
    assert row.record_id == response_id.removeprefix("chatcmpl-")
    assert row.metadata[ESTIMATED_METADATA] is True and row.error is None
    assert row.route == "small" and 5 <= row.output_tokens < 20 and row.cost and row.cost > 0
    await _until(lambda: not server.gateway.spend.reserved(key))
    assert server.gateway.spend.spent(key) == pytest.approx(row.cost)


def test_a_stream_that_breaks_mid_answer_ends_with_an_error_event_and_is_charged(
    serve, provider, no_langchain_calls
):
    provider.script("gpt-4o-mini", "break:2")
    server = serve()
    with pytest.raises(openai.APIError):
        list(server.client().chat.completions.create(model="auto", messages=HELLO, stream=True))
    [row] = server.calls()
    assert row.route == "small" and row.metadata[ESTIMATED_METADATA] is True
    assert provider.models_asked() == ["gpt-4o-mini"]  # output was delivered: no escalation


# ---------------------------------------------------------------- failures
@pytest.mark.parametrize("fault", ["500", "429"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_route_escalates_on_the_fast_path(
    serve, provider, no_langchain_calls, fault, stream
):
    provider.script("gpt-4o-mini", fault)
    server = serve()
    raw = server.client().chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "answer from gpt-4o"
    assert raw.headers["x-langroute-path"] == "fast"
    assert raw.headers["x-langroute-escalated"] == "true"
    assert raw.headers["x-langroute-escalated-from"] == "small"
    assert provider.models_asked() == ["gpt-4o-mini", "gpt-4o"]  # max_retries = 0
    failed, answered = server.calls()
    assert failed.route == "small" and f"HTTP {fault}" in failed.error
    assert answered.route == "large" and answered.escalated and answered.error is None


def test_a_stream_that_ends_without_output_escalates(serve, provider, no_langchain_calls):
    provider.script("gpt-4o-mini", "empty")
    server = serve()
    chunks = list(
        server.client().chat.completions.create(model="auto", messages=HELLO, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answer from gpt-4o"
    assert provider.models_asked() == ["gpt-4o-mini", "gpt-4o"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_length_refusal_is_passed_back_without_escalation(
    serve, provider, no_langchain_calls, stream
):
    provider.script("gpt-4o-mini", "400")
    server = serve()
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(model="auto", messages=HELLO, stream=stream)
    assert "maximum context length" in caught.value.message
    assert caught.value.code == "context_length_exceeded"
    assert provider.models_asked() == ["gpt-4o-mini"]  # never escalated, never retried
    [row] = server.calls()
    assert row.route == "small" and "HTTP 400" in row.error


def test_every_route_failing_is_a_502_on_the_fast_path(serve, provider, no_langchain_calls):
    provider.script("gpt-4o-mini", "500")
    provider.script("gpt-4o", "500")
    server = serve()
    with pytest.raises(openai.InternalServerError) as caught:
        server.client().chat.completions.create(model="auto", messages=HELLO)
    assert caught.value.status_code == 502
    assert "small" in caught.value.message and "large" in caught.value.message
    assert [row.route for row in server.calls()] == ["small", "large"]


async def test_fifty_concurrent_fast_requests_overspend_by_at_most_one_worst_case(
    tmp_path, serve, provider, no_langchain_calls
):
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=3 * 2.4e-6)
    server = serve(keys="keys.jsonl", over_budget="reject")
    key = server.gateway.keyring.keys().named("team-a")
    client = server.aclient(secret)

    async def one() -> Any:
        try:
            return await client.chat.completions.with_raw_response.create(
                model="small", messages=HELLO, max_tokens=3
            )
        except openai.APIStatusError as exc:
            return exc

    results = await asyncio.gather(*(one() for _ in range(50)))
    answered = [r for r in results if not isinstance(r, Exception)]
    assert answered and all(r.headers["x-langroute-path"] == "fast" for r in answered)
    assert all(r.status_code == 429 for r in results if isinstance(r, Exception))
    spent = sum(row.cost or 0.0 for row in server.calls())
    assert spent <= key.budget + server.gateway.budgets.worst_case(b"x" * 300, 3, ["small"])
    assert len(answered) == len(server.calls())
    assert server.gateway.spend.reserved(key) == 0


# ---------------------------------------------------------------- what a route sends
def _spec(**options: Any) -> ModelSpec:
    return ModelSpec(route="small", spec="openai:gpt-4o-mini", kind="chat", options=options)


def test_route_settings_are_defaults_that_the_clients_own_fields_override():
    upstream = upstream_from_spec(
        _spec(base_url="http://x/v1/", api_key="k", temperature=0.1, model_kwargs={"user": "u"})
    )
    sent = upstream.body(
        {
            "model": "auto",
            "messages": HELLO,
            "temperature": 0.9,
            "max_completion_tokens": 5,
            "metadata": {"session_id": "s1"},
        },
        stream=True,
    )
    body = json.loads(sent)
    assert upstream.url == "http://x/v1/chat/completions"
    assert upstream.headers["authorization"] == "Bearer k"
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.9 and body["user"] == "u"
    # the client's cap replaces the route's; langroute's own metadata is not forwarded
    assert "max_tokens" not in body and body["max_completion_tokens"] == 5
    assert "metadata" not in body
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("model", ["o3-mini", "o1", "gpt-5-mini"])
def test_a_reasoning_model_gets_its_cap_as_max_completion_tokens(model):
    """As the route's LangChain model sends it: OpenAI's reasoning models refuse
    ``max_tokens``, and o-series models take system messages as ``developer``."""
    spec = ModelSpec(route="large", spec=f"openai:{model}", kind="chat", options={})
    upstream = upstream_from_spec(spec)
    messages = [{"role": "system", "content": "be brief"}, *HELLO]
    for request in ({"messages": messages}, {"messages": messages, "max_tokens": 7}):
        body = json.loads(upstream.body(request, stream=False))
        assert "max_tokens" not in body
        assert body["max_completion_tokens"] == request.get("max_tokens", 1024)
        roles = [m["role"] for m in body["messages"]]
        assert roles[0] == ("developer" if model.startswith("o") else "system")
    assert messages[0]["role"] == "system"  # the client's request is left as it came
    plain = upstream_from_spec(ModelSpec(route="s", spec="openai:gpt-4o-mini", kind="chat"))
    assert json.loads(plain.body({"messages": messages}, stream=False))["max_tokens"] == 1024


def test_serve_timeout_and_retries_win_over_the_routes_own():
    settings = ServeConfig(timeout=7, max_retries=0)
    upstream = upstream_from_spec(_spec(timeout=60, max_retries=5), settings)
    assert (upstream.timeout, upstream.max_retries) == (7, 0)


def test_a_route_with_options_the_fast_path_does_not_know_keeps_langchain():
    reason = upstream_from_spec(_spec(use_responses_api=True))
    assert reason == "options ['use_responses_api'] are passed to its LangChain model"


# ---------------------------------------------------------------- --workers
def _serve_process(config: Path, *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", "from langroute.cli.app import main; main()"]
    return subprocess.Popen(
        [*command, "serve", str(config), "--port", "0", *options],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_two_workers_serve_one_port_and_write_one_ledger(tmp_path, provider):
    make_router().save(tmp_path / "router")
    config = write_config(tmp_path, provider, router="router")
    process = _serve_process(config, "--workers", "2")
    answers = []
    try:
        line = process.stderr.readline()
        assert "listening on http://127.0.0.1:" in line and "2 workers" in line, line
        url = line.split("listening on ")[1].split()[0]
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        for messages in (HELLO, PROOF, HELLO, PROOF):
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
            assert raw.headers["x-langroute-path"] == "fast"
            answers.append(raw.parse())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    rows = CostLedger.open(tmp_path / "costs.db").records()
    assert sorted(r.record_id for r in rows) == sorted(
        a.id.removeprefix("chatcmpl-") for a in answers
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"keys": "keys.jsonl"}, "N workers would let a key spend N budgets"),
        ({"keys": "keys.jsonl", "learn": True}, "N workers would let a key spend N budgets"),
        ({"ledger": "jsonl"}, "JSONL ledger cannot take appends"),
        ({"learn": True}, "each worker would learn alone"),
    ],
)
def test_workers_are_refused_where_a_process_would_keep_state_alone(
    tmp_path, provider, settings, problem
):
    jsonl = settings.pop("ledger", None)
    config = write_config(tmp_path, provider, **settings)
    if jsonl:
        config.write_text(config.read_text().replace("costs.db", "costs.jsonl"))
    (tmp_path / "keys.jsonl").touch()
    process = _serve_process(config, "--workers", "3")
    _, err = process.communicate(timeout=120)
    said = " ".join(err.split())  # the terminal wraps long lines
    assert process.returncode == 1 and "--workers 3" in said and problem in said


@pytest.mark.parametrize("conversations", [False, True])
def test_the_callers_key_scopes_the_decision_on_both_readings(conversations):
    # the key's own taught routing (scoped learning) and its sessions hang on the scope
    request, query = route_request(
        [{"role": "user", "content": [{"type": "text", "text": " hi "}]}],
        forced=None,
        conversations=conversations,
        session="s1",
        scope="team-a",
    )
    assert request.session_scope == "team-a" and query == "hi"
    assert (request.turns is not None) is conversations


def test_stream_lines_of_any_length_and_split_characters_come_whole():
    from langchain_langroute.server.fast_path import _lines

    class Arriving:  # what aiohttp's StreamReader gives: bytes as they arrive
        def __init__(self, data: bytes, size: int) -> None:
            self.pieces = [data[i : i + size] for i in range(0, len(data), size)]

        async def iter_any(self):
            for piece in self.pieces:
                yield piece

    long = "é" * 150_000  # 300 KB on one line (aiohttp's own readline stops at 64 KiB)
    body = f"data: {long}\r\n\r\ndata: [DONE]\n\ntail".encode()

    async def read(size: int) -> list[str]:
        return [line async for line in _lines(Arriving(body, size))]

    for size in (1, 7, 4096, len(body)):  # "é" is two bytes: odd sizes split it
        assert asyncio.run(read(size)) == [f"data: {long}", "", "data: [DONE]", "", "tail"]


# ---------------------------------------------------------------- after the answer
async def test_feedback_finds_an_answer_the_moment_it_arrived(serve, no_langchain_calls):
    """An answer is settled (its ledger row, its spend) just after it went out: the
    client's very next request, feedback on it, already finds it."""
    server = serve()
    client = server.aclient()
    async with httpx.AsyncClient(base_url=server.url) as http:
        for _ in range(20):
            answer = await client.chat.completions.create(model="auto", messages=HELLO)
            body = {"id": answer.id, "verdict": "good"}
            feedback = await http.post("/v1/feedback", json=body)
            assert feedback.status_code == 200, feedback.text
    assert len(server.calls()) == 20


async def test_a_finished_stream_gives_its_connection_back_for_the_next_call(
    serve, provider, monkeypatch, no_langchain_calls
):
    """A stream read to its end leaves its upstream connection reusable: streams and
    answers that follow go out on it, with no new connection (no new TLS handshake)."""
    monkeypatch.setattr(provider, "keep_alive", True)  # as a real provider's connections
    provider.stream_end_delay = 0.05  # the body ends apart from [DONE], as over a network
    server = serve()
    client = server.aclient()
    before = provider.connections
    for _ in range(3):
        stream = await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await _until(lambda: not server.gateway.fast._draining)
    await client.chat.completions.create(model="auto", messages=HELLO)
    assert provider.connections - before == 1


async def test_a_request_alone_is_decided_on_the_event_loop_and_one_beside_another_off_it(
    serve, provider, monkeypatch, no_langchain_calls
):
    """Alone in the server, a request is decided on its event loop: no hand-over to a
    thread and back. Beside another under way, it is decided in a worker thread, and the
    loop goes on serving the other."""
    from langroute.dispatch import dispatcher
    from langroute.embedders import RequestsInFlight

    from langchain_langroute.server import app

    # a gauge of this test's own: what other tests' servers left under way cannot count
    gauge = RequestsInFlight()
    monkeypatch.setattr(app, "REQUESTS_IN_FLIGHT", gauge)
    monkeypatch.setattr(dispatcher, "REQUESTS_IN_FLIGHT", gauge)
    server = serve()
    router = server.gateway.router
    on_loop: list[bool] = []
    route_vectors = router.route_vectors

    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return route_vectors(*args, **kwargs)

    monkeypatch.setattr(router, "route_vectors", spy)
    client = server.aclient()
    await client.chat.completions.create(model="auto", messages=HELLO)
    assert on_loop == [True]

    provider.answer_delay = 2.0  # the first request waits for its answer...
    first = asyncio.create_task(client.chat.completions.create(model="auto", messages=HELLO))
    await _until(lambda: len(on_loop) == 2)
    second = await client.chat.completions.create(model="auto", messages=HELLO)  # ...and this
    assert (await first).choices[0].message.content and second.choices[0].message.content
    assert on_loop == [True, True, False]
    # a stream the client leaves half read still leaves the count once the server let go
    provider.answer_delay = 0.0
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"model": "auto", "messages": HELLO, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_lines():
                break
    await _until(lambda: gauge.count == 0)


def test_one_server_process_encodes_a_lone_request_on_every_core_and_workers_do_not(
    monkeypatch,
):
    from langroute.embedders import encoder_alone_threads, encoder_threads, set_encoder_threads

    from langchain_langroute.server.run import configure_encoder

    monkeypatch.delenv("LANGROUTE_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the cores the process may use
    try:
        configure_encoder(one_process=True)
        assert (encoder_threads(), encoder_alone_threads()) == (1, 4)
        configure_encoder(one_process=False)  # workers share the cores
        assert (encoder_threads(), encoder_alone_threads()) == (1, 1)
        monkeypatch.setenv("LANGROUTE_NUM_THREADS", "2")
        configure_encoder(one_process=True)
        assert (encoder_threads(), encoder_alone_threads()) == (2, 2)  # the environment wins
    finally:
        set_encoder_threads(None)


def test_an_answer_is_settled_once_however_sending_ended():
    import gc
    import weakref

    from langchain_langroute.server.app import SettledResponse

    settled: list[str] = []

    async def broken_send(message: dict[str, Any]) -> None:
        raise OSError("the client left")

    response = SettledResponse({"ok": True}, {}, lambda: settled.append("sent"))
    with pytest.raises(OSError):
        asyncio.run(response({"type": "http"}, None, broken_send))
    gone = weakref.ref(response)
    del response
    gc.collect()
    assert gone() is None  # the response was collected, its finalizer ran...
    assert settled == ["sent"]  # ...and did not settle it again

    SettledResponse({"ok": True}, {}, lambda: settled.append("dropped"))  # never sent
    gc.collect()
    assert settled == ["sent", "dropped"]


def test_middleware_added_to_the_app_sees_chat_completions_too(tmp_path, provider):
    from fastapi.middleware.cors import CORSMiddleware

    gateway = Gateway(load_models_config(write_config(tmp_path, provider)), router=make_router())
    app = create_app(gateway)
    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example"])
    try:
        with serve_in_thread(app) as url:
            response = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "auto", "messages": HELLO},
                headers={"origin": "https://app.example"},
            )
    finally:
        gateway.close()
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_an_unexpected_error_is_an_openai_shaped_500_and_is_logged(
    serve, provider, monkeypatch, caplog
):
    server = serve()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, with sk-secret-1234567890abcdef in it")

    monkeypatch.setattr(Gateway, "fast_dispatcher", broken)
    with caplog.at_level("ERROR", logger="langroute.serve"):
        response = httpx.post(
            server.url + "/v1/chat/completions", json={"model": "auto", "messages": HELLO}
        )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "a bug" in error["message"]
    assert "sk-secret-1234567890abcdef" not in response.text
    assert any("internal error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("environment", "url", "proxy"),
    [
        ({}, "https://api.openai.com/v1/chat/completions", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.openai.com/v1", "http://proxy:3128"),
        ({"https_proxy": "http://low:3128"}, "https://api.openai.com/v1", "http://low:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://vllm.local:8000/v1", None),
        ({"HTTP_PROXY": "http://plain:3128"}, "http://vllm.local:8000/v1", "http://plain:3128"),
        ({"ALL_PROXY": "http://all:3128"}, "https://api.openai.com/v1", "http://all:3128"),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "openai.com,localhost"},
            "https://api.openai.com/v1",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://u:p@proxy:3128", "NO_PROXY": "example.org"},
            "https://api.openai.com/v1",
            "http://u:p@proxy:3128",
        ),
    ],
)
def test_each_upstream_takes_the_proxy_the_environment_names(monkeypatch, environment, url, proxy):
    """As httpx (the openai SDK) reads the environment: by scheme, ALL_PROXY, NO_PROXY."""
    from langchain_langroute.server.fast_path import environment_proxy

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert environment_proxy(url) == proxy
    spec = ModelSpec(
        route="small", spec="openai:gpt-4o-mini", kind="chat", options={"base_url": url}
    )
    assert upstream_from_spec(spec).proxy == proxy


async def test_an_upstream_behind_a_proxy_is_reached_through_it(
    serve, provider, monkeypatch, no_langchain_calls
):
    """HTTP_PROXY set when the server starts: the fast path's requests go through it."""
    seen: list[bytes] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a forward proxy for plain HTTP: the request line names the whole URL
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", provider.port)
        path = head.split(b" ", 2)[1].split(b"//", 1)[1].split(b"/", 1)[1]
        rest = head.split(b"\r\n", 1)[1].replace(b"Connection: keep-alive", b"Connection: close")
        upstream_writer.write(b"POST /" + path + b" HTTP/1.1\r\n" + rest + body)
        writer.write(await upstream_reader.read())
        await writer.drain()
        writer.close()
        upstream_writer.close()

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    server = serve()
    direct = httpx.AsyncClient(trust_env=False)  # the client itself goes straight to the server
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", http_client=direct)
    async with proxy, direct:
        answer = await client.chat.completions.create(model="auto", messages=HELLO)
    assert answer.choices[0].message.content == "answer from gpt-4o-mini"
    assert seen == [f"POST {provider.openai_url}/chat/completions HTTP/1.1".encode()]
