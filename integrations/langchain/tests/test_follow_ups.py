"""Conversations are routed by default: a hard request's follow-ups stay on the strong route.

With default settings (``context`` and ``sessions`` left at ``"auto"``) a short
follow-up ("yes, please do that", "ok go on", "and now in Rust?", "make it shorter")
after a hard request goes where the request went, in ``RoutingChatModel``,
``RouterMiddleware`` and ``langroute serve``; two callers that open with the same words
never share a session.
"""

from __future__ import annotations

import contextlib
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langroute.models.config import load_models_config

from langchain_langroute import RouterMiddleware, RoutingChatModel
from langchain_langroute.server import Gateway, create_app, serve_in_thread
from langchain_langroute.testing import ScriptedChatModel

pytestmark = pytest.mark.slow  # the starter router on the real encoder

HARD = "Write a thread-safe LRU cache in Rust with tests"
FOLLOW_UPS = ["yes, please do that", "ok go on", "and now in Rust?", "make it shorter"]
OPENER = "hello, how are you?"


def models() -> dict[str, ScriptedChatModel]:
    return {
        "small": ScriptedChatModel(model="gpt-4o-mini", provider="openai"),
        "large": ScriptedChatModel(model="gpt-4o", provider="openai"),
    }


def route_of(message: Any) -> str:
    return message.response_metadata["langroute"]["route"]


@pytest.mark.parametrize("follow_up", FOLLOW_UPS)
def test_a_follow_up_keeps_the_strong_route_by_default(starter_router, follow_up):
    llm = RoutingChatModel(router=starter_router, models=models())
    assert route_of(llm.invoke([HumanMessage(HARD)])) == "large"
    later = llm.invoke([HumanMessage(HARD), AIMessage("Here it is: ..."), HumanMessage(follow_up)])
    assert route_of(later) == "large"


@pytest.mark.parametrize("follow_up", FOLLOW_UPS)
def test_a_follow_up_keeps_the_strong_route_in_an_agent(starter_router, follow_up):
    routes = models()
    agent = create_agent(
        model=routes["small"], tools=[], middleware=[RouterMiddleware(starter_router, routes)]
    )
    agent.invoke({"messages": [HumanMessage(HARD)]})
    state = agent.invoke(
        {"messages": [HumanMessage(HARD), AIMessage("Here it is: ..."), HumanMessage(follow_up)]}
    )
    assert route_of(state["messages"][-1]) == "large"


def test_the_same_opener_from_two_callers_is_two_sessions(starter_router):
    llm = RoutingChatModel(router=starter_router, models=models())
    llm.invoke([HumanMessage(OPENER)])
    a = llm.invoke([HumanMessage(OPENER), AIMessage("Sure."), HumanMessage(HARD)])
    assert route_of(a) == "large"
    # caller B: same first words, then an easy question; A's hard turn is not B's
    llm.invoke([HumanMessage(OPENER)])
    b = llm.invoke([HumanMessage(OPENER), AIMessage("Sure."), HumanMessage("thanks, bye!")])
    assert route_of(b) == "small"


def test_the_same_session_id_under_two_tenants_is_two_sessions(starter_router):
    llm = RoutingChatModel(router=starter_router, models=models())
    acme = {"metadata": {"session_id": "1", "tenant": "acme"}}
    globex = {"metadata": {"session_id": "1", "tenant": "globex"}}
    assert route_of(llm.invoke([HumanMessage(HARD)], config=acme)) == "large"
    other = llm.invoke([HumanMessage("thanks, bye!")], config=globex)
    assert route_of(other) == "small"
    assert other.response_metadata["langroute"]["session"]["action"] == "new"


@pytest.fixture
def serve(tmp_path, provider, starter_router):
    lines = ["[routes]"]
    for route, model in (("small", "gpt-4o-mini"), ("large", "gpt-4o")):
        lines.append(
            f'{route} = {{ model = "openai:{model}", base_url = "{provider.openai_url}", '
            'api_key = "upstream-test" }'
        )
    lines += ["", "[serve]", 'ledger = "costs.db"', "max_retries = 0"]
    path = tmp_path / "models.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with contextlib.ExitStack() as stack:
        gateway = Gateway(load_models_config(path), router=starter_router)
        stack.callback(gateway.close)
        url = stack.enter_context(serve_in_thread(create_app(gateway)))
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def served_route(client: openai.OpenAI, messages: list[dict[str, str]], **extra: Any) -> str:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages, **extra)
    return raw.headers["x-langroute-route"]


def test_serve_keeps_each_follow_up_strong_by_default(serve):
    hard = {"role": "user", "content": HARD}
    assert served_route(serve, [hard]) == "large"
    for follow_up in FOLLOW_UPS:
        messages = [hard, {"role": "assistant", "content": "..."}]
        messages.append({"role": "user", "content": follow_up})
        assert served_route(serve, messages) == "large", follow_up


def test_serve_sessions_named_by_the_client_and_never_shared(serve):
    opener = {"role": "user", "content": OPENER}
    served_route(serve, [opener], extra_body={"metadata": {"session_id": "a"}})
    # the client sends only the latest turn; its session remembers the hard request
    served_route(
        serve, [{"role": "user", "content": HARD}], extra_body={"metadata": {"session_id": "a"}}
    )
    held = served_route(
        serve,
        [{"role": "user", "content": "make it shorter"}],
        extra_headers={"x-langroute-session": "a"},
    )
    assert held == "large"
    other = served_route(
        serve,
        [{"role": "user", "content": "make it shorter"}],
        extra_body={"metadata": {"session_id": "b"}},
    )
    assert other == "small"
