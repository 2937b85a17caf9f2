"""Shadow evaluation and OpenTelemetry spans through ``RoutingLLM`` (chat, stream)."""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import RoutingLLM, track_costs
from llama_index.llms.langroute.testing import MockProviderError, MockProviderLLM
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langroute import Exemplar, ExemplarRouter
from langroute.costs import ModelPrice, Pricer
from langroute.embedders import HashingEmbedder
from langroute.telemetry import ROUTE_SPAN, Telemetry

from .conftest import EASY, HARD

PRICES = Pricer(
    {
        "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
        "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.0),
    }
)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def always_large() -> ExemplarRouter:
    """A candidate that sends everything to the strong route (it flips every easy query)."""
    exemplars = [Exemplar(text=t, route="large") for t in EASY + HARD]
    exemplars.append(Exemplar(text="unused small exemplar xyzzy", route="small"))
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(),
        k=3,
        min_similarity=0.1,
        min_margin=0.0,
    )


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_chat_and_stream_record_the_candidates_decision(router, small, large):
    llm = RoutingLLM(router=router, models={"small": small, "large": large}, shadow=always_large())
    with track_costs() as ledger:
        answer = llm.chat(user(EASY[0]))
        "".join(chunk.delta or "" for chunk in llm.stream_chat(user(HARD[0])))
    assert answer.additional_kwargs["langroute"]["shadow"]["route"] == "large"
    rows = ledger.records()
    assert [(r.route, r.shadow_route, r.shadow_error) for r in rows] == [
        ("small", "large", None),
        ("large", "large", None),
    ]


async def test_async_chat_records_the_candidates_decision(router, small, large):
    llm = RoutingLLM(router=router, models={"small": small, "large": large}, shadow=always_large())
    with track_costs() as ledger:
        await llm.achat(user(EASY[1]))
    [row] = ledger.records()
    assert (row.route, row.shadow_route) == ("small", "large")


def test_chat_and_stream_write_decision_and_model_call_spans(router, spans):
    provider, exporter = spans
    small = MockProviderLLM(model="gpt-4o-mini", usage=(1000, 500))
    large = MockProviderLLM(model="gpt-4o", usage=(2000, 300))
    llm = RoutingLLM(
        router=router,
        models={"small": small, "large": large},
        telemetry=Telemetry(provider, pricer=PRICES),
    )
    llm.chat(user(EASY[0]))
    "".join(chunk.delta or "" for chunk in llm.stream_chat(user(HARD[0])))
    finished = exporter.get_finished_spans()
    decisions = [s for s in finished if s.name == ROUTE_SPAN]
    assert [s.attributes["langroute.route"] for s in decisions] == ["small", "large"]
    [chat_small] = [s for s in finished if s.name == "chat gpt-4o-mini"]
    [chat_large] = [s for s in finished if s.name == "chat gpt-4o"]
    assert chat_small.parent.span_id == decisions[0].context.span_id
    assert chat_small.attributes["gen_ai.usage.input_tokens"] == 1000
    assert chat_small.attributes["gen_ai.usage.output_tokens"] == 500
    assert chat_small.attributes["langroute.cost_usd"] == pytest.approx(
        1000 * 0.15e-6 + 500 * 0.60e-6
    )
    assert chat_large.attributes["gen_ai.request.model"] == "gpt-4o"
    assert chat_large.attributes["langroute.reason"] in ("vote", "scores")


def test_an_escalated_call_marks_the_failed_attempts_span(router, spans):
    provider, exporter = spans
    small = MockProviderLLM(model="gpt-4o-mini", script=[MockProviderError("503")])
    large = MockProviderLLM(model="gpt-4o")
    llm = RoutingLLM(router=router, models={"small": small, "large": large}, telemetry=provider)
    llm.chat(user(EASY[0]))
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert by_name["chat gpt-4o-mini"].attributes["error.type"] == "MockProviderError"
    assert by_name["chat gpt-4o"].attributes["langroute.escalated"] is True
