"""RoutingLLM inside real LlamaIndex pipelines: query engines, chat engines, token counting."""

from __future__ import annotations

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.llms.langroute.testing import HashingEmbedding

DOCS = [
    "Acme Rockets was founded in 1987 in Tucson by Maria Lopez, its chief executive.",
    "The Acme warranty clause limits liability to the purchase price of the rocket.",
    "Acme rockets use a two stage design; the second stage burns liquid oxygen.",
]
EASY = "When was Acme Rockets founded?"
HARD = "Analyse the legal implications of the Acme warranty clause in depth."


@pytest.fixture
def index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=HashingEmbedding()
    )


def test_two_questions_over_the_same_context_go_to_different_routes(
    index, llm, small, large, events
):
    # top_k = every document: both questions get exactly the same retrieved context
    engine = index.as_query_engine(llm=llm, similarity_top_k=len(DOCS))
    easy = engine.query(EASY)
    hard = engine.query(HARD)

    assert {n.node.get_content() for n in easy.source_nodes} == set(DOCS)
    assert {n.node.get_content() for n in hard.source_nodes} == set(DOCS)
    assert str(easy) == "Answer from gpt-4o-mini."
    assert str(hard) == "Answer from gpt-4o."
    assert len(small.calls) == 1 and len(large.calls) == 1
    # each child received the filled template: retrieved context plus the question
    for mock, question in ((small, EASY), (large, HARD)):
        prompt = "\n".join(m.content or "" for m in mock.calls[0].messages)
        assert question in prompt
        assert all(doc in prompt for doc in DOCS)
    # the router saw the question only, not the prompt around it
    selected = events.of("RouteSelectedEvent")
    assert [(e.query, e.route, e.source) for e in selected] == [
        (EASY, "small", "prompt"),
        (HARD, "large", "prompt"),
    ]


def test_streaming_query_responses(index, llm, small, large, ledger_handler):
    engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=len(DOCS))
    easy = engine.query(EASY)
    assert "".join(easy.response_gen) == "Answer from gpt-4o-mini."
    hard = engine.query(HARD)
    assert "".join(hard.response_gen) == "Answer from gpt-4o."
    assert [c.method for c in small.calls] == ["stream_chat"]
    assert [c.method for c in large.calls] == ["stream_chat"]
    # usage arrives on the last chunk of each stream and reaches the ledger
    records = ledger_handler.ledger.records()
    assert [(r.route, r.model, r.output_tokens) for r in records] == [
        ("small", "gpt-4o-mini", 3),
        ("large", "gpt-4o", 3),
    ]
    assert all(r.input_tokens > 40 for r in records)  # the context was in the prompt


async def test_async_query_engine(index, llm, small, large):
    engine = index.as_query_engine(llm=llm, similarity_top_k=len(DOCS))
    hard = await engine.aquery(HARD)
    easy = await engine.aquery(EASY)
    assert str(hard) == "Answer from gpt-4o." and str(easy) == "Answer from gpt-4o-mini."
    assert [c.method for c in large.calls] == ["achat"]
    assert [c.method for c in small.calls] == ["achat"]


async def test_async_streaming_query(index, llm, large):
    engine = index.as_query_engine(llm=llm, streaming=True, similarity_top_k=len(DOCS))
    response = await engine.aquery(HARD)
    tokens = [token async for token in response.async_response_gen()]
    assert "".join(tokens) == "Answer from gpt-4o."
    assert [c.method for c in large.calls] == ["astream_chat"]


def test_refine_mode_keeps_every_step_on_the_questions_route(index, llm, small, large, events):
    # refine calls predict once per chunk, with query_str bound each time
    engine = index.as_query_engine(
        llm=llm, response_mode="refine", similarity_top_k=len(DOCS), streaming=False
    )
    engine.query(HARD)
    assert not small.calls and len(large.calls) >= 1
    assert {e.route for e in events.of("RouteSelectedEvent")} == {"large"}


def test_context_chat_engine_routes_each_turn_on_the_user_message(index, llm, small, large):
    engine = index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=len(DOCS))
    first = engine.chat("Who is the chief executive of Acme?")
    second = engine.chat(HARD)
    assert str(first) == "Answer from gpt-4o-mini."
    assert str(second) == "Answer from gpt-4o."
    # the system message carried the retrieved context; the router ignored it
    assert small.calls[0].messages[0].role == "system"
    assert DOCS[1] in small.calls[0].messages[0].content
    # the second turn saw the whole history
    assert [m.role.value for m in large.calls[0].messages[1:]] == [
        "user",
        "assistant",
        "user",
    ]


def test_condense_plus_context_chat_engine_streaming(index, llm, small, large, events):
    condensed = "Analyse the legal implications of the warranty clause of Acme Rockets in depth."
    large.script = [condensed]  # the condense step's answer, then the default reply
    engine = index.as_chat_engine(
        chat_mode="condense_plus_context", llm=llm, similarity_top_k=len(DOCS)
    )
    streamed = engine.stream_chat("hello, how are you?")
    assert "".join(streamed.response_gen) == "Answer from gpt-4o-mini."
    second = engine.chat(HARD)
    assert str(second) == "Answer from gpt-4o."
    # turn 1: the message itself; turn 2: the condense step (a complete() call whose
    # prompt embeds the history: routed on the follow-up message) and the answer
    # (query_str = the user's message; the condensed one only drives retrieval)
    selected = [(e.query, e.route, e.source) for e in events.of("RouteSelectedEvent")]
    assert selected == [
        ("hello, how are you?", "small", "prompt"),
        (HARD, "large", "completion"),
        (HARD, "large", "prompt"),
    ]
    # the condensed question did drive retrieval
    assert any(
        type(e).__name__ == "RetrievalStartEvent" and str(e.str_or_query_bundle) == condensed
        for e in events.events
    )
    assert [c.method for c in small.calls] == ["stream_chat"]
    assert [c.method for c in large.calls] == ["complete", "chat"]


def test_token_counts_equal_the_childrens_usage(index, llm, small, large):
    counter = TokenCountingHandler(tokenizer=lambda text: text.split())
    # the documented way: a global callback manager (the settings fixture restores it)
    Settings.callback_manager = CallbackManager([counter])
    engine = index.as_query_engine(llm=llm, similarity_top_k=len(DOCS))
    easy = engine.query(EASY)
    hard = engine.query(HARD)
    # the synthesizer handed its callback manager to the routing LLM, which shared it
    assert small.callback_manager is large.callback_manager is Settings.callback_manager
    assert len(counter.llm_token_counts) == 2  # one LLM event per query, not two
    children = []
    for mock in (small, large):
        (call,) = mock.calls
        words = sum(len((m.content or "").split()) for m in call.messages)
        children.append((words, 3))
    assert [
        (c.prompt_token_count, c.completion_token_count) for c in counter.llm_token_counts
    ] == children
    assert counter.total_llm_token_count == sum(p + c for p, c in children)
    assert str(easy) != str(hard)


def test_llm_events_equal_child_calls_across_a_pipeline(index, llm, small, large, events):
    engine = index.as_query_engine(llm=llm, similarity_top_k=len(DOCS))
    engine.query(EASY)
    engine.query(HARD)
    ends = events.of("LLMChatEndEvent")
    assert len(ends) == len(small.calls) + len(large.calls) == 2
    assert [e.response.raw["model"] for e in ends] == ["gpt-4o-mini", "gpt-4o"]
    assert len(events.of("RouteCompletedEvent")) == 2


def test_as_settings_llm(index, router, small, large):
    from llama_index.llms.langroute import RoutingLLM

    routing = RoutingLLM(router=router, models={"small": small, "large": large})
    manager = CallbackManager([])
    Settings.callback_manager = manager
    Settings.llm = routing
    assert Settings.llm is routing  # the getter hands it the global callback manager
    assert small.callback_manager is manager and large.callback_manager is manager
    engine = index.as_query_engine(similarity_top_k=len(DOCS))  # no llm=: from Settings
    assert str(engine.query(HARD)) == "Answer from gpt-4o."
    assert len(large.calls) == 1 and not small.calls


def test_condense_question_chat_engine(index, llm, small, large, events):
    large.script = [HARD]  # the condensed question, then the answer
    engine = index.as_chat_engine(chat_mode="condense_question", llm=llm)
    engine.chat("Who is the chief executive of Acme?")
    answer = engine.chat("And the legal implications of the warranty clause, in depth?")
    assert str(answer) == "Answer from gpt-4o."
    selected = [(e.query, e.route) for e in events.of("RouteSelectedEvent")]
    # turn 2: the condense step routes on the follow-up (the "question" variable), the
    # query engine on the condensed question
    assert selected[-2:] == [
        ("And the legal implications of the warranty clause, in depth?", "large"),
        (HARD, "large"),
    ]


def test_simple_chat_engine_streams(llm, small):
    from llama_index.core.chat_engine import SimpleChatEngine

    engine = SimpleChatEngine.from_defaults(llm=llm)
    response = engine.stream_chat("hello, how are you?")
    assert "".join(response.response_gen) == "Answer from gpt-4o-mini."
    assert [c.method for c in small.calls] == ["stream_chat"]
