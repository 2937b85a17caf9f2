"""Learning from feedback that one tenant cannot poison: agreement, admin keys, rate limits.

With a keys file and ``learn = true``, one client key's thumbs-down re-routes that key's
own queries at once and not the other keys': a verdict teaches the shared router only
once ``learn_quorum`` distinct keys gave it on the same query, an ``admin`` key's verdict
teaches at once, and each key may post at most ``feedback_per_minute`` verdicts a minute.
"""

from __future__ import annotations

from typing import Any

import httpx
from langroute.serving.keys import add_api_key

from .test_serve import Server, start  # noqa: F401 - the fixture

QUESTION = [{"role": "user", "content": "hello there my friend"}]


def ask(server: Server, secret: str) -> Any:
    raw = server.client(secret).chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION
    )
    return raw.parse(), raw.headers["x-langroute-route"]


def judge(server: Server, secret: str, answer_id: str, verdict: str = "bad") -> httpx.Response:
    return httpx.post(
        server.url + "/v1/feedback",
        json={"id": answer_id, "verdict": verdict},
        headers={"Authorization": f"Bearer {secret}"},
    )


def learned(server: Server) -> list[Any]:
    return [e for e in server.gateway.router.exemplars if e.metadata.get("source") == "feedback"]


def test_one_client_key_cannot_reroute_another_keys_queries(start, tmp_path):  # noqa: F811
    server = start(keys="keys.jsonl", learn=True)
    a, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-a")
    b, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-b")
    answer, route = ask(server, a)
    assert route == "small"
    reply = judge(server, a, answer.id)
    assert reply.status_code == 200
    assert reply.json()["learned_route"] is None  # not the shared router...
    assert reply.json()["agreement"] == {"keys": 1, "needed": 3}
    assert reply.json()["learned_for_key"] == "large"  # ...but this key's own routing
    for _ in range(4):  # four more answers, four more thumbs-down, all from one key
        answer, route = ask(server, a)
        assert route == "large"  # the key's own feedback applies to it at once
        assert judge(server, a, answer.id).status_code == 200
    assert learned(server) == []
    assert ask(server, b)[1] == "small"  # the other tenant's routing did not move
    rows = [r for r in server.calls() if r.metadata.get("api_key") == "tenant-a"]
    assert rows[-1].reason == "scoped_learned"  # the ledger says why


def test_distinct_keys_that_agree_teach_the_router(start, tmp_path):  # noqa: F811
    server = start(keys="keys.jsonl", learn=True, learn_quorum=2)
    a, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-a")
    b, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-b")
    first = judge(server, a, ask(server, a)[0].id)
    assert first.json()["learned_route"] is None and first.json()["agreement"]["keys"] == 1
    second = judge(server, b, ask(server, b)[0].id)
    assert second.json()["learned_route"] == "large" and "agreement" not in second.json()
    assert [(e.text, e.route) for e in learned(server)] == [("hello there my friend", "large")]


def test_an_admin_keys_verdict_teaches_at_once(start, tmp_path):  # noqa: F811
    server = start(keys="keys.jsonl", learn=True)
    admin, key = add_api_key(tmp_path / "keys.jsonl", "operator", role="admin")
    assert key.role == "admin"
    reply = judge(server, admin, ask(server, admin)[0].id)
    assert reply.json()["learned_route"] == "large"
    assert len(learned(server)) == 1


def test_feedback_posts_are_rate_limited_per_key(start, tmp_path):  # noqa: F811
    server = start(keys="keys.jsonl", learn=True, feedback_per_minute=2)
    a, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-a")
    b, _ = add_api_key(tmp_path / "keys.jsonl", "tenant-b")
    answer, _ = ask(server, a)
    assert [judge(server, a, answer.id).status_code for _ in range(3)] == [200, 200, 429]
    refused = judge(server, a, answer.id)
    assert refused.json()["error"]["code"] == "feedback_rate_limited"
    assert judge(server, b, ask(server, b)[0].id).status_code == 200  # per key


def test_serve_key_add_takes_a_role(tmp_path):
    import json

    from langroute.cli.app import app
    from typer.testing import CliRunner

    config = tmp_path / "models.toml"
    config.write_text('[routes]\nsmall = "openai:gpt-4o-mini"\n[serve]\nkeys = "keys.jsonl"\n')
    runner = CliRunner()
    add = ["serve-key", "add", str(config), "--name"]
    added = runner.invoke(app, [*add, "ops", "--role", "admin"])
    assert added.exit_code == 0, added.output
    [line] = (tmp_path / "keys.jsonl").read_text().splitlines()
    assert json.loads(line)["role"] == "admin"
    bad = runner.invoke(app, [*add, "x", "--role", "boss"])
    assert bad.exit_code != 0 and "--role must be client or admin" in bad.output
