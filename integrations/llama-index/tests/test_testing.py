"""The MockProviderLLM test double itself."""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.langroute.testing import MockProviderError, MockProviderLLM, StreamFailure


def broken_llm() -> MockProviderLLM:
    failure = StreamFailure(error=MockProviderError("connection reset"), after_chunks=2)
    return MockProviderLLM(model="gpt-4o-mini", script=[failure, failure])


async def test_async_streams_break_after_their_chunks_like_sync_ones():
    llm = broken_llm()
    received = []
    with pytest.raises(MockProviderError, match="connection reset"):
        async for chunk in await llm.astream_chat([ChatMessage(role="user", content="hi")]):
            received.append(chunk.delta)
    with pytest.raises(MockProviderError, match="connection reset"):
        async for chunk in await llm.astream_complete("hi"):
            received.append(chunk.delta)
    assert received == ["partial", " answer"] * 2
    assert [c.method for c in llm.calls] == ["astream_chat", "astream_complete"]


def test_a_plain_call_with_a_stream_failure_is_refused_at_once():
    llm = broken_llm()
    with pytest.raises(MockProviderError, match="connection reset"):
        llm.complete("hi")
    received = []
    with pytest.raises(MockProviderError):
        for chunk in llm.stream_chat([ChatMessage(role="user", content="hi")]):
            received.append(chunk.delta)
    assert received == ["partial", " answer"]
