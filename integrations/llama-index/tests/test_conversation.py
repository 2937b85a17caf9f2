"""RoutingLLM in multi-turn chats and agents: conversation context and sessions."""

from __future__ import annotations

from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.langroute import RoutingLLM
from llama_index.llms.langroute.query import chat_turns
from llama_index.llms.langroute.testing import MockProviderLLM, ScriptedToolCall

from langroute.dispatch.routed_call import ROUTE_KEY
from langroute.router.conversation import ConversationContext

HARD = "prove that the square root of two is irrational"
FOLLOW_UP = "now translate it into spanish"
WINDOW = ConversationContext(strategy="window", window=2, decay=1.0)


def info(response: Any) -> dict[str, Any]:
    return response.additional_kwargs[ROUTE_KEY]


def conversation(*turns: str) -> list[ChatMessage]:
    messages = [ChatMessage(role="system", content="Be brief.")]
    for i, turn in enumerate(turns):
        if i:
            messages.append(ChatMessage(role="assistant", content="Sure."))
        messages.append(ChatMessage(role="user", content=turn))
    return messages


def test_chat_turns_map_roles() -> None:
    turns = chat_turns(
        [ChatMessage(role="user", content="u"), ChatMessage(role="tool", content="t")]
    )
    assert [(t.role, t.text) for t in turns] == [("user", "u"), ("tool", "t")]


def test_context_routes_a_follow_up_with_its_conversation(router, small, large) -> None:
    plain = RoutingLLM(
        router=router, models={"small": small, "large": large}, context=ConversationContext()
    )
    assert info(plain.chat(conversation(HARD, FOLLOW_UP)))["route"] == "small"
    aware = RoutingLLM(router=router, models={"small": small, "large": large}, context=WINDOW)
    answer = aware.chat(conversation(HARD, FOLLOW_UP))
    assert info(answer)["route"] == "large"
    assert info(answer)["context"] == "window(2, decay 1)"


def test_chat_engine_session_holds_the_route(router, small, large) -> None:
    llm = RoutingLLM(router=router, models={"small": small, "large": large}, sessions=True)
    engine = SimpleChatEngine.from_defaults(llm=llm)
    with llm.session("user-42"):
        first = engine.chat(HARD)
        second = engine.chat(FOLLOW_UP)
    assert len(large.calls) == 2 and not small.calls
    assert first.response == second.response == "Answer from gpt-4o."
    # the engine sends the whole history; the follow-up alone would go to "small"
    assert [m.role.value for m in large.calls[1].messages][-3:] == ["user", "assistant", "user"]
    engine.reset()
    with llm.session("user-43"):
        assert engine.chat(FOLLOW_UP).response == "Answer from gpt-4o-mini."  # a new session


async def test_async_session_key_derived_from_history(router, small, large) -> None:
    llm = RoutingLLM(
        router=router, models={"small": small, "large": large}, context=None, sessions=True
    )
    await llm.achat(conversation(HARD))
    second = await llm.achat(conversation(HARD, FOLLOW_UP))
    assert info(second)["route"] == "large"
    assert info(second)["session"]["action"] == "sticky"
    assert info(second)["session"]["key"].startswith("derived:")


async def test_agent_run_is_routed_on_the_user_request(router, events) -> None:
    def lookup(term: str) -> str:
        """Look a term up."""
        return "what is the capital of france hello how are you today"

    small = MockProviderLLM(model="gpt-4o-mini")
    large = MockProviderLLM(
        model="gpt-4o", script=[ScriptedToolCall(name="lookup", kwargs={"term": "roots"})]
    )
    llm = RoutingLLM(
        router=router, models={"small": small, "large": large}, context=WINDOW, sessions=True
    )
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=lookup)], llm=llm, streaming=False)
    result = await agent.run(user_msg=HARD)
    assert result.tool_calls[0].tool_name == "lookup"
    assert len(large.calls) == 2 and not small.calls
    selected = events.of("RouteSelectedEvent")
    assert [e.route for e in selected] == ["large", "large"]
    assert selected[1].decision.session is not None
