"""Equivalent LLMs and circuit breakers with the real llama-index ``OpenAI`` client.

The LLMs talk HTTP to ``tests/provider_server.py``; faults are scripted per model and
asserted through the requests the fake received, never timings.
"""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import RouteMetadata, RoutingLLM, track_costs
from llama_index.llms.openai import OpenAI

from langroute.dispatch.breakers import BreakerPolicy, BreakerRegistry

MINI, OTHER, LARGE = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"
QUESTION = [ChatMessage(role="user", content="what is the capital of france")]  # -> small


def llms(provider) -> dict:
    def openai(name: str) -> OpenAI:
        return OpenAI(model=name, api_base=provider.openai_url, api_key="test", max_retries=0)

    return {"small": [openai(MINI), openai(OTHER)], "large": openai(LARGE)}


def test_provider_down_fails_over_to_the_equivalent_at_the_cheap_price(router, provider):
    provider.script(MINI, "500")
    llm = RoutingLLM(router=router, models=llms(provider))
    with track_costs() as costs:
        response = llm.chat(QUESTION)
    assert provider.models_asked() == [MINI, OTHER]
    meta = RouteMetadata.from_metadata(response.additional_kwargs)
    assert (meta.route, meta.model, meta.escalated) == ("small", OTHER, False)
    records = costs.records()
    assert [(r.route, r.model, r.error is not None) for r in records] == [
        ("small", MINI, True),
        ("small", OTHER, False),
    ]
    paid = records[1]
    assert paid.cost == costs.pricer.cost(OTHER, paid.input_tokens, paid.output_tokens)
    assert [m.name for m in llm.route_equivalents.models("small")] == [MINI, OTHER]


async def test_a_stream_fails_over_before_its_first_text(router, provider):
    provider.script(MINI, "429")
    llm = RoutingLLM(router=router, models=llms(provider))
    text = ""
    async for chunk in await llm.astream_chat(QUESTION):
        text += chunk.delta or ""
    assert text == f"answer from {OTHER}" and provider.models_asked() == [MINI, OTHER]


def test_breaker_opens_after_n_failures_and_half_opens_later(router, provider):
    now = [0.0]
    breakers = BreakerRegistry(
        BreakerPolicy(failure_threshold=2, cooldown_s=60), clock=lambda: now[0]
    )
    provider.script(MINI, "500")
    llm = RoutingLLM(router=router, models=llms(provider), breakers=breakers)
    for _ in range(3):
        assert RouteMetadata.from_metadata(llm.chat(QUESTION).additional_kwargs).model == OTHER
    assert provider.count(MINI) == 2  # the third call skipped it at once
    now[0] = 60.0
    provider.script(MINI, "ok")
    meta = RouteMetadata.from_metadata(llm.chat(QUESTION).additional_kwargs)
    assert provider.count(MINI) == 3 and meta.model.startswith(MINI)  # the probe answered
    assert breakers.state(MINI) == "closed"


def test_a_stream_broken_after_text_continues_on_the_equivalent(router, provider):
    provider.script(MINI, "break:3")  # role chunk and two words, then the connection drops
    llm = RoutingLLM(router=router, models=llms(provider))
    with track_costs() as costs:
        chunks = list(llm.stream_chat(QUESTION))
    text = "".join(chunk.delta or "" for chunk in chunks)
    assert text == f"answer from answer from {OTHER}"
    assert chunks[-1].message.content == text  # the running text spans both attempts
    first, last = (
        RouteMetadata.from_metadata(c.additional_kwargs) for c in (chunks[0], chunks[-1])
    )
    assert first.model.startswith(MINI) and last.model.startswith(OTHER)
    assert provider.models_asked() == [MINI, OTHER]
    continuation = provider.requests[1].body["messages"]
    assert continuation[-2] == {"role": "assistant", "content": "answer from "}
    assert "cut off" in str(continuation[-1]["content"])
    records = costs.records()
    assert [(r.route, r.error is not None) for r in records] == [("small", True), ("small", False)]
    assert records[0].model.startswith(MINI) and records[1].model.startswith(OTHER)
    assert not records[0].measured  # the broken stream was paid for, its usage unknown
    assert records[1].input_tokens > 0 and records[1].cost is not None


async def test_an_async_stream_broken_after_text_continues_on_the_equivalent(router, provider):
    provider.script(MINI, "break:3")
    llm = RoutingLLM(router=router, models=llms(provider))
    chunks = [chunk async for chunk in await llm.astream_chat(QUESTION)]
    assert "".join(c.delta or "" for c in chunks) == f"answer from answer from {OTHER}"
    assert chunks[-1].message.content == f"answer from answer from {OTHER}"
    assert provider.models_asked() == [MINI, OTHER]


def test_a_stream_broken_on_the_last_model_raises_its_break(router, provider):
    provider.script(LARGE, "break:3")
    llm = RoutingLLM(router=router, models=llms(provider))
    received = []
    with pytest.raises(Exception, match=r"incomplete chunked read"):
        for chunk in llm.stream_chat(QUESTION, route="large"):
            received.append(chunk.delta)
    assert "".join(received) == "answer from " and provider.models_asked() == [LARGE]
