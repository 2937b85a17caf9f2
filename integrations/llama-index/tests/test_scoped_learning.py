"""Learning scoped to who taught it, in RoutingLLM: one caller's feedback re-routes only its calls.

The real ``llama_index.llms.openai.OpenAI`` answers from the local fake provider
(``tests/provider_server.py``); which route answered is read from the requests it got.
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute import RouteMetadata, RoutingLLM, track_costs
from llama_index.llms.langroute.testing import HashingEmbedding
from llama_index.llms.openai import OpenAI

from langroute import ExemplarRouter
from langroute.router.scoped_learning import ScopedLearning

SMALL, LARGE = "gpt-4o-mini", "gpt-4o"
TAUGHT = "what is the capital city of peru"
HELD_OUT = "what is the capital city of peru please"  # near the taught query, not the same


def routing_llm(
    router: ExemplarRouter, provider, **options: Any
) -> tuple[RoutingLLM, ScopedLearning]:
    scoped = ScopedLearning(router)
    models = {
        route: OpenAI(model=name, api_base=provider.openai_url, api_key="test", max_retries=0)
        for route, name in (("small", SMALL), ("large", LARGE))
    }
    return RoutingLLM(router=router, models=models, scoped_learning=scoped, **options), scoped


def ask(llm: RoutingLLM, text: str) -> RouteMetadata:
    answer = llm.chat([ChatMessage(role="user", content=text)])
    return RouteMetadata.from_metadata(answer.additional_kwargs)


@pytest.mark.parametrize(
    "options",
    [{}, {"context": None, "sessions": False}],
    ids=["conversations", "last-message"],
)
def test_one_keys_thumbs_down_reroutes_that_keys_queries_only(router, provider, options):
    llm, scoped = routing_llm(router, provider, **options)
    with track_costs(store_queries=True) as ledger, llm.session(None, scope="key-a"):
        first = ask(llm, TAUGHT)
    assert first.route == "small"
    # key-a's thumbs-down on that answer, taught to key-a's routing alone
    record = ledger.get(first.record_id)
    ledger.feedback(first.record_id, "bad")
    assert scoped.learn("key-a", record.query, record.route, good=False) == "large"
    provider.reset()

    with llm.session(None, scope="key-a"):
        own = ask(llm, HELD_OUT)
    with llm.session(None, scope="key-b"):
        other = ask(llm, HELD_OUT)
    anonymous = ask(llm, HELD_OUT)
    assert (own.route, own.reason) == ("large", "scoped_learned")
    assert TAUGHT in (own.stage_note or "")
    assert other.route == anonymous.route == "small"
    assert other.reason != "scoped_learned"
    assert provider.models_asked() == [LARGE, SMALL, SMALL]
    assert router.route(HELD_OUT).route == "small"  # the shared router learned nothing


async def test_the_caller_named_by_llamaindex_instrument_tags_in_a_query_engine(router, provider):
    llm, scoped = routing_llm(router, provider)
    scoped.learn("tenant-a", TAUGHT, "small", good=False)
    index = VectorStoreIndex.from_documents(
        [Document(text="Lima is the capital city of Peru.")], embed_model=HashingEmbedding()
    )
    engine = index.as_query_engine(llm=llm)
    with instrument_tags({"tenant": "tenant-a"}):  # the query engine routes on the question
        engine.query(HELD_OUT)
        await engine.aquery(HELD_OUT)
        llm.complete(HELD_OUT)
    with instrument_tags({"tenant": "tenant-b"}):
        engine.query(HELD_OUT)
        llm.complete(HELD_OUT)
    assert provider.models_asked() == [LARGE, LARGE, LARGE, SMALL, SMALL]
