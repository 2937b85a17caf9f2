"""Budgets of ``langroute serve`` under concurrency, abandoned streams and degrade mode.

The real server (uvicorn in a thread) and the official ``openai`` client against the
fake provider (``tests/provider_server.py``), as in ``test_serve.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from langroute.models.config import load_models_config
from langroute.serving.keys import add_api_key

from langchain_langroute.server import Gateway, create_app, serve_in_thread
from langchain_langroute.server.budgets import ESTIMATED_METADATA, MemoryLedgerBudgetWarning

from .conftest import make_router
from .test_serve import HELLO, PROOF, Server, write_config


@pytest.fixture
def keyed(tmp_path: Path, provider: Any):
    """Start a server with a keys file; returns (server, secret of a key with ``budget``)."""
    with contextlib.ExitStack() as stack:

        def start(budget: float | None, **serve: Any) -> tuple[Server, str]:
            config = write_config(tmp_path, provider, keys="keys.jsonl", **serve)
            secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=budget)
            gateway = Gateway(load_models_config(config), router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            return Server(url, gateway, config), secret

        yield start


def _spent(server: Server) -> float:
    return sum(r.cost or 0.0 for r in server.calls())


async def _fire(server: Server, secret: str, count: int, **request: Any) -> list[Any]:
    client = server.aclient(secret)

    async def one() -> Any:
        try:
            return await client.chat.completions.create(**request)
        except openai.APIStatusError as exc:
            return exc

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.parametrize("budget_in_calls", [0.5, 6])
async def test_fifty_concurrent_requests_overspend_by_at_most_one_worst_case(
    keyed, budget_in_calls
):
    # one answer of the small route costs about $2.4e-6; the budget holds half of one
    # answer, or six; 50 requests arrive at once
    server, secret = keyed(budget=budget_in_calls * 2.4e-6, over_budget="reject")
    budget = server.gateway.keyring.keys().named("team-a").budget
    request = {"model": "small", "messages": HELLO, "max_tokens": 3}
    results = await _fire(server, secret, 50, **request)
    answered = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert answered and all(r.status_code == 429 for r in refused)
    # the largest body the client sends for this request is well under 300 bytes
    worst = server.gateway.budgets.worst_case(b"x" * 300, 3, ["small"])
    assert _spent(server) <= budget + worst
    assert len(answered) == len(server.calls())  # every answer is in the ledger
    assert server.gateway.spend.reserved(server.gateway.keyring.keys().named("team-a")) == 0


async def test_a_stream_left_before_its_end_is_charged_for_what_it_was_sent(keyed, provider):
    provider.script("gpt-4o-mini", "long:20")
    server, secret = keyed(budget=5.0)
    key = server.gateway.keyring.keys().named("team-a")
    client = server.aclient(secret)
    stream = await client.chat.completions.create(model="auto", messages=HELLO, stream=True)
    words, response_id = 0, None
    async for chunk in stream:
        response_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            words += 1
            if words == 19:
                break
    await stream.close()  # the client leaves before the last word
    deadline = time.monotonic() + 10
    while not server.calls():
        assert time.monotonic() < deadline, "the abandoned stream left no ledger row"
        await asyncio.sleep(0.02)
    [row] = server.calls()
    assert row.record_id == response_id.removeprefix("chatcmpl-")  # keeps its response id
    assert row.metadata[ESTIMATED_METADATA] is True and row.error is None
    assert row.route == "small" and 19 <= row.output_tokens <= 20 and row.input_tokens > 0
    assert row.cost and row.cost > 0
    deadline = time.monotonic() + 10
    while server.gateway.spend.reserved(key):  # the reservation is released...
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert server.gateway.spend.spent(key) == pytest.approx(row.cost)  # ...for the charge


def test_degrade_never_escalates_past_the_cheapest_route(keyed, provider):
    server, secret = keyed(budget=1e-9)  # over_budget = "degrade" by default
    client = server.client(secret)
    client.chat.completions.create(model="auto", messages=PROOF)  # spends the budget
    provider.reset()
    provider.script("gpt-4o-mini", "500")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="auto", messages=PROOF)
    assert caught.value.status_code == 502 and "small" in caught.value.body["message"]
    assert provider.models_asked() == ["gpt-4o-mini"]  # the large route was never paid
    assert all(r.route != "large" for r in server.calls()[1:])


def test_keys_on_a_memory_ledger_are_warned_about_at_start(tmp_path, provider):
    config = write_config(tmp_path, provider, keys="keys.jsonl")
    config.write_text(config.read_text().replace('ledger = "costs.db"', 'ledger = "memory"'))
    add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1.0)
    with pytest.warns(MemoryLedgerBudgetWarning, match="restart resets"):
        gateway = Gateway(load_models_config(config), router=make_router())
    gateway.close()


def test_a_zero_budget_key_gets_no_call_even_in_degrade_mode(keyed, provider):
    server, secret = keyed(budget=0.0)  # over_budget = "degrade" by default
    with pytest.raises(openai.RateLimitError) as caught:
        server.client(secret).chat.completions.create(model="auto", messages=HELLO)
    assert caught.value.code == "budget_exhausted"
    assert provider.requests == [] and server.calls() == []


async def test_two_replicas_on_one_postgres_share_one_budget(tmp_path, provider, postgres_url):
    # replicas on one Postgres ledger hold reservations in the database: 50 requests
    # split over two servers still pass the budget by at most one worst case
    import json

    config = write_config(tmp_path, provider, keys="keys.jsonl", over_budget="reject")
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('ledger = "costs.db"', f"ledger = {json.dumps(postgres_url)}"),
        encoding="utf-8",
    )
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=3 * 2.4e-6)
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(2):
            gateway = Gateway(load_models_config(config), router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            servers.append(Server(url, gateway, config))
        request = {"model": "small", "messages": HELLO, "max_tokens": 3}
        halves = await asyncio.gather(*(_fire(s, secret, 25, **request) for s in servers))
        results = [r for half in halves for r in half]
        answered = [r for r in results if not isinstance(r, Exception)]
        assert answered and all(r.status_code == 429 for r in results if isinstance(r, Exception))
        for server in servers:
            server.gateway.wait_settled()  # an answer is settled just after it went out
            server.gateway.ledger.flush()
            server.gateway.spend.flush()  # settlements are written off the request path
        rows = [r for r in servers[0].gateway.ledger.records() if not r.is_feedback]
        assert len(rows) == len(answered)  # both replicas' answers, in the one ledger
        key = servers[0].gateway.keyring.keys().named("team-a")
        worst = servers[0].gateway.budgets.worst_case(b"x" * 300, 3, ["small"])
        assert sum(r.cost or 0.0 for r in rows) <= key.budget + worst
        # each replica sees the spend of both, and no hold is left behind
        for server in servers:
            assert server.gateway.spend.spent(key) == pytest.approx(sum(r.cost for r in rows))
            assert server.gateway.spend.reserved(key) == 0
