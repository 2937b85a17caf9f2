"""Query extractors: which text of a chat prompt the router routes on.

A query extractor is any callable ``(messages) -> str | None``. Returning ``None`` (or an
empty string) means "nothing to route on": the routing model then uses the router's
fallback decision (reason ``"no_query"``).

The default, :func:`last_human_message`, routes on the user's question and ignores system
messages, so a RAG prompt that stuffs retrieved context into a system message still routes
on the question.

Example:
    >>> from langchain_core.messages import HumanMessage, SystemMessage
    >>> last_human_message([SystemMessage("Context: ..."), HumanMessage("Why is the sky blue?")])
    'Why is the sky blue?'
    >>> print(recent_human_messages(2)([HumanMessage("Hi"), HumanMessage("Prove it.")]))
    Hi
    Prove it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langroute.router.conversation import ChatTurn
from langroute.router.query_text import Query

__all__ = [
    "QueryExtractor",
    "attachment_count",
    "chat_turns",
    "last_human_message",
    "message_text",
    "recent_human_messages",
]

QueryExtractor = Callable[[Sequence[BaseMessage]], "str | None"]
"""Signature of a query extractor: messages in, the text to route on (or ``None``) out."""


def message_text(message: BaseMessage) -> str:
    """The plain text of a message: its string content, or its text blocks joined.

    Non-text blocks (images, files, tool use) are skipped.

    Args:
        message: Any LangChain message.

    Returns:
        The text, stripped; ``""`` when the message has no text.
    """
    content: Any = message.content
    if isinstance(content, str):
        return content.strip()
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") in ("text", "input_text"):
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(part.strip() for part in parts if part.strip())


_NOT_ATTACHMENTS = frozenset(
    {"text", "input_text", "tool_use", "tool_call", "reasoning", "thinking", "citation"}
)


def attachment_count(message: BaseMessage) -> int:
    """How many content blocks of ``message`` are attachments (images, files, audio, ...).

    Example:
        >>> attachment_count(HumanMessage([
        ...     {"type": "text", "text": "what is this?"},
        ...     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ... ]))
        1
    """
    content: Any = message.content
    if isinstance(content, str):
        return 0
    return sum(
        1
        for block in content or []
        if isinstance(block, dict) and block.get("type") not in _NOT_ATTACHMENTS
    )


def last_human_message(messages: Sequence[BaseMessage]) -> str | None:
    """The text of the last human message (string or content blocks), else ``None``.

    When that message also carries attachments (images, files), the text comes as a
    :class:`langroute.router.query_text.Query` that counts them, for a decider chain's rules.

    Args:
        messages: The prompt's messages.

    Returns:
        The last human turn's text, or ``None`` when there is no human text at all.
    """
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            text = message_text(message)
            if text:
                attachments = attachment_count(message)
                return Query(text, attachments=attachments) if attachments else text
    return None


def recent_human_messages(n: int = 3, separator: str = "\n") -> QueryExtractor:
    """Build an extractor that routes on the last ``n`` human turns joined together.

    Useful in multi-turn chats where the last turn alone ("and why?") says little.

    Args:
        n: How many human turns to keep, newest last (at least 1).
        separator: The string placed between turns.

    Returns:
        A query extractor.

    Raises:
        ValueError: If ``n`` is smaller than 1.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")

    def extract(messages: Sequence[BaseMessage]) -> str | None:
        texts = [message_text(m) for m in messages if isinstance(m, HumanMessage)]
        kept = [text for text in texts if text][-n:]
        return separator.join(kept) or None

    extract.__name__ = f"recent_human_messages_{n}"
    return extract


def chat_turns(messages: Sequence[BaseMessage]) -> list[ChatTurn]:
    """LangChain messages as :class:`langroute.router.conversation.ChatTurn` (role and text).

    Human messages are ``user`` turns; AI messages (tool calls included) ``assistant``;
    tool results ``tool``; system messages ``system``. Only user turns are routed on.
    """
    turns = []
    for message in messages:
        if isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ToolMessage):
            role = "tool"
        elif isinstance(message, SystemMessage):
            role = "system"
        else:
            continue
        turns.append(ChatTurn(role=role, text=message_text(message)))
    return turns
