"""Shared routers and the ledger on a real Postgres (started by .ci/run or conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.costs import CostLedger, LedgerRecord
from langroute.embedders import HashingEmbedder
from langroute.errors import (
    DatabaseUnavailableError,
    RouterConfigError,
    RouterStoreError,
    SchemaVersionError,
)
from langroute.postgres import (
    PostgresSink,
    RouterReplica,
    ensure_schema,
    load_shared_router,
    publish_router,
)
from langroute.postgres import database as pgdb

REPO = Path(__file__).resolve().parents[2]
BAD_URL = "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"
EASY = ["hello there", "translate cat into german", "what time is it", "thanks a lot"]
HARD = ["prove the theorem step by step", "design a distributed database", "write a compiler"]


class CountingEmbedder(HashingEmbedder):
    """Counts exemplar embeddings: loading from Postgres must not make any."""

    def __init__(self) -> None:
        super().__init__()
        self.documents = 0

    def embed_documents(self, texts):
        self.documents += len(texts)
        return super().embed_documents(texts)

    def embed_queries(self, texts):  # queries are fine; only exemplars count
        return HashingEmbedder.embed_documents(self, texts)


def make_router(embedder=None, **options) -> ExemplarRouter:
    exemplars = [Exemplar(text=t, route="small") for t in EASY]
    exemplars += [Exemplar(text=t, route="large") for t in HARD]
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=embedder or HashingEmbedder(),
        **{"min_similarity": 0.05, "k": 1, **options},
    )


def wait_for(check, deadline_s: float = 5.0) -> bool:
    """Poll ``check`` until it holds or the deadline passes (no timing assertion)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def block_database(url: str, blocked: bool) -> None:
    """Make the test database refuse connections (and cut the open ones), or accept again."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if blocked else 'true'}")
        if blocked:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


# ------------------------------------------------------------------------------ schema


def test_schema_is_created_once_and_a_newer_version_is_refused(postgres_url):
    with psycopg.connect(postgres_url) as conn:
        assert pgdb.schema_version(conn) == 0
        assert ensure_schema(conn) == pgdb.SCHEMA_VERSION
        assert ensure_schema(conn) == pgdb.SCHEMA_VERSION  # idempotent
        versions = conn.execute("SELECT version FROM langroute_schema_version").fetchall()
        assert [v for (v,) in versions] == list(range(1, pgdb.SCHEMA_VERSION + 1))
        conn.execute("INSERT INTO langroute_schema_version VALUES (%s)", (pgdb.SCHEMA_VERSION + 1,))
        conn.commit()
        with pytest.raises(SchemaVersionError, match="newer than this langroute knows"):
            ensure_schema(conn)
    with pytest.raises(SchemaVersionError):
        CostLedger(postgres_url)


def test_schema_upgrades_step_by_step_and_adds_new_ledger_columns(postgres_url, monkeypatch):
    with psycopg.connect(postgres_url) as conn:
        ensure_schema(conn)
        conn.execute("ALTER TABLE langroute_ledger DROP COLUMN accepted")  # an older table
        conn.commit()
    sink = PostgresSink(postgres_url)  # upgrades on first use: the column is back
    sink.write(LedgerRecord(route="small", model="m", accepted=True))
    assert sink.read()[0].accepted is True
    sink.close()
    with psycopg.connect(postgres_url) as conn:
        nxt = pgdb.SCHEMA_VERSION + 1
        steps = {**pgdb.MIGRATIONS, nxt: lambda: ["CREATE TABLE langroute_extra (x INTEGER)"]}
        monkeypatch.setattr(pgdb, "MIGRATIONS", steps)
        assert ensure_schema(conn, target=nxt) == nxt
        assert pgdb.schema_version(conn) == nxt
        assert conn.execute("SELECT to_regclass('langroute_extra')").fetchone()[0] is not None


# ------------------------------------------------------------------------------ routers


def test_publish_and_load_route_alike_without_embedding_again(postgres_url, tmp_path):
    router = make_router()
    seq = publish_router(router.save(tmp_path / "r"), postgres_url, name="support")
    assert seq >= 1
    embedder = CountingEmbedder()
    with load_shared_router(postgres_url, name="support", embedder=embedder, follow=False) as rep:
        assert embedder.documents == 0  # vectors came from the database
        assert sorted(ex.id for ex in rep.router.exemplars) == sorted(
            ex.id for ex in router.exemplars
        )
        assert rep.router.settings == router.settings
        for query in EASY + HARD + ["design a compiler for the theorem"]:
            assert rep.route(query).route == router.route(query).route
        assert rep.seq == seq


def test_changes_in_one_replica_route_in_the_other(postgres_url):
    publish_router(make_router(), postgres_url)
    first = load_shared_router(postgres_url, embedder=HashingEmbedder())
    second_embedder = CountingEmbedder()
    second = load_shared_router(postgres_url, embedder=second_embedder)
    try:
        query = "summarise this quarterly sales memo"
        added = first.add_exemplars(Exemplar(text=query, route="small"))
        assert first.router.route(query).neighbours[0].id == added[0]  # read your writes
        assert wait_for(lambda: added[0] in {ex.id for ex in second.router.exemplars})
        assert second.route(query).neighbours[0].id == added[0]
        assert second_embedder.documents == 0  # the follower never embeds
        assert first.remove_exemplars(added) == 1
        assert wait_for(lambda: added[0] not in {ex.id for ex in second.router.exemplars})
        fed = second.feedback("draft a migration plan for our database", "large")
        assert wait_for(lambda: fed.id in {ex.id for ex in first.router.exemplars})
        second.configure(threshold=0.7)
        assert wait_for(lambda: first.router.settings.threshold == 0.7)
        with pytest.raises(RouterConfigError):  # refused here: nothing is written
            first.remove_exemplars([ex.id for ex in first.router.exemplars if ex.route == "small"])
        assert second.stats.connected and second.stats.last_error is None
    finally:
        first.close()
        second.close()


def test_outcomes_learned_in_one_replica_are_learned_everywhere_and_bounded(postgres_url):
    publish_router(make_router(max_learned=2), postgres_url)
    first = load_shared_router(postgres_url, embedder=HashingEmbedder())
    second = load_shared_router(postgres_url, embedder=HashingEmbedder())
    try:
        texts = ["tell me a joke about cats", "what is a good name for a dog", "any plans?"]
        learned = [first.learn(text, "small", good=False, source="feedback") for text in texts]
        assert all(ex is not None and ex.route == "large" for ex in learned)
        kept = {ex.id for ex in first.router.learned_exemplars}
        assert len(kept) == 2 and learned[-1].id in kept  # the cap evicted one here ...
        assert wait_for(lambda: {ex.id for ex in second.router.learned_exemplars} == kept)
        learned_there = second.router.exemplars_by_source("feedback")
        assert {ex.metadata["source"] for ex in learned_there} == {"feedback"}  # ... and there
        hand_made = next(ex for ex in first.router.exemplars if not ex.metadata.get("learned"))
        assert first.learn(hand_made.text, "small", good=False) is None  # never overridden
    finally:
        first.close()
        second.close()


FOLLOWER = """
import sys, time
from langroute.embedders import HashingEmbedder
from langroute.postgres import load_shared_router
replica = load_shared_router(sys.argv[1], embedder=HashingEmbedder())
print("ready", flush=True)
wanted = sys.stdin.readline().strip()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if wanted in {ex.id for ex in replica.router.exemplars}:
        print("route", replica.route("please summarise the memo kindly").neighbours[0].id)
        break
    time.sleep(0.01)
else:
    print("timeout", replica.stats)
replica.close()
"""


def test_a_replica_in_another_process_follows(postgres_url):
    publish_router(make_router(), postgres_url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, postgres_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        with load_shared_router(postgres_url, embedder=HashingEmbedder()) as writer:
            new = Exemplar(text="please summarise the memo kindly", route="small")
            child.stdin.write(new.id + "\n")
            child.stdin.flush()
            writer.add_exemplars([new])
            out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.strip() == f"route {new.id}", err


def test_routing_survives_the_database_going_away(postgres_url):
    publish_router(make_router(), postgres_url)
    replica = load_shared_router(postgres_url, embedder=HashingEmbedder(), poll_interval=0.1)
    other = load_shared_router(postgres_url, embedder=HashingEmbedder(), follow=False)
    try:
        assert wait_for(lambda: replica.stats.connected)
        block_database(postgres_url, True)
        assert wait_for(lambda: not replica.stats.connected)
        assert replica.route("prove the theorem step by step").route == "large"
        with pytest.raises(DatabaseUnavailableError):
            replica.add_exemplars([Exemplar(text="offline write", route="small")])
        assert "offline write" not in {ex.text for ex in replica.router.exemplars}
        block_database(postgres_url, False)
        added = other.add_exemplars([Exemplar(text="written while it was away", route="small")])
        assert wait_for(lambda: added[0] in {ex.id for ex in replica.router.exemplars}, 15)
        assert replica.stats.reconnects >= 1
    finally:
        block_database(postgres_url, False)
        replica.close()
        other.close()


def test_unreachable_database_and_unknown_router_are_clear_errors(postgres_url):
    with pytest.raises(DatabaseUnavailableError, match=r"cannot connect to Postgres at .*nowhere"):
        load_shared_router(BAD_URL)
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        publish_router(make_router(), BAD_URL)
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        CostLedger(BAD_URL)
    with pytest.raises(DatabaseUnavailableError, match=r"\*\*\*"):  # password not shown
        CostLedger("postgresql://app:secret@/x?host=/nonexistent-socket-dir")
    with pytest.raises(RouterStoreError, match="no router named 'missing'"):
        RouterReplica.open(postgres_url, name="missing")


# ------------------------------------------------------------------------------ ledger


def test_two_writers_share_one_ledger_table_and_the_cli_reads_it(postgres_url, tmp_path):
    first, second = CostLedger(postgres_url), CostLedger(postgres_url)
    for n in range(30):
        first.record(LedgerRecord(route="small", model="gpt-4o-mini", input_tokens=10 + n))
        second.record(LedgerRecord(route="large", model="gpt-4o", input_tokens=100))
    first.close()
    second.close()
    records = CostLedger.open(postgres_url).records()
    assert sorted({r.route for r in records}) == ["large", "small"]
    assert len(records) == 60
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    report = subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", "report", postgres_url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["calls"] == 60
    monitor = subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", "monitor", postgres_url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert monitor.returncode in (0, 2), monitor.stderr
    assert sum(w["requests"] for w in json.loads(monitor.stdout)["windows"]) == 60
    bad = subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", "report", BAD_URL],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1 and "cannot connect to Postgres" in bad.stderr


def test_ledger_writes_are_held_while_the_database_is_away(postgres_url):
    ledger = CostLedger(postgres_url, max_pending=20)
    ledger.record(LedgerRecord(route="small", model="gpt-4o-mini"))
    assert ledger.flush(10) and ledger.stats.written == 1
    block_database(postgres_url, True)
    try:
        with pytest.warns(Warning, match="queue full"):
            for _ in range(25):
                ledger.record(LedgerRecord(route="small", model="gpt-4o-mini"))
        assert wait_for(lambda: ledger.stats.retries >= 1)
        stats = ledger.stats
        assert (stats.pending, stats.dropped, stats.failed) == (20, 5, 0)
    finally:
        block_database(postgres_url, False)
    assert wait_for(lambda: ledger.stats.pending == 0, 20)
    assert ledger.stats.written == 21 and ledger.stats.lost == 5
    assert len(CostLedger.open(postgres_url).records()) == 21
    ledger.close()


def test_publish_cli_then_load(postgres_url, tmp_path):
    path = make_router().save(tmp_path / "router")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "langroute.cli.app",
            "publish",
            str(path),
            postgres_url,
            "--name",
            "cli",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "published 7 exemplars as router 'cli'" in done.stdout
    with load_shared_router(postgres_url, name="cli", follow=False) as replica:
        assert len(replica.router) == 7


def test_feedback_on_a_call_finds_the_record_in_postgres(postgres_url):
    with CostLedger(postgres_url) as ledger:
        call = ledger.record(LedgerRecord(route="small", model="gpt-4o-mini", input_tokens=5))
    other = CostLedger(postgres_url)  # another replica finds it by id
    assert other.get(call.record_id).input_tokens == 5
    other.close()
