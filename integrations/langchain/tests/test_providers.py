"""RoutingChatModel with the real partner packages against the local fake provider.

``langchain_openai.ChatOpenAI`` and ``langchain_anthropic.ChatAnthropic`` talk HTTP to
``tests/provider_server.py`` (the root conftest's ``provider`` fixture), which scripts
rate limits, hangs, broken and empty streams per model and counts every request.
Behaviour is asserted through those counts and the order of requests, never timings.
"""

from __future__ import annotations

import json

import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langroute.costs import CostLedger, render_report
from langroute.dispatch.routed_call import RouteMetadata
from langroute.errors import AllRoutesFailedError
from rich.console import Console

from langchain_langroute import CostCallbackHandler, RoutingChatModel

SMALL, LARGE = "gpt-4o-mini", "gpt-4o"
SMALL_SERVED, LARGE_SERVED = "gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"
QUESTION = "hello"  # routed to "small" by the test router


def openai_models(provider, **options) -> dict[str, ChatOpenAI]:
    return {
        route: ChatOpenAI(model=name, base_url=provider.openai_url, api_key="test", **options)
        for route, name in (("small", SMALL), ("large", LARGE))
    }


def anthropic_models(provider, **options) -> dict[str, ChatAnthropic]:
    names = (("small", "claude-3-5-haiku-latest"), ("large", "claude-sonnet-4-0"))
    return {
        route: ChatAnthropic(model=name, base_url=provider.anthropic_url, api_key="test", **options)
        for route, name in names
    }


def joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    return message


def rows(ledger: CostLedger) -> list[tuple]:
    return [(r.route, r.model, r.error is not None) for r in ledger.records()]


# ---------------------------------------------------------------- item 1: timeout, retries
def test_max_retries_reaches_the_openai_client_so_a_429_escalates_at_once(router, provider):
    provider.script(SMALL, "429")
    llm = RoutingChatModel(router=router, models=openai_models(provider), max_retries=0)
    answer = llm.invoke(QUESTION)
    assert provider.models_asked() == [SMALL, LARGE]
    assert RouteMetadata.from_metadata(answer.response_metadata).escalated_from == "small"


def test_timeout_reaches_the_openai_client_so_a_hang_escalates(router, provider):
    provider.script(SMALL, "hang")
    llm = RoutingChatModel(
        router=router, models=openai_models(provider), timeout=0.3, max_retries=0
    )
    answer = llm.invoke(QUESTION)
    assert provider.models_asked() == [SMALL, LARGE]
    meta = RouteMetadata.from_metadata(answer.response_metadata)
    assert meta.route == "large" and "Timeout" in meta.attempts[0].error


async def test_timeout_and_retries_reach_the_anthropic_client(router, provider):
    provider.script("claude-3-5-haiku-latest", "hang", "429")
    llm = RoutingChatModel(
        router=router, models=anthropic_models(provider), timeout=0.3, max_retries=0
    )
    first = await llm.ainvoke(QUESTION)  # the hang
    second = llm.invoke(QUESTION)  # the 429
    assert first.response_metadata["langroute"]["route"] == "large"
    assert second.response_metadata["langroute"]["route"] == "large"
    assert provider.models_asked() == [
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-0",
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-0",
    ]


def test_a_route_models_own_retry_setting_is_kept(router, provider):
    provider.script(SMALL, "429")
    models = openai_models(provider)
    models["small"] = ChatOpenAI(
        model=SMALL, base_url=provider.openai_url, api_key="test", max_retries=1
    )
    llm = RoutingChatModel(router=router, models=models, max_retries=0)
    llm.invoke(QUESTION)
    assert provider.models_asked() == [SMALL, SMALL, LARGE]


def test_a_model_without_a_timeout_setting_is_named_in_a_warning(router, small, large):
    with pytest.warns(UserWarning) as caught:
        RoutingChatModel(router=router, models={"small": small, "large": large}, timeout=1.0)
    assert [str(w.message).split(":")[0] for w in caught] == [
        "models['small'] (ScriptedChatModel) has no 'timeout' setting",
        "models['large'] (ScriptedChatModel) has no 'timeout' setting",
    ]


# ---------------------------------------------------------------- item 2: stream usage
def test_a_stream_asks_for_usage_and_is_priced(router, provider):
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    message = joined(list(llm.stream(QUESTION, config={"callbacks": [handler]})))
    assert provider.requests[0].body["stream_options"] == {"include_usage": True}
    assert message.usage_metadata["output_tokens"] == 3
    (record,) = handler.ledger.records()
    assert record.measured and record.output_tokens == 3 and record.cost > 0


def test_a_stream_without_usage_is_unmeasured_not_free(router, provider):
    provider.script(SMALL, "no_usage")  # a compatible server that ignores include_usage
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    list(llm.stream(QUESTION, config={"callbacks": [handler]}))
    (record,) = handler.ledger.records()
    assert not record.measured
    assert record.cost is None and record.baseline_cost is None
    summary = handler.ledger.summary()
    assert summary.unmeasured_calls == 1 and summary.unpriced_calls == 0
    assert summary.savings is None and summary.baseline_cost is None
    console = Console(width=160, record=True)
    console.print(render_report(summary))
    assert "1 calls unmeasured" in console.export_text()


def test_a_models_own_stream_usage_choice_is_kept(router, provider):
    models = openai_models(provider)
    models["small"] = ChatOpenAI(
        model=SMALL, base_url=provider.openai_url, api_key="test", stream_usage=False
    )
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=models)
    list(llm.stream(QUESTION, config={"callbacks": [handler]}))
    assert "stream_options" not in provider.requests[0].body
    assert handler.ledger.summary().unmeasured_calls == 1


# ---------------------------------------------------------------- item 3: escalated streams
def test_an_escalated_stream_that_breaks_records_every_paid_attempt(router, provider):
    provider.script(SMALL, "429")
    provider.script(LARGE, "break:3")  # role chunk and two words, then the connection drops
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider), max_retries=0)
    received = []
    with pytest.raises(Exception, match="incomplete chunked read"):
        for chunk in llm.stream(QUESTION, config={"callbacks": [handler]}):
            received.append(chunk.content)
    assert "".join(received) == "answer from "
    records = handler.ledger.records()
    assert [(r.route, r.model) for r in records] == [("small", SMALL), ("large", LARGE)]
    assert "429" in records[0].error and "RemoteProtocolError" in records[1].error
    assert records[0].measured and not records[1].measured  # the large one was paid for
    assert records[1].escalated and records[1].escalated_from == "small"


async def test_an_escalated_async_stream_that_breaks_records_every_paid_attempt(router, provider):
    provider.script(SMALL, "500")
    provider.script(LARGE, "break:3")
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider), max_retries=0)
    with pytest.raises(Exception, match="incomplete chunked read"):
        async for _ in llm.astream(QUESTION, config={"callbacks": [handler]}):
            pass
    records = handler.ledger.records()
    assert [(r.route, r.model) for r in records] == [("small", SMALL), ("large", LARGE)]
    assert "500" in records[0].error and "RemoteProtocolError" in records[1].error


def test_an_escalated_call_failing_with_another_error_records_both_attempts(router, provider):
    provider.script(SMALL, "429")
    provider.script(LARGE, "500")
    handler = CostCallbackHandler()
    llm = RoutingChatModel(
        router=router,
        models=openai_models(provider),
        max_retries=0,
        escalate_on=(openai.RateLimitError,),
    )
    with pytest.raises(openai.InternalServerError):
        llm.invoke(QUESTION, config={"callbacks": [handler]})
    records = handler.ledger.records()
    assert [(r.route, r.model) for r in records] == [("small", SMALL), ("large", LARGE)]
    assert "429" in records[0].error and "500" in records[1].error


# ---------------------------------------------------------------- item 4: served model names
def test_invoke_keeps_the_dated_model_the_provider_served(router, provider):
    usage = UsageMetadataCallbackHandler()
    costs = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    answer = llm.invoke(QUESTION, config={"callbacks": [usage, costs]})
    assert answer.response_metadata["model_name"] == SMALL_SERVED
    assert answer.response_metadata["langroute"]["model"] == SMALL_SERVED
    assert list(usage.usage_metadata) == [SMALL_SERVED]
    assert [r.model for r in costs.ledger.records()] == [SMALL_SERVED]


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_stream_keeps_the_dated_model_the_provider_served(router, provider, family):
    models = openai_models(provider) if family == "openai" else anthropic_models(provider)
    served = SMALL_SERVED if family == "openai" else "claude-3-5-haiku-20241022"
    usage = UsageMetadataCallbackHandler()
    costs = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=models)
    message = joined(list(llm.stream(QUESTION, config={"callbacks": [usage, costs]})))
    assert message.response_metadata["model_name"] == served
    assert list(usage.usage_metadata) == [served]
    assert [r.model for r in costs.ledger.records()] == [served]
    requested = SMALL if family == "openai" else "claude-3-5-haiku-latest"
    assert message.content == f"answer from {requested}"


async def test_an_escalated_async_stream_names_the_model_that_answered(router, provider):
    provider.script(SMALL, "429")
    costs = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider), max_retries=0)
    chunks = [c async for c in llm.astream(QUESTION, config={"callbacks": [costs]})]
    assert joined(chunks).response_metadata["model_name"] == LARGE_SERVED
    assert [r.model for r in costs.ledger.records()] == [SMALL, LARGE_SERVED]


# ---------------------------------------------------------------- item 5: streams like invoke
def test_an_empty_stream_escalates(router, provider):
    provider.script(SMALL, "empty")
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    message = joined(list(llm.stream(QUESTION)))
    assert message.content == "answer from gpt-4o"
    meta = RouteMetadata.from_metadata(message.response_metadata)
    assert meta.route == "large" and meta.attempts[0].error.startswith("EmptyStreamError")
    assert provider.models_asked() == [SMALL, LARGE]


async def test_an_empty_async_stream_escalates(router, provider):
    provider.script(SMALL, "empty")
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    chunks = [chunk async for chunk in llm.astream(QUESTION)]
    assert joined(chunks).content == "answer from gpt-4o"


@pytest.mark.parametrize("step", ["break:0", "break:1"])
def test_a_stream_breaking_before_any_text_escalates(router, provider, step):
    provider.script(SMALL, step)  # break:1 sends the role chunk (no text) first
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    message = joined(list(llm.stream(QUESTION)))
    assert message.content == "answer from gpt-4o"
    assert "RemoteProtocolError" in message.response_metadata["langroute"]["attempts"][0]["error"]


def test_streaming_invoke_escalates_when_the_stream_breaks_before_text(router, provider):
    provider.script(SMALL, "break:1")
    llm = RoutingChatModel(router=router, models=openai_models(provider), streaming=True)
    assert llm.invoke(QUESTION).content == "answer from gpt-4o"
    assert provider.models_asked() == [SMALL, LARGE]


def test_route_models_with_streaming_on_answer_invoke_with_usage(router, provider):
    provider.script(SMALL, "break:1", "ok")
    costs = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider, streaming=True))
    escalated = llm.invoke(QUESTION)
    answer = llm.invoke(QUESTION, config={"callbacks": [costs]})
    assert escalated.content == "answer from gpt-4o"
    assert answer.content == "answer from gpt-4o-mini"
    assert answer.usage_metadata["output_tokens"] == 3
    assert answer.response_metadata["model_name"] == SMALL_SERVED
    assert [r.measured for r in costs.ledger.records()] == [True]


def test_a_streamed_tool_call_is_output_and_does_not_escalate(router, provider):
    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return "noon"

    provider.script(SMALL, "break:3")  # role chunk, the tool call's two chunks, then a drop
    llm = RoutingChatModel(router=router, models=openai_models(provider)).bind_tools([get_time])
    chunks = []
    with pytest.raises(Exception, match="incomplete chunked read"):
        for chunk in llm.stream(QUESTION):
            chunks.append(chunk)
    assert joined(chunks).tool_calls[0]["name"] == "get_time"
    assert provider.models_asked() == [SMALL]
    body = provider.requests[0].body
    assert json.dumps(body["tools"]).count("get_time") == 1


def test_every_route_failing_on_a_stream_raises_all_routes_failed(router, provider):
    provider.script(SMALL, "empty")
    provider.script(LARGE, "break:1")
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=openai_models(provider))
    with pytest.raises(AllRoutesFailedError):
        list(llm.stream(QUESTION, config={"callbacks": [handler]}))
    assert rows(handler.ledger) == [("small", SMALL, True), ("large", LARGE, True)]
