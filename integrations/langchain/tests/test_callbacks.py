"""CostCallbackHandler and track_costs: ledger figures, escalation, errors, concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langroute.costs import CostLedger, ModelPrice, Pricer, UnpricedModelWarning
from langroute.errors import AllRoutesFailedError
from langroute.scorers import RefusalDetector

from langchain_langroute import (
    CascadeRunnable,
    CostCallbackHandler,
    RoutingChatModel,
    get_cascade_result,
    llm_judge,
    track_costs,
)
from langchain_langroute.testing import FakeProviderError, FakeRateLimitError, ScriptedChatModel

EASY = "what is the capital of france"
HARD = "prove that there are infinitely many primes"

# Published list prices in USD per million tokens (input, cached input, output), as in
# genai-prices: gpt-4o-mini 0.15 / 0.075 / 0.60, gpt-4o 2.50 / 1.25 / 10.00.
PRICES = {"gpt-4o-mini": (0.15, 0.075, 0.60), "gpt-4o": (2.50, 1.25, 10.00)}


def by_hand(model: str, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    rate_in, rate_cached, rate_out = PRICES[model]
    return (
        (input_tokens - cached) * rate_in + cached * rate_cached + output_tokens * rate_out
    ) / 1_000_000


def test_ledger_figures_match_hand_computed_prices(llm):
    handler = CostCallbackHandler()
    easy = llm.invoke(EASY, config={"callbacks": [handler]})
    hard = llm.invoke(HARD, config={"callbacks": [handler]})
    small_rec, large_rec = handler.ledger.records()

    usage = easy.usage_metadata
    assert small_rec.framework == "langchain"
    assert small_rec.kind == "route"
    assert (small_rec.route, small_rec.model) == ("small", "gpt-4o-mini")
    assert (small_rec.input_tokens, small_rec.output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert small_rec.cost == pytest.approx(
        by_hand("gpt-4o-mini", usage["input_tokens"], usage["output_tokens"])
    )
    assert small_rec.baseline_model == "gpt-4o"
    assert small_rec.baseline_cost == pytest.approx(
        by_hand("gpt-4o", usage["input_tokens"], usage["output_tokens"])
    )
    assert small_rec.reason in ("vote", "scores")
    assert small_rec.latency_ms is not None and small_rec.latency_ms >= 0
    assert small_rec.escalated is False

    usage = hard.usage_metadata
    assert (large_rec.route, large_rec.model) == ("large", "gpt-4o")
    assert large_rec.cost == pytest.approx(
        by_hand("gpt-4o", usage["input_tokens"], usage["output_tokens"])
    )
    assert large_rec.baseline_cost == large_rec.cost

    summary = handler.ledger.summary(order=["small", "large"])
    assert summary.calls == 2
    assert summary.requests == 2
    assert summary.cost == pytest.approx(small_rec.cost + large_rec.cost)
    assert summary.savings == pytest.approx(small_rec.baseline_cost - small_rec.cost)
    assert summary.route("small").calls == 1


def test_cached_tokens_are_priced_at_the_cached_rate(router, large):
    small = ScriptedChatModel(model="gpt-4o-mini", cached_input_tokens=4)
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    handler = CostCallbackHandler()
    prompt = "what is the capital of france please tell me"
    answer = llm.invoke(prompt, config={"callbacks": [handler]})
    [record] = handler.ledger.records()
    assert record.cached_tokens == 4
    usage = answer.usage_metadata
    assert usage["input_token_details"]["cache_read"] == 4
    assert record.cost == pytest.approx(
        by_hand("gpt-4o-mini", usage["input_tokens"], usage["output_tokens"], cached=4)
    )


def test_streaming_calls_are_recorded_once(llm):
    handler = CostCallbackHandler()
    chunks = list(llm.stream(HARD, config={"callbacks": [handler]}))
    [record] = handler.ledger.records()
    [usage] = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert (record.route, record.model) == ("large", "gpt-4o")
    assert record.output_tokens == usage["output_tokens"]


def test_escalation_records_the_failed_attempt_and_the_answer(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    llm = RoutingChatModel(router=router, models={"small": flaky, "large": large})
    handler = CostCallbackHandler()
    answer = llm.invoke(EASY, config={"callbacks": [handler]})
    failed, answered = handler.ledger.records()
    assert failed.run_id == answered.run_id
    assert (failed.route, failed.model, failed.error) == (
        "small",
        "gpt-4o-mini",
        "FakeRateLimitError: 429",
    )
    assert failed.input_tokens == failed.output_tokens == 0
    assert failed.cost == 0.0
    assert answered.route == "large"
    assert answered.escalated is True
    assert answered.escalated_from == "small"
    assert answered.output_tokens == answer.usage_metadata["output_tokens"]
    summary = handler.ledger.summary()
    assert summary.requests == 1
    assert summary.escalation_rate == 1.0
    assert summary.errors == 1


def test_all_routes_failing_is_recorded_as_errors(router):
    small = ScriptedChatModel(model="gpt-4o-mini", fail_always=FakeProviderError("500"))
    large = ScriptedChatModel(model="gpt-4o", fail_always=FakeProviderError("503"))
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    handler = CostCallbackHandler()
    with pytest.raises(AllRoutesFailedError):
        llm.invoke(EASY, config={"callbacks": [handler]})
    records = handler.ledger.records()
    assert [(r.route, r.model, r.error) for r in records] == [
        ("small", "gpt-4o-mini", "FakeProviderError: 500"),
        ("large", "gpt-4o", "FakeProviderError: 503"),
    ]
    assert records[1].escalated is True


def test_unknown_model_costs_none_with_a_warning_and_overrides_price_it(router):
    small = ScriptedChatModel(model="acme-tiny-7b")
    large = ScriptedChatModel(model="acme-huge-70b")
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    handler = CostCallbackHandler()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llm.invoke(EASY, config={"callbacks": [handler]})
    unpriced = [str(w.message) for w in caught if w.category is UnpricedModelWarning]
    assert len(unpriced) == 2
    assert "acme-tiny-7b" in unpriced[0]
    assert "acme-huge-70b" in unpriced[1]
    [record] = handler.ledger.records()
    assert record.cost is None
    assert record.baseline_cost is None

    pricer = Pricer(
        {
            "acme-tiny-7b": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0),
            "acme-huge-70b": ModelPrice(input_per_mtok=10.0, output_per_mtok=20.0),
        }
    )
    priced = CostCallbackHandler(pricer=pricer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer = llm.invoke(EASY, config={"callbacks": [priced]})
    [record] = priced.ledger.records()
    usage = answer.usage_metadata
    assert record.cost == pytest.approx(
        (usage["input_tokens"] * 1.0 + usage["output_tokens"] * 2.0) / 1e6
    )
    assert record.baseline_cost == pytest.approx(
        (usage["input_tokens"] * 10.0 + usage["output_tokens"] * 20.0) / 1e6
    )


def test_plain_models_are_ignored_unless_record_all(llm):
    plain = ScriptedChatModel(model="gpt-4o")
    handler = CostCallbackHandler()
    plain.invoke("hi", config={"callbacks": [handler]})
    llm.invoke(EASY, config={"callbacks": [handler]})
    assert [r.route for r in handler.ledger.records()] == ["small"]
    everything = CostCallbackHandler(record_all=True)
    plain.invoke("hi", config={"callbacks": [everything]})
    [record] = everything.ledger.records()
    assert (record.route, record.model) == (None, "gpt-4o")


def test_track_costs_context_manager_in_a_chain(llm):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    with track_costs() as ledger:
        chain.invoke({"q": EASY})
        chain.invoke({"q": HARD})
    assert [r.route for r in ledger.records()] == ["small", "large"]
    chain.invoke({"q": EASY})  # outside the block: not recorded
    assert len(ledger) == 2


def test_track_costs_writes_jsonl_and_sqlite(llm, tmp_path):
    with track_costs(str(tmp_path / "costs.jsonl")) as ledger:
        llm.invoke(EASY)
    lines = (tmp_path / "costs.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["route"] == "small"
    with track_costs(str(tmp_path / "costs.db")):
        llm.invoke(HARD)
    reopened = CostLedger.open(tmp_path / "costs.db")
    assert [r.model for r in reopened.records()] == ["gpt-4o"]
    assert len(ledger) == 1


def test_concurrent_threads_are_recorded_without_loss(llm):
    handler = CostCallbackHandler()
    inputs = [EASY, HARD] * 25
    results = llm.batch(inputs, config={"callbacks": [handler], "max_concurrency": 16})
    threads = [
        threading.Thread(target=lambda: llm.invoke(EASY, config={"callbacks": [handler]}))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = handler.ledger.records()
    assert len(records) == 60
    assert sum(r.route == "small" for r in records) == 35
    assert len({r.run_id for r in records}) == 60
    expected = sum(r.usage_metadata["output_tokens"] for r in results)
    assert sum(r.output_tokens for r in records if r.run_id) >= expected


async def test_concurrent_async_calls_are_recorded_without_loss(llm):
    with track_costs() as ledger:
        answers = await asyncio.gather(
            *(llm.ainvoke(q) for q in [EASY, HARD] * 20),
            *(collect(llm.astream(EASY)) for _ in range(10)),
        )
    records = ledger.records()
    assert len(records) == 50
    assert sum(r.route == "large" for r in records) == 20
    assert sum(r.output_tokens for r in records) == sum(
        a.usage_metadata["output_tokens"] for a in answers
    )


async def collect(stream):
    full = None
    async for chunk in stream:
        full = chunk if full is None else full + chunk
    return full


def test_cascade_attempts_and_judge_calls_are_recorded():
    judge = ScriptedChatModel(model="gpt-4o-mini", responses=["Score: 2/10"])
    cheap = ScriptedChatModel(model="gpt-4o-mini", responses=["meh"])
    strong = ScriptedChatModel(model="gpt-4o", responses=["a thorough answer"])
    cascade = CascadeRunnable(
        [cheap, strong], scorer=llm_judge(judge), threshold=0.5, tier_names=["cheap", "strong"]
    )
    handler = CostCallbackHandler()
    answer = cascade.invoke("explain quicksort", config={"callbacks": [handler]})
    records = handler.ledger.records()
    assert [(r.kind, r.route, r.tier, r.accepted) for r in records] == [
        ("cascade", "cheap", 0, False),
        ("cascade", "judge", 0, None),
        ("cascade", "strong", 1, True),
    ]
    assert len({r.run_id for r in records}) == 1
    cheap_rec, judge_rec, strong_rec = records
    assert judge_rec.model == "gpt-4o-mini"
    assert judge_rec.baseline_model is None
    assert judge_rec.metadata["role"] == "judge"
    assert cheap_rec.baseline_model == "gpt-4o"
    assert cheap_rec.metadata["score"] == pytest.approx(0.2)
    assert strong_rec.escalated is True
    assert strong_rec.output_tokens == answer.usage_metadata["output_tokens"]
    assert strong_rec.cost == pytest.approx(
        by_hand("gpt-4o", strong_rec.input_tokens, strong_rec.output_tokens)
    )
    summary = handler.ledger.summary()
    assert summary.requests == 1
    assert summary.route("cheap").rejected == 1
    # paying for the cheap tier and the judge on top of the strong answer: negative savings
    assert summary.savings < 0


async def test_cascade_recorded_under_track_costs_async():
    cascade = CascadeRunnable(
        [
            ScriptedChatModel(model="gpt-4o-mini", responses=["I'm sorry, but I can't help."]),
            ScriptedChatModel(model="gpt-4o", responses=["Sure."]),
        ],
        scorer=RefusalDetector(),
    )
    with track_costs() as ledger:
        await cascade.ainvoke([HumanMessage("help me")])
    assert [(r.route, r.accepted) for r in ledger.records()] == [
        ("gpt-4o-mini", False),
        ("gpt-4o", True),
    ]


def test_records_carry_the_segment_and_the_nearest_exemplars_similarity(llm):
    with track_costs(segment_keys=["tenant"]) as ledger:
        llm.invoke(EASY, config={"metadata": {"tenant": "acme", "other": "x"}})
        llm.invoke(HARD)
    acme, anonymous = ledger.records()
    assert acme.metadata["tenant"] == "acme" and "other" not in acme.metadata
    assert "tenant" not in anonymous.metadata
    decision = llm.router.route(EASY)
    assert acme.metadata["max_similarity"] == pytest.approx(decision.max_similarity)


async def test_a_cascade_answer_names_its_ledger_row_for_feedback():
    def tiers():
        return [
            ScriptedChatModel(model="gpt-4o-mini", responses=["I'm sorry, but I can't help."]),
            ScriptedChatModel(model="gpt-4o", responses=["Sure."]),
        ]

    with track_costs() as ledger:
        answer = CascadeRunnable(tiers(), scorer=RefusalDetector()).invoke("help me")
        chunks = [c async for c in CascadeRunnable(tiers(), scorer=RefusalDetector()).astream("hi")]
    streamed = next(get_cascade_result(c) for c in chunks if get_cascade_result(c) is not None)
    for result in (get_cascade_result(answer), streamed):
        assert result is not None and result.record_id is not None
        row = ledger.get(result.record_id)
        assert (row.route, row.accepted, row.kind) == ("gpt-4o", True, "cascade")
    verdict = ledger.feedback(get_cascade_result(answer).record_id, "bad")
    assert (verdict.route, verdict.kind) == ("gpt-4o", "feedback")
    rows = [r for r in ledger.records() if not r.is_feedback]
    assert len({r.record_id for r in rows}) == len(rows) == 4
