"""Shadow evaluation and OpenTelemetry spans through ``RoutingChatModel`` and ``serve``.

The candidate router is the test router with every exemplar labelled ``small`` (an
"always cheap" candidate), so it agrees on easy questions and flips hard ones.
"""

from __future__ import annotations

import pytest
from langroute import Exemplar, ExemplarRouter
from langroute.costs import ModelPrice, Pricer
from langroute.embedders import HashingEmbedder
from langroute.models.config import load_models_config
from langroute.telemetry import ROUTE_SPAN, Telemetry
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langchain_langroute import CostCallbackHandler, RoutingChatModel
from langchain_langroute.server import Gateway, create_app, serve_in_thread
from langchain_langroute.testing import FakeRateLimitError, ScriptedChatModel

from .conftest import LARGE_EXEMPLARS, SMALL_EXEMPLARS, make_router
from .test_serve import HELLO, PROOF, Server, write_config

EASY, HARD = "hello", "prove that there are infinitely many primes"
PRICES = Pricer(
    {
        "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
        "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.0),
    }
)


def always_small(embedder=None) -> ExemplarRouter:
    exemplars = [Exemplar(text=t, route="small") for t in SMALL_EXEMPLARS + LARGE_EXEMPLARS]
    exemplars.append(Exemplar(text="unused large exemplar xyzzy", route="large"))
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=embedder or HashingEmbedder(),
        k=3,
        min_similarity=0.05,
        min_margin=0.0,
    )


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def model(**kwargs) -> RoutingChatModel:
    return RoutingChatModel(
        router=make_router(),
        models={
            "small": ScriptedChatModel(model="gpt-4o-mini", provider="openai"),
            "large": ScriptedChatModel(model="gpt-4o", provider="openai", responses=["proof"]),
        },
        **kwargs,
    )


def test_the_candidates_decision_goes_into_the_first_attempts_ledger_row():
    llm = model(shadow=always_small())
    handler = CostCallbackHandler()
    easy = llm.invoke(EASY, config={"callbacks": [handler]})
    hard = llm.invoke(HARD, config={"callbacks": [handler]})
    assert easy.response_metadata["langroute"]["shadow"]["route"] == "small"
    assert hard.response_metadata["langroute"]["shadow"]["route"] == "small"
    rows = handler.ledger.records()
    assert [(r.route, r.shadow_route, r.shadow_router) for r in rows] == [
        ("small", "small", "ExemplarRouter"),
        ("large", "small", "ExemplarRouter"),
    ]
    assert all(r.shadow_reason in ("vote", "scores") and r.shadow_error is None for r in rows)


def test_a_failing_candidate_is_recorded_and_the_call_still_answers():
    class Broken:
        routes = ("small", "large")

        def route(self, query):
            raise RuntimeError("candidate exploded")

        async def aroute(self, query):
            raise RuntimeError("candidate exploded")

    llm = model(shadow=Broken(), context=None, sessions=False)
    handler = CostCallbackHandler()
    answer = llm.invoke(HARD, config={"callbacks": [handler]})
    assert answer.content == "proof"
    [row] = handler.ledger.records()
    assert row.shadow_route is None
    assert row.shadow_error == "RuntimeError: candidate exploded"


async def test_async_and_batch_calls_carry_the_candidates_decision():
    llm = model(shadow=always_small())
    handler = CostCallbackHandler()
    await llm.ainvoke(HARD, config={"callbacks": [handler]})
    llm.batch([EASY, HARD], config={"callbacks": [handler]})
    rows = handler.ledger.records()
    assert sorted((r.route, r.shadow_route) for r in rows) == [
        ("large", "small"),
        ("large", "small"),
        ("small", "small"),
    ]


def test_an_escalated_call_counts_its_candidate_once():
    small = ScriptedChatModel(
        model="gpt-4o-mini", provider="openai", failures={1: FakeRateLimitError("429")}
    )
    llm = RoutingChatModel(
        router=make_router(),
        models={"small": small, "large": ScriptedChatModel(model="gpt-4o", provider="openai")},
        shadow=always_small(),
    )
    handler = CostCallbackHandler()
    llm.invoke(EASY, config={"callbacks": [handler]})
    failed, answered = handler.ledger.records()
    assert (failed.route, failed.shadow_route) == ("small", "small")
    assert (answered.route, answered.escalated, answered.shadow_route) == ("large", True, None)


def _by_name(exporter):
    found = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_invoke_writes_a_decision_span_and_a_gen_ai_span_per_attempt(spans):
    provider, exporter = spans
    llm = model(telemetry=Telemetry(provider, pricer=PRICES), shadow=always_small())
    llm.invoke(HARD)
    found = _by_name(exporter)
    [decision] = found[ROUTE_SPAN]
    [chat] = found["chat gpt-4o"]
    assert decision.attributes["langroute.route"] == "large"
    assert decision.attributes["langroute.reason"] in ("vote", "scores")
    assert 0 < decision.attributes["langroute.confidence"] <= 1
    assert decision.attributes["langroute.shadow.route"] == "small"
    assert "langroute.session" in decision.attributes
    assert chat.parent.span_id == decision.context.span_id
    attributes = chat.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["langroute.route"] == "large" and attributes["langroute.escalated"] is False
    expected = PRICES.cost(
        "gpt-4o", attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]
    )
    assert attributes["langroute.cost_usd"] == pytest.approx(expected)


def test_stream_and_escalation_spans_mark_the_failed_attempt(spans):
    provider, exporter = spans
    small = ScriptedChatModel(
        model="gpt-4o-mini", provider="openai", failures={1: FakeRateLimitError("429")}
    )
    llm = RoutingChatModel(
        router=make_router(),
        models={"small": small, "large": ScriptedChatModel(model="gpt-4o", provider="openai")},
        telemetry=provider,
    )
    text = "".join(chunk.content for chunk in llm.stream(EASY))
    assert text == "gpt-4o answers: hello"
    found = _by_name(exporter)
    [failed] = found["chat gpt-4o-mini"]
    [answered] = found["chat gpt-4o"]
    assert failed.attributes["error.type"] == "FakeRateLimitError"
    assert failed.status.status_code.name == "ERROR"
    assert answered.attributes["langroute.escalated"] is True
    assert answered.attributes["langroute.escalated_from"] == "small"
    assert answered.attributes["gen_ai.usage.output_tokens"] > 0


def test_no_spans_without_a_provider_or_with_telemetry_off(spans):
    _, exporter = spans
    model(telemetry=False).invoke(HARD)
    model().invoke(HARD)  # default: only once a global provider is set (none in tests)
    assert exporter.get_finished_spans() == ()


def test_serve_records_the_shadow_decision_and_emits_spans(tmp_path, provider, spans):
    tracer_provider, exporter = spans
    candidate = always_small(HashingEmbedder())
    candidate.save(tmp_path / "candidate")
    config = write_config(tmp_path, provider, shadow_router="candidate", otel=True)
    from opentelemetry import trace

    gateway = Gateway(load_models_config(config), router=make_router())
    # serve uses the global provider; point its telemetry at the test's provider instead
    for llm in (gateway.llm, gateway.degraded_llm):
        llm.dispatcher.telemetry.tracer_provider = tracer_provider
    try:
        with serve_in_thread(create_app(gateway)) as url:
            server = Server(url, gateway, config)
            server.client().chat.completions.create(model="auto", messages=HELLO)
            stream = server.client().chat.completions.create(
                model="auto", messages=PROOF, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            gateway.ledger.flush()
            rows = server.calls()
    finally:
        gateway.close()
    assert trace.get_tracer_provider() is not tracer_provider
    assert sorted((r.route, r.shadow_route) for r in rows) == [
        ("large", "small"),
        ("small", "small"),
    ]
    assert {r.shadow_router for r in rows} == {str(tmp_path / "candidate")}
    found = _by_name(exporter)
    assert len(found[ROUTE_SPAN]) == 2
    assert {
        s.attributes["gen_ai.request.model"]
        for s in found["chat gpt-4o-mini"] + found["chat gpt-4o"]
    } == {"gpt-4o-mini", "gpt-4o"}
    assert all(s.attributes.get("langroute.cost_usd", 0) >= 0 for s in found["chat gpt-4o"])


def test_the_agent_middleware_records_the_candidate_and_writes_spans(spans):
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage

    from langchain_langroute import RouterMiddleware, track_costs

    provider, exporter = spans
    small = ScriptedChatModel(model="gpt-4o-mini", provider="openai")
    large = ScriptedChatModel(model="gpt-4o", provider="openai")
    middleware = RouterMiddleware(
        make_router(),
        {"small": small, "large": large},
        shadow=always_small(),
        telemetry=provider,
    )
    agent = create_agent(model=small, tools=[], middleware=[middleware])
    with track_costs() as ledger:
        state = agent.invoke({"messages": [HumanMessage(HARD)]})
    assert state["messages"][-1].response_metadata["langroute"]["shadow"]["route"] == "small"
    [row] = ledger.records()
    assert (row.route, row.shadow_route) == ("large", "small")
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == [ROUTE_SPAN, "chat gpt-4o"]


GLOBAL_PROVIDER_SCRIPT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langchain_langroute import RoutingChatModel
from langchain_langroute.testing import ScriptedChatModel

router = ExemplarRouter(
    routes=["small", "large"],
    exemplars=[Exemplar(text="hello", route="small"), Exemplar(text="prove it", route="large")],
    embedder=HashingEmbedder(),
)
llm = RoutingChatModel(
    router=router,
    models={
        "small": ScriptedChatModel(model="gpt-4o-mini"),
        "large": ScriptedChatModel(model="gpt-4o"),
    },
)
llm.invoke("hello")  # before the application sets a provider: no spans
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
llm.invoke("hello")
print([span.name for span in exporter.get_finished_spans()])
"""


def test_spans_start_once_the_application_sets_a_global_provider():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['langroute.route', 'chat gpt-4o-mini']"
