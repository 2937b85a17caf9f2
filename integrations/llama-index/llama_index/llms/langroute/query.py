"""Find the text to route on: the user's question, not the prompt around it.

LlamaIndex hands an LLM very different inputs depending on who calls it:

* a response synthesizer calls ``predict(template, context_str=...)`` with the question
  bound into the template as ``query_str``; ``chat``/``complete`` then only see the
  filled template, which is mostly retrieved context;
* a chat engine or an agent calls ``chat(messages)`` where the last user message is
  the user's turn;
* user code calls ``complete("...")`` with the question itself, while the condense step
  of LlamaIndex's condense chat engines calls ``complete`` with a prompt that embeds the
  user's follow-up message (``Follow Up Input: ... Standalone question:``).

:class:`QueryExtractor` turns each of these into the text the router embeds. Subclass
it, or pass any object with the same three methods to ``RoutingLLM(query_extractor=...)``,
to route on something else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from llama_index.core.base.llms import types as llm_types
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts import BasePromptTemplate, ChatPromptTemplate
from llama_index.core.prompts.base import SelectorPromptTemplate

from langroute.router.conversation import ChatTurn
from langroute.router.query_text import Query

__all__ = [
    "CONDENSE_PATTERN",
    "QueryExtractor",
    "QueryExtractorProtocol",
    "attachment_count",
    "chat_turns",
]

# Blocks that carry an attachment (the newer kinds only where llama-index has them).
_ATTACHMENT_BLOCKS = tuple(
    block
    for name in ("ImageBlock", "DocumentBlock", "AudioBlock", "VideoBlock")
    if isinstance(block := getattr(llm_types, name, None), type)
)

CONDENSE_PATTERN = r"Follow Up Input:\s*(?P<query>.+?)\s*Standalone question:\s*$"
"""The user's message in the condense prompts of LlamaIndex's chat engines."""


@runtime_checkable
class QueryExtractorProtocol(Protocol):
    """What ``RoutingLLM`` needs from a query extractor."""

    def from_prompt(self, prompt: BasePromptTemplate, prompt_args: Mapping[str, Any]) -> str | None:
        """Text to route on for ``predict``/``stream``/``structured_predict`` calls."""
        ...

    def from_messages(self, messages: Sequence[ChatMessage]) -> str | None:
        """Text to route on for ``chat``/``stream_chat`` and tool calls."""
        ...

    def from_completion(self, prompt: str) -> str | None:
        """Text to route on for ``complete``/``stream_complete``."""
        ...


def attachment_count(message: ChatMessage) -> int:
    """How many blocks of ``message`` are attachments (images, documents, audio, video).

    Example:
        >>> from llama_index.core.base.llms.types import ImageBlock, TextBlock
        >>> attachment_count(ChatMessage(role="user", blocks=[
        ...     TextBlock(text="what is this?"), ImageBlock(url="https://example.com/a.png")]))
        1
    """
    return sum(1 for block in message.blocks if isinstance(block, _ATTACHMENT_BLOCKS))


def _message_text(message: ChatMessage) -> str:
    """The text blocks of a message joined (images and tool blocks carry no question)."""
    return (message.content or "").strip()


class QueryExtractor:
    r"""Default extractor: template variables first, then the latest user turn(s).

    Args:
        prompt_keys: Template variables that hold the user's question, tried in order.
            ``query_str`` is what LlamaIndex's synthesizers and refine prompts use;
            ``question`` is what the condense-question chat engines use.
        user_turns: How many of the latest user messages to route on in a chat. ``1``
            routes on the last user message only; a larger number joins earlier turns
            (oldest first) so a short follow-up ("and in French?") carries its context.
        skip_prefixes: User messages starting with one of these are not the user's
            question (ReAct observations are sent as user messages) and are skipped.
        max_chars: Text longer than this is cut (the router truncates as well; cutting
            here keeps events small).
        completion_patterns: Regular expressions tried on ``complete`` prompts; the first
            that matches gives the text to route on (its ``query`` group, else group 1).
            By default the condense prompt of the condense chat engines, so their
            condense step routes on the user's follow-up message, not on the history.

    Example:
        >>> from llama_index.core.prompts import PromptTemplate
        >>> extractor = QueryExtractor()
        >>> qa = PromptTemplate("Context: {context_str}\\nQ: {query_str}")
        >>> extractor.from_prompt(qa.partial_format(query_str="Who wrote it?"), {})
        'Who wrote it?'
    """

    def __init__(
        self,
        prompt_keys: Sequence[str] = ("query_str", "question"),
        *,
        user_turns: int = 1,
        skip_prefixes: Sequence[str] = ("Observation:",),
        max_chars: int = 4000,
        completion_patterns: Sequence[str | re.Pattern[str]] = (CONDENSE_PATTERN,),
    ) -> None:
        if user_turns < 1:
            raise ValueError("user_turns must be at least 1")
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.prompt_keys = tuple(prompt_keys)
        self.user_turns = user_turns
        self.skip_prefixes = tuple(skip_prefixes)
        self.max_chars = max_chars
        self.completion_patterns = [
            p if isinstance(p, re.Pattern) else re.compile(p, re.DOTALL)
            for p in completion_patterns
        ]

    def __repr__(self) -> str:
        return (
            f"QueryExtractor(prompt_keys={self.prompt_keys!r}, user_turns={self.user_turns}, "
            f"skip_prefixes={self.skip_prefixes!r}, max_chars={self.max_chars}, "
            f"completion_patterns={[p.pattern for p in self.completion_patterns]!r})"
        )

    def _clip(self, text: str | None) -> str | None:
        if text is None:
            return None
        text = text.strip()
        if not text:
            return None
        return text[: self.max_chars]

    def from_prompt(self, prompt: BasePromptTemplate, prompt_args: Mapping[str, Any]) -> str | None:
        """The question bound into a template, else the template's own user text.

        Looks up :attr:`prompt_keys` in the call's arguments, then in the template's
        partial arguments (``partial_format``), including those of a selector
        template's default. Without such a variable, a chat template is routed on its
        last user message and a text template on the formatted prompt.
        """
        bound: dict[str, Any] = {}
        if isinstance(prompt, SelectorPromptTemplate):
            bound.update(prompt.default_template.kwargs)
        bound.update(prompt.kwargs)
        bound.update(prompt_args)
        for key in self.prompt_keys:
            value = bound.get(key)
            if isinstance(value, str) and value.strip():
                return self._clip(value)
        try:
            template = prompt
            if isinstance(prompt, SelectorPromptTemplate):
                template = prompt.default_template
            if isinstance(template, ChatPromptTemplate):
                return self.from_messages(template.format_messages(**dict(prompt_args)))
            return self._clip(template.format(**dict(prompt_args)))
        except (KeyError, ValueError, IndexError):
            # A template with unbound variables cannot be formatted: nothing to route on.
            return None

    def from_messages(self, messages: Sequence[ChatMessage]) -> str | None:
        """The latest user turn(s), skipping tool observations."""
        turns: list[str] = []
        attachments = 0
        for message in reversed(messages):
            if message.role != MessageRole.USER:
                continue
            text = _message_text(message)
            if not text or text.startswith(self.skip_prefixes):
                continue
            turns.append(text)
            if len(turns) == 1:
                attachments = attachment_count(message)  # of the latest user turn
            if len(turns) == self.user_turns:
                break
        if not turns:
            return None
        clipped = self._clip("\n".join(reversed(turns)))
        if attachments and clipped is not None:
            return Query(clipped, attachments=attachments)
        return clipped

    def from_completion(self, prompt: str) -> str | None:
        """The part matched by :attr:`completion_patterns`, else the whole prompt."""
        for pattern in self.completion_patterns:
            match = pattern.search(prompt)
            if match is not None:
                found = match.groupdict().get("query") or (
                    match.group(1) if match.groups() else None
                )
                if found and found.strip():
                    return self._clip(found)
        return self._clip(prompt)


_ROLES = {
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "developer",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "function",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}


def chat_turns(messages: Sequence[ChatMessage]) -> list[ChatTurn]:
    """LlamaIndex chat messages as :class:`langroute.router.conversation.ChatTurn` (role, text).

    Only ``user`` turns are routed on; tool results and assistant tool calls never are.
    """
    return [
        ChatTurn(role=_ROLES[message.role], text=_message_text(message))
        for message in messages
        if message.role in _ROLES
    ]
