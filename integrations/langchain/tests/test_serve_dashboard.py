"""The dashboard at ``/dashboard`` of ``langroute serve``: admin keys only, the server's ledger.

The real app (uvicorn in a thread) on the fake provider, as in ``test_serve.py``.
"""

from __future__ import annotations

import httpx
from langroute.serving.keys import add_api_key

from . import test_serve
from .test_serve import HELLO

start = test_serve.start  # the fixture: a server on the fake provider


def test_the_dashboard_answers_admin_keys_with_the_served_calls(start, tmp_path):
    server = start(keys="keys.jsonl")
    admin, _ = add_api_key(tmp_path / "keys.jsonl", "ops", role="admin")
    client, _ = add_api_key(tmp_path / "keys.jsonl", "team-a", budget=1.0, period="total")
    server.client(client).chat.completions.create(model="auto", messages=HELLO)
    server.gateway.wait_settled()  # an answer is settled just after it went out
    server.gateway.ledger.flush()

    page = httpx.get(server.url + "/dashboard", follow_redirects=True)
    assert page.status_code == 200 and "static/dashboard.js" in page.text  # no data in it
    assert httpx.get(server.url + "/dashboard/static/dashboard.js").status_code == 200

    summary = server.url + "/dashboard/api/summary"
    missing = httpx.get(summary)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"]
    refused = httpx.get(summary, headers={"Authorization": f"Bearer {client}"})
    assert refused.status_code == 403 and "admin key" in refused.json()["detail"]
    admin_headers = {"Authorization": f"Bearer {admin}"}
    shown = httpx.get(summary, headers=admin_headers).json()
    assert shown["report"]["calls"] == len(server.calls()) == 1
    assert shown["report"]["cost"] == server.calls()[0].cost

    segments = httpx.get(server.url + "/dashboard/api/segments", headers=admin_headers).json()
    assert [row["segment"] for row in segments["segments"]] == ["team-a"]
    (budget,) = segments["budgets"]
    assert budget["key"] == "team-a" and budget["budget"] == 1.0
    assert budget["spent"] == server.calls()[0].cost
    exemplars = httpx.get(server.url + "/dashboard/api/exemplars", headers=admin_headers).json()
    assert exemplars["router"] is True and exemplars["total"] > 0


def test_without_a_keys_file_nobody_is_an_admin(start):
    server = start()
    refused = httpx.get(server.url + "/dashboard/api/summary")
    assert refused.status_code == 403 and "[serve] keys" in refused.json()["detail"]
    # the OpenAI endpoints are untouched by the mount
    assert httpx.get(server.url + "/v1/models").status_code == 200
