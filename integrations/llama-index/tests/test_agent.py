"""Tools through RoutingLLM: chat_with_tools, predict_and_call, structured output and agents."""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.bridge.pydantic import BaseModel
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.langroute import RouteMetadata, RoutingLLM
from llama_index.llms.langroute.testing import (
    MockProviderError,
    MockProviderLLM,
    ScriptedToolCall,
)

EASY_Q = "What is 6 times 7?"
HARD_Q = "Derive the gradient of the loss function step by step, then multiply 6 by 7."


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture
def tool() -> FunctionTool:
    return FunctionTool.from_defaults(fn=multiply)


@pytest.fixture
def openai_small() -> MockProviderLLM:
    return MockProviderLLM(model="gpt-4o-mini", api_format="openai")


@pytest.fixture
def anthropic_large() -> MockProviderLLM:
    return MockProviderLLM(model="claude-sonnet-4-5", api_format="anthropic")


@pytest.fixture
def mixed(router, openai_small, anthropic_large) -> RoutingLLM:
    """Two providers with different tool formats behind one routing LLM."""
    return RoutingLLM(router=router, models={"small": openai_small, "large": anthropic_large})


def test_each_route_gets_tools_in_its_own_format(mixed, openai_small, anthropic_large, tool):
    call = ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7})
    openai_small.script = [call]
    anthropic_large.script = [call]

    easy = mixed.chat_with_tools([tool], user_msg=EASY_Q)
    hard = mixed.chat_with_tools([tool], user_msg=HARD_Q)

    assert openai_small.calls[0].kwargs["tools"][0]["type"] == "function"
    assert openai_small.calls[0].kwargs["tools"][0]["function"]["name"] == "multiply"
    assert anthropic_large.calls[0].kwargs["tools"][0]["name"] == "multiply"
    assert "input_schema" in anthropic_large.calls[0].kwargs["tools"][0]
    # tool calls are read back by the LLM that answered, in its own format
    for response in (easy, hard):
        (selection,) = mixed.get_tool_calls_from_response(response)
        assert (selection.tool_name, selection.tool_kwargs) == ("multiply", {"a": 6, "b": 7})
    assert "tool_calls" in easy.message.additional_kwargs  # OpenAI style
    assert hard.message.blocks[0].block_type == "tool_call"  # Anthropic style


def test_tool_call_escalation_reconverts_the_tools(router, anthropic_large, tool):
    small = MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("503")])
    anthropic_large.script = [ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7})]
    llm = RoutingLLM(router=router, models={"small": small, "large": anthropic_large})
    response = llm.chat_with_tools([tool], user_msg=EASY_Q)
    assert small.calls[0].kwargs["tools"][0]["type"] == "function"
    assert anthropic_large.calls[0].kwargs["tools"][0]["name"] == "multiply"
    assert RouteMetadata.from_metadata(response.additional_kwargs).escalated_from == "small"
    assert llm.get_tool_calls_from_response(response)[0].tool_kwargs == {"a": 6, "b": 7}


def test_predict_and_call_runs_the_tool(mixed, openai_small, tool):
    openai_small.script = [ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7})]
    result = mixed.predict_and_call([tool], user_msg=EASY_Q)
    assert result.response == "42"
    assert result.sources[0].tool_name == "multiply"


def test_a_route_forced_for_a_tool_call(mixed, openai_small, anthropic_large, tool):
    anthropic_large.script = [ScriptedToolCall(name="multiply", kwargs={"a": 1, "b": 2})]
    response = mixed.chat_with_tools([tool], user_msg=EASY_Q, route="large")
    assert not openai_small.calls
    assert RouteMetadata.from_metadata(response.additional_kwargs).reason == "forced"
    assert "route" not in anthropic_large.calls[0].kwargs


def test_tools_need_every_route_to_call_functions(router, tool):
    llm = RoutingLLM(
        router=router,
        models={
            "small": MockProviderLLM(model="gpt-4o-mini"),
            "large": MockProviderLLM(model="gpt-4o", function_calling=False),
        },
    )
    assert llm.metadata.is_function_calling_model is False


class Invoice(BaseModel):
    """An invoice total."""

    total: int


def test_structured_predict_routes_on_the_question(mixed, openai_small, anthropic_large):
    anthropic_large.script = [ScriptedToolCall(name="Invoice", kwargs={"total": 1200})]
    prompt = PromptTemplate("Context: {context_str}\nQuestion: {query_str}")
    result = mixed.structured_predict(
        Invoice,
        prompt,
        context_str="what is the capital of france? hello how are you " * 5,
        query_str="Analyse the legal implications of the warranty clause in depth.",
    )
    assert result == Invoice(total=1200)
    assert not openai_small.calls
    assert anthropic_large.calls[0].kwargs["tools"][0]["name"] == "Invoice"


async def test_astructured_predict(mixed, openai_small):
    openai_small.script = [ScriptedToolCall(name="Invoice", kwargs={"total": 7})]
    prompt = PromptTemplate("{query_str}")
    result = await mixed.astructured_predict(Invoice, prompt, query_str="hello, how are you?")
    assert result.total == 7
    assert openai_small.calls[0].method == "achat"


def test_stream_structured_predict_keeps_the_route_while_streaming(
    mixed, openai_small, anthropic_large
):
    openai_small.script = [ScriptedToolCall(name="Invoice", kwargs={"total": 3})]
    prompt = PromptTemplate("Context: {context_str}\nQ: {query_str}")
    partials = list(
        mixed.stream_structured_predict(
            Invoice,
            prompt,
            context_str="prove the theorem; derive the gradient step by step " * 5,
            query_str="what is the capital of france",
        )
    )
    assert partials[-1].total == 3
    assert not anthropic_large.calls


async def test_function_agent_runs_a_tool_through_the_routing_llm(
    mixed, openai_small, anthropic_large, tool, events
):
    openai_small.script = [ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7})]
    agent = FunctionAgent(tools=[tool], llm=mixed, system_prompt="You are a calculator.")
    result = await agent.run(user_msg=EASY_Q)

    assert str(result) == "Answer from gpt-4o-mini. The tool returned 42."
    assert result.tool_calls[0].tool_name == "multiply"
    assert result.tool_calls[0].tool_output.content == "42"
    # two model turns (tool call, answer), both routed on the user's question
    assert [c.method for c in openai_small.calls] == ["astream_chat", "astream_chat"]
    assert not anthropic_large.calls
    selected = events.of("RouteSelectedEvent")
    assert [(e.route, e.query) for e in selected] == [("small", EASY_Q), ("small", EASY_Q)]
    assert len(events.of("LLMChatStartEvent")) == 2


async def test_function_agent_on_the_anthropic_route(mixed, openai_small, anthropic_large, tool):
    anthropic_large.script = [ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7})]
    agent = FunctionAgent(tools=[tool], llm=mixed, streaming=False)
    result = await agent.run(user_msg=HARD_Q)
    assert str(result) == "Answer from claude-sonnet-4-5. The tool returned 42."
    assert [c.method for c in anthropic_large.calls] == ["achat", "achat"]
    assert not openai_small.calls


async def test_react_agent_routes_on_the_question_not_on_observations(router, tool, events):
    small = MockProviderLLM(
        model="gpt-4o-mini",
        function_calling=False,
        script=[
            'Thought: I need to multiply.\nAction: multiply\nAction Input: {"a": 6, "b": 7}',
            "Thought: I can answer without using any more tools.\nAnswer: 42",
        ],
    )
    large = MockProviderLLM(model="gpt-4o", function_calling=False)
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    agent = ReActAgent(tools=[tool], llm=llm)
    result = await agent.run(user_msg=EASY_Q)
    assert str(result) == "42"
    assert len(small.calls) == 2 and not large.calls
    # the second turn ends with the observation (a user message); the router skipped it
    assert small.calls[1].messages[-1].content.startswith("Observation: 42")
    assert [e.query for e in events.of("RouteSelectedEvent")] == [EASY_Q, EASY_Q]


def test_structured_predict_without_function_calling_parses_text(router):
    small = MockProviderLLM(model="gpt-4o-mini", function_calling=False, script=['{"total": 5}'])
    large = MockProviderLLM(model="gpt-4o", function_calling=False)
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    prompt = PromptTemplate("Context: {context_str}\nQuestion: {query_str}")
    result = llm.structured_predict(
        Invoice,
        prompt,
        context_str="prove the theorem; derive the gradient step by step " * 5,
        query_str="what is the capital of france",
    )
    assert result == Invoice(total=5)
    assert not large.calls
    assert "Invoice" in small.calls[0].messages[-1].content  # the schema was in the prompt


def test_as_structured_llm_routes_on_the_last_user_message(mixed, openai_small, anthropic_large):
    anthropic_large.script = [ScriptedToolCall(name="Invoice", kwargs={"total": 99})]
    structured = mixed.as_structured_llm(Invoice)
    response = structured.chat(
        [
            ChatMessage(role="system", content="hello, how are you? what time is it?"),
            ChatMessage(role="user", content=HARD_Q),
        ]
    )
    assert response.raw == Invoice(total=99)
    assert not openai_small.calls
