"""Behaviour of RoutingChatModel: routing, metadata, streaming, batching, tools, failures."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableBinding, RunnableLambda
from langchain_core.tools import tool
from langroute.errors import AllRoutesFailedError, RouterConfigError
from pydantic import BaseModel, Field

from langchain_langroute import ROUTE_EVENT, RoutingChatModel, recent_human_messages
from langchain_langroute.testing import (
    FakeProviderError,
    FakeRateLimitError,
    FakeTimeoutError,
    ScriptedChatModel,
)

EASY = "what is the capital of france"
HARD = "prove that there are infinitely many primes"


def route_of(message: Any) -> str:
    return message.response_metadata["langroute"]["route"]


# --------------------------------------------------------------------------- construction


def test_every_route_needs_a_model(router, small):
    with pytest.raises(RouterConfigError, match=r"routes without a model: \['large'\]"):
        RoutingChatModel(router=router, models={"small": small})


def test_models_for_unknown_routes_are_rejected(router, small, large):
    with pytest.raises(RouterConfigError, match="models for unknown routes"):
        RoutingChatModel(router=router, models={"small": small, "large": large, "xl": large})


def test_route_models_must_be_chat_models(router, small):
    with pytest.raises(RouterConfigError, match="must be a LangChain BaseChatModel"):
        RoutingChatModel(router=router, models={"small": small, "large": "gpt-4o"})


def test_escalation_order_is_checked(router, small, large):
    with pytest.raises(RouterConfigError, match="escalation_order"):
        RoutingChatModel(
            router=router, models={"small": small, "large": large}, escalation_order=["huge"]
        )


def test_standard_params_are_pushed_to_models_that_have_them(router, small):
    class TemperatureModel(ScriptedChatModel):
        temperature: float = 0.7

    explicit = TemperatureModel(model="gpt-4o", temperature=0.3)
    implicit = TemperatureModel(model="gpt-4o-mini")
    llm = RoutingChatModel(
        router=router, models={"small": implicit, "large": explicit}, temperature=0.0
    )
    assert llm.models["small"].temperature == 0.0  # not set by the user: router default
    assert llm.models["large"].temperature == 0.3  # set explicitly: kept
    assert llm._get_ls_params()["ls_temperature"] == 0.0


# --------------------------------------------------------------------------- routing


def test_routes_easy_and_hard_questions(llm, small, large):
    easy = llm.invoke(EASY)
    hard = llm.invoke(HARD)
    assert route_of(easy) == "small"
    assert easy.response_metadata["model_name"] == "gpt-4o-mini"
    assert route_of(hard) == "large"
    assert hard.response_metadata["model_name"] == "gpt-4o"
    assert small.call_count == 1
    assert large.call_count == 1


def test_decision_metadata_is_complete(llm):
    record = llm.invoke(EASY).response_metadata["langroute"]
    assert record["route"] == "small"
    assert record["model"] == "gpt-4o-mini"
    assert record["reason"] in ("vote", "scores")
    assert 0.0 <= record["confidence"] <= 1.0
    assert record["escalated"] is False
    assert record["attempts"] == []
    assert record["baseline_model"] == "gpt-4o"


def test_routes_on_last_human_message_with_content_blocks(llm):
    message = HumanMessage(
        content=[
            {"type": "text", "text": "prove that there are infinitely many primes"},
            {"type": "image", "url": "https://example.com/x.png"},
        ]
    )
    conversation = [HumanMessage(EASY), AIMessage("Paris."), message]
    assert route_of(llm.invoke(conversation)) == "large"
    conversation = [HumanMessage(HARD), AIMessage("..."), HumanMessage("thanks a lot")]
    assert route_of(llm.invoke(conversation)) == "small"


def test_rag_prompt_routes_on_the_question_not_the_context(llm, large):
    context = " ".join(
        ["prove the theorem rigorously by induction and derive the asymptotic bound"] * 20
    )
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from this context:\n{context}"),
            ("human", "{question}"),
        ]
    )
    chain = prompt | llm
    answer = chain.invoke({"context": context, "question": EASY})
    assert route_of(answer) == "small"
    assert large.call_count == 0
    # routing on the whole prompt would have picked the strong route
    assert llm.router.route(context + " " + EASY).route == "large"


def test_rag_context_reaches_the_chosen_model(llm, small):
    context = "The capital of France is Paris."
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Context: {context}"), ("human", "{question}")]
    )
    (prompt | llm).invoke({"context": context, "question": EASY})
    sent = small.calls[-1]["messages"]
    assert isinstance(sent[0], SystemMessage)
    assert context in sent[0].content


def test_lcel_chain_prompt_model_parser(llm):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
    assert chain.invoke({"q": EASY}) == f"gpt-4o-mini answers: {EASY}"
    assert chain.invoke({"q": HARD}) == f"gpt-4o answers: {HARD}"


def test_no_query_uses_router_fallback(llm, large):
    answer = llm.invoke([SystemMessage("You are terse."), HumanMessage("   ")])
    record = answer.response_metadata["langroute"]
    assert record["reason"] == "no_query"
    assert record["route"] == "large"
    assert large.call_count == 1


def test_custom_query_extractor(router, small, large):
    llm = RoutingChatModel(
        router=router,
        models={"small": small, "large": large},
        query_extractor=recent_human_messages(2),
    )
    conversation = [HumanMessage(HARD), AIMessage("..."), HumanMessage("and why")]
    # the last turn alone says little; with the previous turn the question is hard
    assert route_of(llm.invoke(conversation)) == "large"


def test_model_kwarg_forces_a_route_by_name_or_model(llm, small, large):
    forced = llm.invoke(EASY, model="large")
    assert route_of(forced) == "large"
    assert forced.response_metadata["langroute"]["reason"] == "forced"
    assert route_of(llm.invoke(HARD, model="gpt-4o-mini")) == "small"
    # the override is not passed on to the route model
    assert "model" not in small.calls[-1]["kwargs"]
    assert "model" not in large.calls[-1]["kwargs"]


def test_unknown_forced_model_is_a_clear_error(llm):
    with pytest.raises(RouterConfigError, match="names no route"):
        llm.invoke(EASY, model="claude-9")


def test_ls_params_name_router_and_override(llm):
    params = llm._get_ls_params()
    assert params["ls_provider"] == "langroute"
    assert params["ls_model_name"] == "langroute[small,large]"
    assert llm._get_ls_params(model="large")["ls_model_name"] == "large"


# --------------------------------------------------------------------------- usage once


def test_usage_is_counted_once_under_the_delegate_name(llm):
    with get_usage_metadata_callback() as cb:
        easy = llm.invoke(EASY)
        hard = llm.invoke(HARD)
    assert set(cb.usage_metadata) == {"gpt-4o-mini", "gpt-4o"}
    assert cb.usage_metadata["gpt-4o-mini"]["total_tokens"] == easy.usage_metadata["total_tokens"]
    assert cb.usage_metadata["gpt-4o"]["total_tokens"] == hard.usage_metadata["total_tokens"]


def test_streamed_usage_is_counted_once(llm):
    with get_usage_metadata_callback() as cb:
        chunks = list(llm.stream(HARD))
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1
    assert cb.usage_metadata == {"gpt-4o": with_usage[0].usage_metadata}


class _ModelRuns(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any, Any]] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs):
        self.starts.append({"run_id": run_id, **kwargs})

    def on_custom_event(self, name, data, *, run_id, **kwargs):
        self.events.append((name, data, run_id))


def test_one_model_run_per_call_and_route_event_on_it(llm):
    runs = _ModelRuns()
    llm.invoke(EASY, config={"callbacks": [runs]})
    assert len(runs.starts) == 1
    assert [name for name, _, _ in runs.events] == [ROUTE_EVENT]
    _, data, run_id = runs.events[0]
    assert run_id == runs.starts[0]["run_id"]
    assert data["route"] == "small"
    assert data["model"] == "gpt-4o-mini"
    assert data["decision"]["route"] == "small"


def test_route_event_on_stream_run(llm):
    runs = _ModelRuns()
    list(llm.stream(HARD, config={"callbacks": [runs]}))
    assert len(runs.starts) == 1
    assert [(n, d["route"]) for n, d, _ in runs.events] == [(ROUTE_EVENT, "large")]
    assert runs.events[0][2] == runs.starts[0]["run_id"]


# --------------------------------------------------------------------------- streaming


def test_stream_decision_and_model_name_ride_on_exactly_one_chunk(llm):
    chunks = list(llm.stream(HARD))
    assert len(chunks) > 2
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    tagged = [c for c in chunks if "langroute" in c.response_metadata]
    named = [c for c in chunks if "model_name" in c.response_metadata]
    assert tagged == [chunks[0]]
    assert len(named) == 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.response_metadata["model_name"] == "gpt-4o"
    assert full.response_metadata["langroute"]["route"] == "large"
    assert full.content == f"gpt-4o answers: {HARD}"
    assert chunks[-1].chunk_position == "last"


async def test_astream_and_ainvoke(llm):
    chunks = [c async for c in llm.astream(EASY)]
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.response_metadata["langroute"]["route"] == "small"
    assert full.usage_metadata["output_tokens"] > 0
    answer = await llm.ainvoke(HARD)
    assert route_of(answer) == "large"


async def test_astream_events_v2_shows_the_route_event(llm):
    events = [e async for e in llm.astream_events(HARD, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert len(custom) == 1
    assert custom[0]["name"] == ROUTE_EVENT
    assert custom[0]["data"]["route"] == "large"
    start = next(e for e in events if e["event"] == "on_chat_model_start")
    assert custom[0]["run_id"] == start["run_id"]
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert len(streamed) > 1


async def test_astream_events_in_a_chain(llm):
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
    events = [e async for e in chain.astream_events({"q": EASY}, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["data"]["route"] for e in custom] == ["small"]
    end = [e for e in events if e["event"] == "on_chain_end" and not e["parent_ids"]]
    assert end[-1]["data"]["output"] == f"gpt-4o-mini answers: {EASY}"


def test_invoke_with_streaming_handler_streams_and_keeps_the_event(llm):
    class Tokens(_ModelRuns):
        def __init__(self) -> None:
            super().__init__()
            self.tokens: list[str] = []

        def on_llm_new_token(self, token, **kwargs):
            self.tokens.append(token)

    tokens = Tokens()
    streaming = llm.model_copy(update={"streaming": True})
    answer = streaming.invoke(HARD, config={"callbacks": [tokens]})
    assert "".join(tokens.tokens) == answer.content
    assert len(tokens.tokens) > 1
    assert [n for n, _, _ in tokens.events] == [ROUTE_EVENT]
    assert route_of(answer) == "large"


# --------------------------------------------------------------------------- batching


class _CountingRouter:
    """Wraps a router and counts routing calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.route_calls = 0
        self.batch_calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def route(self, query):
        self.route_calls += 1
        return self.inner.route(query)

    async def aroute(self, query):
        self.route_calls += 1
        return await self.inner.aroute(query)

    def route_batch(self, queries):
        self.batch_calls.append(list(queries))
        return self.inner.route_batch(queries)

    async def aroute_batch(self, queries):
        self.batch_calls.append(list(queries))
        return await self.inner.aroute_batch(queries)


def test_batch_routes_all_inputs_with_one_batched_call(router, small, large):
    counting = _CountingRouter(router)
    llm = RoutingChatModel(router=counting, models={"small": small, "large": large})
    answers = llm.batch([EASY, HARD, "hello", [SystemMessage("x"), HumanMessage(" ")]])
    assert counting.batch_calls == [[EASY, HARD, "hello"]]
    assert counting.route_calls == 0
    assert [route_of(a) for a in answers] == ["small", "large", "small", "large"]
    assert answers[3].response_metadata["langroute"]["reason"] == "no_query"


async def test_abatch_routes_all_inputs_with_one_batched_call(router, small, large):
    counting = _CountingRouter(router)
    llm = RoutingChatModel(router=counting, models={"small": small, "large": large})
    answers = await llm.abatch([HARD, EASY])
    assert counting.batch_calls == [[HARD, EASY]]
    assert counting.route_calls == 0
    assert [route_of(a) for a in answers] == ["large", "small"]


def test_batch_return_exceptions(router, large):
    broken = ScriptedChatModel(model="gpt-4o-mini", fail_always=FakeProviderError("500"))
    failing_large = ScriptedChatModel(model="gpt-4o", fail_always=FakeProviderError("503"))
    llm = RoutingChatModel(router=router, models={"small": broken, "large": failing_large})
    results = llm.batch([EASY, HARD], return_exceptions=True)
    assert all(isinstance(r, AllRoutesFailedError) for r in results)


class _FussyRouter(_CountingRouter):
    """A router whose batch call fails as a whole when one query contains "boom"."""

    def route_batch(self, queries):
        self.batch_calls.append(list(queries))
        if any("boom" in q for q in queries):
            raise ValueError("cannot route a boom")
        return self.inner.route_batch(queries)

    async def aroute_batch(self, queries):
        return self.route_batch(queries)

    def route(self, query):
        self.route_calls += 1
        if "boom" in query:
            raise ValueError("cannot route a boom")
        return self.inner.route(query)

    async def aroute(self, query):
        return self.route(query)


def test_one_bad_query_never_fails_its_neighbours_in_a_batch(router, small, large):
    fussy = _FussyRouter(router)
    # plain query routing: the fussy router fails on route() and route_batch() only
    llm = RoutingChatModel(
        router=fussy, models={"small": small, "large": large}, context=None, sessions=False
    )
    results = llm.batch([EASY, "boom", HARD], return_exceptions=True)
    assert route_of(results[0]) == "small" and route_of(results[2]) == "large"
    assert isinstance(results[1], ValueError) and "boom" in str(results[1])


async def test_one_bad_query_never_fails_its_neighbours_in_an_abatch(router, small, large):
    fussy = _FussyRouter(router)
    # plain query routing: the fussy router fails on route() and route_batch() only
    llm = RoutingChatModel(
        router=fussy, models={"small": small, "large": large}, context=None, sessions=False
    )
    results = await llm.abatch([EASY, "boom", HARD], return_exceptions=True)
    assert route_of(results[0]) == "small" and route_of(results[2]) == "large"
    assert isinstance(results[1], ValueError) and "boom" in str(results[1])


@pytest.mark.slow
def test_hostile_text_in_batch_and_invoke_with_the_real_tokenizer(starter_router, small, large):
    llm = RoutingChatModel(router=starter_router, models={"small": small, "large": large})
    surrogate = "Translate 'good night' into German \ud800"
    results = llm.batch(
        [surrogate, "\u200b\u200b", "\x00", "Translate 'thank you' into French"],
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    reasons = [r.response_metadata["langroute"]["reason"] for r in results]
    assert reasons[1:3] == ["no_query", "no_query"]
    assert route_of(results[0]) == route_of(results[3]) == "small"
    assert route_of(llm.invoke(surrogate)) == "small"
    invisible = llm.invoke("\u200b")
    assert invisible.response_metadata["langroute"]["reason"] == "no_query"
    assert route_of(invisible) == starter_router.fallback


# --------------------------------------------------------------------------- failures


def test_escalates_to_the_next_stronger_route_on_error(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    llm = RoutingChatModel(router=router, models={"small": flaky, "large": large})
    answer = llm.invoke(EASY)
    record = answer.response_metadata["langroute"]
    assert record["route"] == "large"
    assert record["decided_route"] == "small"
    assert record["escalated"] is True
    assert record["escalated_from"] == "small"
    [failed] = record["attempts"]
    assert {k: failed[k] for k in ("route", "model", "error")} == {
        "route": "small",
        "model": "gpt-4o-mini",
        "error": "FakeRateLimitError: 429",
    }
    assert answer.response_metadata["model_name"] == "gpt-4o"
    # the next call to the small route succeeds again
    assert route_of(llm.invoke(EASY)) == "small"


def test_all_routes_failing_raises_with_attempts(router):
    small = ScriptedChatModel(model="gpt-4o-mini", fail_always=FakeTimeoutError("timed out"))
    large = ScriptedChatModel(model="gpt-4o", fail_always=FakeProviderError("502"))
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    with pytest.raises(AllRoutesFailedError) as info:
        llm.invoke(EASY)
    assert [route for route, _ in info.value.attempts] == ["small", "large"]
    assert isinstance(info.value.attempts[0][1], FakeTimeoutError)
    assert info.value.__cause__ is info.value.attempts[-1][1]
    assert str(info.value) == (
        "every route failed: small (FakeTimeoutError: timed out), large (FakeProviderError: 502)"
    )
    assert [a.route for a in info.value.call.attempts] == ["small", "large"]  # the RoutedCall


def test_strongest_route_failing_has_nowhere_to_go(router, small):
    large = ScriptedChatModel(model="gpt-4o", fail_always=FakeProviderError("502"))
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    with pytest.raises(AllRoutesFailedError) as info:
        llm.invoke(HARD)
    assert [route for route, _ in info.value.attempts] == ["large"]
    assert small.call_count == 0


def test_escalation_order_is_configurable(large):
    medium = ScriptedChatModel(model="gpt-4.1-mini")
    three = make_three_route_router()
    flaky_small = ScriptedChatModel(model="gpt-4o-mini", fail_always=FakeProviderError("500"))
    llm = RoutingChatModel(
        router=three,
        models={"small": flaky_small, "medium": medium, "large": large},
        escalation_order=["small", "large", "medium"],
    )
    answer = llm.invoke(EASY)
    assert route_of(answer) == "large"
    assert answer.response_metadata["langroute"]["attempts"][0]["route"] == "small"
    assert medium.call_count == 0


def make_three_route_router():
    from langroute import Exemplar, ExemplarRouter
    from langroute.embedders import HashingEmbedder

    return ExemplarRouter(
        routes=["small", "medium", "large"],
        exemplars=[
            Exemplar(text="what is the capital of france", route="small"),
            Exemplar(text="summarise this article in three bullet points", route="medium"),
            Exemplar(text="prove that there are infinitely many primes", route="large"),
        ],
        embedder=HashingEmbedder(),
        k=1,
        min_similarity=0.05,
        min_margin=0.0,
    )


def test_errors_outside_escalate_on_propagate(router, large):
    broken = ScriptedChatModel(model="gpt-4o-mini", fail_always=KeyError("bug"))
    llm = RoutingChatModel(
        router=router,
        models={"small": broken, "large": large},
        escalate_on=(FakeProviderError, TimeoutError),
    )
    with pytest.raises(KeyError):
        llm.invoke(EASY)
    assert large.call_count == 0


def test_stream_escalates_before_the_first_chunk(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeTimeoutError("slow")})
    llm = RoutingChatModel(router=router, models={"small": flaky, "large": large})
    chunks = list(llm.stream(EASY))
    record = chunks[0].response_metadata["langroute"]
    assert record["route"] == "large"
    assert record["attempts"][0]["error"] == "FakeTimeoutError: slow"
    assert "".join(c.content for c in chunks) == f"gpt-4o answers: {EASY}"


async def test_astream_escalates_before_the_first_chunk(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    llm = RoutingChatModel(router=router, models={"small": flaky, "large": large})
    chunks = [c async for c in llm.astream(EASY)]
    assert chunks[0].response_metadata["langroute"]["route"] == "large"


def test_no_escalation_after_the_first_chunk_when_continuation_is_off(router, large):
    flaky = ScriptedChatModel(
        model="gpt-4o-mini", mid_stream_failures={1: FakeProviderError("connection reset")}
    )
    llm = RoutingChatModel(
        router=router, models={"small": flaky, "large": large}, continue_streams=False
    )
    received = []
    with pytest.raises(FakeProviderError, match="connection reset"):
        for chunk in llm.stream(EASY):
            received.append(chunk)
    assert len(received) == 1
    assert large.call_count == 0


async def test_async_escalation(router, large):
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeRateLimitError("429")})
    llm = RoutingChatModel(router=router, models={"small": flaky, "large": large})
    answer = await llm.ainvoke(EASY)
    assert route_of(answer) == "large"
    assert answer.response_metadata["langroute"]["escalated_from"] == "small"


def test_delegate_without_streaming_answers_in_one_chunk(router, small):
    class NoStream(ScriptedChatModel):
        _stream = BaseChatModel._stream  # not implemented: invoke only
        _astream = BaseChatModel._astream

    large = NoStream(model="gpt-4o")
    llm = RoutingChatModel(router=router, models={"small": small, "large": large})
    chunks = list(llm.stream(HARD))
    assert chunks[0].content == f"gpt-4o answers: {HARD}"
    assert chunks[0].response_metadata["langroute"]["route"] == "large"
    assert chunks[0].usage_metadata["output_tokens"] > 0


# --------------------------------------------------------------------------- tools


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"It is sunny in {city}."


def test_bind_tools_returns_binding_and_reaches_the_chosen_model(llm, small, large):
    bound = llm.bind_tools([get_weather], tool_choice="any")
    assert isinstance(bound, RunnableBinding)
    answer = bound.invoke(HARD)
    assert route_of(answer) == "large"
    assert answer.tool_calls[0]["name"] == "get_weather"
    sent = large.calls[-1]["kwargs"]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "any"
    assert small.call_count == 0


def test_bind_tools_uses_each_models_own_format(router, small):
    class CustomFormat(ScriptedChatModel):
        """A provider whose bind_tools emits its own payload keys."""

        def bind_tools(self, tools, *, tool_choice=None, **kwargs):
            specs = [{"custom_name": t["function"]["name"]} for t in tools]
            return self.bind(functions=specs, function_call=tool_choice, **kwargs)

    custom = CustomFormat(model="gpt-4o", auto_tool_calls=False)
    llm = RoutingChatModel(router=router, models={"small": small, "large": custom})
    bound = llm.bind_tools([get_weather], tool_choice="get_weather", strict=True)
    bound.invoke(HARD)
    sent = custom.calls[-1]["kwargs"]
    assert sent == {
        "functions": [{"custom_name": "get_weather"}],
        "function_call": "get_weather",
        "strict": True,
    }
    bound.invoke(EASY)
    assert small.calls[-1]["kwargs"]["tools"][0]["function"]["name"] == "get_weather"
    assert small.calls[-1]["kwargs"]["strict"] is True


class Capital(BaseModel):
    """The capital city of a country."""

    country: str = Field(description="The country.")
    city: str = Field(description="Its capital city.")


def test_structured_output_through_the_router(llm, small):
    structured = llm.with_structured_output(Capital)
    result = structured.invoke("what is the capital of 'France'")
    assert isinstance(result, Capital)
    assert result.country == "France"
    assert small.call_count == 1
    raw = llm.with_structured_output(Capital, include_raw=True).invoke(HARD)
    assert route_of(raw["raw"]) == "large"
    assert isinstance(raw["parsed"], Capital)


async def test_structured_output_async_and_streaming(llm):
    structured = llm.with_structured_output(Capital)
    assert isinstance(await structured.ainvoke(EASY), Capital)
    last = None
    for part in structured.stream(EASY):
        last = part
    assert isinstance(last, Capital)


def test_tool_calling_loop_by_hand(llm):
    bound = llm.bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("what is the weather in 'Paris'")]
    first = bound.invoke(messages)
    assert first.tool_calls[0]["args"] == {"city": "Paris"}
    messages += [first, get_weather.invoke(first.tool_calls[0])]
    final = bound.invoke(messages)
    assert final.content == "The tool returned: It is sunny in Paris."
    assert route_of(first) == route_of(final)


def test_agent_loop_with_create_agent(llm, small, large):
    from langchain.agents import create_agent

    agent = create_agent(model=llm, tools=[get_weather])
    state = agent.invoke({"messages": [HumanMessage("what is the weather in 'Paris'")]})
    messages = state["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[2].content == "It is sunny in Paris."
    assert messages[-1].content == "The tool returned: It is sunny in Paris."
    assert all(route_of(m) == "small" for m in messages if m.type == "ai")
    assert small.call_count == 2
    assert large.call_count == 0


async def test_agent_loop_async_with_usage_counted_once(llm):
    from langchain.agents import create_agent

    agent = create_agent(model=llm, tools=[get_weather])
    with get_usage_metadata_callback() as cb:
        state = await agent.ainvoke({"messages": [HumanMessage("weather in 'Rome'")]})
    ai = [m for m in state["messages"] if m.type == "ai"]
    expected = sum(m.usage_metadata["total_tokens"] for m in ai)
    assert cb.usage_metadata["gpt-4o-mini"]["total_tokens"] == expected


# --------------------------------------------------------------------------- concurrency


def test_concurrent_invocations_route_independently(llm, small, large):
    inputs = [EASY, HARD] * 10
    results = RunnableLambda(lambda q: llm.invoke(q)).batch(inputs, config={"max_concurrency": 8})
    assert [route_of(r) for r in results] == ["small", "large"] * 10
    assert small.call_count == 10
    assert large.call_count == 10


async def test_concurrent_async_invocations(llm):
    results = await asyncio.gather(*(llm.ainvoke(q) for q in [EASY, HARD] * 5))
    assert [route_of(r) for r in results] == ["small", "large"] * 5


# -- warm start (issue 12) ------------------------------------------------------------


class _CountingWarmUp:
    """Wraps a router; records the thread of each warm_up() call."""

    def __init__(self, inner, can_warm: bool = True) -> None:
        self.inner = inner
        self.can_warm = can_warm
        self.threads: list[str] = []
        self.warmed = threading.Event()

    def __getattr__(self, name):
        if name == "warm_up" and not self.can_warm:
            raise AttributeError(name)
        if name == "warm_up":
            return self._warm_up
        return getattr(self.inner, name)

    def _warm_up(self) -> float:
        self.threads.append(threading.current_thread().name)
        self.warmed.set()
        return self.inner.warm_up()


@pytest.mark.parametrize(
    ("when", "thread"), [(True, "MainThread"), ("background", "langroute-warm-up")]
)
def test_warm_up_option_warms_the_router(router, small, large, when, thread):
    counting = _CountingWarmUp(router)
    model = RoutingChatModel(router=counting, models={"small": small, "large": large}, warm_up=when)
    assert counting.warmed.wait(60)
    assert counting.threads == [thread]
    assert model.invoke("hello").response_metadata["langroute"]["decided_route"] == "small"


def test_warm_up_is_off_by_default_and_needs_a_router_that_can(router, small, large):
    counting = _CountingWarmUp(router)
    RoutingChatModel(router=counting, models={"small": small, "large": large})
    assert counting.threads == []
    unable = _CountingWarmUp(router, can_warm=False)
    with pytest.raises(RouterConfigError, match="warm_up"):
        RoutingChatModel(router=unable, models={"small": small, "large": large}, warm_up=True)
