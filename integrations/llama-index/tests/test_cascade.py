"""CascadeLLM: tiers and a scorer, as a LlamaIndex LLM."""

from __future__ import annotations

import math

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import CASCADE_KEY, CascadeLLM, CascadeResult
from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderError, MockProviderLLM

from langroute.errors import AllRoutesFailedError, RouterConfigError
from langroute.scorers import (
    AllOf,
    MeanTokenProbabilityScorer,
    NonEmptyValidator,
    RefusalDetector,
    ScoreResult,
)

REFUSAL = "I'm sorry, but I can't help with that."
QUESTION = "How do I rotate the signing key?"


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def make(small_script, large_script=(), scorer=None, **kwargs) -> tuple[CascadeLLM, ...]:
    small = MockProviderLLM(model="gpt-4o-mini", script=list(small_script), usage=(1000, 100))
    large = MockProviderLLM(model="gpt-4o", script=list(large_script), usage=(1000, 100))
    cascade = CascadeLLM(
        tiers=[small, large],
        tier_names=["small", "large"],
        scorer=scorer or AllOf(NonEmptyValidator(), RefusalDetector()),
        **kwargs,
    )
    return cascade, small, large


def test_a_good_cheap_answer_is_kept():
    cascade, _, large = make(["Use the rotate command."])
    response = cascade.chat(user(QUESTION))
    assert response.message.content == "Use the rotate command."
    info = CascadeResult.from_response(response)
    assert (info.tier_name, info.tier, info.model) == ("small", 0, "gpt-4o-mini")
    assert info.rejected == [] and info.escalated is False
    assert info.reason == (
        "accepted: score 1 >= 0.5 (non_empty: 23 characters; refusal: no refusal)"
    )
    assert not large.calls
    assert response.raw["usage"]["prompt_tokens"] == 1000  # raw untouched


def test_a_refusal_escalates_and_says_why(events):
    cascade, _, _ = make([REFUSAL], ["Run keys rotate."])
    response = cascade.complete(QUESTION)
    assert response.text == "Run keys rotate."
    info = CascadeResult.from_response(response)
    assert (info.tier_name, info.tier) == ("large", 1)
    assert info.reason == "last tier: returned without scoring"
    assert info.escalated is True
    assert [a.tier_name for a in info.attempts] == ["small", "large"]
    (rejected,) = info.rejected
    assert (rejected.tier_name, rejected.accepted, rejected.score) == ("small", False, 0.0)
    assert rejected.passed is False
    assert rejected.reason.startswith("rejected: score 0 < 0.5 or failed (refusal: answer is")
    tiers = events.of("CascadeTierEvent")
    assert [(e.tier_name, e.accepted) for e in tiers] == [("small", False), ("large", True)]
    assert {e.call_id for e in tiers} == {info.call_id}
    # each attempt is one LLM call of its own tier: counted once each
    assert len(events.of("LLMCompletionEndEvent")) == 2


def test_graded_scorer_uses_the_threshold():
    confident = MockProviderLLM(model="gpt-4o-mini", token_logprob=math.log(0.9))
    hesitant = MockProviderLLM(model="gpt-4o-mini", token_logprob=math.log(0.3))
    large = MockProviderLLM(model="gpt-4o")
    scorer = MeanTokenProbabilityScorer()
    names = ["small", "large"]
    kept = CascadeLLM([confident, large], scorer, threshold=0.8, tier_names=names)
    assert CascadeResult.from_response(kept.chat(user(QUESTION))).tier_name == "small"
    moved = CascadeLLM([hesitant, large], scorer, threshold=0.8, tier_names=names)
    info = CascadeResult.from_response(moved.chat(user(QUESTION)))
    assert info.tier_name == "large"
    assert info.rejected[0].score == pytest.approx(0.3)


def test_a_validator_veto_rejects_even_a_high_score(events):
    def validator(passed: bool | None):
        def check(query: str, answer: str) -> ScoreResult:
            return ScoreResult(score=0.95, passed=passed, reason=f"schema check: {passed}")

        return check

    # the same score without a veto is accepted: only ``passed`` differs
    for passed in (None, True):
        cascade, _, large = make(["order: 42"], ['{"order": 42}'], scorer=validator(passed))
        kept = cascade.chat(user(QUESTION))
        assert CascadeResult.from_response(kept).tier_name == "small"
        assert not large.calls
    cascade, small, large = make(["order: 42"], ['{"order": 42}'], scorer=validator(False))
    response = cascade.chat(user(QUESTION))
    assert response.message.content == '{"order": 42}'
    info = CascadeResult.from_response(response)
    assert (info.tier_name, info.escalated) == ("large", True)
    (vetoed,) = info.rejected
    assert (vetoed.tier_name, vetoed.score, vetoed.passed) == ("small", 0.95, False)
    assert vetoed.reason == "rejected: score 0.95 < 0.5 or failed (schema check: False)"
    assert (len(small.calls), len(large.calls)) == (1, 1)
    tiers = events.of("CascadeTierEvent")
    assert [(e.tier_name, e.accepted) for e in tiers][-2:] == [("small", False), ("large", True)]


async def test_a_validator_veto_rejects_a_high_score_async_and_streaming():
    def veto(query: str, answer: str) -> ScoreResult:
        return ScoreResult(score=0.95, passed=False, reason="schema check failed")

    cascade, _, _ = make(["order: 42"], ["JSON one"], scorer=veto)
    response = await cascade.achat(user(QUESTION))
    assert CascadeResult.from_response(response).tier_name == "large"
    cascade, _, _ = make(["order: 42"], ["JSON two"], scorer=veto)
    chunks = list(cascade.stream_complete(QUESTION))
    assert "".join(c.delta for c in chunks) == "JSON two"


def test_a_plain_function_scores_against_the_question():
    seen = []

    def mentions_key(query: str, answer: str) -> bool:
        seen.append(query)
        return "key" in answer

    cascade, _, _ = make(["Restart it."], ["Rotate the key."], scorer=mentions_key)
    response = cascade.chat(
        [
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content=QUESTION),
        ]
    )
    assert response.message.content == "Rotate the key."
    assert seen == [QUESTION]


def test_a_failing_tier_counts_as_rejected(ledger_handler):
    cascade, _, _ = make([MockProviderError("503")], ["Fine."])
    response = cascade.chat(user(QUESTION))
    info = CascadeResult.from_response(response)
    assert info.tier_name == "large"
    assert info.rejected[0].error == "MockProviderError: 503"
    assert info.rejected[0].reason == "error: MockProviderError: 503"
    failed, answered = ledger_handler.ledger.records()
    assert failed.error == "MockProviderError: 503" and failed.accepted is False
    assert answered.accepted is True and answered.escalated_from == "small"


def test_a_rejected_answer_and_a_failing_last_tier_raise_with_both_reasons():
    boom = MockProviderError("overloaded")
    cascade, _, _ = make([REFUSAL], [boom])
    with pytest.raises(AllRoutesFailedError, match=r"small: rejected: score 0 < 0.5") as caught:
        cascade.chat(user(QUESTION))
    assert caught.value.attempts == [("large", boom)]
    assert "large: error: MockProviderError: overloaded" in str(caught.value)


def test_every_tier_failing_raises():
    boom_small, boom_large = MockProviderError("a"), MockProviderError("b")
    cascade, _, _ = make([boom_small], [boom_large])
    with pytest.raises(AllRoutesFailedError) as caught:
        cascade.complete(QUESTION)
    assert caught.value.attempts == [("small", boom_small), ("large", boom_large)]
    assert caught.value.__cause__ is boom_large


def test_cascade_attempts_are_in_the_ledger_with_costs(ledger_handler):
    cascade, _, _ = make([REFUSAL], ["ok"])
    cascade.chat(user(QUESTION))
    small_rec, large_rec = ledger_handler.ledger.records()
    assert (small_rec.kind, small_rec.tier, small_rec.accepted) == ("cascade", 0, False)
    assert (large_rec.kind, large_rec.tier, large_rec.accepted) == ("cascade", 1, True)
    assert small_rec.framework == large_rec.framework == "llama_index"
    # 1000 * 0.15e-6 + 100 * 0.6e-6 and 1000 * 2.5e-6 + 100 * 10e-6
    assert small_rec.cost == pytest.approx(0.00021)
    assert large_rec.cost == pytest.approx(0.0035)
    assert small_rec.baseline_cost == pytest.approx(0.0035)
    summary = ledger_handler.ledger.summary()
    assert summary.requests == 1
    assert summary.cost == pytest.approx(0.00371)
    assert summary.route("small").rejected == 1


def test_stream_replays_an_accepted_cheap_answer():
    cascade, _, large = make(["Use the rotate command."])
    chunks = list(cascade.stream_chat(user(QUESTION)))
    assert "".join(c.delta for c in chunks) == "Use the rotate command."
    assert {CascadeResult.from_response(c).tier_name for c in chunks} == {"small"}
    assert not large.calls


def test_stream_rejects_then_streams_the_last_tier_live(ledger_handler):
    cascade, small, _ = make([REFUSAL], ["Run keys rotate."])
    chunks = list(cascade.stream_complete(QUESTION))
    assert "".join(c.delta for c in chunks) == "Run keys rotate."
    assert all(c.additional_kwargs[CASCADE_KEY]["tier_name"] == "large" for c in chunks)
    assert [c.method for c in small.calls] == ["stream_complete"]
    assert [r.output_tokens for r in ledger_handler.ledger.records()] == [100, 100]


async def test_async_cascade(events):
    cascade, _, _ = make([REFUSAL, "Fine."], ["Run keys rotate."])
    response = await cascade.achat(user(QUESTION))
    assert CascadeResult.from_response(response).tier_name == "large"
    completed = await cascade.acomplete(QUESTION)
    assert CascadeResult.from_response(completed).tier_name == "small"
    assert len(events.of("CascadeTierEvent")) == 3


async def test_async_streams():
    cascade, _, _ = make([REFUSAL, REFUSAL], ["One.", "Two."])
    chat = [c.delta async for c in await cascade.astream_chat(user(QUESTION))]
    completion = [c.delta async for c in await cascade.astream_complete(QUESTION)]
    assert "".join(chat) == "One." and "".join(completion) == "Two."


async def test_async_scorer_is_awaited():
    calls = []

    async def judge(query: str, answer: str) -> ScoreResult:
        calls.append(answer)
        return ScoreResult(score=0.2, passed=None, reason="judge: weak")

    cascade, _, _ = make(["meh"], ["good"], scorer=judge, threshold=0.5)
    response = await cascade.achat(user(QUESTION))
    assert response.message.content == "good"
    assert calls == ["meh"]
    assert CascadeResult.from_response(response).rejected[0].reason == (
        "rejected: score 0.2 < 0.5 or failed (judge: weak)"
    )


def test_cascade_in_a_query_engine_scores_against_the_question():
    seen = []

    def scorer(query: str, answer: str) -> float:
        seen.append(query)
        return 1.0

    small = MockProviderLLM(model="gpt-4o-mini")
    cascade = CascadeLLM(
        tiers=[small, MockProviderLLM(model="gpt-4o")], tier_names=["small", "large"], scorer=scorer
    )
    index = VectorStoreIndex.from_documents(
        [Document(text="Keys are rotated monthly.")], embed_model=HashingEmbedding()
    )
    response = index.as_query_engine(llm=cascade).query(QUESTION)
    assert str(response) == "Answer from gpt-4o-mini."
    assert seen == [QUESTION]
    # the synthesizer's callback manager reached the tier
    assert small.callback_manager is cascade.callback_manager


def test_tiers_from_a_sequence_are_named_after_their_models():
    cascade = CascadeLLM(
        tiers=[MockProviderLLM(model="gpt-4o-mini"), MockProviderLLM(model="gpt-4o")],
        scorer=NonEmptyValidator(),
    )
    assert cascade.tier_names == ["gpt-4o-mini", "gpt-4o"]
    assert cascade.metadata.model_name == "cascade(gpt-4o-mini=gpt-4o-mini,gpt-4o=gpt-4o)"
    with pytest.raises(RouterConfigError, match="at least two tiers"):
        CascadeLLM(tiers=[MockProviderLLM()], scorer=NonEmptyValidator())
    # tiers sharing a model get distinct default names, as in the LangChain cascade
    shared = CascadeLLM(tiers=[MockProviderLLM(), MockProviderLLM()], scorer=NonEmptyValidator())
    model = shared.tiers[0].metadata.model_name
    assert shared.tier_names == [model, f"{model}#2"]
    with pytest.raises(RouterConfigError, match="two tiers are named"):
        CascadeLLM(
            tiers=[MockProviderLLM(), MockProviderLLM()],
            scorer=NonEmptyValidator(),
            tier_names=["a", "a"],
        )
    with pytest.raises(RouterConfigError, match="tier_names needs 2 names"):
        CascadeLLM(
            tiers=[MockProviderLLM(), MockProviderLLM()],
            scorer=NonEmptyValidator(),
            tier_names=["only"],
        )
    named = CascadeLLM(
        tiers=[MockProviderLLM(), MockProviderLLM()],
        scorer=NonEmptyValidator(),
        tier_names=["cheap", "strong"],
    )
    assert named.tier_names == ["cheap", "strong"]


def test_per_tier_thresholds_and_scoring_the_last_tier(ledger_handler):
    tiers = {
        name: MockProviderLLM(model=model, reply="ok")
        for name, model in (("small", "gpt-4o-mini"), ("medium", "gpt-4o"), ("large", "o3"))
    }
    # small must reach 1.1 (impossible), medium 0.5: a constant 0.7 is accepted at medium
    names = list(tiers)
    cascade = CascadeLLM(
        tiers=list(tiers.values()), tier_names=names, scorer=lambda q, a: 0.7, threshold=[1.0, 0.5]
    )
    with pytest.raises(RouterConfigError, match="one per scored tier"):
        CascadeLLM(
            tiers=list(tiers.values()),
            tier_names=names,
            scorer=lambda q, a: 0.7,
            threshold=[1.0, 0.5, 0.5, 0.5],
        )
    assert cascade.thresholds == [1.0, 0.5, 0.5]
    result = CascadeResult.from_response(cascade.complete(QUESTION))
    assert result.tier_name == "medium"
    assert result.attempts[0].reason.startswith("rejected: score 0.7 < 1")

    scored_last = CascadeLLM(
        tiers=[tiers["small"], tiers["large"]],
        tier_names=["small", "large"],
        scorer=lambda q, a: 0.1,
        score_last_tier=True,
    )
    last = CascadeResult.from_response(scored_last.complete(QUESTION))
    assert last.tier_name == "large" and last.attempts[-1].score == pytest.approx(0.1)
    assert last.reason.startswith("last tier: returned although score 0.1 < 0.5")
    streamed = list(scored_last.stream_complete(QUESTION))
    assert CascadeResult.from_response(streamed[-1]).attempts[-1].score == pytest.approx(0.1)


def test_tiers_keep_their_callback_managers_when_none_is_given():
    manager = CallbackManager([])
    small = MockProviderLLM(model="gpt-4o-mini", callback_manager=manager)
    CascadeLLM(tiers=[small, MockProviderLLM(model="gpt-4o")], scorer=NonEmptyValidator())
    assert small.callback_manager is manager


def test_callback_manager_is_shared_with_tiers():
    cascade, small, large = make([])
    manager = CallbackManager([])
    cascade.callback_manager = manager
    assert small.callback_manager is manager and large.callback_manager is manager


def test_streams_raise_like_complete_when_every_tier_fails_and_keep_the_call_record():
    cascade, _, _ = make([MockProviderError("a")], [MockProviderError("b")])
    with pytest.raises(AllRoutesFailedError) as caught:
        list(cascade.stream_complete(QUESTION))
    assert [(a.route, a.error) for a in caught.value.call.attempts] == [
        ("small", "MockProviderError: a"),
        ("large", "MockProviderError: b"),
    ]


async def test_async_stream_of_a_rejected_tier_then_the_last_tier_live():
    cascade, _, _ = make([REFUSAL], ["a fine answer"])
    chunks = [chunk async for chunk in await cascade.astream_complete(QUESTION)]
    result = CascadeResult.from_response(chunks[-1])
    assert chunks[-1].text == "a fine answer"
    assert [(a.tier_name, a.accepted) for a in result.attempts] == [
        ("small", False),
        ("large", True),
    ]


def test_a_cascade_answer_names_its_ledger_row_for_feedback():
    from llama_index.llms.langroute import track_costs

    cascade, _, _ = make([REFUSAL], ["Run keys rotate."])
    streaming, _, _ = make([REFUSAL], ["Run keys rotate."])
    with track_costs() as ledger:
        answered = CascadeResult.from_response(cascade.chat(user(QUESTION)))
        *_, last = streaming.stream_complete(QUESTION)
        streamed = CascadeResult.from_response(last)
    for result in (answered, streamed):
        assert result.record_id is not None
        row = ledger.get(result.record_id)
        assert (row.route, row.accepted, row.run_id) == ("large", True, result.call_id)
    verdict = ledger.feedback(answered.record_id, "bad")
    assert (verdict.route, verdict.kind) == ("large", "feedback")
