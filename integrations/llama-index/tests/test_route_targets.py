"""A ``RoutingLLM`` route that is a query engine, with the real llama-index ``OpenAI`` client.

The engines' LLMs talk HTTP to ``tests/provider_server.py``; what reached the provider is
asserted through the requests the fake received.
"""

from __future__ import annotations

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import ChatMessage
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.llms.langroute import QueryEngineRoute, RouteMetadata, RoutingLLM, track_costs
from llama_index.llms.openai import OpenAI

from langroute.costs import UnpricedModelWarning

MINI, LARGE = "gpt-4o-mini", "gpt-4o"
HARD = "prove that the square root of two is irrational"  # -> large
EASY = "what is the capital of france"  # -> small
DOCUMENTS = [
    Document(text="The square root of two cannot be written as a ratio of integers."),
    Document(text="Euclid gave the classic proof by contradiction."),
]


def openai(provider, name: str) -> OpenAI:
    return OpenAI(model=name, api_base=provider.openai_url, api_key="test", max_retries=0)


def rag_router_llm(router, provider) -> RoutingLLM:
    index = VectorStoreIndex.from_documents(DOCUMENTS, embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=openai(provider, LARGE))
    return RoutingLLM(router=router, models={"small": openai(provider, MINI), "large": engine})


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def prompt_sent(provider) -> str:
    """The text of the messages of the last request the fake received."""
    return " ".join(str(m.get("content")) for m in provider.requests[-1].body["messages"])


def test_a_query_engine_route_answers_a_hard_query_through_the_index(router, provider, events):
    llm = rag_router_llm(router, provider)
    assert isinstance(llm.models["large"], QueryEngineRoute)
    with track_costs() as costs:
        response = llm.chat(user(HARD))
        easy = llm.chat(user(EASY))
    assert response.message.content == f"answer from {LARGE}"
    meta = RouteMetadata.from_metadata(response.additional_kwargs)
    assert (meta.route, meta.escalated) == ("large", False) and meta.model.startswith(LARGE)
    assert llm.baseline_model == LARGE  # the engine's LLM
    assert provider.models_asked() == [LARGE, MINI]
    first = provider.requests[0].body["messages"]
    assert HARD in str(first) and "Euclid gave the classic proof" in str(first)  # retrieved
    assert response.raw["response"].source_nodes  # the engine's Response, with its sources
    # the small LLM route still works
    small = RouteMetadata.from_metadata(easy.additional_kwargs)
    assert (small.route, easy.message.content) == ("small", f"answer from {MINI}")
    # one ledger row per call, the engine's row priced as the model it called
    rows = costs.records()
    assert [(r.route, r.error) for r in rows] == [("large", None), ("small", None)]
    assert rows[0].model == meta.model and rows[1].model == small.model
    assert rows[0].input_tokens > 0 and rows[0].output_tokens > 0
    assert rows[0].cost == costs.pricer.cost(
        meta.model, rows[0].input_tokens, rows[0].output_tokens
    )
    assert rows[0].cost is not None and rows[0].baseline_cost == rows[0].cost
    selected = [e.route for e in events.of("RouteSelectedEvent")]
    completed = [e.call.decision.route for e in events.of("RouteCompletedEvent")]
    assert selected == completed == ["large", "small"]


async def test_a_query_engine_route_streams_its_answer_once(router, provider):
    llm = rag_router_llm(router, provider)
    with track_costs() as costs:
        chunks = [chunk async for chunk in await llm.astream_chat(user(HARD))]
    assert [c.delta for c in chunks] == [f"answer from {LARGE}"]
    assert RouteMetadata.from_metadata(chunks[-1].additional_kwargs).route == "large"
    (row,) = costs.records()
    assert (row.route, row.metadata["streamed"]) == ("large", True) and row.model.startswith(LARGE)
    assert row.input_tokens > 0


def test_inside_a_query_engine_the_route_is_asked_the_question_not_the_filled_prompt(
    router, provider
):
    llm = rag_router_llm(router, provider)
    outer = VectorStoreIndex.from_documents(
        [Document(text="An unrelated outer document.")], embed_model=MockEmbedding(embed_dim=8)
    ).as_query_engine(llm=llm)
    answer = outer.query(HARD)
    assert str(answer) == f"answer from {LARGE}" and provider.models_asked() == [LARGE]
    sent = prompt_sent(provider)
    assert HARD in sent and "Euclid gave the classic proof" in sent
    assert "An unrelated outer document." not in sent  # the outer prompt did not travel


class CannedEngine(CustomQueryEngine):
    """A query engine that calls no model."""

    def custom_query(self, query_str: str) -> str:
        return "We are open 9 to 5."


def test_an_engine_that_calls_no_model_gives_a_zero_usage_row(router, provider):
    llm = RoutingLLM(
        router=router, models={"small": CannedEngine(), "large": openai(provider, LARGE)}
    )
    with track_costs() as costs, pytest.warns(UnpricedModelWarning):
        response = llm.complete(EASY)
    assert response.text == "We are open 9 to 5." and provider.models_asked() == []
    (row,) = costs.records()
    assert (row.route, row.model) == ("small", "CannedEngine:small")
    assert (row.input_tokens, row.output_tokens) == (0, 0)
    assert row.cost is None  # its name has no price unless [prices] gives one


def test_a_failing_engine_escalates_to_the_next_route(router, provider):
    provider.script(MINI, "500")
    index = VectorStoreIndex.from_documents(DOCUMENTS, embed_model=MockEmbedding(embed_dim=8))
    llm = RoutingLLM(
        router=router,
        models={
            "small": index.as_query_engine(llm=openai(provider, MINI)),
            "large": openai(provider, LARGE),
        },
    )
    with track_costs() as costs:
        response = llm.chat(user(EASY))
    meta = RouteMetadata.from_metadata(response.additional_kwargs)
    assert (meta.route, meta.escalated) == ("large", True)
    assert [(r.route, r.error is not None) for r in costs.records()] == [
        ("small", True),
        ("large", False),
    ]
