"""Escalation: the one helper every integration runs provider calls through."""

from __future__ import annotations

import asyncio

import pytest

from langroute.dispatch.escalation import Escalation
from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage
from langroute.errors import AllRoutesFailedError
from langroute.router.decision import RouteDecision

PATH = ["small", "medium", "large"]


def new_call() -> RoutedCall:
    return RoutedCall(
        decision=RouteDecision(route="small", confidence=1.0, reason="vote"),
        baseline_route="large",
    )


def escalation(call: RoutedCall, **options) -> Escalation:
    return Escalation(
        call,
        PATH,
        model_for=lambda r: f"{r}-model",
        usage_of=lambda a: TokenUsage(output_tokens=len(a)),
        **options,
    )


def test_a_rejected_answer_is_a_paid_attempt_and_the_next_route_runs():
    call, announced = new_call(), []
    run = escalation(call, on_attempt=announced.append)
    route, answer = run.run(lambda r: f"{r} says hi", accept=lambda r, a: r == "medium")
    assert (route, answer) == ("medium", "medium says hi")
    assert [(a.route, a.rejected, a.usage.output_tokens) for a in call.attempts] == [
        ("small", True, 13),
        ("medium", False, 14),
    ]
    assert call.escalated and call.route == "medium"
    assert announced == call.attempts
    assert [a["route"] for a in call.metadata()["attempts"]] == ["small"]


def test_the_last_route_answers_whatever_accept_says():
    call = new_call()
    route, _ = escalation(call).run(lambda r: r, accept=lambda r, a: False)
    assert route == "large"
    assert [a.rejected for a in call.attempts] == [True, True, False]


def test_rejections_then_a_failing_last_route_explain_every_attempt():
    call = new_call()

    def ask(route: str) -> str:
        if route == "large":
            raise TimeoutError("read timed out")
        return "meh"

    with pytest.raises(AllRoutesFailedError) as info:
        escalation(call).run(ask, accept=lambda r, a: False)
    assert str(info.value) == (
        "no route gave an accepted answer (small: rejected; medium: rejected; "
        "large: error: TimeoutError: read timed out)"
    )
    assert info.value.call is call
    assert [route for route, _ in info.value.attempts] == ["large"]


async def test_async_accept_and_hooks_are_awaited():
    call, announced = new_call(), []

    async def accept(route: str, answer: str) -> bool:
        return route != "small"

    async def announce(attempt: Attempt) -> None:
        announced.append(attempt.route)

    async def ask(route: str) -> str:
        return route

    route, _ = await escalation(call, on_attempt=announce).arun(ask, accept=accept)
    assert route == "medium"
    assert announced == ["small", "medium"]


def test_a_stream_rejected_on_its_first_chunk_is_closed_and_the_next_one_streams():
    call, closed = new_call(), []

    def open_stream(route: str):
        try:
            yield f"{route}-1"
            yield f"{route}-2"
        finally:
            closed.append(route)

    chunks = list(escalation(call).stream(open_stream, accept=lambda r, c: r != "small"))
    assert chunks == [("medium", "medium-1"), ("medium", "medium-2")]
    assert closed == ["small", "medium"]
    assert [(a.route, a.rejected) for a in call.attempts] == [("small", True), ("medium", False)]


async def test_an_async_stream_rejected_on_its_first_chunk_moves_on():
    call = new_call()

    async def open_stream(route: str):
        yield f"{route}-1"

    chunks = [
        c async for c in escalation(call).astream(open_stream, accept=lambda r, c: r == "large")
    ]
    assert chunks == [("large", "large-1")]
    assert [a.rejected for a in call.attempts] == [True, True, False]


class Pause(Exception):
    """A signal (like an agent's interrupt), not a failure."""


def test_signals_pass_through_unrecorded():
    call, asked = new_call(), []

    def ask(route: str) -> str:
        asked.append(route)
        raise Pause()

    with pytest.raises(Pause):
        escalation(call, propagate=(Pause,)).run(ask)
    assert asked == ["small"]
    assert call.attempts == []


async def test_signals_pass_through_async_runs_unrecorded():
    call, asked = new_call(), []

    async def ask(route: str) -> str:
        asked.append(route)
        raise Pause()

    with pytest.raises(Pause):
        await escalation(call, propagate=(Pause,)).arun(ask)
    assert asked == ["small"]
    assert call.attempts == []


# ------------------------------------------------------------------ streams like invoke
def test_an_empty_stream_is_a_failed_attempt_and_the_next_route_streams():
    call = new_call()

    def open_stream(route: str):
        if route == "small":
            return iter(())
        return iter([f"{route}-1"])

    assert list(escalation(call).stream(open_stream)) == [("medium", "medium-1")]
    assert call.attempts[0].error.startswith("EmptyStreamError: the stream of route 'small'")
    assert [a.route for a in call.attempts] == ["small", "medium"]


async def test_an_empty_async_stream_is_a_failed_attempt():
    call = new_call()

    async def open_stream(route: str):
        if route != "small":
            yield f"{route}-1"

    chunks = [c async for c in escalation(call).astream(open_stream)]
    assert chunks == [("medium", "medium-1")]
    assert call.attempts[0].error.startswith("EmptyStreamError")


def test_chunks_before_output_are_held_and_a_break_there_escalates():
    call = new_call()

    def open_stream(route: str):
        yield ""  # a role chunk: nothing for the caller yet
        if route == "small":
            raise ConnectionError("peer closed connection")
        yield f"{route}-text"

    chunks = list(escalation(call, delivers=bool).stream(open_stream))
    assert chunks == [("medium", ""), ("medium", "medium-text")]
    assert call.attempts[0].error == "ConnectionError: peer closed connection"
    assert not call.attempts[0].partial and call.attempts[0].measured


def test_a_stream_whose_chunks_deliver_nothing_answers_with_them():
    call = new_call()
    chunks = list(escalation(call, delivers=bool).stream(lambda route: iter(["", ""])))
    assert chunks == [("small", ""), ("small", "")]
    assert call.route == "small"


def test_a_stream_names_its_served_model_on_a_later_chunk():
    call = new_call()
    served = {"b": "small-model-2024-07-18"}
    esc = escalation(call, model_of=lambda route, chunk: served.get(chunk))
    assert [c for _, c in esc.stream(lambda route: iter(["a", "b", "c"]))] == ["a", "b", "c"]
    assert call.model == "small-model-2024-07-18"


async def test_a_stream_broken_after_output_is_a_partial_unmeasured_attempt():
    call = new_call()

    async def open_stream(route: str):
        yield "text"
        raise ConnectionError("peer closed connection")

    received = []
    with pytest.raises(ConnectionError):
        esc = Escalation(call, PATH, model_for=lambda r: f"{r}-model")  # no usage reported
        async for _, chunk in esc.astream(open_stream):
            received.append(chunk)
    assert received == ["text"]
    (attempt,) = call.attempts
    assert attempt.partial and attempt.failed and not attempt.measured


def test_a_stream_the_caller_leaves_closes_the_providers_stream():
    call = new_call()
    closed: list[str] = []
    opened = []  # a client keeps its streams (a pool): dropping one does not end it

    def chunks(route: str):
        try:
            for index in range(10):
                yield f"{route}-{index}"
        finally:
            closed.append(route)  # the provider's connection would be released here

    def open_stream(route: str):
        opened.append(chunks(route))
        return opened[-1]

    stream = escalation(call).stream(open_stream)
    assert next(stream) == ("small", "small-0")
    stream.close()  # the caller left after one chunk
    assert closed == ["small"]
    [attempt] = call.attempts
    assert attempt.route == "small" and attempt.error is None


def test_sync_and_async_escalations_record_the_same_attempts():
    """One logic behind run/arun and stream/astream: the records match, hooks included."""

    def scenario(kind: str) -> list[tuple[str, str | None, bool]]:
        call = new_call()
        seen: list[str] = []
        esc = Escalation(
            call,
            ["small", "medium", "large"],
            model_for=lambda r: f"{r}-model",
            escalate_on=(TimeoutError,),
            on_attempt=lambda a: seen.append(a.route),
        )

        def fail_small(route: str) -> str:
            if route == "small":
                raise TimeoutError("slow")
            return f"{route} answer"

        def chunks(route: str):
            if route == "small":
                raise TimeoutError("slow")
            yield f"{route} answer"

        async def afail_small(route: str) -> str:
            return fail_small(route)

        async def achunks(route: str):
            for chunk in chunks(route):
                yield chunk

        def accept(route: str, answer: str) -> bool:
            return route != "medium"  # medium's answer is not good enough

        if kind == "run":
            esc.run(fail_small, accept=accept)
        elif kind == "arun":
            asyncio.run(esc.arun(afail_small, accept=accept))
        elif kind == "stream":
            list(esc.stream(chunks, accept=accept))
        else:

            async def drain() -> None:
                async for _ in esc.astream(achunks, accept=accept):
                    pass

            asyncio.run(drain())
        assert seen == [a.route for a in call.attempts]
        return [(a.route, a.error, a.rejected) for a in call.attempts]

    expected = [
        ("small", "TimeoutError: slow", False),
        ("medium", None, True),
        ("large", None, False),
    ]
    assert {kind: scenario(kind) for kind in ("run", "arun", "stream", "astream")} == {
        kind: expected for kind in ("run", "arun", "stream", "astream")
    }


async def test_an_async_stream_the_caller_leaves_closes_the_providers_stream():
    call = new_call()
    closed: list[str] = []

    async def open_stream(route: str):
        try:
            for index in range(10):
                yield f"{route}-{index}"
        finally:
            closed.append(route)  # the provider's connection would be released here

    stream = escalation(call).astream(open_stream)
    assert await stream.__anext__() == ("small", "small-0")
    await stream.aclose()  # the caller left after one chunk
    assert closed == ["small"]
    [attempt] = call.attempts
    assert attempt.route == "small" and attempt.error is None
