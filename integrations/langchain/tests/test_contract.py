"""The routed-call contract: the record on answers and the ledger rows of each attempt."""

from __future__ import annotations

import pytest

from langchain_langroute import ROUTE_KEY, CostCallbackHandler, RouteMetadata, RoutingChatModel
from langchain_langroute.testing import FakeTimeoutError, ScriptedChatModel

EASY = "what is the capital of france"


@pytest.fixture
def escalating(router, large) -> RoutingChatModel:
    flaky = ScriptedChatModel(model="gpt-4o-mini", failures={1: FakeTimeoutError("slow")})
    return RoutingChatModel(router=router, models={"small": flaky, "large": large})


def check_escalated_rows(handler: CostCallbackHandler, usage: dict) -> None:
    failed, answered = handler.ledger.records()
    assert failed.run_id == answered.run_id
    assert (failed.route, failed.model, failed.error) == (
        "small",
        "gpt-4o-mini",
        "FakeTimeoutError: slow",
    )
    assert (failed.input_tokens, failed.output_tokens, failed.escalated) == (0, 0, False)
    assert (answered.route, answered.model, answered.error) == ("large", "gpt-4o", None)
    assert (answered.input_tokens, answered.output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert (answered.escalated, answered.escalated_from) == (True, "small")
    assert answered.cost is not None and answered.cost == answered.baseline_cost


def test_escalated_invoke_writes_one_ledger_row_per_attempt(escalating):
    handler = CostCallbackHandler()
    answer = escalating.invoke(EASY, config={"callbacks": [handler]})
    check_escalated_rows(handler, answer.usage_metadata)
    meta = RouteMetadata.from_metadata(answer.response_metadata)
    assert handler.ledger.records()[0].run_id == meta.call_id


def test_escalated_stream_writes_one_ledger_row_per_attempt(escalating):
    handler = CostCallbackHandler()
    chunks = list(escalating.stream(EASY, config={"callbacks": [handler]}))
    [usage] = [c.usage_metadata for c in chunks if c.usage_metadata]
    check_escalated_rows(handler, usage)


async def test_escalated_astream_writes_one_ledger_row_per_attempt(escalating):
    handler = CostCallbackHandler()
    chunks = [c async for c in escalating.astream(EASY, config={"callbacks": [handler]})]
    [usage] = [c.usage_metadata for c in chunks if c.usage_metadata]
    check_escalated_rows(handler, usage)


def test_route_metadata_round_trips(escalating):
    answer = escalating.invoke(EASY)
    record = answer.response_metadata[ROUTE_KEY]
    meta = RouteMetadata.from_metadata(answer.response_metadata)
    assert meta.model_dump(mode="json") == record
    assert (meta.route, meta.model, meta.decided_route) == ("large", "gpt-4o", "small")
    assert (meta.escalated, meta.escalated_from) == (True, "small")
    [failed] = meta.attempts
    assert (failed.route, failed.model, failed.error) == (
        "small",
        "gpt-4o-mini",
        "FakeTimeoutError: slow",
    )
    assert meta.baseline_model == "gpt-4o"
    # a merged stream carries its call's record (once); the small route answers again now
    full = None
    for chunk in escalating.stream(EASY):
        full = chunk if full is None else full + chunk
    streamed = RouteMetadata.from_metadata(full.response_metadata)
    assert (streamed.route, streamed.escalated) == ("small", False)
    assert streamed.call_id != meta.call_id
