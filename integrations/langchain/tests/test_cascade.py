"""CascadeRunnable: accept, escalate, scorers, child runs, streaming, async."""

from __future__ import annotations

import math
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langroute.errors import AllRoutesFailedError, RouterConfigError
from langroute.scorers import (
    AllOf,
    JSONValidator,
    MeanTokenProbabilityScorer,
    NonEmptyValidator,
    RefusalDetector,
    RouterConfidenceScorer,
    ScoreResult,
)

from langchain_langroute import (
    CASCADE_EVENT,
    CascadeRunnable,
    RoutingChatModel,
    extract_logprobs,
    get_cascade_result,
    llm_judge,
)
from langchain_langroute.testing import FakeProviderError, FakeTimeoutError, ScriptedChatModel

REFUSAL = "I'm sorry, but I can't help with that."


def cheap(*responses: str, **options: Any) -> ScriptedChatModel:
    return ScriptedChatModel(model="gpt-4o-mini", responses=list(responses), **options)


def strong(*responses: str, **options: Any) -> ScriptedChatModel:
    return ScriptedChatModel(model="gpt-4o", responses=list(responses), **options)


class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: dict[Any, Any] = {}
        self.models: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any, Any]] = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
        self.chains[run_id] = kwargs.get("name")

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
        self.models.append({"run_id": run_id, "parent": parent_run_id, **kwargs})

    def on_custom_event(self, name, data, *, run_id, **kwargs):
        self.events.append((name, data, run_id))


def test_accepts_the_cheap_answer_when_it_passes():
    small, large = cheap("Paris."), strong("Paris, France.")
    cascade = CascadeRunnable([small, large], scorer=AllOf(NonEmptyValidator(), RefusalDetector()))
    answer = cascade.invoke("What is the capital of France?")
    assert isinstance(answer, AIMessage)
    assert answer.content == "Paris."
    result = get_cascade_result(answer)
    assert result.tier == 0
    assert result.tier_name == "gpt-4o-mini"
    assert result.attempts[0].accepted is True
    assert result.attempts[0].score == 1.0
    assert not result.escalated
    assert large.call_count == 0


def test_escalates_when_the_cheap_answer_is_rejected():
    small, large = cheap(REFUSAL), strong("Here is how: ...")
    cascade = CascadeRunnable([small, large], scorer=RefusalDetector(), threshold=0.5)
    answer = cascade.invoke("How do I reset my router?")
    assert answer.content == "Here is how: ..."
    result = get_cascade_result(answer)
    assert result.tier == 1
    assert result.escalated
    [rejected] = result.rejected
    assert rejected.tier == 0
    assert rejected.score == 0.0
    assert rejected.passed is False
    assert rejected.reason.startswith("rejected:")
    assert "refusal" in rejected.reason
    assert result.attempts[1].reason == "last tier: returned without scoring"
    assert small.call_count == 1
    assert large.call_count == 1


def test_every_attempt_is_a_child_model_run_with_usage_counted():
    small, large = cheap("not json"), strong('{"answer": 42}')
    cascade = CascadeRunnable([small, large], scorer=JSONValidator())
    runs = _Runs()
    with get_usage_metadata_callback() as usage:
        answer = cascade.invoke("Reply in JSON", config={"callbacks": [runs]})
    [cascade_run] = [rid for rid, name in runs.chains.items() if name == "CascadeRunnable"]
    assert [m["parent"] for m in runs.models] == [cascade_run, cascade_run]
    assert set(usage.usage_metadata) == {"gpt-4o-mini", "gpt-4o"}
    assert usage.usage_metadata["gpt-4o"]["output_tokens"] == answer.usage_metadata["output_tokens"]
    events = [(n, d["tier"], d["accepted"]) for n, d, _ in runs.events]
    assert events == [(CASCADE_EVENT, 0, False), (CASCADE_EVENT, 1, True)]
    assert all(run_id == cascade_run for _, _, run_id in runs.events)


def validator(passed: bool | None):
    """A scorer that grades every answer 0.95 and gives ``passed`` as its own verdict."""

    def check(query: str, answer: str) -> ScoreResult:
        return ScoreResult(score=0.95, passed=passed, reason=f"schema check: {passed}")

    return check


async def _answer(cascade: CascadeRunnable, call: str) -> Any:
    if call == "invoke":
        return cascade.invoke("Give me the order as JSON")
    if call == "ainvoke":
        return await cascade.ainvoke("Give me the order as JSON")
    chunks = (
        list(cascade.stream("Give me the order as JSON"))
        if call == "stream"
        else [c async for c in cascade.astream("Give me the order as JSON")]
    )
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


@pytest.mark.parametrize("call", ["invoke", "ainvoke", "stream", "astream"])
async def test_a_validator_veto_rejects_even_a_high_score(call):
    # the same score without a veto is accepted: only ``passed`` differs
    for passed in (None, True):
        small, large = cheap("order: 42"), strong('{"order": 42}')
        kept = await _answer(
            CascadeRunnable([small, large], validator(passed), threshold=0.5), call
        )
        assert (kept.content, get_cascade_result(kept).tier) == ("order: 42", 0)
        assert large.call_count == 0
    small, large = cheap("order: 42"), strong('{"order": 42}')
    cascade = CascadeRunnable([small, large], scorer=validator(False), threshold=0.5)
    answer = await _answer(cascade, call)
    assert answer.content == '{"order": 42}'
    result = get_cascade_result(answer)
    assert result.tier == 1 and result.escalated
    vetoed = result.attempts[0]
    assert (vetoed.accepted, vetoed.score, vetoed.passed) == (False, 0.95, False)
    assert vetoed.reason == "rejected: score 0.95 < 0.5 or failed (schema check: False)"
    assert (small.call_count, large.call_count) == (1, 1)


def test_tier_errors_escalate_and_all_failing_raises():
    small = cheap(fail_always=FakeTimeoutError("timed out"))
    large = strong("fine")
    cascade = CascadeRunnable([small, large], scorer=NonEmptyValidator())
    answer = cascade.invoke("hi")
    result = get_cascade_result(answer)
    assert result.attempts[0].error == "FakeTimeoutError: timed out"
    assert result.attempts[0].accepted is False
    assert answer.content == "fine"

    broken = CascadeRunnable(
        [cheap(fail_always=FakeTimeoutError("t")), strong(fail_always=FakeProviderError("p"))],
        scorer=NonEmptyValidator(),
    )
    with pytest.raises(AllRoutesFailedError) as info:
        broken.invoke("hi")
    assert [name for name, _ in info.value.attempts] == ["gpt-4o-mini", "gpt-4o"]
    assert isinstance(info.value.__cause__, FakeProviderError)


def test_logprob_scorer_reads_response_metadata():
    confident = cheap("Paris.", logprobs=True, logprob=math.log(0.95))
    answer = confident.invoke("Capital of France?")
    assert extract_logprobs(answer) == pytest.approx([math.log(0.95)])
    unsure = cheap("Maybe Lyon?", logprobs=True, logprob=math.log(0.4))
    large = strong("Paris.")
    scorer = MeanTokenProbabilityScorer()
    assert (
        get_cascade_result(
            CascadeRunnable([confident, large], scorer=scorer, threshold=0.8).invoke("q")
        ).tier
        == 0
    )
    result = get_cascade_result(
        CascadeRunnable([unsure, large], scorer=scorer, threshold=0.8).invoke("q")
    )
    assert result.tier == 1
    assert result.attempts[0].score == pytest.approx(0.4)


def test_logprobs_missing_escalates_by_default():
    cascade = CascadeRunnable([cheap("Paris."), strong("Paris.")], MeanTokenProbabilityScorer())
    result = get_cascade_result(cascade.invoke("q"))
    assert result.tier == 1
    assert "logprobs unavailable" in result.attempts[0].reason


def test_extract_logprobs_shapes():
    assert extract_logprobs(AIMessage("x")) is None
    plain = AIMessage("x", response_metadata={"logprobs": [-0.1, -0.2]})
    assert extract_logprobs(plain) == [-0.1, -0.2]
    listed = AIMessage("x", response_metadata={"logprobs": [{"token": "x", "logprob": -0.3}]})
    assert extract_logprobs(listed) == [-0.3]


def test_llm_judge_built_from_a_chat_model_runs_as_a_child_run():
    judge_model = ScriptedChatModel(model="gpt-4o-mini", responses=["Score: 3/10", "Score: 9/10"])
    small, large = cheap("a weak answer"), strong("a strong answer")
    cascade = CascadeRunnable(
        [small, large, strong("never")], scorer=llm_judge(judge_model), threshold=0.7
    )
    runs = _Runs()
    answer = cascade.invoke("Explain TCP slow start.", config={"callbacks": [runs]})
    result = get_cascade_result(answer)
    assert answer.content == "a strong answer"
    assert [a.score for a in result.attempts] == [pytest.approx(0.3), pytest.approx(0.9)]
    assert "Explain TCP slow start." in judge_model.calls[0]["messages"][0].content
    assert "a weak answer" in judge_model.calls[0]["messages"][0].content
    [cascade_run] = [rid for rid, name in runs.chains.items() if name == "CascadeRunnable"]
    judges = [m for m in runs.models if m["metadata"].get("langroute_cascade_role") == "judge"]
    assert len(judges) == 2
    assert all(m["parent"] == cascade_run for m in judges)
    assert len(runs.models) == 4  # two tiers + two judge calls


async def test_llm_judge_async():
    judge_model = ScriptedChatModel(model="gpt-4o-mini", responses=["Verdict: yes"])
    cascade = CascadeRunnable(
        [cheap("ok"), strong("better")], scorer=llm_judge(judge_model, scale=None), threshold=0.5
    )
    answer = await cascade.ainvoke("q")
    assert get_cascade_result(answer).tier == 0
    assert judge_model.call_count == 1


def test_any_callable_is_a_scorer_and_thresholds_per_tier():
    seen: list[tuple[str, str]] = []

    def length_score(query: str, answer: str) -> float:
        seen.append((query, answer))
        return min(1.0, len(answer) / 20)

    tiers = [cheap("short"), cheap("a bit longer ans"), strong("final")]
    cascade = CascadeRunnable(tiers, scorer=length_score, threshold=[0.9, 0.5])
    result = get_cascade_result(cascade.invoke("question?"))
    assert result.tier == 1
    assert seen == [("question?", "short"), ("question?", "a bit longer ans")]


def test_router_confidence_scorer_with_a_routing_tier(router):
    routed = RoutingChatModel(router=router, models={"small": cheap("x"), "large": strong("y")})
    cascade = CascadeRunnable([routed, strong("z")], scorer=RouterConfidenceScorer(), threshold=0.5)
    result = get_cascade_result(cascade.invoke("what is the capital of france"))
    assert result.tier == 0
    assert result.attempts[0].score > 0.5


def test_score_last_tier_records_but_still_returns():
    cascade = CascadeRunnable(
        [cheap(REFUSAL), strong(REFUSAL)], scorer=RefusalDetector(), score_last_tier=True
    )
    answer = cascade.invoke("q")
    result = get_cascade_result(answer)
    assert result.tier == 1
    assert result.attempts[1].score == 0.0
    assert result.attempts[1].reason.startswith("last tier: returned although")


def test_invalid_configurations():
    with pytest.raises(ValueError, match="at least two tiers"):
        CascadeRunnable([cheap("x")], scorer=NonEmptyValidator())
    with pytest.raises(ValueError, match="threshold"):
        CascadeRunnable([cheap("x"), strong("y")], scorer=NonEmptyValidator(), threshold=[1, 2, 3])
    with pytest.raises(ValueError, match="tier_names"):
        CascadeRunnable([cheap("x"), strong("y")], scorer=NonEmptyValidator(), tier_names=["a"])


def test_in_an_lcel_chain():
    cascade = CascadeRunnable([cheap(REFUSAL), strong("Paris.")], scorer=RefusalDetector())
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | cascade | StrOutputParser()
    assert chain.invoke({"q": "capital of France?"}) == "Paris."


# --------------------------------------------------------------------------- streaming


def test_stream_buffers_scored_tiers_and_streams_the_last_live():
    cascade = CascadeRunnable(
        [cheap(REFUSAL), strong("one two three four")], scorer=RefusalDetector()
    )
    chunks = list(cascade.stream("q"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len(chunks) > 4  # word by word from the last tier
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.content == "one two three four"
    result = get_cascade_result(full)
    assert result.tier == 1
    assert result.attempts[0].accepted is False
    assert full.usage_metadata["output_tokens"] == 4


def test_stream_accepted_cheap_answer_arrives_as_one_chunk():
    cascade = CascadeRunnable([cheap("Paris is the capital"), strong("x")], NonEmptyValidator())
    chunks = list(cascade.stream("q"))
    assert len(chunks) == 1
    assert chunks[0].content == "Paris is the capital"
    assert get_cascade_result(chunks[0]).tier == 0
    assert chunks[0].usage_metadata["output_tokens"] == 4


async def test_astream_and_astream_events():
    cascade = CascadeRunnable([cheap(REFUSAL), strong("a b c")], scorer=RefusalDetector())
    chunks = [c async for c in cascade.astream("q")]
    assert "".join(c.content for c in chunks) == "a b c"
    events = [e async for e in cascade.astream_events("q", version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["data"]["tier"] for e in custom] == [0, 1]
    model_starts = [e for e in events if e["event"] == "on_chat_model_start"]
    assert len(model_starts) == 2
    # every tier is its own traced model run: its tokens are tagged with its tier ...
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert {e["metadata"]["langroute_cascade_tier"] for e in streamed} <= {0, 1}
    # ... while the cascade's own output stream carries only the accepted answer
    own = [e for e in events if e["event"] == "on_chain_stream" and e["name"] == "CascadeRunnable"]
    assert "".join(e["data"]["chunk"].content for e in own) == "a b c"


async def test_ainvoke_escalation():
    cascade = CascadeRunnable(
        [cheap(fail_always=FakeTimeoutError("t")), strong("ok")], scorer=NonEmptyValidator()
    )
    answer = await cascade.ainvoke("q")
    assert get_cascade_result(answer).attempts[0].error == "FakeTimeoutError: t"


def _every_tier_fails() -> CascadeRunnable:
    return CascadeRunnable(
        [cheap(fail_always=FakeTimeoutError("t")), strong(fail_always=FakeProviderError("p"))],
        scorer=NonEmptyValidator(),
    )


def test_stream_raises_like_invoke_when_every_tier_fails():
    with pytest.raises(AllRoutesFailedError) as info:
        list(_every_tier_fails().stream("hi"))
    assert [name for name, _ in info.value.attempts] == ["gpt-4o-mini", "gpt-4o"]
    assert isinstance(info.value.__cause__, FakeProviderError)
    assert [a.error for a in info.value.call.attempts] == [
        "FakeTimeoutError: t",
        "FakeProviderError: p",
    ]


async def test_astream_raises_like_ainvoke_when_every_tier_fails():
    with pytest.raises(AllRoutesFailedError) as info:
        [chunk async for chunk in _every_tier_fails().astream("hi")]
    assert [name for name, _ in info.value.attempts] == ["gpt-4o-mini", "gpt-4o"]


def test_the_call_record_keeps_rejected_answers_when_the_last_tier_fails():
    cascade = CascadeRunnable(
        [cheap(REFUSAL), strong(fail_always=FakeProviderError("502"))],
        scorer=RefusalDetector(),
    )
    with pytest.raises(AllRoutesFailedError, match="no route gave an accepted answer") as info:
        cascade.invoke("hi")
    rejected, failed = info.value.call.attempts
    assert (rejected.route, rejected.rejected, rejected.error) == ("gpt-4o-mini", True, None)
    assert (failed.route, failed.error) == ("gpt-4o", "FakeProviderError: 502")


def test_tiers_sharing_a_model_get_distinct_default_names():
    cascade = CascadeRunnable([cheap(REFUSAL), cheap("fine")], scorer=RefusalDetector())
    assert cascade.tier_names == ["gpt-4o-mini", "gpt-4o-mini#2"]
    result = get_cascade_result(cascade.invoke("hi"))
    assert [(a.tier_name, a.accepted) for a in result.attempts] == [
        ("gpt-4o-mini", False),
        ("gpt-4o-mini#2", True),
    ]
    with pytest.raises(RouterConfigError, match="two tiers are named"):
        CascadeRunnable([cheap(), strong()], scorer=RefusalDetector(), tier_names=["a", "a"])
