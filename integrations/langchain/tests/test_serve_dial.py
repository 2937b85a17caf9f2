"""``[serve.adaptive_dial]``: the served router's dial holds a target read from the ledger.

The real app (uvicorn in a thread), the official ``openai`` client and the fake provider.
"""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from langroute.adaptive_dial import DialJournal
from langroute.cli.app import app
from langroute.errors import ModelsConfigError
from langroute.models.config import load_models_config
from typer.testing import CliRunner

from langchain_langroute.server import Gateway, create_app, serve_in_thread

from .conftest import make_router
from .test_serve import PROOF, Server, write_config

DIAL = """
[serve.adaptive_dial]
target = { kind = "strong_share", share = 0.0, tolerance = 0.05 }
floor_threshold = 0.9
min_requests = 3
min_interval_s = 0
check_every_s = 3600
max_step = 0.1
journal = "dial.jsonl"
"""


def test_serve_moves_the_dial_from_its_ledger_and_monitor_shows_it(tmp_path, provider):
    config = write_config(tmp_path, provider)
    text = config.read_text().replace('"costs.db"', '"costs.jsonl"')
    config.write_text(text + DIAL)
    settings = load_models_config(config)
    assert settings.serve.adaptive_dial is not None
    assert settings.serve.adaptive_dial.journal == tmp_path / "dial.jsonl"  # beside the file
    router = make_router()
    router.threshold = 0.5
    with contextlib.ExitStack() as stack:
        gateway = Gateway(settings, router=router)
        stack.callback(gateway.close)
        server = Server(stack.enter_context(serve_in_thread(create_app(gateway))), gateway, config)
        assert gateway.dial is not None and gateway.dial.floor == 0.9
        for _ in range(4):  # hard requests: all answered by the strong route
            server.client().chat.completions.create(model="auto", messages=PROOF)
        gateway.wait_settled()  # an answer is settled just after it went out
        gateway.ledger.flush()
        change = gateway.dial.update(force=True)  # what the timer does every check_every_s
        assert change is not None and change.direction == "cheaper"
        assert router.threshold == pytest.approx(0.6) and change.measured == 1.0
        health = httpx.get(server.url + "/healthz").json()["adaptive_dial"]
        assert health["threshold"] == pytest.approx(0.6) and health["changes"] == 1
        assert health["last_change"]["reason"] == change.reason
    assert DialJournal(tmp_path / "dial.jsonl").read() == [change]
    shown = CliRunner().invoke(
        app,
        ["monitor", str(tmp_path / "costs.jsonl"), "--json", "--dial-journal",
         str(tmp_path / "dial.jsonl")],
    )  # fmt: skip
    assert json.loads(shown.output)["dial_changes"][0]["threshold"] == pytest.approx(0.6)


def test_a_dial_without_a_floor_stops_the_server_at_start(tmp_path, provider):
    config = write_config(tmp_path, provider)
    config.write_text(
        config.read_text() + '\n[serve.adaptive_dial]\ntarget = { kind = "spend", per_hour = 1 }\n'
    )
    # eleven exemplars are too few to cross-validate a quality floor
    with pytest.raises(ModelsConfigError, match=r"adaptive_dial.*floor_threshold"):
        Gateway(load_models_config(config), router=make_router())
