"""Equivalent models, circuit breakers and stream continuation in the one escalation helper."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter

import pytest

from langroute.dispatch.breakers import BreakerPolicy, BreakerRegistry
from langroute.dispatch.equivalents import (
    EquivalentModel,
    RouteEquivalents,
    RouteTarget,
    weighted_order,
)
from langroute.dispatch.escalation import Escalation
from langroute.dispatch.routed_call import RoutedCall, TokenUsage
from langroute.errors import AllRoutesFailedError, RouterConfigError
from langroute.router.decision import RouteDecision

EQUIVALENTS = RouteEquivalents.of_names(
    {"small": ["mini-a", "mini-b"], "large": ["big-a", "big-b"]}
)


class Clock:
    """A clock tests move by hand (no sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new_call() -> RoutedCall:
    return RoutedCall(
        decision=RouteDecision(route="small", confidence=1.0, reason="vote"),
        baseline_route="large",
        baseline_model="big-a",
    )


def escalation(call: RoutedCall, **options) -> Escalation:
    return Escalation(
        call,
        ["small", "large"],
        model_for=lambda r: f"{r}-model",
        usage_of=lambda a: TokenUsage(output_tokens=len(a)) if isinstance(a, str) else None,
        targets=EQUIVALENTS.attempt_order(["small", "large"]),
        **options,
    )


def failing(*down: str):
    asked: list[str] = []

    def ask(target: RouteTarget) -> str:
        asked.append(target.model)
        if target.model in down:
            raise ConnectionError(f"{target.model} is down")
        return f"answer of {target.model}"

    return ask, asked


# ---------------------------------------------------------------------- equivalents
def test_a_failed_model_fails_over_to_its_equivalent_without_escalating():
    call = new_call()
    ask, asked = failing("mini-a")
    route, answer = escalation(call).run(ask)
    assert (route, answer) == ("small", "answer of mini-b")
    assert asked == ["mini-a", "mini-b"]
    assert [(a.route, a.model, a.failed) for a in call.attempts] == [
        ("small", "mini-a", True),
        ("small", "mini-b", False),
    ]
    assert not call.escalated and call.failed_over
    rows = call.ledger_records(framework="core")
    assert [(r.model, r.escalated, r.error is None) for r in rows] == [
        ("mini-a", False, False),
        ("mini-b", False, True),
    ]


def test_every_equivalent_failing_escalates_to_the_stronger_route():
    call = new_call()
    ask, asked = failing("mini-a", "mini-b")
    route, _ = escalation(call).run(ask)
    assert route == "large" and asked == ["mini-a", "mini-b", "big-a"]
    assert call.escalated and call.escalated_from == "small"


def test_a_rejected_answer_skips_the_routes_other_equivalents():
    call = new_call()
    ask, asked = failing()
    route, _ = escalation(call).run(ask, accept=lambda route, answer: route == "large")
    assert route == "large" and asked == ["mini-a", "big-a"]


def test_weighted_order_draws_the_first_model_by_weight_and_keeps_every_model():
    models = [EquivalentModel(name="a", weight=1), EquivalentModel(name="b", weight=3)]
    rng = random.Random(7)
    firsts = Counter(weighted_order(models, rng)[0] for _ in range(4000))
    assert all(sorted(weighted_order(models, rng)) == [0, 1] for _ in range(50))
    assert 0.7 < firsts[1] / 4000 < 0.8  # weight 3 of 4


def test_a_route_may_not_list_one_model_twice():
    with pytest.raises(RouterConfigError, match="lists a model twice"):
        RouteEquivalents.of_names({"small": ["m", "m"]})


def test_a_route_target_compares_as_its_route_name():
    target = RouteTarget("small", 1, "mini-b")
    assert target == "small" and {"small": 1}[target] == 1 and target.route == "small"
    assert type(target.route) is str


# ---------------------------------------------------------------------- breakers
def test_a_breaker_opens_after_consecutive_failures_and_skips_at_once():
    clock = Clock()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=2, cooldown_s=30), clock=clock)
    ask, asked = failing("mini-a")
    for _ in range(2):
        escalation(new_call(), breakers=breakers).run(ask)
    assert breakers.state("mini-a") == "open"
    asked.clear()
    call = new_call()
    run = escalation(call, breakers=breakers)
    assert run.run(ask) == ("small", "answer of mini-b")
    assert asked == ["mini-b"]  # mini-a was not asked: no timeout paid
    skipped = call.attempts[0]
    assert skipped.model == "mini-a" and skipped.error.startswith("CircuitOpenError")
    assert skipped.latency_ms == 0.0 and skipped.measured  # a free row


def test_an_open_breaker_half_opens_after_its_cooldown_and_a_probe_closes_it():
    clock = Clock()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1, cooldown_s=30), clock=clock)
    down = {"mini-a"}

    def ask(target: RouteTarget) -> str:
        if target.model in down:
            raise TimeoutError("read timed out")
        return target.model

    escalation(new_call(), breakers=breakers).run(ask)
    assert breakers.state("mini-a") == "open"
    clock.now = 29.0
    assert escalation(new_call(), breakers=breakers).run(ask)[1] == "mini-b"
    clock.now = 30.0
    assert breakers.state("mini-a") == "half_open"
    down.clear()
    run = escalation(new_call(), breakers=breakers)
    assert run.run(ask)[1] == "mini-a"  # the probe went through and answered
    assert breakers.state("mini-a") == "closed"
    assert [(c.old, c.new) for c in run.breaker_changes] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_a_failed_probe_reopens_the_breaker_for_another_cooldown():
    clock = Clock()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1, cooldown_s=10), clock=clock)
    breakers.record_failure("m")
    clock.now = 10.0
    assert breakers.allow("m") and not breakers.allow("m")  # one probe at a time
    assert breakers.record_failure("m").new == "open"
    clock.now = 19.0
    assert not breakers.allow("m")
    clock.now = 20.0
    assert breakers.allow("m")


def test_a_probe_that_never_reports_frees_its_slot_after_a_cooldown():
    clock = Clock()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1, cooldown_s=10), clock=clock)
    breakers.record_failure("m")
    clock.now = 10.0
    assert breakers.allow("m")
    clock.now = 15.0
    assert not breakers.allow("m")
    clock.now = 20.0
    assert breakers.allow("m")


def test_a_failure_rate_opens_the_breaker_without_consecutive_failures():
    breakers = BreakerRegistry(
        BreakerPolicy(failure_threshold=100, failure_rate=0.5, window=10, min_calls=10)
    )
    for i in range(9):
        (breakers.record_failure if i % 2 else breakers.record_success)("m")
    assert breakers.state("m") == "closed"  # 4 of 9, and under min_calls
    breakers.record_failure("m")
    assert breakers.state("m") == "open"  # 5 of 10


def test_an_error_escalate_on_does_not_cover_leaves_the_breaker_closed():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))

    def ask(target: RouteTarget) -> str:
        raise ValueError("bad request")

    run = escalation(new_call(), breakers=breakers, escalate_on=(ConnectionError,))
    with pytest.raises(ValueError):
        run.run(ask)
    assert breakers.state("mini-a") == "closed"


def test_every_breaker_open_still_tries_the_first_skipped_model_once():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    for model in ("mini-a", "mini-b", "big-a", "big-b"):
        breakers.record_failure(model)
    ask, asked = failing()
    call = new_call()
    assert escalation(call, breakers=breakers).run(ask) == ("small", "answer of mini-a")
    assert asked == ["mini-a"]  # skipped four times at once, then the last resort
    assert [a.model for a in call.attempts] == ["mini-a", "mini-b", "big-a", "big-b", "mini-a"]
    assert breakers.state("mini-a") == "closed"


def test_a_failed_last_resort_fails_the_call_naming_the_breakers():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    for model in ("mini-b", "big-a", "big-b"):
        breakers.record_failure(model)
    ask, asked = failing("mini-a", "mini-b", "big-a", "big-b")
    with pytest.raises(AllRoutesFailedError, match="circuit breaker of 'big-b' is open"):
        escalation(new_call(), breakers=breakers).run(ask)
    assert asked == ["mini-a", "mini-b"]  # mini-a tried; mini-b skipped, then tried once


def test_breaker_listeners_see_changes_and_a_raising_listener_is_ignored():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    seen = []
    breakers.subscribe(lambda change: 1 / 0)
    unsubscribe = breakers.subscribe(seen.append)
    breakers.record_failure("m")
    unsubscribe()
    breakers.record_success("m")
    assert [(c.key, c.new) for c in seen] == [("m", "open")]
    assert breakers.health()["open"] == []


def test_breakers_count_every_failure_under_concurrent_threads():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=10_000, failure_rate=None))

    def fail_many() -> None:
        for _ in range(500):
            breakers.record_failure("m")

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breakers.breaker("m").status().consecutive_failures == 4000


def test_async_runs_consult_the_same_breakers():
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1))

    async def ask(target: RouteTarget) -> str:
        if target.model == "mini-a":
            raise ConnectionError("down")
        return target.model

    async def main() -> list[str]:
        first = await escalation(new_call(), breakers=breakers).arun(ask)
        call = new_call()
        second = await escalation(call, breakers=breakers).arun(ask)
        return [first[1], second[1], call.attempts[0].error.split(":")[0]]

    assert asyncio.run(main()) == ["mini-b", "mini-b", "CircuitOpenError"]


# ---------------------------------------------------------------------- continuation
def broken_stream(words: list[str], breaks_after: int | None):
    for i, word in enumerate(words):
        if breaks_after is not None and i == breaks_after:
            raise ConnectionError("stream cut")
        yield word


def test_a_stream_broken_after_text_continues_on_the_next_model():
    call = new_call()
    resumed = []

    def open_stream(target: RouteTarget):
        return broken_stream(["Hello ", "big ", "world"], 2 if target.model == "mini-a" else None)

    def resume(so_far: list[str]):
        def open_continuation(target: RouteTarget):
            resumed.append((target.model, "".join(so_far)))
            return iter(["world"])

        return open_continuation

    chunks = list(escalation(call).stream(open_stream, resume=resume))
    assert "".join(chunk for _, chunk in chunks) == "Hello big world"
    assert resumed == [("mini-b", "Hello big ")]
    assert [(a.model, a.partial, a.failed) for a in call.attempts] == [
        ("mini-a", True, True),
        ("mini-b", False, False),
    ]
    assert call.model == "mini-b" and not call.escalated


def test_a_stream_that_cannot_continue_ends_with_an_error_naming_the_break():
    def open_stream(target: RouteTarget):
        return broken_stream(["Hello ", "world"], 1)

    def resume(so_far: list[str]):
        def open_continuation(target: RouteTarget):
            raise ConnectionError(f"{target.model} is down too")

        return open_continuation

    got: list[str] = []
    with pytest.raises(AllRoutesFailedError, match="stream broke after part of the answer"):
        for _, chunk in escalation(new_call()).stream(open_stream, resume=resume):
            got.append(chunk)
    assert got == ["Hello "]


def test_a_model_that_opted_out_of_continuation_raises_its_break():
    equivalents = RouteEquivalents(
        {"small": [EquivalentModel(name="mini-a", continue_streams=False)]}
    )
    run = Escalation(
        new_call(),
        ["small", "large"],
        model_for=str,
        targets=equivalents.attempt_order(["small", "large"]),
    )
    stream = run.stream(
        lambda t: broken_stream(["a", "b"], 1), resume=lambda s: lambda t: iter(["b"])
    )
    with pytest.raises(ConnectionError, match="stream cut"):
        list(stream)


def test_an_async_stream_continues_in_the_same_stream():
    async def open_stream(target: RouteTarget):
        for i, word in enumerate(["one ", "two ", "three"]):
            if target.model == "mini-a" and i == 1:
                raise ConnectionError("cut")
            yield word

    def resume(so_far: list[str]):
        assert "".join(so_far) == "one "

        async def open_continuation(target: RouteTarget):
            for word in ["two ", "three"]:
                yield word

        return open_continuation

    async def main() -> tuple[str, RoutedCall]:
        call = new_call()
        text = ""
        async for _, chunk in escalation(call).astream(open_stream, resume=resume):
            text += chunk
        return text, call

    text, call = asyncio.run(main())
    assert text == "one two three"
    assert [a.model for a in call.attempts] == ["mini-a", "mini-b"]


def test_chunks_that_cannot_be_continued_raise_the_break():
    def open_stream(target: RouteTarget):
        return broken_stream(["a", "b"], 1)

    call = new_call()
    with pytest.raises(ConnectionError, match="stream cut"):
        list(escalation(call).stream(open_stream, resume=lambda so_far: None))
    assert [a.model for a in call.attempts] == ["mini-a"]


# ---------------------------------------------------------------------- latency
def test_latency_policy_prefers_the_fastest_equivalent_within_a_price_tier():
    from langroute.dispatch.latency import LatencyPolicy

    prices = {"cheap-slow": 1.0, "cheap-fast": 1.0, "pricey-fastest": 5.0}
    policy = LatencyPolicy(percentile=50, min_samples=2, price_of=prices.get)
    equivalents = RouteEquivalents.of_names(
        {"small": ["cheap-slow", "pricey-fastest", "cheap-fast"]}
    )
    equivalents.reorder = policy
    assert [t.model for t in equivalents.attempt_order(["small"])] == [
        "cheap-slow",
        "cheap-fast",
        "pricey-fastest",
    ]  # no samples yet: declared order within the tiers, cheap tier first
    for model, latency in [("cheap-slow", 800), ("cheap-fast", 100), ("pricey-fastest", 10)]:
        policy.observe(model, latency)
        policy.observe(model, latency)
    assert [t.model for t in equivalents.attempt_order(["small"])] == [
        "cheap-fast",
        "cheap-slow",
        "pricey-fastest",  # fastest of all, but never ahead of a cheaper tier
    ]


def test_an_escalation_reports_answer_latencies_to_the_policy():
    from langroute.dispatch.latency import LatencyPolicy

    policy = LatencyPolicy(min_samples=1)
    ask, _ = failing("mini-a")
    escalation(new_call(), observe_latency=policy.observe).run(ask)
    assert policy.latency("mini-b") is not None and policy.latency("mini-a") is None
