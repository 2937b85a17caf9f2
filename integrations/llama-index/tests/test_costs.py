"""Cost per route: the ledger handler, usage extraction and the figures it records.

Prices are genai-prices' (USD per million tokens) and the expected figures are worked out
by hand below:

    gpt-4o-mini        input 0.15   cached input 0.075   output 0.60
    gpt-4o             input 2.50   cached input 1.25    output 10.00
    claude-sonnet-4-5  input 3.00   cached input 0.30    output 15.00
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse
from llama_index.llms.langroute import (
    CostCallbackHandler,
    RoutingLLM,
    TokenUsage,
    extract_usage,
    merge_usage,
    track_costs,
)
from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderError, MockProviderLLM

from langroute.costs import CostLedger

EASY_Q = "When was Acme Rockets founded?"
HARD_Q = "Analyse the legal implications of the Acme warranty clause in depth."


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
def priced(router) -> tuple[RoutingLLM, MockProviderLLM, MockProviderLLM]:
    small = MockProviderLLM(model="gpt-4o-mini", usage=(1000, 500))
    large = MockProviderLLM(model="gpt-4o", usage=(2000, 300))
    return RoutingLLM(router=router, models={"small": small, "large": large}), small, large


def test_rag_calls_are_recorded_per_route_with_hand_computed_costs(priced, events):
    llm, _, _ = priced
    index = VectorStoreIndex.from_documents(
        [Document(text="Acme Rockets was founded in 1987; its warranty limits liability.")],
        embed_model=HashingEmbedding(),
    )
    engine = index.as_query_engine(llm=llm)
    with track_costs() as ledger:
        engine.query(EASY_Q)
        engine.query(HARD_Q)

    small_rec, large_rec = ledger.records()
    assert (small_rec.framework, small_rec.kind) == ("llama_index", "route")
    assert (small_rec.route, small_rec.model) == ("small", "gpt-4o-mini")
    assert (small_rec.input_tokens, small_rec.output_tokens) == (1000, 500)
    # 1000 * 0.15e-6 + 500 * 0.60e-6
    assert small_rec.cost == pytest.approx(0.00045)
    # the same tokens on the strongest route: 1000 * 2.5e-6 + 500 * 10e-6
    assert small_rec.baseline_model == "gpt-4o"
    assert small_rec.baseline_cost == pytest.approx(0.0075)
    assert small_rec.reason == "vote" and small_rec.confidence == pytest.approx(1.0)
    assert small_rec.escalated is False and small_rec.error is None
    assert small_rec.latency_ms is not None and small_rec.latency_ms >= 0

    assert (large_rec.route, large_rec.model) == ("large", "gpt-4o")
    # 2000 * 2.5e-6 + 300 * 10e-6
    assert large_rec.cost == pytest.approx(0.008)
    assert large_rec.baseline_cost == pytest.approx(0.008)

    # records and events of one call share its id
    call_ids = [e.call_id for e in events.of("RouteCompletedEvent")]
    assert [small_rec.run_id, large_rec.run_id] == call_ids

    summary = ledger.summary(order=["small", "large"])
    assert summary.requests == 2 and summary.calls == 2
    assert summary.cost == pytest.approx(0.00845)
    assert summary.baseline_cost == pytest.approx(0.0155)
    assert summary.savings == pytest.approx(0.00705)
    assert summary.route("small").input_tokens == 1000
    assert summary.route("large").output_tokens == 300


def test_no_double_counting_tokens_equal_the_childrens(priced, ledger_handler):
    llm, small, large = priced
    llm.chat(user(EASY_Q))
    llm.complete(HARD_Q)
    list(llm.stream_chat(user(HARD_Q)))
    records = ledger_handler.ledger.records()
    assert len(records) == len(small.calls) + len(large.calls) == 3
    assert sum(r.input_tokens for r in records) == 1000 + 2000 + 2000
    assert sum(r.output_tokens for r in records) == 500 + 300 + 300
    assert [r.metadata["call"] for r in records] == ["chat", "complete", "stream_chat"]
    assert records[2].metadata["streamed"] is True


def test_escalation_records_the_failed_attempt_and_the_answer(router, ledger_handler):
    small = MockProviderLLM(
        model="gpt-4o-mini", usage=(1000, 500), script=[MockProviderError("429 rate limited")]
    )
    large = MockProviderLLM(model="gpt-4o", usage=(2000, 300))
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    llm.chat(user(EASY_Q))

    failed, answered = ledger_handler.ledger.records()
    assert failed.route == "small" and failed.error == "MockProviderError: 429 rate limited"
    assert (failed.input_tokens, failed.output_tokens, failed.cost) == (0, 0, 0.0)
    assert failed.metadata["next_route"] == "large"
    assert answered.route == "large" and answered.error is None
    assert answered.escalated is True and answered.escalated_from == "small"
    assert answered.cost == pytest.approx(0.008)
    assert failed.run_id == answered.run_id

    summary = ledger_handler.ledger.summary()
    assert summary.requests == 1 and summary.calls == 2 and summary.errors == 1
    assert summary.escalated_requests == 1
    assert summary.cost == pytest.approx(0.008)


def test_cached_tokens_are_priced_at_the_cached_rate(router, ledger_handler):
    small = MockProviderLLM(model="gpt-4o-mini", usage=(1000, 500), cached_tokens=800)
    large = MockProviderLLM(
        model="claude-sonnet-4-5", api_format="anthropic", usage=(1000, 500), cached_tokens=800
    )
    llm = RoutingLLM(router=router, models={"small": small, "large": large})
    llm.chat(user(EASY_Q))
    llm.chat(user(HARD_Q))
    openai_rec, anthropic_rec = ledger_handler.ledger.records()
    assert (openai_rec.input_tokens, openai_rec.cached_tokens) == (1000, 800)
    # 200 * 0.15e-6 + 800 * 0.075e-6 + 500 * 0.6e-6
    assert openai_rec.cost == pytest.approx(0.00039)
    # Anthropic reports 200 uncached + 800 cache reads: 1000 input tokens in all
    assert (anthropic_rec.input_tokens, anthropic_rec.cached_tokens) == (1000, 800)
    # 200 * 3e-6 + 800 * 0.3e-6 + 500 * 15e-6
    assert anthropic_rec.cost == pytest.approx(0.00834)
    assert anthropic_rec.baseline_model == "claude-sonnet-4-5"


def test_anthropic_streams_split_usage_over_chunks(router, ledger_handler):
    large = MockProviderLLM(
        model="claude-sonnet-4-5", api_format="anthropic", usage=(1000, 500), cached_tokens=800
    )
    llm = RoutingLLM(
        router=router, models={"small": MockProviderLLM(model="gpt-4o-mini"), "large": large}
    )
    chunks = list(llm.stream_chat(user(HARD_Q)))
    assert chunks[0].raw["type"] == "message_start"
    assert chunks[-1].raw == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 500},
    }
    (record,) = ledger_handler.ledger.records()
    # input from message_start, output from the last message_delta
    assert (record.input_tokens, record.cached_tokens, record.output_tokens) == (1000, 800, 500)
    assert record.cost == pytest.approx(0.00834)


def test_merge_usage():
    assert merge_usage([None, None]) is None
    assert merge_usage(
        [TokenUsage(input_tokens=10, cached_tokens=4, output_tokens=1), TokenUsage(output_tokens=7)]
    ) == TokenUsage(input_tokens=10, output_tokens=7, cached_tokens=4)


@pytest.mark.parametrize("filename", ["costs.jsonl", "costs.db"])
def test_file_ledgers_can_be_reopened(priced, tmp_path, filename):
    llm, _, _ = priced
    path = tmp_path / filename
    with track_costs(CostLedger(path), metadata={"app": "docs-bot"}) as ledger:
        llm.complete(EASY_Q)
        list(llm.stream_complete(HARD_Q))
    ledger.close()

    reopened = CostLedger.open(path)
    records = reopened.records()
    assert [(r.route, r.framework, r.metadata["app"]) for r in records] == [
        ("small", "llama_index", "docs-bot"),
        ("large", "llama_index", "docs-bot"),
    ]
    assert reopened.summary().cost == pytest.approx(0.00045 + 0.008)


def test_track_costs_stops_recording_on_exit(priced):
    llm, _, _ = priced
    with track_costs() as ledger:
        llm.complete(EASY_Q)
    llm.complete(EASY_Q)
    assert len(ledger) == 1


def test_unknown_models_are_recorded_unpriced(router):
    llm = RoutingLLM(
        router=router,
        models={
            "small": MockProviderLLM(model="my-local-llama", usage=(10, 5)),
            "large": MockProviderLLM(model="gpt-4o", usage=(10, 5)),
        },
    )
    with pytest.warns(UserWarning, match="my-local-llama"), track_costs() as ledger:
        llm.complete(EASY_Q)
    (record,) = ledger.records()
    assert record.cost is None and record.input_tokens == 10
    assert record.baseline_cost == pytest.approx(10 * 2.5e-6 + 5 * 10e-6)


async def test_async_calls_are_recorded(priced, ledger_handler):
    llm, _, _ = priced
    await llm.achat(user(HARD_Q))
    chunks = [c async for c in await llm.astream_complete(EASY_Q)]
    assert chunks
    records = ledger_handler.ledger.records()
    assert [(r.route, r.input_tokens, r.output_tokens) for r in records] == [
        ("large", 2000, 300),
        ("small", 1000, 500),
    ]


def test_a_stream_closed_early_is_still_recorded(router, ledger_handler):
    small = MockProviderLLM(model="gpt-4o-mini", reply="one two three four five")
    llm = RoutingLLM(
        router=router, models={"small": small, "large": MockProviderLLM(model="gpt-4o")}
    )
    stream = llm.stream_complete(EASY_Q)
    next(stream)
    stream.close()
    (record,) = ledger_handler.ledger.records()
    assert record.route == "small" and record.error is None
    assert record.output_tokens == 0  # no usage had arrived yet
    assert record.metadata["usage_reported"] is False


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("raw", "additional", "expected"),
    [
        (
            {"usage": {"prompt_tokens": 12, "completion_tokens": 3}},
            {},
            TokenUsage(input_tokens=12, output_tokens=3),
        ),
        (
            {
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 64},
                }
            },
            {},
            TokenUsage(input_tokens=100, output_tokens=7, cached_tokens=64),
        ),
        (
            {
                "usage": {
                    "input_tokens": 10,
                    "output_tokens": 4,
                    "cache_read_input_tokens": 30,
                    "cache_creation_input_tokens": 5,
                }
            },
            {},
            TokenUsage(input_tokens=45, output_tokens=4, cached_tokens=30),
        ),
        (
            {"usage_metadata": {"prompt_token_count": 8, "candidates_token_count": 2}},
            {},
            TokenUsage(input_tokens=8, output_tokens=2),
        ),
        (
            None,
            {"prompt_tokens": 5, "completion_tokens": 1},
            TokenUsage(input_tokens=5, output_tokens=1),
        ),
        (
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 9, "output_tokens": 1}},
            },
            {},
            TokenUsage(input_tokens=9, output_tokens=1),
        ),
        ({"usage": None}, {}, None),
        ({"id": "x"}, {"langroute": {"route": "small"}}, None),
    ],
)
def test_extract_usage(raw, additional, expected):
    response = CompletionResponse(text="x", raw=raw, additional_kwargs=additional)
    assert extract_usage(response) == expected


def test_extract_usage_from_provider_objects():
    usage = SimpleNamespace(prompt_tokens=20, completion_tokens=9, prompt_tokens_details=None)
    raw = SimpleNamespace(model="gpt-4o", usage=usage)
    response = ChatResponse(message=ChatMessage(role="assistant", content="x"), raw=raw)
    assert extract_usage(response) == TokenUsage(input_tokens=20, output_tokens=9)


def test_handler_records_only_langroute_events(priced, events):
    llm, _, _ = priced
    llm.chat(user(EASY_Q))
    handler = CostCallbackHandler()
    recorded = [type(e).__name__ for e in events.events if handler.records_for(e)]
    assert recorded == ["RouteCompletedEvent"]
    assert "LLMChatEndEvent" in events.names()  # seen, but not recorded twice


def test_records_carry_the_instrument_tags_named_as_segments(priced):
    from llama_index.core.instrumentation.dispatcher import instrument_tags

    llm, _, _ = priced
    with track_costs(segment_keys=["tenant"]) as ledger:
        with instrument_tags({"tenant": "acme", "other": "x"}):
            llm.chat(user(EASY_Q))
        llm.chat(user(HARD_Q))
    acme, anonymous = ledger.records()
    assert acme.metadata["tenant"] == "acme" and "other" not in acme.metadata
    assert "tenant" not in anonymous.metadata
    assert acme.metadata["max_similarity"] == pytest.approx(llm.router.route(EASY_Q).max_similarity)
