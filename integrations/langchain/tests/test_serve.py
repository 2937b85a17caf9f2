"""``langroute serve`` with the official ``openai`` client against the real server.

The server runs for real (uvicorn in a thread, or ``langroute serve`` in a subprocess)
on 127.0.0.1; its routes are real ``ChatOpenAI`` models built from the models file and
pointed at the fake provider (``tests/provider_server.py``). The router is the
HashingEmbedder test router: "hello" routes to ``small``, a proof to ``large``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langroute.costs import CostLedger
from langroute.models.config import load_models_config
from langroute.serving.keys import add_api_key, remove_api_key

from langchain_langroute.server import Gateway, create_app, serve_in_thread
from langchain_langroute.server.run import bind

from .conftest import make_router

SMALL_SERVED, LARGE_SERVED = "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"
HELLO = [{"role": "user", "content": "hello"}]
PROOF = [{"role": "user", "content": "prove that there are infinitely many primes"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def write_config(folder: Path, provider: Any, **serve: Any) -> Path:
    lines = ["[routes]"]
    for route, model in (("small", "gpt-4o-mini"), ("large", "gpt-4o")):
        lines.append(
            f'{route} = {{ model = "openai:{model}", base_url = "{provider.openai_url}", '
            'api_key = "upstream-test" }'
        )
    lines += ["", "[serve]", 'ledger = "costs.db"', "max_retries = 0"]
    for key, value in serve.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path = folder / "models.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Server:
    def __init__(self, url: str, gateway: Gateway, config: Path) -> None:
        self.url = url
        self.gateway = gateway
        self.config = config

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def aclient(self, key: str = "none") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def calls(self) -> list[Any]:
        self.gateway.wait_settled()  # answers sent are settled just after
        return [r for r in self.gateway.ledger.records() if not r.is_feedback]


@pytest.fixture
def start(tmp_path, provider):
    with contextlib.ExitStack() as stack:

        def start_server(**serve: Any) -> Server:
            config = write_config(tmp_path, provider, **serve)
            if "keys" in serve:  # a missing keys file stops the server at start
                (tmp_path / serve["keys"]).touch()
            gateway = Gateway(load_models_config(config), router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            return Server(url, gateway, config)

        yield start_server


# ---------------------------------------------------------------- chat completions
def test_sync_client_gets_the_routed_answer_with_usage_and_decision_headers(start, provider):
    server = start()
    raw = server.client().chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    answer = raw.parse()
    assert raw.headers["x-langroute-route"] == "small"
    assert raw.headers["x-langroute-model"] == SMALL_SERVED
    assert raw.headers["x-langroute-reason"] in ("vote", "scores")
    assert 0 < float(raw.headers["x-langroute-confidence"]) <= 1
    assert answer.choices[0].message.content == "answer from gpt-4o-mini"
    assert answer.model == SMALL_SERVED and answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == 4 and answer.usage.completion_tokens == 3
    assert provider.models_asked() == ["gpt-4o-mini"]
    [row] = server.calls()
    assert row.record_id == answer.id.removeprefix("chatcmpl-")
    assert (row.route, row.model, row.input_tokens, row.output_tokens) == (
        "small",
        SMALL_SERVED,
        4,
        3,
    )


async def test_async_client_streams_chunks_and_a_final_usage_chunk(start, provider):
    server = start()
    client = server.aclient()
    async with client.chat.completions.with_streaming_response.create(
        model="auto", messages=PROOF, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-langroute-route"] == "large"
        chunks = [chunk async for chunk in await response.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "answer from gpt-4o"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[-1].model == LARGE_SERVED
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}
    [row] = server.calls()
    assert row.record_id == chunks[0].id.removeprefix("chatcmpl-") and row.output_tokens == 3


def test_a_stream_without_include_usage_has_no_usage_chunk(start):
    server = start()
    chunks = list(
        server.client().chat.completions.create(model="auto", messages=HELLO, stream=True)
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert server.calls()[0].output_tokens == 3  # the ledger still got the usage


def test_tools_pass_through_and_tool_calls_come_back(start, provider):
    server = start()
    client = server.client()
    answer = client.chat.completions.create(
        model="auto", messages=HELLO, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    [call] = answer.choices[0].message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = provider.requests[0].body
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "auto"
    # the tool's result goes back, and the model answers
    follow_up = [
        *HELLO,
        answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    final = client.chat.completions.create(model="auto", messages=follow_up, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "answer from gpt-4o-mini"
    assert provider.requests[1].body["messages"][-1]["role"] == "tool"


def test_streamed_tool_calls_arrive_as_deltas(start):
    server = start()
    chunks = list(
        server.client().chat.completions.create(
            model="auto", messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == "call_fake_1" and deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_naming_a_route_or_its_model_forces_it(start, provider):
    server = start()
    client = server.client()
    for model in ("large", "gpt-4o"):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
        assert raw.headers["x-langroute-route"] == "large"
        assert raw.headers["x-langroute-reason"] == "forced"
    assert provider.models_asked() == ["gpt-4o", "gpt-4o"]


def test_a_configured_alias_routes_and_models_lists_aliases_then_routes(start):
    server = start(aliases=["auto", "router"])
    client = server.client()
    assert [m.id for m in client.models.list()] == ["auto", "router", "small", "large"]
    raw = client.chat.completions.with_raw_response.create(model="router", messages=PROOF)
    assert raw.headers["x-langroute-route"] == "large"


def test_sampling_settings_and_stop_reach_the_upstream_model(start, provider):
    server = start()
    server.client().chat.completions.create(
        model="auto", messages=HELLO, temperature=0.2, max_tokens=7, stop=["END"], seed=3
    )
    sent = provider.requests[0].body
    assert sent["temperature"] == 0.2 and sent["stop"] == ["END"] and sent["seed"] == 3
    assert 7 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))


def test_a_failing_route_escalates_and_is_counted(start, provider):
    provider.script("gpt-4o-mini", "429")
    server = start()
    raw = server.client().chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-langroute-route"] == "large"
    assert raw.headers["x-langroute-escalated-from"] == "small"
    assert [(r.route, r.error is not None) for r in server.calls()] == [
        ("small", True),
        ("large", False),
    ]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'langroute_escalations_total{from="small",to="large"} 1' in metrics


def test_every_route_failing_is_a_502_naming_the_errors(start, provider):
    provider.script("gpt-4o-mini", "500")
    provider.script("gpt-4o", "500")
    server = start()
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            response = server.client().chat.completions.create(
                model="auto", messages=HELLO, stream=stream
            )
            list(response)
        assert caught.value.status_code == 502
        message = caught.value.body["message"]
        assert "small: " in message and "large: " in message and "fake 500" in message


# ---------------------------------------------------------------- bad requests
def test_bad_requests_are_400s_naming_the_problem(start):
    server = start()
    client = server.client()
    cases = [
        ({"model": "auto", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        ({"model": "auto", "messages": HELLO, "n": 2}, "n: only n=1 is supported"),
        ({"model": "auto", "messages": HELLO, "temperature": 9}, "temperature"),
    ]
    for body, expected in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**body)
        assert expected in caught.value.body["message"], body
    for content, expected in (
        (b"{not json", "not valid JSON"),
        (b'{"model": "auto"}', "messages: Field required"),
        (b'["auto"]', "must be a JSON object"),
    ):
        response = httpx.post(server.url + "/v1/chat/completions", content=content)
        assert response.status_code == 400
        assert expected in response.json()["error"]["message"]
    assert server.calls() == []


def test_an_unknown_model_is_a_404_listing_the_models(start):
    server = start()
    with pytest.raises(openai.NotFoundError) as caught:
        server.client().chat.completions.create(model="gpt-5", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "'gpt-5'" in caught.value.body["message"] and "small" in caught.value.body["message"]


# ---------------------------------------------------------------- keys and budgets
def test_keys_are_required_checked_and_reread_when_the_file_changes(start, tmp_path):
    server = start(keys="keys.jsonl")
    keys = tmp_path / "keys.jsonl"
    secret, _ = add_api_key(keys, "team-a")
    assert secret not in keys.read_text()
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        server.client("lr-wrong").chat.completions.create(model="auto", messages=HELLO)
    response = httpx.post(server.url + "/v1/chat/completions", json={"model": "auto"})
    assert response.status_code == 401 and "missing API key" in response.text
    server.client(secret).chat.completions.create(model="auto", messages=HELLO)
    assert server.calls()[0].metadata["api_key"] == "team-a"
    remove_api_key(keys, "team-a")
    with pytest.raises(openai.AuthenticationError):
        server.client(secret).models.list()
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"  # no key needed


def test_a_key_past_its_budget_is_refused_with_429(start, tmp_path):
    server = start(keys="keys.jsonl", over_budget="reject", metrics_key_names=True)
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1e-9, period="day")
    client = server.client(secret)
    client.chat.completions.create(model="auto", messages=HELLO)  # spends > budget
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="auto", messages=HELLO)
    assert caught.value.code == "budget_exhausted" and "team-a" in caught.value.body["message"]
    other, _ = add_api_key(tmp_path / "keys.jsonl", "team-b", budget=1.0)
    server.client(other).chat.completions.create(model="auto", messages=HELLO)  # unaffected
    assert len(server.calls()) == 2
    assert (
        'langroute_budget_total{key="team-a",action="rejected"} 1'
        in httpx.get(server.url + "/metrics").text
    )


def test_a_key_past_its_budget_is_degraded_to_the_cheapest_route(start, tmp_path, provider):
    server = start(keys="keys.jsonl")  # over_budget = "degrade" by default
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1e-9)
    client = server.client(secret)
    first = client.chat.completions.with_raw_response.create(model="auto", messages=PROOF)
    second = client.chat.completions.with_raw_response.create(model="large", messages=PROOF)
    assert (
        first.headers["x-langroute-route"] == "large" and "x-langroute-budget" not in first.headers
    )
    assert second.headers["x-langroute-route"] == "small"
    assert second.headers["x-langroute-budget"] == "degraded"
    assert provider.models_asked() == ["gpt-4o", "gpt-4o-mini"]


def test_spend_is_rebuilt_from_the_ledger_after_a_restart(tmp_path, provider):
    config = write_config(tmp_path, provider, keys="keys.jsonl", over_budget="reject")
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1e-9)
    for attempt in range(2):
        gateway = Gateway(load_models_config(config), router=make_router())
        try:
            with serve_in_thread(create_app(gateway)) as url:
                client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
                if attempt == 0:
                    client.chat.completions.create(model="auto", messages=HELLO)
                else:
                    with pytest.raises(openai.RateLimitError):
                        client.chat.completions.create(model="auto", messages=HELLO)
        finally:
            gateway.close()


def start_with_a_probe_key(start: Any, keys: Path) -> tuple[Server, str]:
    """A server rejecting keys past their budget, and the secret of a key without budget."""
    probe, _ = add_api_key(keys, "price-probe")
    return start(keys=keys.name, over_budget="reject"), probe


def price_of_an_answer(server: Server, probe: str, messages: list[dict[str, str]]) -> float:
    """What one answer to ``messages`` costs, as the server records it (asked with ``probe``).

    The fake provider's usage depends only on the messages, so every answer to them costs
    the same.
    """
    answer = server.client(probe).chat.completions.create(model="auto", messages=messages)
    [row] = [r for r in server.calls() if r.record_id == answer.id.removeprefix("chatcmpl-")]
    assert row.cost is not None and row.cost > 0
    return row.cost


def test_a_key_that_spent_exactly_its_budget_is_refused_on_the_next_request(start, tmp_path):
    keys = tmp_path / "keys.jsonl"
    server, probe = start_with_a_probe_key(start, keys)
    price = price_of_an_answer(server, probe, HELLO)
    secret, _ = add_api_key(keys, "team-a", budget=price)
    client = server.client(secret)
    client.chat.completions.create(model="auto", messages=HELLO)  # spends all of it, no more
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="auto", messages=HELLO)
    assert caught.value.status_code == 429 and caught.value.code == "budget_exhausted"
    assert [r.cost for r in server.calls() if r.metadata["api_key"] == "team-a"] == [price]


def test_a_key_with_a_zero_budget_gets_no_answer(start, tmp_path, provider):
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=0.0)
    server = start(keys="keys.jsonl", over_budget="reject")
    with pytest.raises(openai.RateLimitError) as caught:
        server.client(secret).chat.completions.create(model="auto", messages=HELLO)
    assert caught.value.status_code == 429 and caught.value.code == "budget_exhausted"
    assert provider.requests == [] and server.calls() == []


async def test_a_streamed_answer_counts_its_price_against_the_keys_budget(start, tmp_path):
    keys = tmp_path / "keys.jsonl"
    server, probe = start_with_a_probe_key(start, keys)
    price = price_of_an_answer(server, probe, PROOF)
    secret, _ = add_api_key(keys, "team-a", budget=price)
    client = server.aclient(secret)
    # the client does not ask for usage: the server must, to price the stream
    stream = await client.chat.completions.create(model="auto", messages=PROOF, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answer from gpt-4o"
    assert [r.cost for r in server.calls() if r.metadata["api_key"] == "team-a"] == [price]
    with pytest.raises(openai.RateLimitError) as caught:  # the stream spent the whole budget
        await client.chat.completions.create(model="auto", messages=PROOF, stream=True)
    assert caught.value.status_code == 429 and caught.value.code == "budget_exhausted"


# ---------------------------------------------------------------- feedback
def test_feedback_is_stored_against_the_answer(start):
    server = start()
    answer = server.client().chat.completions.create(model="auto", messages=HELLO)
    response = httpx.post(server.url + "/v1/feedback", json={"id": answer.id, "verdict": "good"})
    assert response.status_code == 200
    assert response.json()["route"] == "small" and response.json()["learned_route"] is None
    [feedback] = [r for r in server.gateway.ledger.records() if r.is_feedback]
    assert feedback.feedback_for == answer.id.removeprefix("chatcmpl-")
    assert (feedback.verdict, feedback.route, feedback.metadata["source"]) == (
        "good",
        "small",
        "api",
    )
    for body, status in (
        ({"id": "chatcmpl-nope", "verdict": "good"}, 404),
        ({"id": answer.id, "verdict": "meh"}, 400),
        ({"id": feedback.record_id, "verdict": "bad"}, 404),  # feedback on feedback
    ):
        reply = httpx.post(server.url + "/v1/feedback", json=body)
        assert reply.status_code == status, body
        assert reply.json()["error"]["message"]


def test_bad_feedback_with_learn_labels_the_query_with_the_next_stronger_route(start):
    server = start(learn=True)
    question = "hello there my friend"
    answer = server.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": question}]
    )
    assert server.calls()[0].query == question
    reply = httpx.post(server.url + "/v1/feedback", json={"id": answer.id, "verdict": "bad"})
    assert reply.json()["learned_route"] == "large"
    learned = [e for e in server.gateway.router.exemplars if e.text == question]
    assert [(e.route, e.metadata["source"]) for e in learned] == [("large", "feedback")]


def test_feedback_on_another_keys_answer_is_not_found(start, tmp_path):
    server = start(keys="keys.jsonl")
    a, _ = add_api_key(tmp_path / "keys.jsonl", "team-a")
    b, _ = add_api_key(tmp_path / "keys.jsonl", "team-b")
    answer = server.client(a).chat.completions.create(model="auto", messages=HELLO)
    headers = {"Authorization": f"Bearer {b}"}
    body = {"id": answer.id, "verdict": "bad"}
    assert httpx.post(server.url + "/v1/feedback", json=body, headers=headers).status_code == 404
    headers = {"Authorization": f"Bearer {a}"}
    assert httpx.post(server.url + "/v1/feedback", json=body, headers=headers).status_code == 200


# ---------------------------------------------------------------- metrics, ledger
async def test_every_request_is_one_ledger_row_and_counted_in_metrics(start):
    import asyncio

    server = start()
    client = server.aclient()

    async def one(i: int) -> str:
        messages = HELLO if i % 2 else PROOF
        if i % 3 == 0:
            stream = await client.chat.completions.create(
                model="auto", messages=messages, stream=True
            )
            chunks = [chunk async for chunk in stream]  # read to the end
            return chunks[0].id
        return (await client.chat.completions.create(model="auto", messages=messages)).id

    ids = await asyncio.gather(*(one(i) for i in range(24)))
    rows = server.calls()
    assert len(rows) == 24 and {r.record_id for r in rows} == {
        i.removeprefix("chatcmpl-") for i in ids
    }
    metrics = httpx.get(server.url + "/metrics").text
    assert 'langroute_requests_total{route="small",status="200",stream="false"} 8' in metrics
    assert 'langroute_requests_total{route="large",status="200",stream="true"} 4' in metrics
    assert 'langroute_request_duration_seconds_count{stream="false"} 16' in metrics
    assert 'langroute_spend_usd_total{route="small"}' in metrics  # no key names by default
    assert "langroute_ledger_dropped_records 0" in metrics


# ---------------------------------------------------------------- the CLI, for real
def _cli(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from langroute.cli.app import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **options)


async def test_connections_to_the_bound_socket_send_without_delay():
    """The event loop turns Nagle off on accepted connections (TCP_NODELAY).

    Without it every keep-alive response waits for the client's delayed ACK.
    """
    listening = bind("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
    async with server:
        host, port = listening.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            assert await asyncio.wait_for(accepted, 10) != 0
        finally:
            writer.close()


def test_langroute_serve_runs_and_writes_its_ledger_on_sigterm(tmp_path, provider):
    make_router().save(tmp_path / "router")
    config = write_config(tmp_path, provider, router="router", keys="keys.jsonl")
    added = _cli("serve-key", "add", str(config), "--name", "team-a", "--budget", "5")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert secret.startswith("lr-") and secret not in (tmp_path / "keys.jsonl").read_text()
    assert "team-a\t5/day" in _cli("serve-key", "list", str(config)).stdout
    command = [sys.executable, "-c", "from langroute.cli.app import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
        answer = client.chat.completions.create(model="auto", messages=PROOF)
        assert answer.choices[0].message.content == "answer from gpt-4o"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    [row] = CostLedger.open(tmp_path / "costs.db").records()
    assert row.record_id == answer.id.removeprefix("chatcmpl-") and row.route == "large"


def test_langroute_serve_names_the_bad_line_of_the_config(tmp_path, provider):
    config = write_config(tmp_path, provider, over_budget="refuse")
    result = _cli("serve", str(config))
    assert result.returncode == 1
    assert f"{config}:" in result.stderr and "over_budget" in result.stderr


# ---------------------------------------------------------------- replicas on Postgres
def test_two_replicas_on_one_postgres_share_what_they_learn_and_one_ledger(
    tmp_path, provider, postgres_url
):
    import time

    from langroute.postgres import publish_router

    publish_router(make_router(), postgres_url, name="support")
    lines = ["[routes]"]
    for route, model in (("small", "gpt-4o-mini"), ("large", "gpt-4o")):
        lines.append(
            f'{route} = {{ model = "openai:{model}", base_url = "{provider.openai_url}", '
            'api_key = "upstream-test" }'
        )
    lines += [
        "[serve]",
        f"shared_router = {json.dumps(postgres_url)}",
        'router_name = "support"',
        f"ledger = {json.dumps(postgres_url)}",
        "learn = true",
        "max_retries = 0",
    ]
    config_path = tmp_path / "models.toml"
    config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    question = [{"role": "user", "content": "hello there my friend"}]
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(2):
            gateway = Gateway(load_models_config(config_path))
            stack.callback(gateway.close)
            servers.append(Server(stack.enter_context(serve_in_thread(create_app(gateway))),
                                  gateway, config_path))  # fmt: skip
        one, two = servers
        assert one.gateway.replica is not None and two.gateway.replica is not None
        raw = two.client().chat.completions.with_raw_response.create(
            model="auto", messages=question
        )
        assert raw.headers["x-langroute-route"] == "small"
        answer = one.client().chat.completions.create(model="auto", messages=question)
        posted = time.monotonic()
        reply = httpx.post(one.url + "/v1/feedback", json={"id": answer.id, "verdict": "bad"})
        assert reply.json()["learned_route"] == "large"
        deadline = posted + 10
        while two.gateway.router.route(question[0]["content"]).route != "large":
            assert time.monotonic() < deadline, "replica two never learned the feedback"
            time.sleep(0.01)
        raw = two.client().chat.completions.with_raw_response.create(
            model="auto", messages=question
        )
        assert raw.headers["x-langroute-route"] == "large"
        for server in servers:
            server.gateway.wait_settled()  # an answer is settled just after it went out
            server.gateway.ledger.flush()
        shared = CostLedger(postgres_url)
        calls = [r for r in shared.records() if not r.is_feedback]
        verdicts = [r for r in shared.records() if r.is_feedback]
        assert len(calls) == 3 and len(verdicts) == 1
        assert verdicts[0].feedback_for == answer.id.removeprefix("chatcmpl-")
        shared.close()
