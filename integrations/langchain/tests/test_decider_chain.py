"""RoutingChatModel over a decider chain: stages, attachments, and the LLM router's cost."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langroute import ExemplarRouter
from langroute.chains.deciders import DeciderChain, HeuristicGate, LLMRouter
from langroute.embedders import HashingEmbedder
from langroute.models.scripted import ScriptedCompletionModel

from langchain_langroute import CostCallbackHandler, RoutingChatModel, track_costs

UNSURE = "zebra quantum marmalade"


def meta(message: Any) -> dict[str, Any]:
    return message.response_metadata["langroute"]


def chain_model(router, small, large, reply: str = "small") -> tuple[RoutingChatModel, Any]:
    # the same exemplars, with a similarity floor that makes UNSURE out of distribution
    knn = ExemplarRouter(
        routes=router.routes,
        exemplars=router.exemplars,
        embedder=HashingEmbedder(),
        k=3,
        min_similarity=0.3,
    )
    judge = ScriptedCompletionModel("gpt-4o-mini", reply=reply)
    gate = HeuristicGate([{"name": "vision", "route": "large", "attachments": True}])
    chain = DeciderChain(knn, gate=gate, llm=LLMRouter(judge, may_choose_cheaper=True))
    return RoutingChatModel(router=chain, models={"small": small, "large": large}), judge


def test_each_stage_decides_and_says_so(router, small, large) -> None:
    llm, judge = chain_model(router, small, large)
    picture = HumanMessage(
        [
            {"type": "text", "text": "hi, what is in this photo?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    )
    by_rule = meta(llm.invoke([picture]))
    assert (by_rule["route"], by_rule["reason"], by_rule["stage"]) == ("large", "rule", "rules")
    assert by_rule["stage_note"] == "rule 'vision' matched"
    by_llm = meta(llm.invoke(UNSURE))
    assert (by_llm["route"], by_llm["reason"], by_llm["stage"]) == ("small", "llm", "llm")
    assert len(by_llm["router_calls"]) == 1 and len(judge.calls) == 1
    chunks = list(llm.stream(UNSURE))
    assert meta(chunks[0])["stage"] == "llm"
    batch = llm.batch([UNSURE, "hi there how are you"])
    assert [meta(m)["stage"] for m in batch] == ["llm", "knn"]


def test_the_llm_routers_call_is_a_ledger_row_against_the_savings(router, small, large) -> None:
    llm, _ = chain_model(router, small, large)
    with track_costs() as ledger:
        llm.invoke(UNSURE)
        llm.invoke("hi there, how are you?")
    records = ledger.records()
    routed = [r for r in records if r.route == "router"]
    assert len(routed) == 1 and routed[0].metadata["role"] == "router"
    assert routed[0].model == "gpt-4o-mini" and routed[0].cost is not None
    answer = next(r for r in records if r.run_id == routed[0].run_id and r.route != "router")
    assert answer.route == "small" and answer.metadata["stage"] == "llm"
    summary = ledger.summary()
    assert summary.requests == 2
    assert summary.cost is not None and summary.baseline_cost is not None
    assert summary.savings is not None
    assert summary.savings < summary.baseline_cost - (summary.cost - routed[0].cost)


def test_async_calls_record_the_router_call_once(router, small, large) -> None:
    import asyncio

    llm, _ = chain_model(router, small, large)
    handler = CostCallbackHandler()

    async def run() -> None:
        await llm.ainvoke(UNSURE, config={"callbacks": [handler]})

    asyncio.run(run())
    assert [r.route for r in handler.ledger.records()] == ["router", "small"]
