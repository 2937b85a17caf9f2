"""The neutral scripted provider behind both frameworks' test doubles."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from langroute.dispatch.routed_call import TokenUsage
from langroute.models import scripted
from langroute.models.scripted import (
    ScriptedProvider,
    StreamFailure,
    ToolRequest,
    Turn,
    choose_tool,
    fill_arguments,
    split_pieces,
    word_logprobs,
    word_usage,
)


def take_all(provider: ScriptedProvider, script: list, calls: int, **options) -> list:
    return [provider.take(provider.record(n), script, **options)[0] for n in range(calls)]


# -- choosing the step for call N --------------------------------------------------------


def test_a_cycled_script_is_read_by_call_number_and_kept():
    script = ["a", "b", "c"]
    assert take_all(ScriptedProvider(), script, 7, cycle=True) == [
        "a",
        "b",
        "c",
        "a",
        "b",
        "c",
        "a",
    ]
    assert script == ["a", "b", "c"]


def test_a_consumed_script_is_used_up_then_the_fallback_answers():
    script = ["a", "b"]
    asked: list[int] = []

    def fallback() -> str:
        asked.append(1)
        return "default"

    provider = ScriptedProvider()
    assert take_all(provider, script, 2, fallback=fallback) == ["a", "b"]
    assert script == [] and asked == []  # the fallback is not called while steps remain
    assert take_all(provider, script, 2, fallback=fallback) == ["default", "default"]
    assert take_all(provider, script, 1, fallback="plain") == ["plain"]
    assert take_all(provider, script, 1) == [None]  # no fallback: the adapter decides


def test_a_call_number_below_one_is_refused():
    with pytest.raises(ValueError, match="call numbers start at 1"):
        ScriptedProvider().take(0, ["a"], cycle=True)


def test_a_script_replaced_between_calls_takes_effect():
    provider = ScriptedProvider()
    first = ["one"]
    assert take_all(provider, first, 1, cycle=True) == ["one"]
    assert take_all(provider, ["x", "y"], 1, cycle=True) == ["y"]  # call 2 of a new script


# -- failures ---------------------------------------------------------------------------


def test_failures_by_call_number_raise_before_the_script_is_read():
    provider = ScriptedProvider()
    script = ["a", "b"]
    failures = {2: TimeoutError("call two")}
    assert provider.take(provider.record("q1"), script, failures=failures)[0] == "a"
    with pytest.raises(TimeoutError, match="call two"):
        provider.take(provider.record("q2"), script, failures=failures)
    assert script == ["b"]  # the failed call consumed no step
    assert provider.take(provider.record("q3"), script, failures=failures)[0] == "b"
    assert provider.call_count == 3  # failed calls are logged too


def test_fail_always_raises_on_every_call():
    provider = ScriptedProvider()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            provider.take(provider.record("q"), ["a"], cycle=True, fail_always=ConnectionError())
    assert provider.calls == ["q", "q", "q"]


def test_an_exception_step_is_raised_and_used_up():
    provider = ScriptedProvider()
    script = [RuntimeError("outage"), "after"]
    with pytest.raises(RuntimeError, match="outage"):
        provider.take(provider.record("q"), script)
    assert provider.take(provider.record("q"), script) == ("after", None)


def test_a_stream_failure_step_breaks_streams_and_refuses_plain_calls():
    broken = StreamFailure(error=ConnectionError("reset"), after_chunks=2, text="one two three")
    provider = ScriptedProvider()
    assert provider.take(provider.record("q"), [broken], streaming=True) == (
        "one two three",
        broken,
    )
    with pytest.raises(ConnectionError, match="reset"):
        provider.take(provider.record("q"), [broken])  # not streaming: raised at once
    refused = StreamFailure(error=ConnectionError("refused"))  # after_chunks=0
    with pytest.raises(ConnectionError, match="refused"):
        provider.take(provider.record("q"), [refused], streaming=True)


def test_a_stream_breaks_after_exactly_n_pieces():
    failure = StreamFailure(error=ConnectionError("reset"), after_chunks=2)
    received = []
    with pytest.raises(ConnectionError, match="reset"):
        for piece in failure.cut(split_pieces("one two three four")):
            received.append(piece)
    assert received == ["one ", "two "]
    # fewer pieces than after_chunks: all of them, and the stream still fails
    received.clear()
    with pytest.raises(ConnectionError):
        for piece in StreamFailure(error=ConnectionError(), after_chunks=5).cut(["a", "b"]):
            received.append(piece)
    assert received == ["a", "b"]
    assert list(Turn(text="a b").stream(split_pieces("a b"))) == ["a ", "b"]


def test_a_negative_break_point_is_refused():
    with pytest.raises(ValidationError, match="after_chunks"):
        StreamFailure(error=ConnectionError(), after_chunks=-1)


# -- the call log under threads ---------------------------------------------------------


def test_call_numbers_are_unique_and_counted_under_threads():
    provider: ScriptedProvider[tuple[int, int]] = ScriptedProvider()
    numbers: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(thread: int) -> None:
        start.wait()
        mine = [provider.record((thread, i)) for i in range(250)]
        with lock:
            numbers.extend(mine)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert provider.call_count == 2000
    assert sorted(numbers) == list(range(1, 2001))
    assert sorted(provider.calls) == sorted((t, i) for t in range(8) for i in range(250))


def test_a_consumed_script_gives_each_step_to_exactly_one_thread():
    provider = ScriptedProvider()
    script = list(range(2000))
    taken: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        mine = [provider.take(provider.record("q"), script)[0] for _ in range(250)]
        with lock:
            taken.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(2000)) and script == []


# -- tool requests ----------------------------------------------------------------------

ORDER = {
    "type": "object",
    "properties": {
        "item": {"type": "string"},
        "quantity": {"type": "integer"},
        "price": {"type": "number"},
        "size": {"enum": ["small", "large"]},
        "gift": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "address": {
            "type": "object",
            "properties": {"zip": {"type": "integer"}, "city": {"type": "string"}},
            "required": ["zip"],
        },
        "optional": {"type": "string"},
    },
    "required": ["item", "quantity", "price", "size", "gift", "tags", "note", "address"],
}


def test_arguments_are_filled_from_the_schema_and_the_question():
    question = "Order 3 of “blue mugs” at 4.5 each, ship to 75001"
    assert fill_arguments(ORDER, question) == {
        "item": "blue mugs",  # the quoted text
        "quantity": 3,  # the question's numbers, in order
        "price": 4.5,
        "size": "small",  # an enum's first value
        "gift": False,
        "tags": [],
        "note": "blue mugs",  # anyOf: the first non-null option
        "address": {"zip": 75001},  # nested objects, required keys only
    }


def test_arguments_without_numbers_or_quotes_fall_back():
    schema = {
        "properties": {"n": {"type": "integer"}, "q": {"type": "string"}},
        "required": ["n", "q"],
    }
    assert fill_arguments(schema, "how many?") == {"n": 0, "q": "how many?"}
    assert fill_arguments(None, "anything") == {}
    with pytest.raises(ValueError, match="object schema, got type 'string'"):
        fill_arguments({"type": "string"}, "x")


def test_tool_requests_and_choice():
    request = ToolRequest.for_question("add", ORDER["properties"]["address"], "zip 10115", id="c")
    assert request == ToolRequest(name="add", arguments={"zip": 10115}, id="c")
    assert ToolRequest(name="t").id != ToolRequest(name="t").id  # fresh ids by default
    names = ["add", "get_weather"]
    assert choose_tool(names, "please get_weather", "add") == "add"  # a forced tool wins
    assert choose_tool(names, "please get_weather", "auto") == "get_weather"
    assert choose_tool(names, "hello", None) == "add"
    assert choose_tool(names, "get_weather", "none") is None
    assert choose_tool([], "hello") is None


# -- usage, pieces, logprobs, latency ---------------------------------------------------


def test_word_usage_counts_prompts_answer_and_tool_calls():
    call = ToolRequest(name="add", arguments={"a": 3, "b": 4})  # add + '{"a":' '3,' '"b":' '4}'
    usage = word_usage(["be brief", "what is 3 + 4"], "", [call], cached_tokens=100)
    assert usage == TokenUsage(input_tokens=7, output_tokens=5, cached_tokens=7)
    assert word_usage(["", "hi"], "", at_least=1) == TokenUsage(input_tokens=2, output_tokens=1)
    assert word_usage(["", "hi"], "") == TokenUsage(input_tokens=1, output_tokens=0)
    with pytest.raises(ValueError, match="cached_tokens"):
        word_usage(["hi"], cached_tokens=-1)


@pytest.mark.parametrize("text", ["", "one", "  lead and trail  ", "a\nb\n\nc d", "\t"])
def test_pieces_join_back_and_carry_one_word_each(text):
    after = split_pieces(text)
    assert "".join(after) == text
    assert all(len(piece.split()) <= 1 for piece in after)
    before = split_pieces(text, space_before=True)
    assert "".join(before) == text.rstrip() if text.strip() else before == []
    assert len(before) == len(text.split())


def test_word_logprobs_follow_the_pieces():
    assert word_logprobs("a b", -0.5, space_before=True) == [("a", -0.5), (" b", -0.5)]


def test_pause_sleeps_only_for_a_latency(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(scripted.time, "sleep", slept.append)
    scripted.pause(0)
    scripted.pause(0.25)
    assert slept == [0.25]


# -- reading a step into a turn ---------------------------------------------------------


def test_a_step_becomes_a_turn_with_word_or_fixed_usage():
    turn = Turn.from_step("It is 3.", ["add one and two"], cached_tokens=2)
    assert (turn.text, turn.tool_calls) == ("It is 3.", [])
    assert turn.usage == TokenUsage(input_tokens=4, output_tokens=3, cached_tokens=2)
    fixed = Turn.from_step(None, ["ignored"], usage=(1000, 100), cached_tokens=5000)
    assert (fixed.text, fixed.usage) == (
        "",
        TokenUsage(input_tokens=1000, output_tokens=100, cached_tokens=1000),
    )
    calls = [ToolRequest(name="add", arguments={"a": 1}), ToolRequest(name="mul")]
    both = Turn.from_step(calls, [], offered=["add", "mul"])
    assert [c.name for c in both.tool_calls] == ["add", "mul"] and both.text == ""


def test_a_step_naming_a_tool_not_offered_or_of_another_kind_is_refused():
    with pytest.raises(
        ValueError, match=r"gpt-4o was scripted to call 'mul' but was offered \['add'\]"
    ):
        Turn.from_step(ToolRequest(name="mul"), [], offered=["add"], model="gpt-4o")
    assert Turn.from_step(ToolRequest(name="mul"), []).tool_calls[0].name == "mul"  # unchecked
    with pytest.raises(TypeError, match="reply text or tool requests, got 42"):
        Turn.from_step(42, [])  # type: ignore[arg-type]
