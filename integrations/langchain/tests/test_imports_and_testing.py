"""Public API surface and the ScriptedChatModel test double."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool

import langchain_langroute
from langchain_langroute.query import last_human_message, message_text, recent_human_messages
from langchain_langroute.testing import FakeRateLimitError, ScriptedChatModel

EXPECTED_ALL = [
    "CASCADE_EVENT",
    "CASCADE_METADATA_KEY",
    "ROUTE_EVENT",
    "ROUTE_KEY",
    "CascadeAttempt",
    "CascadeResult",
    "CascadeRunnable",
    "CostCallbackHandler",
    "RouteMetadata",
    "RouterMiddleware",
    "RoutingChatModel",
    "__version__",
    "extract_logprobs",
    "get_cascade_result",
    "last_human_message",
    "llm_judge",
    "message_text",
    "recent_human_messages",
    "track_costs",
]


def test_all_is_curated_and_importable():
    assert sorted(langchain_langroute.__all__) == sorted(EXPECTED_ALL)
    for name in langchain_langroute.__all__:
        assert getattr(langchain_langroute, name) is not None
    with pytest.raises(AttributeError):
        langchain_langroute.DoesNotExist  # noqa: B018


def test_query_extractors():
    blocks = HumanMessage(
        content=[{"type": "text", "text": " Why? "}, {"type": "image", "url": "u"}]
    )
    assert message_text(blocks) == "Why?"
    assert last_human_message([HumanMessage("a"), AIMessage("b")]) == "a"
    assert last_human_message([AIMessage("only ai")]) is None
    assert recent_human_messages(2)([HumanMessage("a"), HumanMessage("b"), HumanMessage("c")]) == (
        "b\nc"
    )
    with pytest.raises(ValueError):
        recent_human_messages(0)


def test_fake_usage_on_invoke_and_exactly_the_last_chunk():
    fake = ScriptedChatModel(model="gpt-4o-mini", responses=["one two three"])
    message = fake.invoke("hi there")
    assert message.usage_metadata == {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}
    assert message.response_metadata["model_name"] == "gpt-4o-mini"
    chunks = list(fake.stream("hi there"))
    assert [bool(c.usage_metadata) for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c for c in chunks if "model_name" in c.response_metadata] == [chunks[-1]]
    assert chunks[-1].chunk_position == "last"


def test_fake_scripted_failures_and_cycling():
    fake = ScriptedChatModel(responses=["a", "b"], failures={2: FakeRateLimitError("429")})
    assert fake.invoke("x").content == "a"
    with pytest.raises(FakeRateLimitError):
        fake.invoke("x")
    assert fake.invoke("x").content == "a"  # the script cycles by call number
    assert fake.call_count == 3


def test_fake_tools_scripted_and_automatic():
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    scripted = AIMessage(
        "", tool_calls=[{"name": "add", "args": {"a": 1, "b": 1}, "id": "c1", "type": "tool_call"}]
    )
    fake = ScriptedChatModel(responses=[scripted])
    bound = fake.bind_tools([add])
    assert isinstance(bound, RunnableBinding)
    assert bound.invoke("anything").tool_calls[0]["args"] == {"a": 1, "b": 1}
    auto = ScriptedChatModel().bind_tools([add], tool_choice="add")
    assert auto.invoke("What is 3 + 4").tool_calls[0]["args"] == {"a": 3, "b": 4}
    after_tool = auto.invoke(
        [
            HumanMessage("What is 3 + 4"),
            AIMessage("", tool_calls=[]),
            ToolMessage("7", tool_call_id="1"),
        ]
    )
    assert after_tool.content == "The tool returned: 7"


async def test_fake_async_and_logprobs():
    fake = ScriptedChatModel(responses=["x y"], logprobs=True, logprob=-0.5)
    message = await fake.ainvoke("q")
    assert [e["logprob"] for e in message.response_metadata["logprobs"]["content"]] == [-0.5, -0.5]
    chunks = [c async for c in fake.astream("q")]
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert len(full.response_metadata["logprobs"]["content"]) == 2
