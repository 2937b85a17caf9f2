"""Learning in LlamaIndex: feedback by ledger record id, learning cascades, route then cascade."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.llms.langroute import CascadeLLM, CascadeResult, RoutingLLM, track_costs
from llama_index.llms.langroute.testing import MockProviderLLM

from langroute import ExemplarRouter
from langroute.scorers import RefusalDetector

REFUSAL = "I'm sorry, but I can't help with that."
HARD_QUERY = "prove that the square root of two is irrational"


@pytest.mark.parametrize("streaming", [False, True])
def test_thumbs_down_by_record_id_teaches_the_router(
    router: ExemplarRouter, llm: RoutingLLM, streaming: bool
) -> None:
    question = "what is the capital of france please"
    with track_costs(store_queries=True) as ledger:
        if streaming:
            chunks = list(llm.stream_complete(question))
            meta = chunks[-1].additional_kwargs["langroute"]
        else:
            meta = llm.chat([ChatMessage(role="user", content=question)]).additional_kwargs[
                "langroute"
            ]
    record = ledger.get(meta["record_id"])
    assert record.route == meta["route"] == "small" and record.query == question
    learned = router.learn_from_feedback(ledger, meta["record_id"], "bad", source="support")
    assert learned is not None and learned.route == "large"
    assert learned.metadata["judge"] == "support"
    assert router.route(question).route == "large"
    assert [r.verdict for r in ledger.records() if r.is_feedback] == ["bad"]


def test_queries_are_not_kept_unless_asked(router: ExemplarRouter, llm: RoutingLLM) -> None:
    with track_costs() as ledger:
        response = llm.complete("hello how are you")
    record_id = response.additional_kwargs["langroute"]["record_id"]
    assert ledger.get(record_id).query is None
    with pytest.raises(ValueError, match="store_queries=True"):
        router.learn_from_feedback(ledger, record_id, "good")


def _cascade(router: ExemplarRouter, cheap_script: list[str], **options: object) -> tuple:
    cheap = MockProviderLLM(model="gpt-4o-mini", script=cheap_script)
    strong = MockProviderLLM(model="gpt-4o", script=["A full proof."] * 3)
    cascade = CascadeLLM(
        tiers=[cheap, strong],
        tier_names=["small", "large"],
        scorer=RefusalDetector(),
        router=router,
        **options,
    )
    return cascade, cheap, strong


async def test_learning_cascade_turns_outcomes_into_exemplars(router: ExemplarRouter) -> None:
    cascade, _, _ = _cascade(router, [REFUSAL, "Hello!", REFUSAL], learn=True, route_past=False)
    cascade.complete("write a sonnet about databases")
    cascade.chat([ChatMessage(role="user", content="say good morning in french")])
    await cascade.acomplete("compose a fugue in words")
    learned = {ex.text: ex.route for ex in router.exemplars_by_source("cascade")}
    assert learned == {
        "write a sonnet about databases": "large",
        "say good morning in french": "small",
        "compose a fugue in words": "large",
    }
    assert cascade.learning.stats.learned == 3


@pytest.mark.parametrize("mode", ["complete", "stream_complete", "acomplete"])
async def test_route_then_cascade_skips_the_cheap_attempt(
    router: ExemplarRouter, mode: str
) -> None:
    cascade, cheap, strong = _cascade(
        router, ["Hi."], learn=True, route_past=True, route_past_at=0.8
    )
    with track_costs() as ledger:
        if mode == "complete":
            response = cascade.complete(HARD_QUERY)
        elif mode == "stream_complete":
            response = list(cascade.stream_complete(HARD_QUERY))[-1]
        else:
            response = await cascade.acomplete(HARD_QUERY)
    result = CascadeResult.from_response(response)
    assert result is not None and result.skipped == ["small"] and result.tier_name == "large"
    assert len(cheap.calls) == 0 and len(strong.calls) == 1
    assert cascade.learning.stats.routed_past == 1
    (record,) = ledger.records()
    assert record.route == "large" and record.metadata["skipped_tiers"] == ["small"]
    assert not record.escalated
    cascade.complete("hello how are you today")
    assert len(cheap.calls) == 1
