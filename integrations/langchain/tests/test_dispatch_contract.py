"""Every LangChain entry point obeys the core dispatcher's rules the same way.

``RoutingChatModel`` (invoke, ainvoke, stream, batch) and ``RouterMiddleware`` (sync and
async agents) read their request and hand it to one
:class:`~langroute.dispatch.dispatcher.RouteDispatcher`: no visible query -> the fallback
route (never an error, U+200B included), forced routes by route or model name, the
strongest route as the baseline, escalation to the next route on an error.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langroute.router.conversation import ConversationContext

from langchain_langroute import RouterMiddleware, RoutingChatModel
from langchain_langroute.testing import FakeTimeoutError, ScriptedChatModel

INVISIBLE = ["\u200b", "   ", "", "\u200b\u200c\ufeff\n", "\x00\x01"]
EASY = "what is the capital of france"
HARD = "prove that there are infinitely many primes"


def _record(message: AIMessage) -> dict:
    return message.response_metadata["langroute"]


def _chat_model_entry(mode: str):
    def run(router, small, large, text: str, **options) -> dict:
        llm = RoutingChatModel(router=router, models={"small": small, "large": large}, **options)
        if mode == "invoke":
            return _record(llm.invoke([HumanMessage(text)]))
        if mode == "stream":
            chunks = list(llm.stream([HumanMessage(text)]))
            return next(c.response_metadata["langroute"] for c in chunks if c.response_metadata)
        if mode == "batch":  # decided by one batched routing call, like a longer batch
            return _record(llm.batch([[HumanMessage(text)]])[0])
        raise AssertionError(mode)

    return run


def _middleware_entry(router, small, large, text: str, **options) -> dict:
    middleware = RouterMiddleware(router, {"small": small, "large": large}, **options)
    agent = create_agent(model=small, tools=[], middleware=[middleware])
    state = agent.invoke({"messages": [HumanMessage(text)]})
    return _record(state["messages"][-1])


ENTRIES = {
    "chat_model.invoke": _chat_model_entry("invoke"),
    "chat_model.stream": _chat_model_entry("stream"),
    "chat_model.batch": _chat_model_entry("batch"),
    "middleware": _middleware_entry,
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("text", INVISIBLE, ids=repr)
def test_no_visible_query_goes_to_the_fallback_route(entry, text, router, small, large):
    record = ENTRIES[entry](router, small, large, text)
    assert record["reason"] == "no_query"
    assert record["route"] == router.fallback


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("context", [None, ConversationContext()], ids=["plain", "conversation"])
def test_invisible_user_turn_in_conversation_mode_falls_back(entry, context, router, small, large):
    options = {"context": context} if context is not None else {}
    record = ENTRIES[entry](router, small, large, "\u200b", **options)
    assert (record["reason"], record["route"]) == ("no_query", router.fallback)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_the_router_decides_a_visible_query(entry, router, small, large):
    easy = ENTRIES[entry](router, small, large, EASY)
    hard = ENTRIES[entry](router, small, large, HARD)
    assert (easy["route"], hard["route"]) == ("small", "large")
    assert easy["baseline_route"] == hard["baseline_route"] == "large"
    assert easy["baseline_model"] == "gpt-4o"


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_an_error_escalates_to_the_next_route(entry, router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeTimeoutError("slow")})
    record = ENTRIES[entry](router, flaky, large, EASY)
    assert (record["route"], record["escalated"], record["escalated_from"]) == (
        "large",
        True,
        "small",
    )


@pytest.mark.parametrize("forced", ["large", "gpt-4o"])
def test_a_forced_route_by_route_or_model_name(forced, llm):
    record = _record(llm.invoke(EASY, model=forced))
    assert (record["route"], record["reason"]) == ("large", "forced")


def test_the_entry_points_share_one_dispatcher_class(llm, router, small, large):
    middleware = RouterMiddleware(router, {"small": small, "large": large})
    assert type(llm.dispatcher) is type(middleware.dispatcher)
    assert llm.dispatcher.route_models == middleware.dispatcher.route_models


async def test_async_paths_fall_back_on_invisible_text(router, small, large):
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    answer = await llm.ainvoke([HumanMessage("\u200b")])
    assert _record(answer)["reason"] == "no_query"
    middleware = RouterMiddleware(router, {"small": small, "large": large})
    agent = create_agent(model=small, tools=[], middleware=[middleware])
    state = await agent.ainvoke({"messages": [HumanMessage("\u200b")]})
    assert _record(state["messages"][-1])["reason"] == "no_query"


def test_cascade_rows_have_the_cores_fields():
    """A cascade's rows carry the fields the core's CascadeCall gives (as in LlamaIndex)."""
    from langroute.scorers import RefusalDetector

    from langchain_langroute import CascadeRunnable, CostCallbackHandler, get_cascade_result

    cascade = CascadeRunnable(
        [
            ScriptedChatModel(model="gpt-4o-mini", responses=["I'm sorry, but I can't help."]),
            ScriptedChatModel(model="gpt-4o", responses=["Sure."]),
        ],
        scorer=RefusalDetector(),
        tier_names=["small", "large"],
    )
    handler = CostCallbackHandler()
    answer = cascade.invoke("help me", config={"callbacks": [handler]})
    rejected, accepted = handler.ledger.records()
    assert [
        (r.kind, r.route, r.tier, r.accepted, r.escalated, r.escalated_from, r.reason)
        for r in (rejected, accepted)
    ] == [
        ("cascade", "small", 0, False, False, None, "cascade"),
        ("cascade", "large", 1, True, True, "small", "cascade"),
    ]
    assert rejected.metadata["cascade_reason"].startswith("rejected:")
    assert accepted.record_id == get_cascade_result(answer).record_id
    assert rejected.run_id == accepted.run_id == get_cascade_result(answer).call_id
