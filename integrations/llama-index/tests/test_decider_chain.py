"""RoutingLLM over a decider chain: stages, attachments, and the LLM router's cost."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.llms.types import ImageBlock, TextBlock
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import RoutingLLM, track_costs

from langroute.chains.deciders import DeciderChain, HeuristicGate, LLMRouter
from langroute.dispatch.routed_call import ROUTE_KEY
from langroute.models.scripted import ScriptedCompletionModel

UNSURE = "purple elephant yodels"


def info(response: Any) -> dict[str, Any]:
    return response.additional_kwargs[ROUTE_KEY]


def chain_llm(router, small, large) -> RoutingLLM:
    gate = HeuristicGate([{"name": "vision", "route": "large", "attachments": True}])
    chain = DeciderChain(
        router,
        gate=gate,
        llm=LLMRouter(
            ScriptedCompletionModel("gpt-4o-mini", reply="small"), may_choose_cheaper=True
        ),
    )
    return RoutingLLM(router=chain, models={"small": small, "large": large})


def test_each_stage_decides_and_the_router_call_is_recorded(router, small, large) -> None:
    llm = chain_llm(router, small, large)
    picture = ChatMessage(
        role="user",
        blocks=[TextBlock(text="hi, what is this?"), ImageBlock(url="https://example.com/a.png")],
    )
    with track_costs() as ledger:
        by_rule = info(llm.chat([picture]))
        by_llm = info(llm.chat([ChatMessage(role="user", content=UNSURE)]))
        streamed = list(llm.stream_complete(UNSURE))
        asyncio.run(llm.acomplete(UNSURE))
    assert (by_rule["route"], by_rule["stage"]) == ("large", "rules")
    assert (by_llm["route"], by_llm["reason"], by_llm["stage"]) == ("small", "llm", "llm")
    assert streamed and info(streamed[-1])["stage"] == "llm"
    records = ledger.records()
    routers = [r for r in records if r.route == "router"]
    assert len(routers) == 3  # one per request the LLM router decided, never twice
    assert all(r.overhead and r.cost is not None for r in routers)
    answered = {r.run_id for r in records if r.route == "small"}
    assert {r.run_id for r in routers} <= answered
