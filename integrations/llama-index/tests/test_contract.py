"""The routed-call contract shared with the core and the LangChain integration.

``additional_kwargs["langroute"]`` is exactly
:meth:`langroute.dispatch.routed_call.RoutedCall.metadata`
(read typed with :meth:`RouteMetadata.from_metadata`), and the ledger holds one row per
attempt: the failed route with its error and model, the answering route with its tokens.
"""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import ROUTE_KEY, RouteMetadata, RoutingLLM
from llama_index.llms.langroute.testing import MockProviderError, MockProviderLLM, StreamFailure

from langroute.dispatch.routed_call import ROUTE_KEY as CORE_ROUTE_KEY
from langroute.dispatch.routed_call import RoutedCall

EASY_Q = "what is the capital of france"


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def escalating_llm(router, failure) -> RoutingLLM:
    """small fails with ``failure`` before answering; large answers (2000 in, 300 out)."""
    small = MockProviderLLM(model="gpt-4o-mini", usage=(1000, 500), script=[failure])
    large = MockProviderLLM(model="gpt-4o", usage=(2000, 300))
    return RoutingLLM(router=router, models={"small": small, "large": large})


def assert_one_row_per_attempt(ledger, record: RouteMetadata) -> None:
    failed, answered = ledger.records()
    assert (failed.route, failed.model) == ("small", "gpt-4o-mini")
    assert failed.error == "MockProviderError: 429 rate limited"
    assert (failed.input_tokens, failed.output_tokens, failed.cost) == (0, 0, 0.0)
    assert failed.escalated is False
    assert (answered.route, answered.model, answered.error) == ("large", "gpt-4o", None)
    assert (answered.input_tokens, answered.output_tokens) == (2000, 300)
    assert answered.escalated is True and answered.escalated_from == "small"
    assert answered.metadata["decided_route"] == "small"
    assert answered.metadata["usage_reported"] is True
    assert failed.run_id == answered.run_id == record.call_id
    assert {r.framework for r in (failed, answered)} == {"llama_index"}


def test_route_key_is_the_core_constant():
    assert ROUTE_KEY is CORE_ROUTE_KEY


def test_escalated_chat_has_one_ledger_row_per_attempt(router, ledger_handler):
    llm = escalating_llm(router, MockProviderError("429 rate limited"))
    response = llm.chat(user(EASY_Q))
    record = RouteMetadata.from_metadata(response.additional_kwargs)
    assert (record.route, record.model, record.decided_route) == ("large", "gpt-4o", "small")
    assert_one_row_per_attempt(ledger_handler.ledger, record)
    assert ledger_handler.ledger.records()[1].metadata["call"] == "chat"


def test_escalated_stream_has_one_ledger_row_per_attempt(router, ledger_handler):
    failure = StreamFailure(error=MockProviderError("429 rate limited"))
    llm = escalating_llm(router, failure)
    chunks = list(llm.stream_chat(user(EASY_Q)))
    record = RouteMetadata.from_metadata(chunks[-1].additional_kwargs)
    assert record.escalated_from == "small" and record.route == "large"
    # the usage of the stream is combined over its chunks (the last one carries it)
    assert_one_row_per_attempt(ledger_handler.ledger, record)
    assert ledger_handler.ledger.records()[1].metadata["streamed"] is True


async def test_escalated_async_stream_has_one_ledger_row_per_attempt(router, ledger_handler):
    failure = StreamFailure(error=MockProviderError("429 rate limited"))
    llm = escalating_llm(router, failure)
    chunks = [c async for c in await llm.astream_complete(EASY_Q)]
    record = RouteMetadata.from_metadata(chunks[0].additional_kwargs)
    assert_one_row_per_attempt(ledger_handler.ledger, record)


def test_a_stream_broken_after_its_first_chunk_keeps_its_error_and_tokens(router, ledger_handler):
    failure = StreamFailure(error=MockProviderError("connection reset"), after_chunks=2)
    small = MockProviderLLM(model="gpt-4o-mini", script=[failure])
    llm = RoutingLLM(router=router, models={"small": small, "large": MockProviderLLM()})
    with pytest.raises(MockProviderError):
        list(llm.stream_complete(EASY_Q))
    (row,) = ledger_handler.ledger.records()
    assert (row.route, row.error) == ("small", "MockProviderError: connection reset")
    assert row.escalated is False


def test_additional_kwargs_hold_exactly_the_core_record(router, events):
    llm = escalating_llm(router, MockProviderError("429 rate limited"))
    response = llm.chat(user(EASY_Q))
    data = response.additional_kwargs[ROUTE_KEY]
    record = RouteMetadata.from_metadata(response.additional_kwargs)
    assert isinstance(record, RouteMetadata)
    assert record.model_dump(mode="json") == data
    assert set(data) == set(RouteMetadata.model_fields)
    # the same record the completion event's call gives
    (completed,) = events.of("RouteCompletedEvent")
    assert isinstance(completed.call, RoutedCall)
    assert completed.call.metadata() == data
    assert [(a.route, a.error) for a in record.attempts] == [
        ("small", "MockProviderError: 429 rate limited")
    ]
    assert (record.baseline_route, record.baseline_model) == ("large", "gpt-4o")
    assert record.reason == "vote" and record.escalated is True


def test_answers_without_a_record_read_as_none(small):
    assert RouteMetadata.from_metadata(small.chat(user(EASY_Q)).additional_kwargs) is None
