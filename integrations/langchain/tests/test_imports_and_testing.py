"""Public API surface and the ScriptedChatModel test double."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool

import langchain_langroute
from langchain_langroute.query import last_human_message, message_text, recent_human_messages
from langchain_langroute.testing import FakeRateLimitError, ScriptedChatModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ALL = {  # public name -> the module that defines it
    "CASCADE_EVENT": "langchain_langroute.cascade",
    "CASCADE_METADATA_KEY": "langchain_langroute.cascade",
    "ROUTE_EVENT": "langchain_langroute.events",
    "ROUTE_KEY": "langroute.dispatch.routed_call",
    "CascadeAttempt": "langroute.dispatch.cascade",
    "CascadeResult": "langroute.dispatch.cascade",
    "CascadeRunnable": "langchain_langroute.cascade",
    "CostCallbackHandler": "langchain_langroute.callbacks",
    "RouteMetadata": "langroute.dispatch.routed_call",
    "RouterMiddleware": "langchain_langroute.middleware",
    "RoutingChatModel": "langchain_langroute.chat_models",
    "__version__": "langchain_langroute",
    "extract_logprobs": "langchain_langroute.cascade",
    "get_cascade_result": "langchain_langroute.cascade",
    "last_human_message": "langchain_langroute.query",
    "llm_judge": "langchain_langroute.cascade",
    "message_text": "langchain_langroute.query",
    "recent_human_messages": "langchain_langroute.query",
    "track_costs": "langchain_langroute.callbacks",
}
CONSTANTS = {  # values other packages and users match on
    "CASCADE_EVENT": "langroute_cascade_attempt",
    "CASCADE_METADATA_KEY": "langroute_cascade",
    "ROUTE_EVENT": "langroute_route",
    "ROUTE_KEY": "langroute",
}


def test_all_is_curated_and_importable():
    assert sorted(langchain_langroute.__all__) == sorted(EXPECTED_ALL)
    for name, module_name in EXPECTED_ALL.items():
        value = getattr(langchain_langroute, name)
        # the package re-exports the defining module's object, not a copy or a stand-in
        assert value is getattr(importlib.import_module(module_name), name), name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__module__, value.__name__) == (module_name, name)
    assert {name: getattr(langchain_langroute, name) for name in CONSTANTS} == CONSTANTS
    with pytest.raises(AttributeError):
        langchain_langroute.DoesNotExist  # noqa: B018


def test_version_matches_the_distribution():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["name"] == "langchain-langroute"
    assert langchain_langroute.__version__ == data["project"]["version"]


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
