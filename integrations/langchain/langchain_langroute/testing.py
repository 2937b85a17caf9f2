"""A realistic, offline fake chat model for tests and examples.

:class:`ScriptedChatModel` behaves like a provider chat model where it matters to a router
or a cost tracker, without any network:

- replies come from a script (cycled), or echo the question when there is no script;
- ``usage_metadata`` is set on ``invoke`` and on exactly the last streamed chunk, and
  ``response_metadata["model_name"]`` names the model (on the last chunk when streaming);
- ``bind_tools`` returns a ``RunnableBinding`` (OpenAI-format tools, like partner packages);
- tool calls can be scripted (an ``AIMessage`` with ``tool_calls`` in the script) or made
  automatically: with tools bound, a turn that ends with a human message calls one tool
  (the forced one, else one named in the question, else the first), filling arguments
  from the question (quoted text or the question for strings, its numbers for numbers);
  a turn that ends with a tool result is answered with text;
- optional ``logprobs`` in ``response_metadata["logprobs"]`` (OpenAI shape);
- optional scripted failures: raise a given error on call N, before the first chunk or
  mid-stream;
- native async (``_agenerate`` / ``_astream``) and a thread-safe call log.

The mechanics (call log, script, failures, tool-argument filling, word-count usage,
logprobs, stream pieces) are the core's :mod:`langroute.models.scripted`; this module dresses
them as LangChain messages and chunks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langroute.models.scripted import (
    ScriptedProvider,
    StreamFailure,
    ToolRequest,
    apause,
    choose_tool,
    pause,
    split_pieces,
    word_logprobs,
    word_usage,
)
from pydantic import ConfigDict, Field, PrivateAttr

__all__ = ["FakeProviderError", "FakeRateLimitError", "FakeTimeoutError", "ScriptedChatModel"]


class FakeProviderError(Exception):
    """A provider-side failure (HTTP 5xx) raised by :class:`ScriptedChatModel`."""


class FakeRateLimitError(FakeProviderError):
    """A rate-limit failure (HTTP 429) raised by :class:`ScriptedChatModel`."""


class FakeTimeoutError(TimeoutError):
    """A request timeout raised by :class:`ScriptedChatModel`."""


def _text_of(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


class ScriptedChatModel(BaseChatModel):
    """Offline chat model with scripted replies, usage, tool calls, logprobs and failures.

    Setup:
        Nothing to install beyond ``langchain-langroute``; no network is used.

    Instantiate:
        .. code-block:: python

            from langchain_langroute.testing import FakeRateLimitError, ScriptedChatModel

            small = ScriptedChatModel(model="gpt-4o-mini", responses=["Paris."])
            flaky = ScriptedChatModel(model="gpt-4o", failures={1: FakeRateLimitError("429")})

    Invoke:
        .. code-block:: python

            msg = small.invoke("What is the capital of France?")
            msg.content  # 'Paris.'
            msg.usage_metadata  # {'input_tokens': 6, 'output_tokens': 1, 'total_tokens': 7}
            msg.response_metadata["model_name"]  # 'gpt-4o-mini'

    Stream:
        .. code-block:: python

            for chunk in small.stream("hi"):
                print(chunk.content, end="")  # usage and model_name on the last chunk only

    Tool calling:
        .. code-block:: python

            bound = small.bind_tools([get_weather])
            bound.invoke("What is the weather in Paris?").tool_calls
            # [{'name': 'get_weather', 'args': {'location': 'What is the weather in Paris?'}, ...}]
    """

    model: str = "fake-model"
    """Model name reported in ``response_metadata["model_name"]`` and traces."""
    provider: str = "fake"
    """Provider name reported in ``response_metadata["model_provider"]`` and traces."""
    responses: list[str | AIMessage] = Field(default_factory=list)
    """Scripted replies, used in order and cycled. Empty: reply by echoing the question."""
    auto_tool_calls: bool = True
    """With tools bound, answer a human turn with a tool call (see the module docstring)."""
    logprobs: bool = False
    """Add OpenAI-shaped ``response_metadata["logprobs"]``, one entry per output word."""
    logprob: float = -0.05
    """The log-probability reported for every output word when ``logprobs`` is on."""
    cached_input_tokens: int = 0
    """Input tokens reported as cache reads (``input_token_details["cache_read"]``)."""
    failures: dict[int, BaseException] = Field(default_factory=dict)
    """Call number (1-based, counted over every call) -> error raised before any output."""
    mid_stream_failures: dict[int, BaseException] = Field(default_factory=dict)
    """Call number -> error raised after the first chunk when streaming."""
    fail_always: BaseException | None = None
    """When set, every call raises this error before any output."""
    latency: float = 0.0
    """Seconds to wait before answering (``time.sleep`` or ``asyncio.sleep``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _provider: ScriptedProvider[dict[str, Any]] = PrivateAttr(default_factory=ScriptedProvider)

    # ------------------------------------------------------------------ LangChain API
    @property
    def _llm_type(self) -> str:
        return "scripted-fake-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self.provider,
            ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat",
        )
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI format; ``tool_choice`` may be a name, "any" or "auto".

        Args:
            tools: Tools as LangChain tools, functions, pydantic classes or schemas.
            tool_choice: ``"any"``/``"required"``/``True`` forces some tool call, a tool
                name forces that tool, ``"auto"``/``"none"``/``None`` lets the fake decide.
            **kwargs: Further kwargs bound to the model call.

        Returns:
            A ``RunnableBinding`` of this model with ``tools`` (and ``tool_choice``) bound.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------ call log
    @property
    def calls(self) -> list[dict[str, Any]]:
        """A copy of the call log: one dict per call (``messages``, ``stop``, ``kwargs``)."""
        return self._provider.calls

    @property
    def call_count(self) -> int:
        """How many calls this model has received (failed ones included)."""
        return self._provider.call_count

    def _register_call(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[int, AIMessage]:
        call = {"messages": list(messages), "stop": stop, "kwargs": dict(kwargs)}
        number = self._provider.record(call)
        scripted, _ = self._provider.take(
            number, self.responses, cycle=True, failures=self.failures, fail_always=self.fail_always
        )
        return number, self._reply(messages, scripted, kwargs)

    def _streamed(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Iterator[ChatGenerationChunk]:
        """The call's chunks, broken after the first one if it has a mid-stream failure."""
        number, reply = self._register_call(messages, stop, kwargs)
        chunks = self._chunks(messages, reply)
        if number not in self.mid_stream_failures:
            return iter(chunks)
        return StreamFailure(error=self.mid_stream_failures[number], after_chunks=1).cut(chunks)

    # ------------------------------------------------------------------ reply synthesis
    def _reply(
        self, messages: list[BaseMessage], scripted: str | AIMessage | None, kwargs: dict[str, Any]
    ) -> AIMessage:
        tools: list[dict[str, Any]] = list(kwargs.get("tools") or [])
        last = messages[-1] if messages else None
        question = next(
            (_text_of(m) for m in reversed(messages) if isinstance(m, HumanMessage)), ""
        )
        if isinstance(scripted, AIMessage):
            content: Any = scripted.content
            tool_calls = list(scripted.tool_calls)
        elif tools and self.auto_tool_calls and isinstance(last, HumanMessage):
            tool = self._pick_tool(tools, kwargs.get("tool_choice"), question)
            content = ""
            tool_calls = [] if tool is None else [self._tool_call(tool, question, len(messages))]
        elif isinstance(scripted, str):
            content, tool_calls = scripted, []
        elif isinstance(last, ToolMessage):
            content, tool_calls = f"The tool returned: {_text_of(last)}", []
        else:
            content, tool_calls = f"{self.model} answers: {question or 'hello'}", []
        return AIMessage(content=content, tool_calls=tool_calls)

    @staticmethod
    def _pick_tool(
        tools: list[dict[str, Any]], tool_choice: Any, question: str
    ) -> dict[str, Any] | None:
        by_name = {t["function"]["name"]: t for t in tools if "function" in t}
        if isinstance(tool_choice, dict):
            tool_choice = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
        name = choose_tool(list(by_name), question, tool_choice)
        return None if name is None else by_name[name]

    def _tool_call(self, tool: dict[str, Any], question: str, turn: int) -> ToolCall:
        function = tool["function"]
        request = ToolRequest.for_question(
            function["name"], function.get("parameters"), question, id=f"call_{self.model}_{turn}"
        )
        return ToolCall(name=request.name, args=request.arguments, id=request.id, type="tool_call")

    # ------------------------------------------------------------------ metadata
    def _usage(self, messages: list[BaseMessage], message: AIMessage) -> UsageMetadata:
        usage = word_usage(
            (_text_of(m) for m in messages),
            message.text or "",
            [ToolRequest(name=c["name"], arguments=c["args"]) for c in message.tool_calls],
            cached_tokens=self.cached_input_tokens,
            at_least=1,
        )
        metadata = UsageMetadata(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.input_tokens + usage.output_tokens,
        )
        if self.cached_input_tokens:
            metadata["input_token_details"] = {"cache_read": usage.cached_tokens}
        return metadata

    def _logprobs(self, text: str) -> dict[str, Any]:
        return {
            "content": [
                {"token": piece, "logprob": logprob, "bytes": None, "top_logprobs": []}
                for piece, logprob in word_logprobs(text, self.logprob)
            ]
        }

    def _metadata(self, message: AIMessage) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "model_name": self.model,
            "model_provider": self.provider,
            "finish_reason": "tool_calls" if message.tool_calls else "stop",
        }
        if self.logprobs:
            metadata["logprobs"] = self._logprobs(message.text or "")
        return metadata

    def _result(self, messages: list[BaseMessage], reply: AIMessage) -> ChatResult:
        message = AIMessage(
            content=reply.content,
            tool_calls=reply.tool_calls,
            usage_metadata=self._usage(messages, reply),
            response_metadata=self._metadata(reply),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, messages: list[BaseMessage], reply: AIMessage) -> list[ChatGenerationChunk]:
        text = reply.text or ""
        pieces = split_pieces(text) or ([""] if not reply.tool_calls else [])
        chunks = [
            AIMessageChunk(
                content=piece,
                response_metadata={"logprobs": self._logprobs(piece)} if self.logprobs else {},
            )
            for piece in pieces
        ]
        for index, call in enumerate(reply.tool_calls):  # arguments in two halves
            args = json.dumps(call["args"], ensure_ascii=False)
            half = len(args) // 2
            first = tool_call_chunk(name=call["name"], args=args[:half], id=call["id"], index=index)
            rest = tool_call_chunk(args=args[half:], index=index)
            chunks += [AIMessageChunk(content="", tool_call_chunks=[p]) for p in (first, rest)]
        metadata = self._metadata(reply)
        metadata.pop("logprobs", None)
        chunks.append(
            AIMessageChunk(
                content="",
                usage_metadata=self._usage(messages, reply),
                response_metadata=metadata,
                chunk_position="last",
            )
        )
        return [ChatGenerationChunk(message=chunk) for chunk in chunks]

    # ------------------------------------------------------------------ generation
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        pause(self.latency)
        _, reply = self._register_call(messages, stop, kwargs)
        return self._result(messages, reply)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await apause(self.latency)
        _, reply = self._register_call(messages, stop, kwargs)
        return self._result(messages, reply)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pause(self.latency)
        for chunk in self._streamed(messages, stop, kwargs):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await apause(self.latency)
        for chunk in self._streamed(messages, stop, kwargs):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            await apause(0)
