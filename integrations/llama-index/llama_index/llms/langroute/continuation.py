"""Continuing a LlamaIndex stream that broke after text, on the next model, in the same stream.

LlamaIndex chunks carry the text so far (``message.content`` / ``text``) besides their
``delta``: a continuation's chunks are rewritten to carry the broken attempt's text
before their own, so a caller that reads either sees one answer. The continuation
request is the conversation, the text so far as the assistant's turn and the ask to go
on (:func:`langroute.dispatch.continuation.continuation_turns`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole

from langroute.dispatch.continuation import continuation_turns

__all__ = ["acontinued", "continuation_messages", "continued", "delivered_text"]


def delivered_text(chunks: Sequence[ChatResponse]) -> str | None:
    """The text a broken stream delivered; None when it delivered a tool call (not continued)."""
    for chunk in chunks:
        message = chunk.message
        if message.additional_kwargs.get("tool_calls") or any(
            getattr(block, "block_type", None) == "tool_call" for block in message.blocks
        ):
            return None
    return "".join(chunk.delta or "" for chunk in chunks)


def continuation_messages(messages: Sequence[ChatMessage], text_so_far: str) -> list[ChatMessage]:
    """The conversation, then the text so far as the assistant's turn, then the ask to go on."""
    roles = {"assistant": MessageRole.ASSISTANT, "user": MessageRole.USER}
    turns = [ChatMessage(role=roles[r], content=c) for r, c in continuation_turns(text_so_far)]
    return [*messages, *turns]


def _prefixed(chunk: ChatResponse, text_so_far: str) -> ChatResponse:
    message = ChatMessage(
        role=chunk.message.role,
        content=text_so_far + (chunk.message.content or ""),
        additional_kwargs=chunk.message.additional_kwargs,
    )
    return chunk.model_copy(update={"message": message})


def continued(chunks: Iterator[ChatResponse], text_so_far: str) -> Iterator[ChatResponse]:
    """A continuation's chunks, each carrying the text before it."""
    for chunk in chunks:
        yield _prefixed(chunk, text_so_far)


async def acontinued(chunks: Any, text_so_far: str) -> AsyncIterator[ChatResponse]:
    """Async :func:`continued` (``chunks``: an async iterable, or an awaitable of one)."""
    if not hasattr(chunks, "__aiter__"):
        chunks = await chunks
    async for chunk in chunks:
        yield _prefixed(chunk, text_so_far)
