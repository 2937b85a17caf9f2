"""Test doubles that behave like real provider LLMs, without a network.

LlamaIndex's own ``MockLLM`` echoes its prompt and reports no usage, so cost and
token-count code cannot be tested with it. :class:`MockProviderLLM` answers from a
script and reports usage where real providers put it:

* ``api_format="openai"``: ``raw`` is a ``chat.completion`` dict with
  ``raw["usage"] = {"prompt_tokens", "completion_tokens", "total_tokens"}`` (and the
  counts copied into ``additional_kwargs``, as ``llama-index-llms-openai`` does); tools
  are OpenAI ``{"type": "function", "function": {...}}`` dicts and tool calls come back
  in ``message.additional_kwargs["tool_calls"]``.
* ``api_format="anthropic"``: ``raw`` is a ``message`` dict with
  ``raw["usage"] = {"input_tokens", "output_tokens", "cache_read_input_tokens"}``; tools
  are ``{"name", "description", "input_schema"}`` dicts and tool calls come back as
  ``ToolCallBlock`` blocks.

Streams yield one chunk per word, like the providers: OpenAI-style streams end with an
empty-delta chunk carrying the usage (``stream_options={"include_usage": True}``);
Anthropic-style streams open with a ``message_start`` event carrying the input usage and
end with a ``message_delta`` event carrying the output tokens. Every method emits
LlamaIndex's LLM events through the usual decorators, like a real integration.

:class:`HashingEmbedding` is a deterministic, model-free LlamaIndex embedding (hashed
bag of words) for building real indexes in tests.

The mechanics (call log, script, failures, word-count usage, logprobs, stream pieces)
are the core's :mod:`langroute.models.scripted`; this module dresses them as LlamaIndex
responses and provider-shaped ``raw`` payloads.

Example:
    >>> llm = MockProviderLLM(model="gpt-4o-mini", script=["Paris."], usage=(12, 2))
    >>> from llama_index.core.llms import ChatMessage
    >>> response = llm.chat([ChatMessage(role="user", content="Capital of France?")])
    >>> response.message.content, response.raw["usage"]["prompt_tokens"]
    ('Paris.', 12)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BaseModel, Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from langroute.embedders import HashingEmbedder
from langroute.models.scripted import (
    ScriptedProvider,
    StreamFailure,
    ToolRequest,
    Turn,
    split_pieces,
    word_logprobs,
)

__all__ = [
    "HashingEmbedding",
    "MockCall",
    "MockProviderError",
    "MockProviderLLM",
    "ScriptedToolCall",
    "StreamFailure",
]

ItemT = TypeVar("ItemT")


class MockProviderError(RuntimeError):
    """A stand-in for a provider error (rate limit, outage) in scripts."""


class ScriptedToolCall(BaseModel):
    """A tool call the mock should make; the tool must be among those offered.

    Example:
        >>> ScriptedToolCall(name="multiply", kwargs={"a": 6, "b": 7}).name
        'multiply'
    """

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    id: str = Field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")

    def to_request(self) -> ToolRequest:
        """This call as the core's neutral :class:`~langroute.models.scripted.ToolRequest`."""
        return ToolRequest(name=self.name, arguments=self.kwargs, id=self.id)


Step = str | ScriptedToolCall | list[ScriptedToolCall] | BaseException | StreamFailure
"""One scripted turn: a reply, tool call(s), an error to raise, or a broken stream."""


@dataclass
class MockCall:
    """One call a :class:`MockProviderLLM` received."""

    method: str
    messages: list[ChatMessage]
    kwargs: dict[str, Any] = field(default_factory=dict)


async def _async(items: Iterable[ItemT]) -> AsyncGenerator[ItemT, None]:
    """``items`` as an async generator (the scripted answer needs no waiting)."""
    for item in items:
        yield item


def _tool_name(tool: Any) -> str:
    """The name of a tool spec in either format (validated by the caller)."""
    if "function" in tool:
        return str(tool["function"]["name"])
    return str(tool["name"])


class MockProviderLLM(FunctionCallingLLM):
    """A scripted chat model that reports usage and tool calls like a real provider.

    Each call consumes the next step of ``script``; when the script is used up, the
    model answers with ``reply`` (a string, or a function of the messages), by default
    ``"Answer from <model>."`` followed by the latest tool result if there is one.

    Args:
        model: The model name reported in ``raw["model"]`` and ``metadata.model_name``.
        api_format: ``"openai"`` or ``"anthropic"`` (usage keys, tool and tool-call shapes).
        script: Steps, one per call: ``str`` reply, :class:`ScriptedToolCall` (or a list
            of them), an exception to raise, or a :class:`StreamFailure`.
        reply: The answer once the script is used up.
        usage: Fixed ``(input_tokens, output_tokens)`` per call; by default the number of
            whitespace-separated words in the messages and in the answer.
        cached_tokens: Input tokens reported as read from the prompt cache.
        token_logprob: If set, every answer token gets this log-probability in
            ``response.logprobs``.
        context_window: Reported in ``metadata``.
        num_output: Reported in ``metadata``.
        is_chat_model: Reported in ``metadata``.
        function_calling: Reported as ``metadata.is_function_calling_model``.

    Example:
        >>> llm = MockProviderLLM(
        ...     model="gpt-4o",
        ...     script=[ScriptedToolCall(name="add", kwargs={"a": 1, "b": 2}), "It is 3."],
        ... )
        >>> llm.metadata.model_name
        'gpt-4o'
    """

    model: str = "gpt-4o-mini"
    api_format: Literal["openai", "anthropic"] = "openai"
    script: list[Any] = Field(default_factory=list, exclude=True)
    reply: str | Callable[[list[ChatMessage]], str] | None = Field(default=None, exclude=True)
    usage: tuple[int, int] | None = None
    cached_tokens: int = 0
    token_logprob: float | None = None
    context_window: int = 128_000
    num_output: int = 4_096
    is_chat_model: bool = True
    function_calling: bool = True

    _provider: ScriptedProvider[MockCall] = PrivateAttr(default_factory=ScriptedProvider)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "MockProviderLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Metadata as configured."""
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=self.is_chat_model,
            is_function_calling_model=self.function_calling,
            model_name=self.model,
        )

    @property
    def calls(self) -> list[MockCall]:
        """Every call received, oldest first."""
        return self._provider.calls

    # ------------------------------------------------------------------ turn logic

    def _default_reply(self, messages: list[ChatMessage]) -> str:
        if callable(self.reply):
            return self.reply(messages)
        if isinstance(self.reply, str):
            return self.reply
        text = f"Answer from {self.model}."
        if messages and messages[-1].role == MessageRole.TOOL:
            text += f" The tool returned {messages[-1].content}."
        return text

    def _check_tools(self, tools: Sequence[Any] | None) -> list[str]:
        """Validate the tool specs are in this provider's format; return their names."""
        names = []
        for tool in tools or []:
            if self.api_format == "openai":
                ok = (
                    isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool
                )
            else:
                ok = isinstance(tool, dict) and "name" in tool and "input_schema" in tool
            if not ok:
                raise TypeError(
                    f"{self.model} ({self.api_format} format) cannot use tool spec {tool!r}"
                )
            names.append(_tool_name(tool))
        return names

    def _next_turn(
        self, method: str, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> Turn:
        messages = list(messages)
        number = self._provider.record(MockCall(method, messages, dict(kwargs)))
        tool_names = self._check_tools(kwargs.get("tools"))
        step, failure = self._provider.take(
            number,
            self.script,
            fallback=partial(self._default_reply, messages),
            streaming="stream" in method,
        )
        if isinstance(step, ScriptedToolCall):
            step = [step]
        if isinstance(step, list):
            step = [c.to_request() if isinstance(c, ScriptedToolCall) else c for c in step]
        return Turn.from_step(
            step,
            (m.content or "" for m in messages),
            offered=tool_names,
            usage=self.usage,
            cached_tokens=self.cached_tokens,
            failure=failure,
            model=self.model,
        )

    def _usage_dict(self, turn: Turn) -> dict[str, int]:
        usage = turn.usage
        if self.api_format == "openai":
            counts: dict[str, Any] = {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }
            if self.cached_tokens:
                counts["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
            return counts
        return {
            # Anthropic reports uncached input separately from cache reads.
            "input_tokens": usage.input_tokens - usage.cached_tokens,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.output_tokens,
        }

    def _message(self, turn: Turn, text: str) -> ChatMessage:
        if self.api_format == "openai":
            additional: dict[str, Any] = {}
            if turn.tool_calls:
                additional["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in turn.tool_calls
                ]
            return ChatMessage(
                role=MessageRole.ASSISTANT, content=text, additional_kwargs=additional
            )
        blocks: list[Any] = [TextBlock(text=text)] if text else []
        blocks += [
            ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments)
            for c in turn.tool_calls
        ]
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks)

    def _raw(self, turn: Turn, text: str) -> dict[str, Any]:
        if self.api_format == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if turn.tool_calls:
                message["tool_calls"] = self._message(turn, text).additional_kwargs["tool_calls"]
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if turn.tool_calls else "stop",
                    }
                ],
                "usage": self._usage_dict(turn),
            }
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
            for c in turn.tool_calls
        ]
        return {
            "id": f"msg_{uuid.uuid4().hex[:12]}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
            "usage": self._usage_dict(turn),
        }

    def _logprobs(self, text: str) -> list[list[LogProb]] | None:
        if self.token_logprob is None:
            return None
        pairs = word_logprobs(text, self.token_logprob, space_before=True)
        return [[LogProb(token=token, logprob=logprob)] for token, logprob in pairs]

    def _chat_response(self, turn: Turn) -> ChatResponse:
        additional: dict[str, Any] = {}
        if self.api_format == "openai":
            additional = {k: v for k, v in self._usage_dict(turn).items() if isinstance(v, int)}
        return ChatResponse(
            message=self._message(turn, turn.text),
            raw=self._raw(turn, turn.text),
            logprobs=self._logprobs(turn.text),
            additional_kwargs=additional,
        )

    def _chunk_raw(self, delta: str) -> dict[str, Any]:
        if self.api_format == "openai":
            return {
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [{"index": 0, "delta": {"content": delta}}],
            }
        return {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": delta},
        }

    def _final_raw(self, turn: Turn) -> dict[str, Any]:
        if self.api_format == "openai":
            # stream_options={"include_usage": True}: a last chunk with no choices
            return {
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [],
                "usage": self._usage_dict(turn),
            }
        return {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use" if turn.tool_calls else "end_turn"},
            "usage": {"output_tokens": turn.usage.output_tokens},
        }

    def _chunks(self, turn: Turn) -> Generator[ChatResponse, None, None]:
        if self.api_format == "anthropic":
            # message_start carries the model and the input side of the usage
            start_usage = {**self._usage_dict(turn), "output_tokens": 1}
            yield ChatResponse(
                message=ChatMessage(role=MessageRole.ASSISTANT, content=""),
                delta="",
                raw={
                    "type": "message_start",
                    "message": {
                        "id": f"msg_{uuid.uuid4().hex[:12]}",
                        "model": self.model,
                        "role": "assistant",
                        "content": [],
                        "usage": start_usage,
                    },
                },
            )
        # one chunk per word, whitespace (newlines included) kept with the next word
        text = ""
        for delta in turn.stream(split_pieces(turn.text, space_before=True)):
            text += delta
            yield ChatResponse(
                message=self._message(Turn(text=text), text),
                delta=delta,
                raw=self._chunk_raw(delta),
                logprobs=self._logprobs(delta),
            )
        yield ChatResponse(message=self._message(turn, text), delta="", raw=self._final_raw(turn))

    # ------------------------------------------------------------------ chat

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Answer with the next scripted step."""
        return self._chat_response(self._next_turn("chat", messages, kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        return self._chat_response(self._next_turn("achat", messages, kwargs))

    def _streamed(
        self, method: str, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponseGen:
        """The chunks of the next turn; the request starts on iteration."""
        yield from self._chunks(self._next_turn(method, messages, kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream the next scripted step word by word; the request starts on iteration."""
        return self._streamed("stream_chat", messages, kwargs)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        return _async(self._streamed("astream_chat", messages, kwargs))

    # ------------------------------------------------------------------ complete

    @staticmethod
    def _as_messages(prompt: str) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content=prompt)]

    @staticmethod
    def _as_completion(chunk: ChatResponse) -> CompletionResponse:
        return CompletionResponse(
            text=chunk.message.content or "",
            delta=chunk.delta,
            raw=chunk.raw,
            logprobs=chunk.logprobs,
            additional_kwargs=chunk.additional_kwargs,
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Answer the prompt as one user message."""
        turn = self._next_turn("complete", self._as_messages(prompt), kwargs)
        return self._as_completion(self._chat_response(turn))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Async :meth:`complete`."""
        turn = self._next_turn("acomplete", self._as_messages(prompt), kwargs)
        return self._as_completion(self._chat_response(turn))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream the answer to the prompt word by word."""
        chunks = self._streamed("stream_complete", self._as_messages(prompt), kwargs)
        return (self._as_completion(chunk) for chunk in chunks)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        chunks = self._streamed("astream_complete", self._as_messages(prompt), kwargs)
        return _async(self._as_completion(chunk) for chunk in chunks)

    # ------------------------------------------------------------------ tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Convert tools to this provider's format and build the message list."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        if self.api_format == "openai":
            specs = [tool.metadata.to_openai_tool() for tool in tools]
            choice: Any = "required" if tool_required else "auto"
        else:
            specs = [
                {
                    "name": tool.metadata.name,
                    "description": tool.metadata.description,
                    "input_schema": tool.metadata.get_parameters_dict(),
                }
                for tool in tools
            ]
            choice = {"type": "any" if tool_required else "auto"}
        return {"messages": messages, "tools": specs, "tool_choice": choice, **kwargs}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """Read tool calls from where this provider format puts them."""
        selections: list[ToolSelection] = []
        if self.api_format == "openai":
            for call in response.message.additional_kwargs.get("tool_calls", []):
                arguments = call["function"]["arguments"]
                selections.append(
                    ToolSelection(
                        tool_id=call["id"],
                        tool_name=call["function"]["name"],
                        tool_kwargs=json.loads(arguments) if arguments else {},
                    )
                )
        else:
            for block in response.message.blocks:
                if isinstance(block, ToolCallBlock):
                    tool_kwargs = block.tool_kwargs
                    if isinstance(tool_kwargs, str):
                        tool_kwargs = json.loads(tool_kwargs) if tool_kwargs else {}
                    selections.append(
                        ToolSelection(
                            tool_id=block.tool_call_id or "",
                            tool_name=block.tool_name,
                            tool_kwargs=tool_kwargs,
                        )
                    )
        if error_on_no_tool_call and not selections:
            raise ValueError(f"Expected at least one tool call, but got 0 ({self.model}).")
        return selections


class HashingEmbedding(BaseEmbedding):
    """A deterministic LlamaIndex embedding over :class:`langroute.embedders.HashingEmbedder`.

    Hashed word unigrams and bigrams: texts sharing words are close. No model, no
    network; made for building real ``VectorStoreIndex`` objects in tests.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="Paris is the capital of France.")],
        ...     embed_model=HashingEmbedding(),
        ... )  # doctest: +SKIP
    """

    dimension: int = 256
    model_name: str = "langroute-hashing"

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "HashingEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return HashingEmbedder(self.dimension).embed_documents(texts).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)
