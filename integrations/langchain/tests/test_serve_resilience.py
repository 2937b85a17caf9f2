"""``langroute serve`` with equivalent models from the models file, breakers and /healthz.

The server runs for real (uvicorn in a thread) with ``ChatOpenAI`` and ``ChatAnthropic``
built from the models file and pointed at the fake provider (``tests/provider_server.py``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langroute.models.config import load_models_config

from langchain_langroute.server import Gateway, create_app, serve_in_thread

from .conftest import make_router

HELLO = [{"role": "user", "content": "hello"}]
HAIKU, HAIKU_SERVED = "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"


def write_config(folder: Path, provider: Any, breakers: str) -> Path:
    openai_options = f'base_url = "{provider.openai_url}", api_key = "upstream-test"'
    anthropic_options = f'base_url = "{provider.anthropic_url}", api_key = "upstream-test"'
    text = f"""
[routes]
small = [
  {{ model = "openai:gpt-4o-mini", {openai_options} }},
  {{ model = "anthropic:{HAIKU}", {anthropic_options} }},
]
large = {{ model = "openai:gpt-4o", {openai_options} }}

[serve]
ledger = "costs.db"
max_retries = 0
{breakers}
"""
    path = folder / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def server(tmp_path, provider):
    with contextlib.ExitStack() as stack:

        def start(breakers: str = "[serve.breakers]\nfailure_threshold = 2\ncooldown_s = 600"):
            config = load_models_config(write_config(tmp_path, provider, breakers))
            gateway = Gateway(config, router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
            return url, gateway, client

        yield start


def test_the_models_file_declares_equivalents_in_order():
    from langroute.models.config import models_config_from_dict

    config = models_config_from_dict(
        {
            "routes": {
                "small": {
                    "models": ["openai:gpt-4o-mini", {"model": "anthropic:x", "weight": 2}],
                    "continue_streams": False,
                },
                "large": "openai:gpt-4o",
            }
        }
    )
    assert [s.spec for s in config.specs("small")] == ["openai:gpt-4o-mini", "anthropic:x"]
    assert config.routes["small"].spec == "openai:gpt-4o-mini"  # the first stays the route's
    models = config.route_equivalents().models("small")
    assert [(m.name, m.weight, m.continue_streams) for m in models] == [
        ("gpt-4o-mini", 1.0, False),
        ("x", 2.0, False),
    ]


@pytest.mark.parametrize(
    ("routes", "problem"),
    [
        ({"small": []}, "array of models is empty"),
        ({"small": ["openai:a", "openai:a"]}, "lists one model twice"),
        ({"small": {"models": ["openai:a"], "retries": 1}}, "unknown route key"),
        ({"small": ["openai:a", 3]}, "route 'small[1]'"),
    ],
)
def test_a_bad_route_of_equivalents_is_named(routes, problem):
    from langroute.errors import ModelsConfigError
    from langroute.models.config import models_config_from_dict

    with pytest.raises(ModelsConfigError, match=problem.replace("[", r"\[")):
        models_config_from_dict({"routes": routes})


def test_a_provider_down_is_answered_by_the_equivalent_without_escalation(server, provider):
    provider.script("gpt-4o-mini", "500")
    _url, gateway, client = server()
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    assert raw.headers["x-langroute-route"] == "small"
    assert "x-langroute-escalated-from" not in raw.headers
    assert raw.parse().model == HAIKU_SERVED
    calls = [r for r in gateway.ledger.records() if not r.is_feedback]
    assert [(r.route, r.model, r.error is not None) for r in calls] == [
        ("small", "gpt-4o-mini", True),
        ("small", HAIKU_SERVED, False),
    ]
    assert calls[1].cost is not None


def test_healthz_shows_a_breaker_that_opened(server, provider):
    provider.script("gpt-4o-mini", "500")
    url, _gateway, client = server()
    for _ in range(3):
        client.chat.completions.create(model="auto", messages=HELLO)
    assert provider.count("gpt-4o-mini") == 2  # open after two failures: skipped at once
    health = httpx.get(url + "/healthz").json()
    assert [key for key in health["breakers"]["open"] if "gpt-4o-mini" in key]


def test_breakers_can_be_turned_off(server, provider):
    provider.script("gpt-4o-mini", "500")
    url, _gateway, client = server("breakers = false")
    for _ in range(3):
        client.chat.completions.create(model="auto", messages=HELLO)
    assert provider.count("gpt-4o-mini") == 3
    assert httpx.get(url + "/healthz").json()["breakers"] is None


def test_a_stream_broken_after_text_continues_in_the_same_sse_stream(server, provider):
    provider.script("gpt-4o-mini", "break:3")
    _url, gateway, client = server()
    stream = client.chat.completions.create(model="auto", messages=HELLO, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"answer from answer from {HAIKU}"
    calls = [r for r in gateway.ledger.records() if not r.is_feedback]
    assert [(r.model, r.error is not None) for r in calls] == [
        ("gpt-4o-mini", True),
        (HAIKU_SERVED, False),
    ]


def test_the_fast_path_fails_over_to_an_openai_equivalent_and_keeps_breakers(tmp_path, provider):
    # both equivalents speak the OpenAI API: the call is relayed (no LangChain objects),
    # the attempt's target picks each equivalent's upstream, and the breaker applies
    options = f'base_url = "{provider.openai_url}", api_key = "upstream-test"'
    path = tmp_path / "models.toml"
    path.write_text(
        f"""
[routes]
small = [
  {{ model = "openai:gpt-4o-mini", {options} }},
  {{ model = "openai:gpt-4.1-mini", {options} }},
]
large = {{ model = "openai:gpt-4o", {options} }}

[serve]
ledger = "costs.db"
max_retries = 0

[serve.breakers]
failure_threshold = 2
cooldown_s = 600
""",
        encoding="utf-8",
    )
    provider.script("gpt-4o-mini", "500")
    gateway = Gateway(load_models_config(path), router=make_router())
    with contextlib.ExitStack() as stack:
        stack.callback(gateway.close)
        url = stack.enter_context(serve_in_thread(create_app(gateway)))
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
            assert raw.headers["x-langroute-path"] == "fast"
            assert raw.headers["x-langroute-route"] == "small"
            assert "x-langroute-escalated-from" not in raw.headers
            assert raw.parse().model.startswith("gpt-4.1-mini")
        assert provider.count("gpt-4o-mini") == 2  # the breaker opened: skipped at once
        assert "gpt-4o" not in provider.models_asked()  # never escalated
