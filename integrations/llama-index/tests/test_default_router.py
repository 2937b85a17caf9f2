"""RoutingLLM with the bundled starter router (real MiniLM embeddings) in a RAG pipeline."""

from __future__ import annotations

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.llms.langroute import RoutingLLM, track_costs
from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderLLM

DOCS = [
    "Acme Rockets was founded in 1987 in Tucson by Maria Lopez, its chief executive.",
    "The Acme warranty clause limits liability to the purchase price of the rocket.",
]


@pytest.mark.slow
def test_starter_router_in_a_query_engine(starter_router):
    small = MockProviderLLM(model="gpt-4o-mini", usage=(800, 40))
    large = MockProviderLLM(model="gpt-4o", usage=(800, 40))
    llm = RoutingLLM(router=starter_router, models={"small": small, "large": large})
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=HashingEmbedding()
    )
    engine = index.as_query_engine(llm=llm, similarity_top_k=len(DOCS))
    hard = (
        "Write a detailed comparison of the liability regimes in the warranty clause "
        "and explain the consequences for each party."
    )
    with track_costs() as ledger:
        easy_answer = engine.query("Who is the chief executive of Acme?")
        hard_answer = engine.query(hard)

    assert str(easy_answer) == "Answer from gpt-4o-mini."
    assert str(hard_answer) == "Answer from gpt-4o."
    small_rec, large_rec = ledger.records()
    assert (small_rec.route, large_rec.route) == ("small", "large")
    assert small_rec.reason == large_rec.reason == "vote"
    # 800 * 0.15e-6 + 40 * 0.6e-6 against 800 * 2.5e-6 + 40 * 10e-6
    assert small_rec.cost == pytest.approx(0.000144)
    assert ledger.summary().savings == pytest.approx(0.0024 - 0.000144)
