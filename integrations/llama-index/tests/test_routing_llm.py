"""RoutingLLM on its own: the LLM surface, metadata, decisions, events and escalation."""

from __future__ import annotations

import asyncio
import threading

import pytest
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.langroute import ROUTE_KEY, RouteMetadata, RoutingLLM
from llama_index.llms.langroute.testing import MockProviderError, MockProviderLLM, StreamFailure

from langroute import ExemplarRouter
from langroute.errors import AllRoutesFailedError, InvalidQueryError, RouterConfigError

EASY_Q = "hello, how are you?"
HARD_Q = "Prove that the square root of two is irrational."


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


# --------------------------------------------------------------------------- construction


def test_every_route_needs_an_llm(router, small):
    with pytest.raises(RouterConfigError, match=r"routes without a model: \['large'\]"):
        RoutingLLM(router=router, models={"small": small})


def test_unknown_route_names_are_rejected(router, small, large):
    with pytest.raises(RouterConfigError, match="unknown route"):
        RoutingLLM(router=router, models={"small": small, "large": large, "huge": large})


def test_metadata_is_the_weakest_common_denominator(router):
    small = MockProviderLLM(model="gpt-4o-mini", context_window=128_000, num_output=4_096)
    large = MockProviderLLM(
        model="gpt-4o", context_window=64_000, num_output=16_384, function_calling=False
    )
    meta = RoutingLLM(router=router, models={"small": small, "large": large}).metadata
    assert meta.context_window == 64_000
    assert meta.num_output == 4_096
    assert meta.is_chat_model is True
    assert meta.is_function_calling_model is False
    assert meta.model_name == "langroute(small=gpt-4o-mini,large=gpt-4o)"


def test_function_calling_when_every_route_supports_it(llm):
    assert llm.metadata.is_function_calling_model is True


def test_callback_manager_is_shared_with_children_when_reassigned(llm, small, large):
    manager = CallbackManager([])
    llm.callback_manager = manager
    assert small.callback_manager is manager
    assert large.callback_manager is manager


def test_childrens_callback_managers_are_kept_when_none_is_given(router):
    manager = CallbackManager([])
    small = MockProviderLLM(model="gpt-4o-mini", callback_manager=manager)
    large = MockProviderLLM(model="gpt-4o", callback_manager=manager)
    RoutingLLM(router=router, models={"small": small, "large": large})
    assert small.callback_manager is manager and large.callback_manager is manager


def test_callback_manager_given_at_construction_is_shared(router, small, large):
    manager = CallbackManager([])
    RoutingLLM(router=router, models={"small": small, "large": large}, callback_manager=manager)
    assert small.callback_manager is manager and large.callback_manager is manager


# --------------------------------------------------------------------------- the surface


def test_chat_routes_on_the_last_user_message(llm, small, large):
    response = llm.chat(
        [
            ChatMessage(role="system", content=HARD_Q),  # not the user's turn
            ChatMessage(role="user", content=HARD_Q),
            ChatMessage(role="assistant", content="..."),
            ChatMessage(role="user", content=EASY_Q),
        ]
    )
    assert response.message.content == "Answer from gpt-4o-mini."
    assert len(small.calls) == 1 and not large.calls
    assert RouteMetadata.from_metadata(response.additional_kwargs).route == "small"


def test_complete_routes_hard_prompts_to_the_strong_route(llm, small, large):
    response = llm.complete(HARD_Q)
    assert response.text == "Answer from gpt-4o."
    assert [c.method for c in large.calls] == ["complete"] and not small.calls


def test_child_raw_passes_through_untouched_and_decision_is_added(llm, events):
    response = llm.chat(user(EASY_Q))
    assert set(response.raw) == {"id", "object", "model", "choices", "usage"}
    assert response.raw["model"] == "gpt-4o-mini"
    assert response.raw["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    # the child's own additional_kwargs are kept next to ours
    assert response.additional_kwargs["prompt_tokens"] == 4
    info = response.additional_kwargs[ROUTE_KEY]
    assert info["route"] == "small" and info["model"] == "gpt-4o-mini"
    assert info["reason"] == "vote"
    assert (info["decided_route"], info["escalated"], info["attempts"]) == ("small", False, [])
    assert (info["baseline_route"], info["baseline_model"]) == ("large", "gpt-4o")
    # the full decision (scores, neighbours, query) rides on the selection event
    (selected,) = events.of("RouteSelectedEvent")
    assert selected.decision.query == EASY_Q and selected.call_id == info["call_id"]
    assert RouteMetadata.from_metadata(response.additional_kwargs).escalated_from is None


def test_stream_chat_annotates_every_chunk(llm):
    chunks = list(llm.stream_chat(user(HARD_Q)))
    assert "".join(c.delta for c in chunks) == "Answer from gpt-4o."
    assert {RouteMetadata.from_metadata(c.additional_kwargs).route for c in chunks} == {"large"}
    assert chunks[-1].raw["usage"]["completion_tokens"] == 3


def test_stream_complete(llm, small):
    text = "".join(c.delta for c in llm.stream_complete(EASY_Q))
    assert text == "Answer from gpt-4o-mini."
    assert [c.method for c in small.calls] == ["stream_complete"]


async def test_async_surface(llm, small, large):
    chat = await llm.achat(user(EASY_Q))
    complete = await llm.acomplete(HARD_Q)
    streamed = [c.delta async for c in await llm.astream_chat(user(HARD_Q))]
    completed = [c.delta async for c in await llm.astream_complete(EASY_Q)]
    assert chat.message.content == "Answer from gpt-4o-mini."
    assert complete.text == "Answer from gpt-4o."
    assert "".join(streamed) == "Answer from gpt-4o."
    assert "".join(completed) == "Answer from gpt-4o-mini."
    assert [c.method for c in small.calls] == ["achat", "astream_complete"]
    assert [c.method for c in large.calls] == ["acomplete", "astream_chat"]


def test_predict_and_stream_route_on_the_question_not_the_filled_prompt(llm, small, large):
    template = PromptTemplate("Context:\n{context_str}\n\nQuestion: {query_str}\nAnswer:")
    context = HARD_Q * 20  # the retrieved context alone would route to large
    assert llm.predict(template, context_str=context, query_str=EASY_Q) == (
        "Answer from gpt-4o-mini."
    )
    bound = template.partial_format(query_str=EASY_Q)
    assert "".join(llm.stream(bound, context_str=context)) == "Answer from gpt-4o-mini."
    assert len(small.calls) == 2 and not large.calls
    # the child received the full prompt, context included
    assert context in small.calls[0].messages[-1].content


async def test_apredict_and_astream_route_on_the_question(llm, small, large):
    template = PromptTemplate("{context_str}\nQ: {query_str}").partial_format(query_str=HARD_Q)
    assert await llm.apredict(template, context_str=EASY_Q * 10) == "Answer from gpt-4o."
    tokens = [t async for t in await llm.astream(template, context_str=EASY_Q * 10)]
    assert "".join(tokens) == "Answer from gpt-4o."
    assert len(large.calls) == 2 and not small.calls


def test_no_question_goes_to_the_fallback(llm, large, events):
    response = llm.chat([ChatMessage(role="system", content="You are terse.")])
    assert response.message.content == "Answer from gpt-4o."
    (selected,) = events.of("RouteSelectedEvent")
    assert selected.decision.reason == "no_query"
    assert selected.source == "none"
    assert selected.route == llm.router.fallback == "large"


@pytest.mark.parametrize("prompt", [None, 42, b"bytes"])
async def test_a_prompt_that_is_not_a_string_is_a_clear_error(llm, small, large, prompt):
    for call in (llm.complete, llm.stream_complete):
        with pytest.raises(InvalidQueryError, match="prompt must be a string"):
            call(prompt)
    for acall in (llm.acomplete, llm.astream_complete):
        with pytest.raises(InvalidQueryError, match="prompt must be a string"):
            await acall(prompt)
    assert not small.calls and not large.calls


@pytest.mark.slow
def test_hostile_text_with_the_real_tokenizer(starter_router, small, large, events):
    llm = RoutingLLM(router=starter_router, models={"small": small, "large": large})
    assert llm.complete("Translate 'good night' into German \ud800").text == (
        "Answer from gpt-4o-mini."
    )
    llm.complete("\u200b\x00")
    first, second = events.of("RouteSelectedEvent")
    assert first.decision.reason == "vote" and "\ufffd" in first.decision.query
    assert second.decision.reason == "no_query" and second.route == starter_router.fallback


def test_route_keyword_forces_a_route_and_is_not_passed_on(llm, small, large):
    response = llm.complete(HARD_Q, route="small")
    assert response.text == "Answer from gpt-4o-mini."
    assert "route" not in small.calls[0].kwargs
    assert RouteMetadata.from_metadata(response.additional_kwargs).reason == "forced"


def test_force_route_context(llm, small, large):
    template = PromptTemplate("{query_str}")
    with llm.force_route("large") as decision:
        llm.predict(template, query_str=EASY_Q)
        llm.chat(user(EASY_Q))
    assert decision.reason == "forced"
    assert len(large.calls) == 2 and not small.calls
    llm.chat(user(EASY_Q))  # outside the block: routed again
    assert len(small.calls) == 1


def test_each_call_in_a_force_route_block_is_its_own_request(llm, events):
    with llm.force_route("small"):
        llm.complete(HARD_Q)
        llm.complete(HARD_Q)
    selected = events.of("RouteSelectedEvent")
    completed = events.of("RouteCompletedEvent")
    assert [(e.route, e.source, e.decision.reason) for e in selected] == [
        ("small", "forced", "forced"),
        ("small", "forced", "forced"),
    ]
    assert len({e.call_id for e in selected}) == 2
    assert [e.call_id for e in completed] == [e.call_id for e in selected]


def test_force_route_rejects_unknown_routes(llm):
    with pytest.raises(RouterConfigError), llm.force_route("medium"):
        pass


def test_custom_query_extractor(router, small, large):
    class LastMessageOfAnyRole:
        def from_prompt(self, prompt, prompt_args):
            return None

        def from_messages(self, messages):
            return messages[-1].content

        def from_completion(self, prompt):
            return prompt

    llm = RoutingLLM(
        router=router,
        models={"small": small, "large": large},
        query_extractor=LastMessageOfAnyRole(),
    )
    llm.chat([ChatMessage(role="user", content=EASY_Q), ChatMessage(role="system", content=HARD_Q)])
    assert len(large.calls) == 1 and not small.calls


def test_query_extractor_must_fit_the_protocol(router, small, large):
    with pytest.raises(TypeError, match="from_prompt"):
        RoutingLLM(router=router, models={"small": small, "large": large}, query_extractor=object())


# --------------------------------------------------------------------------- events


def test_events_are_counted_once(llm, events):
    llm.chat(user(EASY_Q))
    names = events.names()
    assert names.count("LLMChatStartEvent") == 1
    assert names.count("LLMChatEndEvent") == 1
    assert names.count("RouteSelectedEvent") == 1
    assert names.count("RouteCompletedEvent") == 1
    # the decision comes before the model runs, the completion after
    assert names.index("RouteSelectedEvent") < names.index("LLMChatStartEvent")
    assert names.index("LLMChatEndEvent") < names.index("RouteCompletedEvent")
    start = events.of("LLMChatStartEvent")[0]
    assert start.model_dict["model_name"] == "gpt-4o-mini"  # the child emitted it


def test_predict_emits_one_decision_and_one_llm_call(llm, events):
    llm.predict(PromptTemplate("{context_str} {query_str}"), context_str="x", query_str=HARD_Q)
    names = events.names()
    assert names.count("RouteSelectedEvent") == 1
    assert names.count("LLMPredictStartEvent") == 1
    assert names.count("LLMChatStartEvent") == 1
    selected = events.of("RouteSelectedEvent")[0]
    assert selected.query == HARD_Q and selected.source == "prompt"
    assert selected.route == "large" and selected.model == "gpt-4o"


def test_selected_and_completed_events_share_a_call_id(llm, events):
    llm.complete(EASY_Q)
    (selected,) = events.of("RouteSelectedEvent")
    (completed,) = events.of("RouteCompletedEvent")
    assert selected.call_id == completed.call_id
    assert completed.model == "gpt-4o-mini" and completed.baseline_model == "gpt-4o"
    assert completed.kind == "complete" and completed.streamed is False
    assert completed.response.raw["usage"]["prompt_tokens"] == 4


# --------------------------------------------------------------------------- escalation


def test_provider_error_escalates_to_the_next_route(router, large, events):
    small = MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("429 rate limited")])
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    response = llm.chat(user(EASY_Q))
    assert response.message.content == "Answer from gpt-4o."
    info = RouteMetadata.from_metadata(response.additional_kwargs)
    assert info.route == "large" and info.decided_route == "small"
    assert info.escalated_from == "small"
    assert info.escalated is True and info.decided_route == "small"
    assert [(a.route, a.model, a.error) for a in info.attempts] == [
        ("small", "gpt-4o-mini", "MockProviderError: 429 rate limited")
    ]
    (failed,) = events.of("RouteAttemptFailedEvent")
    assert failed.route == "small" and failed.next_route == "large"
    names = events.names()
    assert names.count("LLMChatStartEvent") == 2  # both attempts are real calls


def test_every_route_failing_raises_with_attempts(router):
    boom_small, boom_large = MockProviderError("small down"), MockProviderError("large down")
    llm = RoutingLLM(
        router=router,
        models={
            "small": MockProviderLLM(model="gpt-4o-mini", script=[boom_small]),
            "large": MockProviderLLM(model="gpt-4o", script=[boom_large]),
        },
    )
    with pytest.raises(AllRoutesFailedError) as caught:
        llm.complete(EASY_Q)
    assert caught.value.attempts == [("small", boom_small), ("large", boom_large)]
    assert caught.value.__cause__ is boom_large


def test_the_strongest_route_has_nowhere_to_escalate(router, small):
    boom = MockProviderError("down")
    large = MockProviderLLM(model="gpt-4o", script=[boom])
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    with pytest.raises(AllRoutesFailedError) as caught:
        llm.complete(HARD_Q)
    assert caught.value.attempts == [("large", boom)]
    assert not small.calls


def test_escalation_can_be_turned_off(router, large):
    small = MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("down")])
    llm = RoutingLLM(router=router, models={"small": small, "large": large}, escalate_on=())
    with pytest.raises(MockProviderError):
        llm.complete(EASY_Q)
    assert not large.calls


def test_escalate_on_limits_which_errors_escalate(router, large):
    small = MockProviderLLM(model="gpt-4o-mini", script=[ValueError("bad request")])
    llm = RoutingLLM(
        router=router, models={"small": small, "large": large}, escalate_on=(MockProviderError,)
    )
    with pytest.raises(ValueError, match="bad request"):
        llm.complete(EASY_Q)
    assert not large.calls


def test_stream_escalates_before_the_first_chunk(router, large):
    small = MockProviderLLM(
        model="gpt-4o-mini", script=[StreamFailure(error=MockProviderError("overloaded"))]
    )
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    chunks = list(llm.stream_chat(user(EASY_Q)))
    assert "".join(c.delta for c in chunks) == "Answer from gpt-4o."
    assert RouteMetadata.from_metadata(chunks[0].additional_kwargs).escalated_from == "small"


def test_stream_does_not_escalate_after_the_first_chunk(router, large, events):
    small = MockProviderLLM(
        model="gpt-4o-mini",
        script=[StreamFailure(error=MockProviderError("connection reset"), after_chunks=2)],
    )
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    received = []
    with pytest.raises(MockProviderError, match="connection reset"):
        for chunk in llm.stream_complete(EASY_Q):
            received.append(chunk.delta)
    assert received == ["partial", " answer"]
    assert not large.calls
    (completed,) = events.of("RouteCompletedEvent")
    assert completed.error == "MockProviderError: connection reset"


async def test_async_stream_escalates_before_the_first_chunk(router, large):
    small = MockProviderLLM(
        model="gpt-4o-mini", script=[StreamFailure(error=MockProviderError("overloaded"))]
    )
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    chunks = [c async for c in await llm.astream_complete(EASY_Q)]
    assert "".join(c.delta for c in chunks) == "Answer from gpt-4o."
    assert RouteMetadata.from_metadata(chunks[-1].additional_kwargs).attempts[0].route == "small"


async def test_async_every_route_failing(router):
    llm = RoutingLLM(
        router=router,
        models={
            "small": MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("a")]),
            "large": MockProviderLLM(model="gpt-4o", script=[MockProviderError("b")]),
        },
    )
    with pytest.raises(AllRoutesFailedError) as caught:
        await llm.achat(user(EASY_Q))
    assert [route for route, _ in caught.value.attempts] == ["small", "large"]


async def test_concurrent_calls_keep_their_own_routes(llm, small, large):
    easy_template = PromptTemplate("{context_str} {query_str}").partial_format(query_str=EASY_Q)
    hard_template = PromptTemplate("{context_str} {query_str}").partial_format(query_str=HARD_Q)
    answers = await asyncio.gather(
        *[
            llm.apredict(template, context_str="shared context")
            for template in (easy_template, hard_template) * 3
        ]
    )
    assert answers == ["Answer from gpt-4o-mini.", "Answer from gpt-4o."] * 3
    assert len(small.calls) == len(large.calls) == 3


# -- warm start (issue 12) ------------------------------------------------------------


class _WarmUpRecorder:
    """Wraps a router; records the thread of each warm_up() call."""

    def __init__(self, inner: ExemplarRouter, can_warm: bool = True) -> None:
        self.inner = inner
        self.can_warm = can_warm
        self.threads: list[str] = []
        self.warmed = threading.Event()

    def __getattr__(self, name: str):
        if name == "warm_up":
            if not self.can_warm:
                raise AttributeError(name)
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
    recorder = _WarmUpRecorder(router)
    llm = RoutingLLM(router=recorder, models={"small": small, "large": large}, warm_up=when)
    assert recorder.warmed.wait(60)
    assert recorder.threads == [thread]
    assert llm.complete("hello there").additional_kwargs[ROUTE_KEY]["decided_route"] == "small"


def test_warm_up_is_off_by_default_and_needs_a_router_that_can(router, small, large):
    recorder = _WarmUpRecorder(router)
    RoutingLLM(router=recorder, models={"small": small, "large": large})
    assert recorder.threads == []
    with pytest.raises(RouterConfigError, match="warm_up"):
        RoutingLLM(
            router=_WarmUpRecorder(router, can_warm=False),
            models={"small": small, "large": large},
            warm_up=True,
        )
