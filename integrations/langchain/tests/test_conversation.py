"""RoutingChatModel and RouterMiddleware in multi-turn chats: context and sessions."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langroute.router.conversation import ConversationContext, SessionTracker

from langchain_langroute import RouterMiddleware, RoutingChatModel
from langchain_langroute.query import chat_turns

HARD = "prove that there are infinitely many primes"
FOLLOW_UP = "yes do it"
WINDOW = ConversationContext(strategy="window", window=2, decay=1.0)


def meta(message: Any) -> dict[str, Any]:
    return message.response_metadata["langroute"]


def history(*turns: str) -> list[Any]:
    messages: list[Any] = [SystemMessage("You are helpful.")]
    for i, turn in enumerate(turns):
        if i:
            messages.append(AIMessage("Sure."))
        messages.append(HumanMessage(turn))
    return messages


def test_chat_turns_keep_roles_and_text() -> None:
    turns = chat_turns(
        [SystemMessage("s"), HumanMessage("u"), AIMessage("a"), ToolMessage("t", tool_call_id="1")]
    )
    assert [(t.role, t.text) for t in turns] == [
        ("system", "s"),
        ("user", "u"),
        ("assistant", "a"),
        ("tool", "t"),
    ]


def test_context_routes_a_follow_up_with_its_conversation(router, small, large) -> None:
    plain = RoutingChatModel(
        router=router, models={"small": small, "large": large}, context=None, sessions=False
    )
    assert meta(plain.invoke(history(HARD, FOLLOW_UP)))["route"] == "small"
    default = RoutingChatModel(router=router, models={"small": small, "large": large})
    assert meta(default.invoke(history(HARD, FOLLOW_UP)))["route"] == "large"
    aware = RoutingChatModel(router=router, models={"small": small, "large": large}, context=WINDOW)
    answer = aware.invoke(history(HARD, FOLLOW_UP))
    assert meta(answer)["route"] == "large"
    assert meta(answer)["context"] == "window(2, decay 1)"
    chunks = list(aware.stream(history(HARD, FOLLOW_UP)))
    assert meta(chunks[0])["route"] == "large"


def test_session_from_config_metadata_holds_the_route(router, small, large) -> None:
    llm = RoutingChatModel(router=router, models={"small": small, "large": large}, sessions=True)
    config = {"metadata": {"session_id": "chat-1"}}
    first = llm.invoke([HumanMessage(HARD)], config=config)
    assert (meta(first)["route"], meta(first)["session"]["action"]) == ("large", "new")
    # the caller sends only the latest turn; the session remembers the topic
    second = llm.invoke([HumanMessage(FOLLOW_UP)], config=config)
    assert meta(second)["route"] == "large"
    assert meta(second)["session"] == {
        "key": "chat-1",
        "action": "sticky",
        "routed": "small",
        "previous": "large",
        "similarity": meta(second)["session"]["similarity"],
        "turn": 2,
    }
    # another session is not affected
    other = llm.invoke([HumanMessage(FOLLOW_UP)], config={"configurable": {"session_id": "c2"}})
    assert (meta(other)["route"], meta(other)["session"]["key"]) == ("small", "c2")


async def test_async_session_key_derived_from_history(router, small, large) -> None:
    llm = RoutingChatModel(
        router=router, models={"small": small, "large": large}, context=None, sessions=True
    )
    await llm.ainvoke(history(HARD))
    second = await llm.ainvoke(history(HARD, FOLLOW_UP))
    assert meta(second)["route"] == "large"
    assert meta(second)["session"]["action"] == "sticky"
    assert meta(second)["session"]["key"].startswith("derived:")


def test_batch_routes_each_conversation_with_its_context(router, small, large) -> None:
    llm = RoutingChatModel(router=router, models={"small": small, "large": large}, context=WINDOW)
    answers = llm.batch([history(HARD, FOLLOW_UP), history("hello")])
    assert [meta(a)["route"] for a in answers] == ["large", "small"]


def test_sessions_with_the_real_openai_client(router, provider) -> None:
    models = {
        route: ChatOpenAI(model=name, base_url=provider.openai_url, api_key="test")
        for route, name in (("small", "gpt-4o-mini"), ("large", "gpt-4o"))
    }
    llm = RoutingChatModel(router=router, models=models, sessions=SessionTracker())
    config = {"metadata": {"thread_id": "t-9"}}
    llm.invoke(history(HARD), config=config)
    llm.invoke(history(HARD, FOLLOW_UP), config=config)
    assert provider.models_asked() == ["gpt-4o", "gpt-4o"]


@tool
def lookup(term: str) -> str:
    """Look a term up."""
    return "hello hello hello thanks a lot"  # a tool result that looks like a small query


def test_agent_run_is_routed_on_the_user_request_and_held(router, small, large) -> None:
    middleware = RouterMiddleware(
        router, {"small": small, "large": large}, context=WINDOW, sessions=True
    )
    agent = create_agent(model=small, tools=[lookup], middleware=[middleware])
    config = {"configurable": {"thread_id": "agent-1"}}
    state = agent.invoke(
        {"messages": [HumanMessage(HARD + ", use 'lookup' on 'primes'")]}, config=config
    )
    ai = [m for m in state["messages"] if m.type == "ai"]
    assert [m.type for m in state["messages"]] == ["human", "ai", "tool", "ai"]
    assert all(meta(m)["route"] == "large" for m in ai)
    follow = agent.invoke({"messages": [*state["messages"], HumanMessage("hello")]}, config=config)
    last = follow["messages"][-1]
    assert meta(last)["route"] == "large"
    assert meta(last)["session"]["action"] in ("sticky", "kept")
    assert small.call_count == 0
