"""Equivalent models, circuit breakers and stream continuation with the real partner clients.

``ChatOpenAI`` and ``ChatAnthropic`` talk HTTP to ``tests/provider_server.py``; faults are
scripted per model and asserted through the requests the fake received, never timings.
"""

from __future__ import annotations

from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI
from langroute.dispatch.breakers import BreakerPolicy, BreakerRegistry
from langroute.dispatch.routed_call import RouteMetadata

from langchain_langroute import CostCallbackHandler, RoutingChatModel
from langchain_langroute.events import BREAKER_EVENT
from langchain_langroute.routes import Route

MINI, HAIKU, LARGE = "gpt-4o-mini", "claude-3-5-haiku-latest", "gpt-4o"
HAIKU_SERVED = "claude-3-5-haiku-20241022"
QUESTION = "hello"  # routed to "small" by the test router


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def models(provider, small_route=None) -> dict:
    def openai(name: str) -> ChatOpenAI:
        return ChatOpenAI(model=name, base_url=provider.openai_url, api_key="test", max_retries=0)

    haiku = ChatAnthropic(
        model=HAIKU, base_url=provider.anthropic_url, api_key="test", max_retries=0
    )
    small = [openai(MINI), haiku] if small_route is None else small_route(openai(MINI), haiku)
    return {"small": small, "large": openai(LARGE)}


def test_provider_down_fails_over_to_the_equivalent_at_the_cheap_price(router, provider):
    provider.script(MINI, "500")
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=models(provider))
    answer = llm.invoke(QUESTION, config={"callbacks": [handler]})
    assert provider.models_asked() == [MINI, HAIKU]  # the strong route was never asked
    meta = RouteMetadata.from_metadata(answer.response_metadata)
    assert (meta.route, meta.model, meta.escalated) == ("small", HAIKU_SERVED, False)
    assert [a.model for a in meta.attempts] == [MINI]
    records = handler.ledger.records()
    assert [(r.route, r.model, r.escalated) for r in records] == [
        ("small", MINI, False),
        ("small", HAIKU_SERVED, False),
    ]
    paid = records[1]
    expected = handler.ledger.pricer.cost(
        HAIKU_SERVED, paid.input_tokens, paid.output_tokens, paid.cached_tokens
    )
    assert paid.cost == expected and paid.cost is not None
    assert llm.route_equivalents.models("small")[1].name == HAIKU


async def test_async_failover_to_the_equivalent(router, provider):
    provider.script(MINI, "429")
    llm = RoutingChatModel(router=router, models=models(provider))
    answer = await llm.ainvoke(QUESTION)
    assert provider.models_asked() == [MINI, HAIKU]
    assert RouteMetadata.from_metadata(answer.response_metadata).model == HAIKU_SERVED


def test_every_equivalent_down_escalates_to_the_strong_route(router, provider):
    provider.script(MINI, "500")
    provider.script(HAIKU, "500")
    llm = RoutingChatModel(router=router, models=models(provider))
    meta = RouteMetadata.from_metadata(llm.invoke(QUESTION).response_metadata)
    assert provider.models_asked() == [MINI, HAIKU, LARGE]
    assert meta.route == "large" and meta.escalated_from == "small"


def test_a_route_object_orders_its_models(router, provider):
    llm = RoutingChatModel(
        router=router,
        models=models(provider, lambda mini, haiku: Route(models=[haiku, mini])),
    )
    llm.invoke(QUESTION)
    assert provider.models_asked() == [HAIKU]


def test_breaker_opens_after_n_failures_and_half_opens_later(router, provider):
    clock = Clock()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=2, cooldown_s=60), clock=clock)
    events = []

    class Events(CostCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            if name == BREAKER_EVENT:
                events.append((data["key"], data["old"], data["new"]))
            return super().on_custom_event(name, data, **kwargs)

    provider.script(MINI, "500")
    llm = RoutingChatModel(router=router, models=models(provider), breakers=breakers)
    config = {"callbacks": [Events()]}
    for _ in range(2):
        llm.invoke(QUESTION, config=config)
    assert provider.count(MINI) == 2 and breakers.state(MINI) == "open"
    llm.invoke(QUESTION, config=config)
    assert provider.count(MINI) == 2  # skipped at once: no request, no timeout paid
    clock.now = 60.0
    provider.script(MINI, "ok")
    answer = llm.invoke(QUESTION, config=config)
    assert provider.count(MINI) == 3  # the half-open probe
    assert RouteMetadata.from_metadata(answer.response_metadata).route == "small"
    assert breakers.state(MINI) == "closed"
    assert events == [
        (MINI, "closed", "open"),
        (MINI, "open", "half_open"),
        (MINI, "half_open", "closed"),
    ]


def test_a_stream_broken_after_text_continues_on_the_equivalent(router, provider):
    provider.script(MINI, "break:3")  # role chunk and two words, then the connection drops
    handler = CostCallbackHandler()
    llm = RoutingChatModel(router=router, models=models(provider))
    chunks = list(llm.stream(QUESTION, config={"callbacks": [handler]}))
    text = "".join(chunk.content for chunk in chunks if isinstance(chunk.content, str))
    assert text.startswith("answer from ") and text.endswith(f"answer from {HAIKU}")
    assert provider.models_asked() == [MINI, HAIKU]
    continuation = provider.requests[1].body["messages"]
    assert continuation[-2] == {"role": "assistant", "content": "answer from "}
    assert "cut off" in str(continuation[-1]["content"])
    records = handler.ledger.records()
    assert [(r.route, r.model, r.error is not None) for r in records] == [
        ("small", MINI, True),
        ("small", HAIKU_SERVED, False),
    ]
    assert not records[0].measured  # the broken stream was paid for, its usage unknown


async def test_an_async_stream_broken_after_text_continues_on_the_equivalent(router, provider):
    provider.script(MINI, "break:3")
    llm = RoutingChatModel(router=router, models=models(provider))
    text = ""
    async for chunk in llm.astream(QUESTION):
        text += chunk.content
    assert text == f"answer from answer from {HAIKU}"
    assert provider.models_asked() == [MINI, HAIKU]


def test_a_route_that_opts_out_of_continuation_raises_its_break(router, provider):
    provider.script(MINI, "break:3")
    llm = RoutingChatModel(
        router=router,
        models=models(
            provider, lambda mini, haiku: Route(models=[mini, haiku], continue_streams=False)
        ),
    )
    received = []
    try:
        for chunk in llm.stream(QUESTION):
            received.append(chunk.content)
    except Exception as error:  # the client's own error for a dropped connection
        assert "incomplete chunked read" in str(error)
    else:
        raise AssertionError("the broken stream should have raised")
    assert "".join(received) == "answer from " and provider.models_asked() == [MINI]


# ---------------------------------------------------------------- routes that are not models
PROOF = "prove that there are infinitely many primes"  # routed to "large" by the test router


def test_an_agent_route_answers_through_the_routing_model(router, provider):
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    @tool
    def get_time(city: str) -> str:
        """The time in a city."""
        return "noon"

    strong = ChatOpenAI(model=LARGE, base_url=provider.openai_url, api_key="test", max_retries=0)
    agent = create_agent(strong, tools=[get_time])
    handler = CostCallbackHandler()
    llm = RoutingChatModel(
        router=router, models={"small": models(provider)["small"], "large": agent}
    )
    answer = llm.invoke(PROOF, config={"callbacks": [handler]})
    assert answer.content == f"answer from {LARGE}"
    assert provider.models_asked() == [LARGE, LARGE]  # the tool call, then the answer
    meta = RouteMetadata.from_metadata(answer.response_metadata)
    assert (meta.route, meta.model) == ("large", "gpt-4o-2024-08-06")
    [row] = handler.ledger.records()
    assert (row.route, row.model) == ("large", "gpt-4o-2024-08-06")
    assert row.output_tokens == 3 + 3  # both answers' usage, summed into one row
    assert row.cost == handler.ledger.pricer.cost(
        "gpt-4o-2024-08-06", row.input_tokens, row.output_tokens
    )


def test_a_canned_answer_route_gets_the_decision_record_and_a_ledger_row(router, provider):
    from langchain_core.runnables import RunnableLambda

    canned = RunnableLambda(lambda _: "We are open 9 to 5.", name="opening-hours")
    handler = CostCallbackHandler()
    llm = RoutingChatModel(
        router=router, models={"small": canned, "large": models(provider)["large"]}
    )
    chunks = list(llm.stream(QUESTION, config={"callbacks": [handler]}))
    assert "".join(c.content for c in chunks) == "We are open 9 to 5."
    assert RouteMetadata.from_metadata(chunks[0].response_metadata).route == "small"
    assert provider.models_asked() == []
    [row] = handler.ledger.records()
    assert (row.route, row.model, row.input_tokens, row.output_tokens) == (
        "small",
        "opening-hours",
        0,
        0,
    )
