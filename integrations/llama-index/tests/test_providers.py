"""RoutingLLM with the real ``llama_index.llms.openai.OpenAI`` against the local fake provider.

The root conftest's ``provider`` fixture (``tests/provider_server.py``) scripts rate
limits, hangs, broken and empty streams per model and counts every request; behaviour is
asserted through those counts and the order of requests, never timings.
"""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.langroute import RouteMetadata, RoutingLLM, track_costs
from llama_index.llms.langroute.testing import MockProviderLLM
from llama_index.llms.openai import OpenAI

SMALL, LARGE = "gpt-4o-mini", "gpt-4o"
SMALL_SERVED, LARGE_SERVED = "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"
QUESTION = [ChatMessage(role="user", content="what is the capital of france")]  # -> small


def openai_llms(provider, **options) -> dict[str, OpenAI]:
    return {
        route: OpenAI(model=name, api_base=provider.openai_url, api_key="test", **options)
        for route, name in (("small", SMALL), ("large", LARGE))
    }


def text_of(chunks) -> str:
    return "".join(chunk.delta or "" for chunk in chunks)


# ---------------------------------------------------------------- item 1: timeout, retries
def test_max_retries_reaches_the_llm_so_a_429_escalates_at_once(router, provider):
    provider.script(SMALL, "429")
    llm = RoutingLLM(router=router, models=openai_llms(provider), max_retries=0)
    response = llm.chat(QUESTION)
    assert provider.models_asked() == [SMALL, LARGE]
    assert RouteMetadata.from_metadata(response.additional_kwargs).escalated_from == "small"


async def test_timeout_reaches_the_llm_so_a_hang_escalates(router, provider):
    provider.script(SMALL, "hang")
    llm = RoutingLLM(router=router, models=openai_llms(provider), timeout=0.3, max_retries=0)
    response = await llm.achat(QUESTION)
    assert provider.models_asked() == [SMALL, LARGE]
    assert response.additional_kwargs["langroute"]["route"] == "large"


def test_an_sdk_client_already_built_takes_the_settings(router, provider):
    models = openai_llms(provider)
    models["small"].chat(QUESTION)  # builds (and keeps) its SDK client with 3 retries
    provider.reset()
    provider.script(SMALL, "429")
    llm = RoutingLLM(router=router, models=models, max_retries=0)
    llm.chat(QUESTION)
    assert provider.models_asked() == [SMALL, LARGE]


def test_an_llm_without_the_settings_is_named_in_a_warning(router):
    models = {"small": MockProviderLLM(model=SMALL), "large": MockProviderLLM(model=LARGE)}
    with pytest.warns(UserWarning) as caught:
        RoutingLLM(router=router, models=models, timeout=1.0)
    assert [str(w.message).split(":")[0] for w in caught] == [
        "models['small'] (MockProviderLLM) has no 'timeout' setting",
        "models['large'] (MockProviderLLM) has no 'timeout' setting",
    ]


# ---------------------------------------------------------------- item 2: stream usage
def test_a_stream_asks_for_usage_and_is_priced(router, provider):
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    with track_costs() as ledger:
        assert text_of(llm.stream_chat(QUESTION)) == "answer from gpt-4o-mini"
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}
    (record,) = ledger.records()
    assert record.measured and record.output_tokens == 3 and record.cost > 0


def test_a_non_streamed_call_sends_no_stream_options(router, provider):
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    llm.chat(QUESTION)
    assert "stream_options" not in provider.requests[0].body


async def test_a_stream_without_usage_is_unmeasured_not_free(router, provider):
    provider.script(SMALL, "no_usage")
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    with track_costs() as ledger:
        chunks = [chunk async for chunk in await llm.astream_chat(QUESTION)]
    assert text_of(chunks) == "answer from gpt-4o-mini"
    (record,) = ledger.records()
    assert not record.measured and record.cost is None
    summary = ledger.summary()
    assert summary.unmeasured_calls == 1 and summary.savings is None


def test_an_agent_run_is_measured(router, provider):
    def opening_hours() -> str:
        """The store's opening hours."""
        return "9 to 5"

    llm = RoutingLLM(router=router, models=openai_llms(provider))
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=opening_hours)], llm=llm)

    async def run() -> str:
        return str(await agent.run(user_msg="what time does the store open"))

    with track_costs() as ledger:
        answer = asyncio.run(run())
    assert answer == "answer from gpt-4o-mini"
    records = ledger.records()
    assert len(records) == 2  # the tool call, then the answer
    assert all(r.output_tokens > 0 and r.cost > 0 and r.measured for r in records)
    assert [r.model for r in records] == [SMALL_SERVED, SMALL_SERVED]


# ---------------------------------------------------------------- item 3: escalated streams
def test_an_escalated_stream_that_breaks_records_every_paid_attempt(router, provider):
    provider.script(SMALL, "429")
    provider.script(LARGE, "break:3")
    llm = RoutingLLM(router=router, models=openai_llms(provider), max_retries=0)
    received = []
    with track_costs() as ledger, pytest.raises(Exception, match="incomplete chunked read"):
        for chunk in llm.stream_chat(QUESTION):
            received.append(chunk)
    assert text_of(received) == "answer from "
    records = ledger.records()
    assert [(r.route, r.model) for r in records] == [("small", SMALL), ("large", LARGE_SERVED)]
    assert "429" in records[0].error and "RemoteProtocolError" in records[1].error
    assert records[0].measured and not records[1].measured


# ---------------------------------------------------------------- item 4: served model names
def test_chat_and_stream_keep_the_dated_model_the_provider_served(router, provider):
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    with track_costs() as ledger:
        response = llm.chat(QUESTION)
        chunks = list(llm.stream_complete("what is the capital of france"))
    assert response.additional_kwargs["langroute"]["model"] == SMALL_SERVED
    assert chunks[-1].additional_kwargs["langroute"]["model"] == SMALL_SERVED
    assert [r.model for r in ledger.records()] == [SMALL_SERVED, SMALL_SERVED]


# ---------------------------------------------------------------- item 5: streams like chat
@pytest.mark.parametrize("step", ["empty", "break:0", "break:1"])
def test_a_stream_failing_before_any_text_escalates(router, provider, step):
    provider.script(SMALL, step)
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    chunks = list(llm.stream_chat(QUESTION))
    assert text_of(chunks) == "answer from gpt-4o"
    record = RouteMetadata.from_metadata(chunks[0].additional_kwargs)
    assert record.route == "large" and record.escalated_from == "small"
    assert provider.models_asked() == [SMALL, LARGE]


async def test_an_empty_async_stream_escalates(router, provider):
    provider.script(SMALL, "empty")
    llm = RoutingLLM(router=router, models=openai_llms(provider))
    chunks = [chunk async for chunk in await llm.astream_complete("hello how are you today")]
    assert text_of(chunks) == "answer from gpt-4o"
    assert chunks[0].additional_kwargs["langroute"]["escalated_from"] == "small"
    assert provider.models_asked() == [SMALL, LARGE]
