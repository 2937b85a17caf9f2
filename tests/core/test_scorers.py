from __future__ import annotations

import asyncio
import math
import re
import threading

import pytest
from pydantic import BaseModel, ValidationError

from langroute.scorers import (
    DEFAULT_JUDGE_PROMPT,
    AllOf,
    BaseScorer,
    FunctionScorer,
    JSONValidator,
    JudgeScorer,
    MeanTokenProbabilityScorer,
    NonEmptyValidator,
    PydanticValidator,
    RefusalDetector,
    RegexValidator,
    RouterConfidenceScorer,
    Scorer,
    ScoreResult,
    as_scorer,
    extract_json_text,
    parse_judgement,
)

Q = "What is the capital of France?"


def test_score_result_bounds() -> None:
    assert ScoreResult(score=1.0, passed=True, reason="ok").score == 1.0
    with pytest.raises(ValidationError):
        ScoreResult(score=1.5)
    with pytest.raises(ValidationError):
        ScoreResult(score=-0.1)


# --------------------------------------------------------------------------- validators


@pytest.mark.parametrize(
    ("answer", "passed"),
    [("Paris", True), ("", False), ("   \n\t", False), (" x ", True)],
)
def test_non_empty(answer: str, passed: bool) -> None:
    result = NonEmptyValidator()(Q, answer)
    assert result.passed is passed
    assert result.score == (1.0 if passed else 0.0)
    if not passed:
        assert "empty" in result.reason


def test_non_empty_min_chars() -> None:
    assert NonEmptyValidator(min_chars=5)(Q, "abc").passed is False
    assert NonEmptyValidator(min_chars=3)(Q, " abc ").passed is True
    with pytest.raises(ValueError):
        NonEmptyValidator(min_chars=0)


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ('{"a": 1}', True),
        ("[1, 2, 3]", True),
        ('Sure! Here it is:\n```json\n{"city": "Paris"}\n```\nAnything else?', True),
        ('```\n{"city": "Paris"}\n```', True),
        ('```JSON\n{"x": [1, 2]}\n```', True),
        ("{'a': 1}", False),
        ('{"a": 1', False),
        ("", False),
        ("Paris", False),
        ('```json\n{"a": }\n```', False),
    ],
)
def test_json_validator(answer: str, passed: bool) -> None:
    result = JSONValidator()(Q, answer)
    assert result.passed is passed
    assert result.score == float(passed)
    if not passed:
        assert result.reason.startswith("json: ")


def test_json_validator_reason_names_position_and_object_option() -> None:
    result = JSONValidator()(Q, '{"a": 1,}')
    assert "line 1" in result.reason and "column" in result.reason
    assert JSONValidator(require_object=True)(Q, "[1]").passed is False
    assert JSONValidator(require_object=True)(Q, "{}").passed is True


def test_extract_json_text_prefers_json_block() -> None:
    text = 'code:\n```python\nprint(1)\n```\nand\n```json\n{"a": 1}\n```'
    assert extract_json_text(text) == '{"a": 1}'
    assert extract_json_text('  {"a": 1}  ') == '{"a": 1}'


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize(
    ("answer", "passed", "in_reason"),
    [
        ('{"name": "Paris", "population": 2100000}', True, "valid"),
        ('```json\n{"name": "Paris", "population": "2100000"}\n```', True, "valid"),
        ('{"name": "Paris"}', False, "population: Field required"),
        ('{"name": "Paris", "population": "many"}', False, "population"),
        ("not json", False, "Invalid JSON"),
        ("", False, "empty"),
    ],
)
def test_pydantic_validator(answer: str, passed: bool, in_reason: str) -> None:
    result = PydanticValidator(City)(Q, answer)
    assert result.passed is passed, result.reason
    assert in_reason in result.reason
    assert result.reason.startswith("City: ")


def test_pydantic_validator_strict_and_plain_types() -> None:
    assert (
        PydanticValidator(City, strict=True)(Q, '{"name": "P", "population": "1"}').passed is False
    )
    assert PydanticValidator(list[int])(Q, "[1, 2, 3]").passed is True
    assert PydanticValidator(list[int])(Q, '["a"]').passed is False


def test_regex_validator() -> None:
    year = RegexValidator(r"\b\d{4}\b")
    assert year(Q, "It happened in 1969.").passed is True
    failed = year(Q, "It happened long ago.")
    assert failed.passed is False and failed.score == 0.0 and "does not match" in failed.reason
    full = RegexValidator(r"\d+", fullmatch=True)
    assert full(Q, " 42 ").passed is True
    assert full(Q, "42 apples").passed is False
    forbidden = RegexValidator(r"lorem ipsum", must_match=False, flags=re.IGNORECASE)
    result = forbidden(Q, "Lorem Ipsum dolor")
    assert result.passed is False and "Lorem Ipsum" in result.reason
    assert forbidden(Q, "Paris").passed is True
    compiled = RegexValidator(re.compile("paris", re.I))
    assert compiled(Q, "PARIS").passed is True


@pytest.mark.parametrize(
    "answer",
    [
        "I can't help with that.",
        "I cannot help with that request.",
        "I'm sorry, but I cannot provide that information.",
        "I’m sorry, but I can’t assist with that.",  # curly apostrophes
        "Sorry, I can't do that.",
        "I apologize, but I'm unable to comply with this request.",
        "As an AI language model, I cannot browse the internet.",
        "As an AI, I'm not able to give medical advice.",
        "I won't be able to help with this one.",
        "I'm unable to assist with that.",
        "I must decline this request.",
        "Unfortunately, I cannot provide real-time stock prices.",
        "That's not something I can help with.",
        "I cannot and will not write that.",
        "\n  I can’t share that information.",
    ],
)
def test_refusal_detector_catches_refusals(answer: str) -> None:
    result = RefusalDetector()(Q, answer)
    assert result.passed is False, answer
    assert result.score == 0.0
    assert "refusal" in result.reason


@pytest.mark.parametrize(
    "answer",
    [
        "Paris is the capital of France.",
        "I can't help but admire the question: the answer is Paris.",
        "Unfortunately, I can't be certain, but it is most likely Paris.",
        "Unfortunately, I can't help but notice the question is easy: Paris.",
        "I can help with that! The capital is Paris.",
        "As an AI language model, I can tell you it is Paris.",
        "Sorry for the confusion earlier. The capital is Paris.",
        "The error says 'I cannot open file'. Check the path.",
        "",
    ],
)
def test_refusal_detector_passes_answers(answer: str) -> None:
    result = RefusalDetector()(Q, answer)
    assert result.passed is True, (answer, result.reason)
    assert result.score == 1.0


def test_refusal_detector_window_and_extra_patterns() -> None:
    late = "Paris. " + "More detail. " * 60 + "I'm sorry, but I cannot say more."
    assert RefusalDetector()(Q, late).passed is True
    assert RefusalDetector(window=None)(Q, late).passed is False
    custom = RefusalDetector(extra_patterns=[r"\bno comment\b"])
    assert custom(Q, "No comment.").passed is False
    assert RefusalDetector().find("Paris") is None


class Counting(BaseScorer):
    name = "counting"

    def __init__(self, result: ScoreResult) -> None:
        self.result = result
        self.calls = 0

    def __call__(self, query, answer, *, logprobs=None, metadata=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.result


def test_all_of_short_circuits_and_combines() -> None:
    judge = Counting(ScoreResult(score=0.9, passed=None, reason="judge: 0.9"))
    scorer = AllOf(NonEmptyValidator(), JSONValidator(), judge)
    failed = scorer(Q, "not json")
    assert failed.passed is False and failed.score == 0.0
    assert failed.reason.startswith("json: invalid JSON")
    assert judge.calls == 0  # not called after a rejection
    ok = scorer(Q, '{"a": 1}')
    assert judge.calls == 1
    assert ok.score == pytest.approx(0.9)
    assert ok.passed is None  # the judge has no verdict of its own
    assert "judge: 0.9" in ok.reason and "json: valid JSON" in ok.reason
    both = AllOf(NonEmptyValidator(), RefusalDetector())(Q, "Paris")
    assert both.passed is True and both.score == 1.0
    low_then_fail = AllOf(
        Counting(ScoreResult(score=0.2, passed=None, reason="a")),
        Counting(ScoreResult(score=0.6, passed=False, reason="b")),
    )(Q, "x")
    assert low_then_fail.score == pytest.approx(0.2) and low_then_fail.passed is False
    assert low_then_fail.reason == "b"
    with pytest.raises(ValueError):
        AllOf()


async def test_all_of_async_uses_ascore() -> None:
    seen: list[str] = []

    async def async_check(query: str, answer: str) -> bool:
        await asyncio.sleep(0)
        seen.append(answer)
        return answer.startswith("P")

    scorer = AllOf(NonEmptyValidator(), async_check)
    assert (await scorer.ascore(Q, "Paris")).passed is True
    assert (await scorer.ascore(Q, "London")).passed is False
    assert (await scorer.ascore(Q, "")).passed is False
    assert seen == ["Paris", "London"]


# --------------------------------------------------------------------------- adapters


def test_as_scorer_adapts_plain_callables() -> None:
    assert as_scorer(lambda q, a: 0.25)(Q, "x").score == 0.25
    yes = as_scorer(lambda q, a: "paris" in a.lower())
    assert yes(Q, "Paris").passed is True and yes(Q, "Paris").score == 1.0
    assert yes(Q, "Rome").passed is False and yes(Q, "Rome").score == 0.0
    custom = ScoreResult(score=0.5, passed=None, reason="custom")
    assert as_scorer(lambda q, a: custom)(Q, "x") == custom
    validator = NonEmptyValidator()
    assert as_scorer(validator) is validator
    assert isinstance(as_scorer(lambda q, a: 1.0), Scorer)
    assert isinstance(validator, Scorer)


def test_as_scorer_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_scorer(lambda q, a: 7)(Q, "x")
    with pytest.raises(TypeError, match="str"):
        as_scorer(lambda q, a: "good")(Q, "x")
    with pytest.raises(TypeError):
        as_scorer(42)  # type: ignore[arg-type]


def test_function_scorer_passes_extras_it_accepts() -> None:
    received: dict[str, object] = {}

    def with_extras(query: str, answer: str, *, logprobs=None, metadata=None) -> float:  # type: ignore[no-untyped-def]
        received.update(logprobs=logprobs, metadata=metadata)
        return 0.5

    def with_kwargs(query: str, answer: str, **kwargs: object) -> float:
        received.update(kwargs=kwargs)
        return 0.5

    FunctionScorer(with_extras)(Q, "a", logprobs=[-0.1], metadata={"k": 1})
    assert received == {"logprobs": [-0.1], "metadata": {"k": 1}}
    FunctionScorer(with_kwargs)(Q, "a", metadata={"k": 2})
    assert received["kwargs"] == {"logprobs": None, "metadata": {"k": 2}}
    assert FunctionScorer(lambda q, a: 1.0)(Q, "a", metadata={"x": 1}).score == 1.0
    assert FunctionScorer(with_extras).name == "with_extras"


def test_function_scorer_runs_async_callable_from_sync_code() -> None:
    async def check(query: str, answer: str) -> float:
        await asyncio.sleep(0)
        return 0.75

    assert as_scorer(check)(Q, "a").score == 0.75


async def test_function_scorer_async_inside_loop() -> None:
    async def check(query: str, answer: str) -> float:
        return 0.75

    scorer = as_scorer(check)
    assert (await scorer.ascore(Q, "a")).score == 0.75
    with pytest.raises(RuntimeError, match="ascore"):
        scorer(Q, "a")
    assert (await as_scorer(lambda q, a: 0.5).ascore(Q, "a")).score == 0.5


async def test_base_scorer_ascore_defaults_to_sync() -> None:
    result = await JSONValidator().ascore(Q, "{}")
    assert result.passed is True


# --------------------------------------------------------------------------- graded scorers


def test_mean_token_probability() -> None:
    probs = [0.9, 0.5, 0.8]
    logprobs = [math.log(p) for p in probs]
    expected = math.exp(sum(logprobs) / 3)  # geometric mean of the probabilities
    result = MeanTokenProbabilityScorer()(Q, "a", logprobs=logprobs)
    assert result.score == pytest.approx(expected)
    assert result.score == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    assert result.passed is None
    assert "3 tokens" in result.reason
    scorer = MeanTokenProbabilityScorer(threshold=0.7)
    assert scorer(Q, "a", logprobs=logprobs).passed is True
    assert scorer(Q, "a", logprobs=[math.log(0.2)]).passed is False
    assert scorer(Q, "a", logprobs=[0.0, 0.0]).score == 1.0
    assert scorer(Q, "a", logprobs=[1e-9]).score == 1.0  # rounding noise tolerated
    assert scorer(Q, "a", logprobs=[-math.inf, 0.0]).score == 0.0


@pytest.mark.parametrize("logprobs", [None, [], [math.nan]])
def test_mean_token_probability_without_logprobs_is_neutral(logprobs: list[float] | None) -> None:
    result = MeanTokenProbabilityScorer(threshold=0.5)(Q, "a", logprobs=logprobs)
    assert result.score == 0.0 and result.passed is None
    assert "logprobs unavailable" in result.reason
    lenient = MeanTokenProbabilityScorer(missing_score=1.0)(Q, "a", logprobs=logprobs)
    assert lenient.score == 1.0 and lenient.passed is None
    with pytest.raises(ValueError):
        MeanTokenProbabilityScorer(missing_score=2.0)


def test_router_confidence_scorer() -> None:
    scorer = RouterConfidenceScorer(threshold=0.6)
    high = scorer(Q, "a", metadata={"confidence": 0.82})
    assert high.score == pytest.approx(0.82) and high.passed is True
    low = scorer(Q, "a", metadata={"confidence": 0.3})
    assert low.score == pytest.approx(0.3) and low.passed is False
    missing = scorer(Q, "a")
    assert missing.score == 0.0 and missing.passed is None and "confidence" in missing.reason
    assert RouterConfidenceScorer()(Q, "a", metadata={"confidence": 1.7}).score == 1.0
    assert RouterConfidenceScorer(key="p")(Q, "a", metadata={"p": 0.4}).score == 0.4


# --------------------------------------------------------------------------- judge


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("Score: 7/10", None, 0.7),
        ("score: 7 / 10", None, 0.7),
        ("The answer is mostly right.\n\nScore: 8/10", None, 0.8),
        ("**Rating:** 4 out of 5", None, 0.8),
        ("Rating: 4", (1, 5), 0.75),
        ("Rating: 1", (1, 5), 0.0),
        ('{"score": 0.8}', None, 0.8),
        ('{"score": 9}', None, 0.9),
        ("Grade: 85%", None, 0.85),
        ("Score: 7.5", None, 0.75),
        ("I'd give it 8/10.", None, 0.8),
        ("3 out of 5", None, 0.6),
        ("About 90% correct.", None, 0.9),
        ("7", None, 0.7),
        ("7", (0, 10), 0.7),
        ("4", (1, 5), 0.75),
        ("0.85", None, 0.85),
        ("0.85", (0, 1), 0.85),
        ("1", (0, 1), 1.0),
        ("0", None, 0.0),
        ("10", None, 1.0),
        ("Reasoning: good coverage.\n9", None, 0.9),
        ("**8**", None, 0.8),
        ("Yes", None, 1.0),
        ("yes, the answer is correct", None, 1.0),
        ("PASS", None, 1.0),
        ("Fail.", None, 0.0),
        ("No", None, 0.0),
        ("Correct", None, 1.0),
        ("Incorrect: Paris is not in Italy.", None, 0.0),
        ("Verdict: pass", None, 1.0),
        ("After review, verdict: FAIL", None, 0.0),
        ("true", None, 1.0),
        # unparseable or out of range
        ("", None, None),
        ("I think it is fine", None, None),
        ("Score: 12/10", None, None),
        ("Score: 15", None, None),
        ("Score: 6", (1, 5), None),
        ("42", None, None),
        ("There are 3 issues in the answer", None, None),
        # one verdict only: two that differ are unreadable, not "the last one wins"
        ("Score: 3/10 at first glance... Final score: 9/10", None, None),
        ("At first 3/10, but on reflection 8/10", None, None),
        ("Score: 8/10. To repeat, score: 8/10", None, 0.8),
    ],
)
def test_parse_judgement(
    text: str, scale: tuple[float, float] | None, expected: float | None
) -> None:
    result = parse_judgement(text, scale=scale)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_judge_scorer_builds_prompt_and_parses_reply() -> None:
    prompts: list[str] = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return "Looks right.\nScore: 9/10"

    scorer = JudgeScorer(judge, threshold=0.8)
    result = scorer(Q, "Paris {not a placeholder}")
    assert result.score == pytest.approx(0.9) and result.passed is True
    assert "Score: 9/10" in result.reason
    assert Q in prompts[0] and "Paris {not a placeholder}" in prompts[0]
    assert prompts[0] == DEFAULT_JUDGE_PROMPT.format(
        query=f"<question>\n{Q}\n</question>",
        answer="<answer>\nParis {not a placeholder}\n</answer>",
    )
    assert JudgeScorer(lambda p: "Score: 5/10", threshold=0.8)(Q, "a").passed is False
    assert JudgeScorer(lambda p: "Score: 5/10")(Q, "a").passed is None


def test_judge_scorer_custom_template_and_scale() -> None:
    scorer = JudgeScorer(
        lambda p: "4" if "Q: <question>\nhi\n</question>" in p else "1",
        prompt_template="Q: {query}\nA: {answer}\nRate 1-5.",
        scale=(1, 5),
    )
    assert scorer("hi", "hello").score == pytest.approx(0.75)
    with pytest.raises(ValueError, match="answer"):
        JudgeScorer(lambda p: "", prompt_template="Q: {query}")
    with pytest.raises(ValueError, match="braces"):
        JudgeScorer(lambda p: "", prompt_template="{query} {answer} {other}")
    with pytest.raises(ValueError):
        JudgeScorer()


def test_judge_scorer_unparseable_and_failing_judge_escalate() -> None:
    unparseable = JudgeScorer(lambda p: "It's a decent attempt overall.")(Q, "a")
    assert unparseable.score == 0.0 and unparseable.passed is None
    assert "could not read a grade" in unparseable.reason

    def broken(prompt: str) -> str:
        raise ConnectionError("judge offline")

    failed = JudgeScorer(broken)(Q, "a")
    assert failed.score == 0.0 and failed.passed is None
    assert "ConnectionError: judge offline" in failed.reason
    lenient = JudgeScorer(lambda p: "hmm", unparseable_score=0.5)(Q, "a")
    assert lenient.score == 0.5


async def test_judge_scorer_async_variants() -> None:
    async def ajudge(prompt: str) -> str:
        await asyncio.sleep(0)
        return "Score: 6/10"

    assert (await JudgeScorer(ajudge=ajudge).ascore(Q, "a")).score == pytest.approx(0.6)
    assert (await JudgeScorer(ajudge).ascore(Q, "a")).score == pytest.approx(0.6)

    main_thread = threading.get_ident()
    threads: list[int] = []

    def sync_judge(prompt: str) -> str:
        threads.append(threading.get_ident())
        return "Score: 2/10"

    both = JudgeScorer(sync_judge, ajudge=ajudge)
    assert (await both.ascore(Q, "a")).score == pytest.approx(0.6)  # ajudge preferred
    assert (await JudgeScorer(sync_judge).ascore(Q, "a")).score == pytest.approx(0.2)
    assert threads and threads[-1] != main_thread  # a blocking judge runs off the loop

    async def broken(prompt: str) -> str:
        raise TimeoutError("slow")

    result = await JudgeScorer(ajudge=broken).ascore(Q, "a")
    assert result.score == 0.0 and "TimeoutError" in result.reason


def test_judge_scorer_async_only_judge_from_sync_code() -> None:
    async def ajudge(prompt: str) -> str:
        return "Score: 6/10"

    assert JudgeScorer(ajudge=ajudge)(Q, "a").score == pytest.approx(0.6)
