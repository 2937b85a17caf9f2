"""Route models' own rate limiters: acquired once per delegate call, on every path.

``RoutingChatModel`` calls a route model's ``_generate`` / ``_stream`` directly, which
skips ``BaseChatModel``'s own ``rate_limiter`` handling; the routing model must take the
route model's token itself, once per call, before the call, on the route that answers
and on every route tried before it.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import BaseRateLimiter

from langchain_langroute import RoutingChatModel
from langchain_langroute.testing import FakeRateLimitError, ScriptedChatModel

EASY = "what is the capital of france"
HARD = "prove that there are infinitely many primes"


class CountingRateLimiter(BaseRateLimiter):
    """Grants every request and records it, with the watched model's calls so far."""

    def __init__(self) -> None:
        self.model: ScriptedChatModel | None = None
        self.sync: list[tuple[bool, int]] = []  # (blocking, model calls before the grant)
        self.async_: list[tuple[bool, int]] = []

    def _calls(self) -> int:
        return self.model.call_count if self.model is not None else -1

    def acquire(self, *, blocking: bool = True) -> bool:
        self.sync.append((blocking, self._calls()))
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        self.async_.append((blocking, self._calls()))
        return True


def limited(model_class: type[ScriptedChatModel] = ScriptedChatModel, **fields: Any):
    limiter = CountingRateLimiter()
    model = model_class(rate_limiter=limiter, **fields)
    limiter.model = model
    return model, limiter


@pytest.fixture
def routes():
    small, small_limiter = limited(model="gpt-4o-mini")
    large, large_limiter = limited(model="gpt-4o")
    return small, small_limiter, large, large_limiter


def routing(router, small, large, **options: Any) -> RoutingChatModel:
    return RoutingChatModel(router=router, models={"small": small, "large": large}, **options)


def route_of(message: Any) -> str:
    return message.response_metadata["langroute"]["route"]


# -- each path takes the chosen route's token once, before the call ------------------------


def test_invoke_acquires_the_chosen_routes_limiter(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large)
    assert route_of(llm.invoke(EASY)) == "small"
    assert small_limiter.sync == [(True, 0)]  # blocking, before the model's first call
    assert large_limiter.sync == []
    assert route_of(llm.invoke(HARD)) == "large"
    assert large_limiter.sync == [(True, 0)]
    assert small_limiter.sync == [(True, 0)]
    assert small_limiter.async_ == large_limiter.async_ == []
    assert (small.call_count, large.call_count) == (1, 1)


async def test_ainvoke_acquires_asynchronously(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large)
    assert route_of(await llm.ainvoke(EASY)) == "small"
    assert route_of(await llm.ainvoke(HARD)) == "large"
    assert small_limiter.async_ == [(True, 0)]
    assert large_limiter.async_ == [(True, 0)]
    assert small_limiter.sync == large_limiter.sync == []  # the event loop is never blocked


def test_stream_acquires_once_per_call_not_per_chunk(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large)
    chunks = list(llm.stream(HARD))
    assert len(chunks) > 2
    assert large_limiter.sync == [(True, 0)]
    assert small_limiter.sync == []
    list(llm.stream(HARD))
    assert large_limiter.sync == [(True, 0), (True, 1)]


async def test_astream_acquires_once_per_call(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large)
    chunks = [chunk async for chunk in llm.astream(EASY)]
    assert len(chunks) > 2
    assert small_limiter.async_ == [(True, 0)]
    assert large_limiter.async_ == []
    assert small_limiter.sync == large_limiter.sync == []


def test_invoke_with_streaming_on_acquires_once(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large, streaming=True)
    assert route_of(llm.invoke(EASY)) == "small"
    assert small_limiter.sync == [(True, 0)]
    assert large_limiter.sync == []


def test_batch_acquires_once_per_input(router, routes):
    small, small_limiter, large, large_limiter = routes
    llm = routing(router, small, large)
    answers = llm.batch([EASY, HARD, EASY], config={"max_concurrency": 1})
    assert [route_of(a) for a in answers] == ["small", "large", "small"]
    assert len(small_limiter.sync) == 2 and len(large_limiter.sync) == 1


def test_a_route_model_that_cannot_stream_still_takes_its_token(router, routes):
    class NoStream(ScriptedChatModel):
        _stream = BaseChatModel._stream  # invoke only: answered in one chunk
        _astream = BaseChatModel._astream

    small, small_limiter, _, _ = routes
    large, large_limiter = limited(NoStream, model="gpt-4o")
    llm = routing(router, small, large)
    chunks = list(llm.stream(HARD))
    assert chunks[0].response_metadata["langroute"]["route"] == "large"
    assert large_limiter.sync == [(True, 0)]
    assert small_limiter.sync == []


# -- escalation: the failed route's token and the answering route's token ---------------


def flaky_routes():
    small, small_limiter = limited(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    large, large_limiter = limited(model="gpt-4o")
    return small, small_limiter, large, large_limiter


def escalated(message: Any) -> bool:
    record = message.response_metadata["langroute"]
    return (record["decided_route"], record["route"], record["escalated"]) == (
        "small",
        "large",
        True,
    )


def test_escalated_invoke_acquires_both_routes(router):
    small, small_limiter, large, large_limiter = flaky_routes()
    answer = routing(router, small, large).invoke(EASY)
    assert escalated(answer)
    assert small_limiter.sync == [(True, 0)]
    assert large_limiter.sync == [(True, 0)]
    assert (small.call_count, large.call_count) == (1, 1)


async def test_escalated_ainvoke_acquires_both_routes(router):
    small, small_limiter, large, large_limiter = flaky_routes()
    answer = await routing(router, small, large).ainvoke(EASY)
    assert escalated(answer)
    assert small_limiter.async_ == [(True, 0)]
    assert large_limiter.async_ == [(True, 0)]
    assert small_limiter.sync == large_limiter.sync == []


def test_escalated_stream_acquires_both_routes(router):
    small, small_limiter, large, large_limiter = flaky_routes()
    chunks = list(routing(router, small, large).stream(EASY))
    assert escalated(chunks[0])
    assert small_limiter.sync == [(True, 0)]
    assert large_limiter.sync == [(True, 0)]


async def test_escalated_astream_acquires_both_routes(router):
    small, small_limiter, large, large_limiter = flaky_routes()
    chunks = [chunk async for chunk in routing(router, small, large).astream(EASY)]
    assert escalated(chunks[0])
    assert small_limiter.async_ == [(True, 0)]
    assert large_limiter.async_ == [(True, 0)]


def test_routing_model_with_standard_params_keeps_the_route_limiters(router, routes):
    """Pushing ``temperature`` down copies the route models; their limiters go along."""
    large = routes[2]

    class WithTemperature(ScriptedChatModel):
        temperature: float | None = None

    warm, warm_limiter = limited(WithTemperature, model="gpt-4o-mini")
    llm = routing(router, warm, large, temperature=0.2)
    assert llm.models["small"] is not warm  # a copy with the temperature set
    warm_limiter.model = llm.models["small"]
    assert route_of(llm.invoke(EASY)) == "small"
    assert warm_limiter.sync == [(True, 0)]
