"""Operating ``langroute serve``: credentials, keys file, ledger health, metrics, drain.

The real CLI (a subprocess) or the real app (uvicorn in a thread), the official
``openai`` client, the fake provider (``tests/provider_server.py``); Postgres where the
``postgres_url`` fixture has one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

import httpx
import openai
import pytest
from langroute.costs import CostLedger
from langroute.errors import ApiKeysFileError
from langroute.models.config import load_models_config
from langroute.serving.keys import add_api_key

from langchain_langroute.server import Gateway, create_app, serve_in_thread

from . import test_serve
from .conftest import make_router
from .test_serve import HELLO, write_config

start = test_serve.start  # the fixture: a server on the fake provider
_CLI = [sys.executable, "-c", "from langroute.cli.app import main; main()"]


@pytest.fixture
def on_ledger(tmp_path, provider):
    """Start a server whose ledger is ``costs.jsonl`` beside its models file."""
    with contextlib.ExitStack() as stack:

        def start_server() -> test_serve.Server:
            config = write_config(tmp_path, provider)
            config.write_text(config.read_text().replace('"costs.db"', '"costs.jsonl"'))
            gateway = Gateway(load_models_config(config), router=make_router())
            stack.callback(gateway.close)
            url = stack.enter_context(serve_in_thread(create_app(gateway)))
            return test_serve.Server(url, gateway, config)

        yield start_server


def _wait_for(condition: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_credentials_never_reach_the_logs(tmp_path, provider, postgres_url):
    password = "s3cret-pw-77"
    ledger = re.sub(r"://([^:@/]*)@", rf"://\1:{password}@", postgres_url, count=1)
    assert password in ledger
    make_router().save(tmp_path / "router")
    config = write_config(tmp_path, provider, router="router", keys="keys.jsonl")
    config.write_text(config.read_text().replace('"costs.db"', f'"{ledger}"'))
    secret, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1.0)
    provider.script("gpt-4o", "500")
    process = subprocess.Popen(
        [*_CLI, "serve", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0)
        client.chat.completions.create(model="auto", messages=HELLO)
        with pytest.raises(openai.APIStatusError):  # an error names the failing route
            client.chat.completions.create(model="large", messages=HELLO)
        unknown = httpx.post(url + "/v1/feedback", json={"id": "x", "verdict": "bad"})
        assert unknown.status_code == 401 and secret not in unknown.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    printed = line + stderr
    assert process.returncode == 0, printed
    assert "postgresql://" in printed and ":***@" in printed  # the ledger is named...
    assert password not in printed and secret not in printed  # ...with no credential


def test_a_missing_keys_file_stops_the_server_at_start(tmp_path, provider):
    config = write_config(tmp_path, provider, keys="keys.jsonl")
    with pytest.raises(ApiKeysFileError, match=r"keys\.jsonl: the keys file does not exist"):
        Gateway(load_models_config(config), router=make_router())
    result = subprocess.run(
        [*_CLI, "serve", str(config), "--port", "0"], capture_output=True, text=True, timeout=120
    )
    printed = " ".join(result.stderr.split())  # the CLI wraps long lines
    assert result.returncode == 1 and "the keys file does not exist" in printed


def test_a_keys_file_deleted_or_corrupted_while_serving_keeps_the_last_good_keys(start, tmp_path):
    server = start(keys="keys.jsonl")
    keys = tmp_path / "keys.jsonl"
    secret, _ = add_api_key(keys, "team-a")
    client = server.client(secret)
    client.chat.completions.create(model="auto", messages=HELLO)
    saved = keys.read_text()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys.unlink()
        client.chat.completions.create(model="auto", messages=HELLO)  # still accepted
        keys.write_text("{not a key\n")
        client.chat.completions.create(model="auto", messages=HELLO)
    messages = [str(w.message) for w in caught]
    assert any("does not exist" in m and "stay in force" in m for m in messages), messages
    assert any("not an API key" in m and "stay in force" in m for m in messages), messages
    keys.write_text(saved)  # readable again: a new key takes effect
    other, _ = add_api_key(keys, "team-b")
    server.client(other).chat.completions.create(model="auto", messages=HELLO)
    assert [r.metadata["api_key"] for r in server.calls()] == ["team-a"] * 3 + ["team-b"]


def test_a_ledger_that_cannot_be_written_holds_its_rows_and_healthz_says_503(on_ledger, tmp_path):
    (tmp_path / "costs.jsonl").mkdir()  # the ledger file cannot be written
    server = on_ledger()
    answer = server.client().chat.completions.create(model="auto", messages=HELLO)

    def health() -> httpx.Response:
        return httpx.get(server.url + "/healthz")

    _wait_for(lambda: health().status_code == 503, "healthz never reported the ledger")
    body = health().json()
    assert body["status"] == "degraded" and body["ledger"]["unavailable"] is True
    assert body["ledger"]["pending"] == 1 and body["ledger"]["failed"] == 0  # held, not lost
    (tmp_path / "costs.jsonl").rmdir()  # writable again: the held row is written
    _wait_for(lambda: health().status_code == 200, "the held row was never written")
    [row] = CostLedger.open(tmp_path / "costs.jsonl").records()
    assert row.record_id == answer.id.removeprefix("chatcmpl-")


def test_feedback_while_the_ledger_is_unreachable_is_a_503_with_retry_after(on_ledger, tmp_path):
    server = on_ledger()
    answer = server.client().chat.completions.create(model="auto", messages=HELLO)
    server.gateway.wait_settled()  # an answer is settled just after it went out
    server.gateway.ledger.flush()
    ledger = tmp_path / "costs.jsonl"
    ledger.rename(tmp_path / "away.jsonl")
    ledger.mkdir()  # the ledger cannot be read
    reply = httpx.post(server.url + "/v1/feedback", json={"id": answer.id, "verdict": "bad"})
    assert reply.status_code == 503 and reply.headers["retry-after"].isdigit()
    assert reply.json()["error"]["code"] == "ledger_unavailable"
    ledger.rmdir()
    shutil.move(tmp_path / "away.jsonl", ledger)
    reply = httpx.post(server.url + "/v1/feedback", json={"id": answer.id, "verdict": "bad"})
    assert reply.status_code == 200


def test_metrics_name_no_key_unless_configured(start, tmp_path):
    for shown in (False, True):
        server = start(keys="keys.jsonl", over_budget="reject", metrics_key_names=shown)
        secret, _ = add_api_key(tmp_path / "keys.jsonl", f"tenant-{shown}", budget=1e-9)
        client = server.client(secret)
        client.chat.completions.create(model="auto", messages=HELLO)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="auto", messages=HELLO)
        metrics = httpx.get(server.url + "/metrics").text
        assert ("tenant-" in metrics) is shown
        assert 'langroute_spend_usd_total{route="small"' in metrics
        assert 'action="rejected"} 1' in metrics


def test_the_drain_time_bounds_how_long_a_stream_may_finish_at_shutdown(tmp_path, provider):
    provider.script("gpt-4o-mini", "long:200")  # about 10 s of words
    make_router().save(tmp_path / "router")
    config = write_config(tmp_path, provider, router="router", drain_seconds=0.5)
    process = subprocess.Popen(
        [*_CLI, "serve", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    words, signalled = 0, False
    try:
        line = process.stderr.readline()
        assert "drain 0.5 s" in line, line
        url = line.split("listening on ")[1].split()[0]
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            for chunk in client.chat.completions.create(model="auto", messages=HELLO, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    words += 1
                    if words == 5:
                        process.send_signal(signal.SIGTERM)
                        signalled = True
    finally:
        # one SIGTERM only: a second one, sent while a slow machine is still writing the
        # ledger after the drain, would meet the default handler and kill the process
        if not signalled and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and 5 <= words < 200  # cut, not finished
    [row] = CostLedger.open(tmp_path / "costs.db").records()  # and charged
    assert row.metadata.get("estimated") is True and row.output_tokens >= 5
