"""Conversation-aware routing: strategies, sessions, messages in data files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.dispatch.routed_call import Attempt, RoutedCall, RouteMetadata
from langroute.embedders import HashingEmbedder
from langroute.errors import ExemplarFormatError, RouterConfigError
from langroute.router.conversation import (
    ChatTurn,
    ConversationContext,
    SessionTracker,
    derived_session_key,
    parse_messages,
    route_conversation,
    route_conversations,
)
from langroute.router.exemplars import load_exemplars

HARD = "prove the convergence theorem rigorously step by step with a formal proof"
EASY = "say hello to my friend"


@pytest.fixture
def router() -> ExemplarRouter:
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text=HARD, route="large"),
            Exemplar(text="formal proof of the theorem step by step", route="large"),
            Exemplar(text=EASY, route="small"),
            Exemplar(text="yes do that thanks", route="small"),
            Exemplar(text="what is the capital of france today", route="small"),
        ],
        embedder=HashingEmbedder(),
        min_similarity=0.0,
        k=3,
    )


def chat(*texts: str) -> list[dict[str, str]]:
    messages = []
    for text in texts:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    return messages[:-1]


def test_current_only_routes_the_follow_up_alone(router: ExemplarRouter) -> None:
    decision = route_conversation(router, chat(HARD, "yes do that"))
    assert decision.route == "small"
    assert decision.context == "current_only"
    assert decision.query == "yes do that"


def test_window_mixes_earlier_turns_in_embedding_space(router: ExemplarRouter) -> None:
    context = ConversationContext(strategy="window", window=2, decay=1.0)
    decision = route_conversation(router, chat(HARD, "yes do that"), context)
    assert decision.route == "large"
    assert decision.query == "yes do that"
    # the mixed vector is the normalised weighted mean of the normalised turn vectors
    vectors = router.embedder.embed_queries([HARD, "yes do that"])
    mixed = vectors.sum(axis=0) / np.linalg.norm(vectors.sum(axis=0))
    (direct,) = router.route_vectors(["yes do that"], mixed[None, :])
    assert direct.probabilities == pytest.approx(decision.probabilities, abs=1e-5)


def test_a_window_decision_counts_the_turns_embedding_in_its_time() -> None:
    class Slow(HashingEmbedder):
        def embed_queries(self, texts):
            time.sleep(0.05)
            return super().embed_queries(texts)

    slow = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[Exemplar(text=HARD, route="large"), Exemplar(text=EASY, route="small")],
        embedder=Slow(),
        min_similarity=0.0,
        k=2,
    )
    decision = route_conversation(
        slow, chat(HARD, "yes do that"), ConversationContext(strategy="window")
    )
    # the turns were embedded here, not by the router's own route(): still routing time
    assert decision.timings_ms["embed"] >= 50
    assert decision.elapsed_ms >= decision.timings_ms["embed"] + decision.timings_ms["search"]


def test_window_text_joins_turns_and_batches_match(router: ExemplarRouter) -> None:
    context = ConversationContext.parse("window_text:1")
    conversations = [chat(HARD, "yes do that"), chat(EASY)]
    single = [route_conversation(router, c, context) for c in conversations]
    batch = route_conversations(router, conversations, context)
    assert [d.route for d in batch] == [d.route for d in single] == ["large", "small"]
    assert batch[0].query == HARD + "\n" + "yes do that"


def test_tool_results_and_tool_calls_are_never_routed_on(router: ExemplarRouter) -> None:
    messages = [
        {"role": "system", "content": HARD},
        {"role": "user", "content": EASY},
        {"role": "assistant", "content": HARD, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": HARD},
    ]
    for strategy in ("current_only", "window", "window_text"):
        decision = route_conversation(router, messages, ConversationContext(strategy=strategy))
        assert decision.route == "small", strategy
        assert decision.query == EASY


def test_parse_messages_names_the_fault() -> None:
    with pytest.raises(ValueError, match=r"messages\[1\]\.role"):
        parse_messages([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="no user turn"):
        parse_messages([{"role": "assistant", "content": "hi"}])
    with pytest.raises(ValueError, match=r"messages\[0\]\.content"):
        parse_messages([{"role": "user", "content": 3}])
    assert parse_messages([{"role": "user", "content": [{"type": "text", "text": " a "}]}]) == [
        ChatTurn(role="user", text="a")
    ]
    with pytest.raises(ValueError, match="unknown context"):
        ConversationContext.parse("everything")


def test_session_holds_the_route_on_a_follow_up(router: ExemplarRouter) -> None:
    sessions = SessionTracker()
    first = route_conversation(router, chat(HARD), sessions=sessions, session_key="s")
    assert first.route == "large" and first.session is not None
    assert first.session.action == "new"
    second = route_conversation(
        router, chat(HARD, "yes do that"), sessions=sessions, session_key="s"
    )
    assert second.route == "large"
    assert second.session is not None
    assert (second.session.action, second.session.routed, second.session.previous) == (
        "sticky",
        "small",
        "large",
    )


def test_upgrade_is_always_taken_and_then_held(router: ExemplarRouter) -> None:
    sessions = SessionTracker(min_topic_words=50)  # no topic shift: a plain upgrade
    route_conversation(router, chat(EASY), sessions=sessions, session_key="u")
    up = route_conversation(router, chat(EASY, HARD), sessions=sessions, session_key="u")
    assert (up.route, up.session.action) == ("large", "upgrade")  # type: ignore[union-attr]
    assert sessions.route_of("u") == "large"


def test_topic_shift_lets_the_route_go_down(router: ExemplarRouter) -> None:
    sessions = SessionTracker(topic_threshold=0.3, min_topic_words=5)
    route_conversation(router, chat(HARD), sessions=sessions, session_key="t")
    shift = chat(HARD, "what is the capital of france today")
    decision = route_conversation(router, shift, sessions=sessions, session_key="t")
    assert decision.session is not None
    assert decision.session.action == "topic_shift"
    assert decision.route == "small"
    assert decision.session.similarity is not None and decision.session.similarity < 0.3


def test_derived_key_continues_a_conversation(router: ExemplarRouter) -> None:
    sessions = SessionTracker(min_topic_words=100)  # every turn stays on the topic
    route_conversation(router, chat(EASY), sessions=sessions)
    up = route_conversation(router, chat(EASY, HARD), sessions=sessions)
    assert (up.route, up.session.action) == ("large", "upgrade")  # type: ignore[union-attr]
    held = route_conversation(router, chat(EASY, HARD, "yes do it"), sessions=sessions)
    assert (held.route, held.session.action) == ("large", "sticky")  # type: ignore[union-attr]
    key = derived_session_key(parse_messages(chat(EASY, HARD, "yes do it")))
    assert key is not None and sessions.route_of(key) == "large"


def test_two_callers_with_the_same_first_message_never_share_a_session(
    router: ExemplarRouter,
) -> None:
    sessions = SessionTracker(min_topic_words=100)  # every turn stays on the topic
    # caller A opens with EASY, then asks something hard: its session goes to "large"
    route_conversation(router, chat(EASY), sessions=sessions)
    route_conversation(router, chat(EASY, HARD), sessions=sessions)
    # caller B opens with the same words and follows up briefly: B's own session
    route_conversation(router, chat(EASY), sessions=sessions)
    b = route_conversation(router, chat(EASY, "thanks a lot"), sessions=sessions)
    assert b.route == "small"
    assert b.session is not None and b.session.previous == "small"


def test_scopes_keep_the_same_session_key_apart(router: ExemplarRouter) -> None:
    sessions = SessionTracker(min_topic_words=100)
    route_conversation(router, chat(HARD), sessions=sessions, session_key="1", scope="key-a")
    other = route_conversation(
        router, chat("thanks a lot"), sessions=sessions, session_key="1", scope="key-b"
    )
    assert other.session is not None and other.session.action == "new"
    assert other.route == "small"
    # and a derived key is scoped too
    route_conversation(router, chat(EASY), sessions=sessions, scope="key-a")
    route_conversation(router, chat(EASY, HARD), sessions=sessions, scope="key-a")
    b = route_conversation(router, chat(EASY, "thanks a lot"), sessions=sessions, scope="key-b")
    assert b.session is not None and b.session.action == "new"


def test_sessions_are_bounded_by_lru_and_ttl(router: ExemplarRouter) -> None:
    now = [0.0]
    sessions = SessionTracker(max_sessions=2, ttl_s=10.0, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        route_conversation(router, chat(HARD), sessions=sessions, session_key=key)
    assert len(sessions) == 2 and sessions.route_of("a") is None
    now[0] = 11.0
    assert sessions.route_of("b") is None


def test_sessions_are_thread_safe(router: ExemplarRouter) -> None:
    sessions = SessionTracker(max_sessions=50)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                key = f"k{(n * 20 + i) % 70}"
                route_conversation(router, chat(HARD, EASY), sessions=sessions, session_key=key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(sessions) == 50


def test_session_rides_into_metadata_and_ledger_rows(router: ExemplarRouter) -> None:
    sessions = SessionTracker()
    route_conversation(router, chat(HARD), sessions=sessions, session_key="m")
    decision = route_conversation(
        router, chat(HARD, "yes do that"), sessions=sessions, session_key="m"
    )
    call = RoutedCall(decision=decision, baseline_route="large", baseline_model="big")
    meta = RouteMetadata.from_metadata({"langroute": call.metadata()})
    assert meta is not None and meta.session is not None and meta.session.action == "sticky"
    assert meta.context == "current_only"
    rebuilt = meta.to_call()
    assert rebuilt.decision.session == decision.session
    call.add_attempt(Attempt(route="large", model="big"))
    (row,) = call.ledger_records(framework="core")
    assert row.metadata["session"]["action"] == "sticky"
    assert row.metadata["context"] == "current_only"


def test_window_needs_a_vector_router() -> None:
    class TextOnly:
        routes = ("small", "large")

        def route(self, query: str):  # pragma: no cover - not reached
            raise AssertionError

    with pytest.raises(RouterConfigError, match="route_vectors"):
        route_conversation(TextOnly(), chat(EASY), ConversationContext(strategy="window"))


def test_exemplar_files_take_messages_instead_of_text(tmp_path: Path) -> None:
    good = tmp_path / "conv.jsonl"
    rows = [
        {"messages": chat(HARD, "yes do that"), "route": "large"},
        {"text": EASY, "route": "small"},
    ]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_exemplars(good)
    assert loaded[0].messages is not None and loaded[0].text == HARD + "\nyes do that"
    assert loaded[1].messages is None
    both = tmp_path / "both.jsonl"
    both.write_text(json.dumps({"text": "a", "messages": chat("a"), "route": "small"}) + "\n")
    with pytest.raises(ExemplarFormatError, match=r"both.jsonl:1.*not both"):
        load_exemplars(both)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "ok", "route": "small"})
        + "\n"
        + json.dumps({"messages": [{"role": "user"}, {"role": "x"}], "route": "small"})
        + "\n"
    )
    with pytest.raises(ExemplarFormatError, match=r"bad.jsonl:2.*messages\[1\]\.role"):
        load_exemplars(bad)
    neither = tmp_path / "neither.jsonl"
    neither.write_text(json.dumps({"route": "small"}) + "\n")
    with pytest.raises(ExemplarFormatError, match=r"neither.jsonl:1.*messages"):
        load_exemplars(neither)


def test_eval_cli_routes_conversations_with_the_context_option(tmp_path: Path) -> None:
    from tests.core.test_cli import assert_clean, run_cli

    exemplars = tmp_path / "ex.jsonl"
    rows = [{"text": t, "route": "large"} for t in (HARD, "formal proof of the theorem")]
    rows += [{"text": t, "route": "small"} for t in (EASY, "yes do that thanks", "hi there")]
    exemplars.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evalset = tmp_path / "conv.jsonl"
    convs = [{"messages": chat(HARD, "yes do that"), "route": "large"}] * 3
    convs += [{"messages": chat(EASY, "hi there"), "route": "small"}] * 3
    evalset.write_text("".join(json.dumps(r) + "\n" for r in convs))
    base = ["eval", exemplars, evalset, "--embedder", "hashing", "--routes", "small,large"]
    base += ["--no-tune", "--k", "3", "--min-similarity", "0", "--plot", "p.png"]
    figures = {}
    for context in ("current_only", "window:2:1"):
        result = run_cli(*base, "--context", context, "--json", f"{context}.json", cwd=tmp_path)
        assert_clean(result)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        figures[context] = json.loads((tmp_path / f"{context}.json").read_text())
    assert figures["window:2:1"]["accuracy"] > figures["current_only"]["accuracy"]
    bad = run_cli(*base, "--context", "everything", cwd=tmp_path)
    assert bad.returncode == 1 and b"unknown context" in bad.stderr


def test_explain_output_shows_context_and_session(router: ExemplarRouter) -> None:
    from rich.console import Console

    from langroute.cli.app import decision_table

    sessions = SessionTracker()
    route_conversation(router, chat(HARD), sessions=sessions, session_key="x")
    decision = route_conversation(
        router, chat(HARD, "yes do that"), sessions=sessions, session_key="x"
    )
    console = Console(width=200, record=True)
    console.print(decision_table(decision))
    text = console.export_text()
    assert "context: current_only" in text
    assert "session x: sticky (router chose small, session held large" in text
