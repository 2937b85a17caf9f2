"""Strict input of ``langroute serve``: limits, 400s naming the field, never a 5xx.

The real server (uvicorn in a thread) with the official ``openai`` client or raw HTTP,
against the fake provider (``tests/provider_server.py``). A request refused here never
reaches the provider; an upstream refusal of the request is the client's 4xx, once.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from . import test_serve
from .test_serve import HELLO, WEATHER_TOOL

start = test_serve.start  # the fixture: a server on the fake provider


def _post(server: Any, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + "/v1/chat/completions", content=content, timeout=30)


def test_a_body_past_the_limit_is_a_413_and_never_forwarded(start, provider):
    server = start()
    big = [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]  # over the 4 MiB default
    with pytest.raises(openai.APIStatusError) as caught:
        server.client().chat.completions.create(model="auto", messages=big)
    assert caught.value.status_code == 413 and "max_body_bytes" in caught.value.body["message"]
    assert provider.requests == [] and server.calls() == []


def test_json_nested_too_deep_is_a_400_in_openai_shape(start, provider):
    server = start()
    nested: Any = []
    for _ in range(100):
        nested = [nested]
    deep = {"model": "auto", "messages": [{"role": "user", "content": "hi", "x": nested}]}
    for body in (b"[" * 100_000 + b"]" * 100_000, json.dumps(deep).encode()):
        response = _post(server, body)
        assert response.status_code == 400, response.text
        assert "nested" in response.json()["error"]["message"]
    assert provider.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}',
         "messages[0].content"),
        ({"model": "auto", "messages": HELLO,
          "tools": [{"type": "function", "function": {"parameters": {"type": "object"}}}]},
         "tools[0].function.name"),
        ({"model": "auto", "messages": HELLO,
          "tools": [{"type": "function", "function": {
              "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": 7}}}}}]},
         "tools[0].function.parameters"),
        ({"model": "auto", "messages": [{"role": "user", "content": None}]},
         "messages[0].content"),
        ({"model": "auto",
          "messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
         "messages[0].content[0].type"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text"),
        ({"model": "auto", "messages": HELLO * 1001}, "messages"),
        ({"model": "auto", "messages": HELLO, "tools": [WEATHER_TOOL] * 129}, "tools"),
    ],
    ids=["lone-surrogate", "nameless-tool", "invalid-tool-schema", "null-content",
         "unknown-part", "text-part-without-text", "too-many-messages", "too-many-tools"],
)  # fmt: skip
def test_invalid_input_is_a_400_naming_the_field_and_never_forwarded(start, provider, body, field):
    server = start()
    response = _post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and error["message"].startswith(field + ":")
    assert provider.requests == [] and server.calls() == []


def test_an_assistant_turn_of_tool_calls_may_have_null_content(start):
    server = start()
    client = server.client()
    answer = client.chat.completions.create(model="auto", messages=HELLO, tools=[WEATHER_TOOL])
    call = answer.choices[0].message
    assert call.content is None and call.tool_calls
    follow_up = [
        *HELLO,
        call.model_dump(exclude_none=False),  # "content": null
        {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "sunny"},
    ]
    final = client.chat.completions.create(model="auto", messages=follow_up, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "answer from gpt-4o-mini"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusal_of_the_request_is_the_clients_400_without_escalation(
    start, provider, stream
):
    provider.script("gpt-4o-mini", "400")
    server = start()
    with pytest.raises(openai.BadRequestError) as caught:
        response = server.client().chat.completions.create(
            model="auto", messages=HELLO, stream=stream
        )
        list(response)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.body["message"]
    assert provider.models_asked() == ["gpt-4o-mini"]  # one upstream call, no escalation


@pytest.mark.filterwarnings("ignore::langroute.costs.UnpricedModelWarning")
def test_an_upstream_model_name_with_cr_lf_is_sanitised_in_headers(tmp_path, provider, start):
    server = start()
    evil = "gpt-4o-mini\r\nx-evil: 1"
    config = server.config.read_text().replace('"openai:gpt-4o-mini"', json.dumps("openai:" + evil))
    server.config.write_text(config)
    from langroute.models.config import load_models_config

    from langchain_langroute.server import Gateway, create_app, serve_in_thread

    from .conftest import make_router

    gateway = Gateway(load_models_config(server.config), router=make_router())
    try:
        with serve_in_thread(create_app(gateway)) as url:
            response = httpx.post(
                url + "/v1/chat/completions", json={"model": "auto", "messages": HELLO}
            )
    finally:
        gateway.close()
    assert response.status_code == 200
    assert response.headers["x-langroute-model"] == "gpt-4o-mini  x-evil: 1"
    assert "x-evil" not in response.headers


def test_fuzzing_the_openapi_schema_finds_no_5xx(start, provider):
    """schemathesis generates requests for every operation: none may get a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    server = start()
    document = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/chat/completions" in document["paths"]
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:

        @settings(
            max_examples=50,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def no_server_error(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r}: {response.text[:200]}")

        no_server_error()
    assert failures == []
