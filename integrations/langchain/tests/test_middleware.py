"""RouterMiddleware: per-call routing inside LangChain v1 agents (create_agent)."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langroute.errors import AllRoutesFailedError, RouterConfigError

from langchain_langroute import ROUTE_EVENT, RouterMiddleware, track_costs
from langchain_langroute.testing import FakeProviderError, FakeRateLimitError, ScriptedChatModel


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"It is sunny in {city}."


def agent_for(router, small, large, **options):
    middleware = RouterMiddleware(router, {"small": small, "large": large}, **options)
    return create_agent(model=small, tools=[get_weather], middleware=[middleware])


def test_models_must_cover_the_routes(router, small):
    with pytest.raises(RouterConfigError, match="routes without a model"):
        RouterMiddleware(router, {"small": small})


def test_agent_loop_runs_on_the_routed_model(router, small, large):
    agent = agent_for(router, small, large)
    question = "prove that there are infinitely many primes, use 'get_weather' in 'Oslo'"
    state = agent.invoke({"messages": [HumanMessage(question)]})
    messages = state["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    ai = [m for m in messages if m.type == "ai"]
    assert all(m.response_metadata["langroute"]["route"] == "large" for m in ai)
    assert all(m.response_metadata["model_name"] == "gpt-4o" for m in ai)
    assert large.call_count == 2
    assert small.call_count == 0
    # the tools reached the routed model in its own (OpenAI) format
    assert large.calls[0]["kwargs"]["tools"][0]["function"]["name"] == "get_weather"


def test_easy_question_stays_on_the_small_model(router, small, large):
    agent = agent_for(router, small, large)
    state = agent.invoke({"messages": [HumanMessage("what is the capital of france")]})
    assert state["messages"][-1].response_metadata["langroute"]["route"] == "small"
    assert large.call_count == 0


def test_usage_is_counted_once(router, small, large):
    agent = agent_for(router, small, large)
    with get_usage_metadata_callback() as cb:
        state = agent.invoke({"messages": [HumanMessage("weather in 'Rome'")]})
    ai = [m for m in state["messages"] if m.type == "ai"]
    assert cb.usage_metadata["gpt-4o-mini"]["total_tokens"] == sum(
        m.usage_metadata["total_tokens"] for m in ai
    )


def test_escalation_and_cost_records(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    agent = agent_for(router, flaky, large)
    with track_costs() as ledger:
        state = agent.invoke({"messages": [HumanMessage("what is the capital of france")]})
    first_ai = state["messages"][1]
    record = first_ai.response_metadata["langroute"]
    assert record["route"] == "large"
    assert record["escalated_from"] == "small"
    assert record["attempts"][0]["error"] == "FakeRateLimitError: 429"
    records = ledger.records()
    assert [(r.route, r.error is not None, r.escalated) for r in records[:2]] == [
        ("small", True, False),
        ("large", False, True),
    ]
    assert records[1].baseline_model == "gpt-4o"
    assert records[1].output_tokens == first_ai.usage_metadata["output_tokens"]


def test_all_routes_failing(router):
    small = ScriptedChatModel(model="gpt-4o-mini", fail_always=FakeProviderError("500"))
    large = ScriptedChatModel(model="gpt-4o", fail_always=FakeProviderError("503"))
    agent = agent_for(router, small, large)
    with pytest.raises(AllRoutesFailedError) as info:
        agent.invoke({"messages": [HumanMessage("hello")]})
    assert [route for route, _ in info.value.attempts] == ["small", "large"]


async def test_async_agent_and_route_event(router, small, large):
    agent = agent_for(router, small, large)
    events = [
        e
        async for e in agent.astream_events(
            {"messages": [HumanMessage("what is the capital of france")]}, version="v2"
        )
    ]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    # one decision per model call: the tool call, then the answer after the tool result
    assert [e["name"] for e in custom] == [ROUTE_EVENT, ROUTE_EVENT]
    assert [e["data"]["route"] for e in custom] == ["small", "small"]
    result = await agent.ainvoke({"messages": [HumanMessage("what is the capital of france")]})
    assert result["messages"][-1].response_metadata["langroute"]["route"] == "small"


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_an_interrupt_pauses_the_agent_without_escalating(router, path):
    from langgraph.errors import GraphInterrupt
    from langgraph.types import Interrupt

    pause = GraphInterrupt((Interrupt(value="approve the refund?"),))
    small = ScriptedChatModel(model="gpt-4o-mini", fail_always=pause)
    large = ScriptedChatModel(model="gpt-4o", responses=["never"])
    agent = agent_for(router, small, large)
    question = {"messages": [HumanMessage("what is the capital of france")]}
    with track_costs() as ledger:
        # the async path is awrap_model_call, whose escalation runs through Escalation.arun
        state = agent.invoke(question) if path == "sync" else await agent.ainvoke(question)
    assert [i.value for i in state["__interrupt__"]] == ["approve the refund?"]
    assert (small.call_count, large.call_count) == (1, 0)
    assert not any(r.escalated or r.route == "large" for r in ledger.records())
