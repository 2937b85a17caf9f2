"""Conversations are routed by default: a hard request's follow-ups stay on the strong route.

With default settings, ``RoutingLLM.chat`` sends "yes, please do that", "ok go on", "and
now in Rust?" or "make it shorter" after a hard request where the request went; two
callers that open with the same words never share a session.
"""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.llms.langroute import RouteMetadata, RoutingLLM
from llama_index.llms.langroute.testing import MockProviderLLM

pytestmark = pytest.mark.slow  # the starter router on the real encoder

HARD = "Write a thread-safe LRU cache in Rust with tests"
FOLLOW_UPS = ["yes, please do that", "ok go on", "and now in Rust?", "make it shorter"]
OPENER = "hello, how are you?"


def chat(*turns: str) -> list[ChatMessage]:
    messages = []
    for i, turn in enumerate(turns):
        if i:
            messages.append(ChatMessage(role=MessageRole.ASSISTANT, content="Sure: ..."))
        messages.append(ChatMessage(role=MessageRole.USER, content=turn))
    return messages


@pytest.fixture
def llm(starter_router) -> RoutingLLM:
    return RoutingLLM(
        router=starter_router,
        models={
            "small": MockProviderLLM(model="gpt-4o-mini"),
            "large": MockProviderLLM(model="gpt-4o"),
        },
    )


def route_of(response) -> str:
    return RouteMetadata.from_metadata(response.additional_kwargs).route


@pytest.mark.parametrize("follow_up", FOLLOW_UPS)
async def test_a_follow_up_keeps_the_strong_route_by_default(llm, follow_up):
    assert route_of(llm.chat(chat(HARD))) == "large"
    assert route_of(llm.chat(chat(HARD, follow_up))) == "large"
    assert route_of(await llm.achat(chat(HARD, follow_up))) == "large"


def test_the_same_opener_from_two_callers_is_two_sessions(llm):
    llm.chat(chat(OPENER))
    assert route_of(llm.chat(chat(OPENER, HARD))) == "large"
    llm.chat(chat(OPENER))  # caller B: same first words, then an easy question
    assert route_of(llm.chat(chat(OPENER, "thanks, bye!"))) == "small"


def test_a_named_session_within_a_scope(llm):
    with llm.session("1", scope="acme"):
        assert route_of(llm.chat(chat(HARD))) == "large"
        assert route_of(llm.chat(chat("make it shorter"))) == "large"
    with llm.session("1", scope="globex"):
        assert route_of(llm.chat(chat("make it shorter"))) == "small"
