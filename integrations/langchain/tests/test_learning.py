"""Learning in LangChain: feedback by ledger record id, learning cascades, route then cascade."""

from __future__ import annotations

import pytest
from langroute.scorers import RefusalDetector

from langchain_langroute import (
    CascadeRunnable,
    CostCallbackHandler,
    RoutingChatModel,
    get_cascade_result,
)
from langchain_langroute.testing import ScriptedChatModel

from .conftest import make_router

REFUSAL = "I'm sorry, but I can't help with that."
HARD = "prove that there are infinitely many primes"


def _routing(router) -> tuple[RoutingChatModel, ScriptedChatModel, ScriptedChatModel]:
    small = ScriptedChatModel(model="gpt-4o-mini", responses=["Hi!"])
    large = ScriptedChatModel(model="gpt-4o", responses=["Long answer."])
    return RoutingChatModel(router=router, models={"small": small, "large": large}), small, large


@pytest.mark.parametrize("streaming", [False, True])
def test_thumbs_down_by_record_id_teaches_the_router(streaming: bool) -> None:
    router = make_router()
    llm, _, _ = _routing(router)
    handler = CostCallbackHandler(store_queries=True)
    config = {"callbacks": [handler]}
    question = "hey, what is the capital of france today"
    if streaming:
        chunks = list(llm.stream(question, config))
        meta = chunks[0].response_metadata["langroute"]
    else:
        meta = llm.invoke(question, config).response_metadata["langroute"]
    record_id = meta["record_id"]
    handler.ledger.flush()
    record = handler.ledger.get(record_id)
    assert record.route == meta["route"] == "small" and record.query == question
    learned = router.learn_from_feedback(handler.ledger, record_id, "bad")
    assert learned is not None and learned.route == "large"
    assert learned.metadata["source"] == "feedback"
    feedback = [r for r in handler.ledger.records() if r.is_feedback]
    assert [(r.feedback_for, r.verdict) for r in feedback] == [(record_id, "bad")]
    # the same question now goes to the strong route
    assert router.route(question).route == "large"


def test_queries_are_not_kept_unless_asked() -> None:
    router = make_router()
    llm, _, _ = _routing(router)
    handler = CostCallbackHandler()
    answer = llm.invoke("hello", {"callbacks": [handler]})
    record_id = answer.response_metadata["langroute"]["record_id"]
    assert handler.ledger.get(record_id).query is None
    with pytest.raises(ValueError, match="store_queries=True"):
        router.learn_from_feedback(handler.ledger, record_id, "good")


def _cascade(router, cheap_answers: list[str], **options) -> tuple[CascadeRunnable, ...]:
    cheap = ScriptedChatModel(model="gpt-4o-mini", responses=cheap_answers)
    strong = ScriptedChatModel(model="gpt-4o", responses=["A full proof."])
    cascade = CascadeRunnable(
        [cheap, strong],
        scorer=RefusalDetector(),
        tier_names=["small", "large"],
        router=router,
        **options,
    )
    return cascade, cheap, strong


def test_learning_cascade_turns_outcomes_into_exemplars() -> None:
    router = make_router()
    cascade, _cheap, _strong = _cascade(router, [REFUSAL, "Hello!"], learn=True, route_past=False)
    cascade.invoke("write me a sonnet about distributed databases")
    cascade.invoke("say good morning in french")
    learned = {ex.text: ex for ex in router.exemplars_by_source("cascade")}
    rejected = learned["write me a sonnet about distributed databases"]
    accepted = learned["say good morning in french"]
    assert rejected.route == "large" and accepted.route == "small"
    assert rejected.metadata["scorer"] == "RefusalDetector" and rejected.metadata["score"] == 0.0
    assert cascade.learning is not None and cascade.learning.stats.learned == 2


async def test_async_learning_cascade_learns() -> None:
    router = make_router()
    cascade, _, _ = _cascade(router, [REFUSAL], learn=True, route_past=False)
    await cascade.ainvoke("compose a fugue in words")
    assert [ex.route for ex in router.exemplars_by_source("cascade")] == ["large"]


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke"])
async def test_route_then_cascade_skips_the_cheap_attempt(mode: str) -> None:
    router = make_router()
    cascade, cheap, strong = _cascade(
        router, ["Hi."], learn=True, route_past=True, route_past_at=0.8
    )
    handler = CostCallbackHandler()
    config = {"callbacks": [handler]}
    if mode == "invoke":
        answer = cascade.invoke(HARD, config)
    elif mode == "stream":
        chunks = list(cascade.stream(HARD, config))
        answer = chunks[0]
    else:
        answer = await cascade.ainvoke(HARD, config)
    result = get_cascade_result(answer)
    assert result is not None and result.skipped == ["small"] and result.tier_name == "large"
    assert cheap.call_count == 0 and strong.call_count == 1
    assert cascade.learning.stats.routed_past == 1 and cascade.learning.stats.calls_saved == 1
    handler.ledger.flush()
    (record,) = handler.ledger.records()
    assert record.reason == "routed_past" and record.route == "large"
    assert record.metadata["skipped_tiers"] == ["small"] and not record.escalated
    # an easy query still tries the cheap tier first
    cascade.invoke("hello")
    assert cheap.call_count == 1
    # confirming the router's own guess teaches nothing
    assert router.exemplars_by_source("cascade") == []
