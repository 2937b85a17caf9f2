"""The mechanics of a scripted, offline provider, shared by the framework test doubles.

The LangChain ``ScriptedChatModel`` and the LlamaIndex ``MockProviderLLM`` are thin
adapters over this module: it decides *what* a fake provider answers and how it fails,
and they dress the answer in their framework's messages, chunks and raw payloads.

- :class:`ScriptedProvider`: a thread-safe call log that numbers calls from 1, and the
  choice of the step for call N: a script that is cycled (by call number) or consumed
  (first step first), with a fallback reply once nothing is scripted; failures raised
  before any output (every call, by call number, or as a scripted step).
- :class:`StreamFailure`: a stream that breaks after N chunks (or is refused at once).
- :class:`ToolRequest`: a tool call in neutral form (name and arguments), with
  :func:`fill_arguments` to make one up from a JSON schema and the question, and
  :func:`choose_tool` to pick which tool a question calls.
- :class:`Turn`: one answer (text, tool calls, :class:`~langroute.dispatch.routed_call.TokenUsage`,
  an optional stream break), before a framework dresses it.
- :class:`ScriptedCompletionModel`: a neutral offline
  :class:`~langroute.models.config.CompletionModel` (what ``langroute label`` calls),
  answering by a function of the prompt or a script; :func:`echo_model` builds one.
- :func:`word_usage` (word-count token usage), :func:`split_pieces` (a reply as stream
  pieces, one per word), :func:`word_logprobs` and :func:`pause` / :func:`apause`
  (latency).

Example:
    >>> provider = ScriptedProvider()
    >>> script = ["Paris.", StreamFailure(error=TimeoutError("reset"), after_chunks=1)]
    >>> number = provider.record("What is the capital of France?")
    >>> provider.take(number, script, fallback="I don't know.")
    ('Paris.', None)
    >>> text, failure = provider.take(provider.record("Tell me more."), script, streaming=True)
    >>> pieces = failure.cut(split_pieces(text))
    >>> next(pieces)
    'partial '
    >>> next(pieces)
    Traceback (most recent call last):
    ...
    TimeoutError: reset
    >>> provider.take(provider.record("And Spain?"), script, fallback="I don't know.")
    ("I don't know.", None)
    >>> provider.call_count, word_usage(["What is the capital of France?"], "Paris.")
    (3, TokenUsage(input_tokens=6, output_tokens=1, cached_tokens=0))
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from langroute.dispatch.routed_call import TokenUsage
from langroute.models.config import Completion

__all__ = [
    "ScriptedCompletionModel",
    "ScriptedProvider",
    "ScriptedRateLimitError",
    "StreamFailure",
    "ToolRequest",
    "Turn",
    "apause",
    "choose_tool",
    "count_words",
    "echo_model",
    "fill_arguments",
    "pause",
    "split_pieces",
    "word_logprobs",
    "word_usage",
]

CallT = TypeVar("CallT")
ItemT = TypeVar("ItemT")

_PIECE_SPACE_AFTER = re.compile(r"\S+\s*|\s+")
_PIECE_SPACE_BEFORE = re.compile(r"\s*\S+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"['\"“‘「](.+?)['\"”’」]")


class StreamFailure(BaseModel):
    """Stream ``after_chunks`` chunks of ``text``, then raise ``error`` (mid-stream break).

    With ``after_chunks=0`` the stream fails before its first chunk (and a non-streaming
    call raises at once), which is what a refused request looks like.

    Example:
        >>> failure = StreamFailure(error=ConnectionError("reset"), after_chunks=2)
        >>> pieces = []
        >>> try:
        ...     for piece in failure.cut(["a ", "b ", "c"]):
        ...         pieces.append(piece)
        ... except ConnectionError as error:
        ...     print(pieces, error)
        ['a ', 'b '] reset
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    error: BaseException
    after_chunks: int = Field(default=0, ge=0)
    text: str = "partial answer that breaks off"

    def cut(self, items: Iterable[ItemT]) -> Iterator[ItemT]:
        """Yield at most ``after_chunks`` of ``items``, then raise ``error``.

        The error is raised even when there are fewer items than ``after_chunks``: a
        broken stream never ends cleanly.
        """
        for position, item in enumerate(items):
            if position == self.after_chunks:
                break
            yield item
        raise self.error


class ToolRequest(BaseModel):
    """A tool call a scripted model makes, in neutral form: the tool's name and arguments.

    Example:
        >>> schema = {"properties": {"city": {"type": "string"}}, "required": ["city"]}
        >>> ToolRequest.for_question("get_weather", schema, "Weather in 'Oslo'?", id="c1")
        ToolRequest(name='get_weather', arguments={'city': 'Oslo'}, id='c1')
    """

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str = Field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")

    @classmethod
    def for_question(
        cls,
        name: str,
        schema: Mapping[str, Any] | None,
        question: str,
        *,
        id: str | None = None,
    ) -> ToolRequest:
        """A call of tool ``name`` with arguments made up by :func:`fill_arguments`."""
        given = {} if id is None else {"id": id}
        return cls(name=name, arguments=fill_arguments(schema, question), **given)

    @property
    def word_count(self) -> int:
        """Words the call takes in an answer: its name and its JSON arguments."""
        return 1 + count_words(json.dumps(self.arguments))


class Turn(BaseModel):
    """One scripted answer before a framework dresses it.

    Example:
        >>> turn = Turn(text="Hello there", usage=TokenUsage(input_tokens=2, output_tokens=2))
        >>> list(turn.stream(split_pieces(turn.text)))
        ['Hello ', 'there']
    """

    text: str = ""
    tool_calls: list[ToolRequest] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    failure: StreamFailure | None = Field(
        default=None, description="When set, the stream of this answer breaks (see cut)."
    )

    @classmethod
    def from_step(
        cls,
        step: str | ToolRequest | list[ToolRequest] | None,
        prompts: Iterable[str],
        *,
        offered: Sequence[str] | None = None,
        usage: tuple[int, int] | None = None,
        cached_tokens: int = 0,
        failure: StreamFailure | None = None,
        model: str = "the scripted model",
    ) -> Turn:
        """The answer a neutral step makes: a reply text, or a call of one or more tools.

        Args:
            step: A reply, a :class:`ToolRequest`, a list of them, or ``None`` (no text).
            prompts: The texts sent, for :func:`word_usage`.
            offered: The names of the tools the call offered; a tool request naming
                another one is an error. ``None`` skips the check.
            usage: Fixed ``(input_tokens, output_tokens)``; by default counted in words.
            cached_tokens: Input tokens reported as cache reads (at most the input).
            failure: The failure that breaks this answer's stream.
            model: Who answers, for error messages.

        Example:
            >>> turn = Turn.from_step(ToolRequest(name="add", id="c1"), ["add 1 and 2"])
            >>> turn.text, [c.name for c in turn.tool_calls], turn.usage.output_tokens
            ('', ['add'], 2)
            >>> Turn.from_step(ToolRequest(name="add"), ["hi"], offered=[], model="gpt-4o")
            Traceback (most recent call last):
            ...
            ValueError: gpt-4o was scripted to call 'add' but was offered no tools
        """
        if step is None or isinstance(step, str):
            text, calls = step or "", []
        elif isinstance(step, ToolRequest):
            text, calls = "", [step]
        elif isinstance(step, list) and all(isinstance(c, ToolRequest) for c in step):
            text, calls = "", list(step)
        else:
            raise TypeError(
                f"{model}: a scripted step must be a reply text or tool requests, got {step!r}"
            )
        for call in calls if offered is not None else []:
            if call.name not in offered:
                raise ValueError(
                    f"{model} was scripted to call {call.name!r} but was offered "
                    f"{list(offered) or 'no tools'}"
                )
        if usage is None:
            counted = word_usage(prompts, text, calls, cached_tokens=cached_tokens)
        else:
            counted = TokenUsage(
                input_tokens=usage[0],
                output_tokens=usage[1],
                cached_tokens=min(cached_tokens, usage[0]),
            )
        return cls(text=text, tool_calls=calls, usage=counted, failure=failure)

    def stream(self, items: Iterable[ItemT]) -> Iterator[ItemT]:
        """Yield the answer's stream ``items``, broken off by :attr:`failure` if set."""
        return self.failure.cut(items) if self.failure is not None else iter(items)


class ScriptedProvider(Generic[CallT]):
    """A scripted provider's state: the call log and the choice of each call's step.

    Each adapter owns one. :meth:`record` logs a call and gives its number (1-based, over
    every call, failed ones included); :meth:`take` chooses that call's step from a
    script the adapter passes at call time (so a script reassigned between calls takes
    effect) and raises the failures due before any output. Both are thread-safe.

    Example:
        >>> provider = ScriptedProvider()
        >>> numbers = [provider.record(question) for question in ("a", "b", "c")]
        >>> [provider.take(n, ["x", "y"], cycle=True)[0] for n in numbers]
        ['x', 'y', 'x']
        >>> provider.take(provider.record("d"), ["x"], failures={4: TimeoutError("slow")})
        Traceback (most recent call last):
        ...
        TimeoutError: slow
        >>> provider.calls
        ['a', 'b', 'c', 'd']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallT] = []

    @property
    def calls(self) -> list[CallT]:
        """A copy of the call log, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """How many calls were recorded (failed ones included)."""
        with self._lock:
            return len(self._calls)

    def record(self, call: CallT) -> int:
        """Log ``call`` and return its number: 1 for the first call."""
        with self._lock:
            self._calls.append(call)
            return len(self._calls)

    def take(
        self,
        number: int,
        script: list[Any],
        *,
        cycle: bool = False,
        fallback: str | Callable[[], Any] | None = None,
        failures: Mapping[int, BaseException] | None = None,
        fail_always: BaseException | None = None,
        streaming: bool = False,
    ) -> tuple[Any, StreamFailure | None]:
        """The step for call ``number`` and the stream failure to apply to it, if any.

        Args:
            number: The call's number, from :meth:`record`.
            script: The steps. A cycled script is read by call number and left as is;
                otherwise the first step is removed from ``script`` and used.
            cycle: Cycle the script instead of consuming it.
            fallback: The step once nothing is scripted: a value, or a function called
                only then. ``None`` leaves the choice to the adapter.
            failures: Call number -> error raised before any output (before the script
                is read, so a failed call consumes no step).
            fail_always: Raised by every call before any output.
            streaming: Whether the call streams. A :class:`StreamFailure` step then
                returns its ``text`` with the failure (unless ``after_chunks`` is 0);
                otherwise its error is raised at once.

        Returns:
            ``(step, failure)``: the step (``None`` when nothing is scripted and there
            is no fallback) and the :class:`StreamFailure` that breaks its stream.

        Raises:
            ValueError: ``number`` is below 1.
            BaseException: ``fail_always``, the failure for this call number, a step
                that is an exception, or a refused :class:`StreamFailure`'s error.
        """
        if number < 1:
            raise ValueError(f"call numbers start at 1 (from record()), got {number}")
        if fail_always is not None:
            raise fail_always
        if failures and number in failures:
            raise failures[number]
        with self._lock:
            if not script:
                step = None
            elif cycle:
                step = script[(number - 1) % len(script)]
            else:
                step = script.pop(0)
        if step is None:
            step = fallback() if callable(fallback) else fallback
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, StreamFailure):
            if step.after_chunks == 0 or not streaming:
                raise step.error
            return step.text, step
        return step, None


def count_words(text: str) -> int:
    """Whitespace-separated words in ``text``: the fakes' token count.

    Example:
        >>> count_words("What is  the capital?"), count_words("")
        (4, 0)
    """
    return len(text.split())


def word_usage(
    prompts: Iterable[str],
    text: str = "",
    tool_calls: Iterable[ToolRequest] = (),
    *,
    cached_tokens: int = 0,
    at_least: int = 0,
) -> TokenUsage:
    """Token usage counted in words: one per prompt word, one per answer word.

    Args:
        prompts: The texts sent (one per message).
        text: The answer's text.
        tool_calls: The answer's tool calls (each counts :attr:`ToolRequest.word_count`).
        cached_tokens: Input tokens reported as cache reads (at most the input tokens).
        at_least: The fewest tokens each prompt, and the answer, counts for (1 mimics
            the per-message overhead of chat APIs).

    Example:
        >>> word_usage(["You are terse.", "Capital of France?"], "Paris.", cached_tokens=3)
        TokenUsage(input_tokens=6, output_tokens=1, cached_tokens=3)
        >>> word_usage([""], at_least=1).input_tokens, word_usage([""]).input_tokens
        (1, 0)
    """
    if cached_tokens < 0 or at_least < 0:
        raise ValueError(
            f"cached_tokens and at_least must be >= 0, got {cached_tokens} and {at_least}"
        )
    input_tokens = sum(max(at_least, count_words(prompt)) for prompt in prompts)
    output_tokens = max(at_least, count_words(text) + sum(c.word_count for c in tool_calls))
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=min(cached_tokens, input_tokens),
    )


def split_pieces(text: str, *, space_before: bool = False) -> list[str]:
    r"""``text`` as stream pieces, one per word.

    Whitespace rides with the word before it (the pieces join back to ``text``), or with
    ``space_before`` with the word after it, as provider token deltas do (``" is"``);
    whitespace after the last word then has no piece.

    Example:
        >>> split_pieces("Paris is\nbig")
        ['Paris ', 'is\n', 'big']
        >>> split_pieces("Paris is\nbig", space_before=True)
        ['Paris', ' is', '\nbig']
    """
    pattern = _PIECE_SPACE_BEFORE if space_before else _PIECE_SPACE_AFTER
    return pattern.findall(text)


def word_logprobs(
    text: str, logprob: float, *, space_before: bool = False
) -> list[tuple[str, float]]:
    """One ``(piece, logprob)`` per stream piece of ``text`` (see :func:`split_pieces`).

    Example:
        >>> word_logprobs("x y", -0.5)
        [('x ', -0.5), ('y', -0.5)]
    """
    return [(piece, logprob) for piece in split_pieces(text, space_before=space_before)]


def choose_tool(names: Sequence[str], question: str, choice: str | None = None) -> str | None:
    """The tool a question calls: ``choice`` if it names one, else one named in the question.

    ``choice="none"`` calls no tool; any other choice (``"auto"``, ``"any"``, ...) picks
    the first tool whose name appears in the question, else the first tool.

    Example:
        >>> choose_tool(["add", "get_weather"], "get_weather for Oslo")
        'get_weather'
        >>> choose_tool(["add", "get_weather"], "hi"), choose_tool(["add"], "hi", "none")
        ('add', None)
    """
    if choice is not None and choice in names:
        return choice
    if choice == "none":
        return None
    return next((name for name in names if name in question), names[0] if names else None)


def fill_arguments(schema: Mapping[str, Any] | None, question: str) -> dict[str, Any]:
    """Arguments for a tool's JSON schema, made up from the question.

    Required properties only: strings get the question's first quoted text (else the
    whole question), numbers and integers its numbers in order (else 0), enums their
    first value, booleans ``False``, arrays ``[]``, objects are filled the same way.

    Example:
        >>> schema = {"type": "object", "required": ["a", "b"],
        ...           "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
        >>> fill_arguments(schema, "What is 3 + 4")
        {'a': 3, 'b': 4}
    """
    top = {"type": "object", "properties": {}, **(schema or {})}
    if top["type"] != "object":
        raise ValueError(f"a tool's parameters must be an object schema, got type {top['type']!r}")
    return _fill_object(top, question, _NUMBER.findall(question))


def _fill(schema: Mapping[str, Any], question: str, numbers: list[str]) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _fill(options[0], question, numbers) if options else None
    if kind == "integer":
        return int(float(numbers.pop(0))) if numbers else 0
    if kind == "number":
        return float(numbers.pop(0)) if numbers else 0.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return _fill_object(schema, question, numbers)
    quoted = _QUOTED.search(question)
    return quoted.group(1) if quoted else (question or "text")


def _fill_object(schema: Mapping[str, Any], question: str, numbers: list[str]) -> dict[str, Any]:
    props = schema.get("properties", {})
    return {
        key: _fill(props[key], question, numbers)
        for key in schema.get("required", [])
        if key in props
    }


def pause(seconds: float) -> None:
    """Wait ``seconds`` (a scripted provider's latency); 0 returns at once."""
    if seconds:
        time.sleep(seconds)


async def apause(seconds: float) -> None:
    """Async :func:`pause`; always yields to the event loop once."""
    await asyncio.sleep(seconds)


class ScriptedRateLimitError(Exception):
    """A rate-limit refusal (HTTP 429) raised by a scripted model; callers retry it."""

    status_code = 429


class ScriptedCompletionModel:
    """An offline :class:`~langroute.models.config.CompletionModel` for tests and recipes.

    Args:
        name: The model's name (prices, the ledger and the call cache use it).
        reply: The answer: a fixed text, or a function of the prompt. Default: echo.
        script: Answers used first, in order (a step may be an exception to raise).
        latency: Seconds each call waits before answering (``asyncio.sleep``).
        failures: Call number (1-based) -> error raised before any output.
        report_usage: Report word-count usage (``False``: the provider reports none).

    Example:
        >>> import asyncio
        >>> model = ScriptedCompletionModel("tiny", reply=lambda p: p.upper())
        >>> asyncio.run(model.acomplete("say hi")).text, model.calls
        ('SAY HI', ['say hi'])
        >>> asyncio.run(model.acomplete("say hi")).usage
        TokenUsage(input_tokens=2, output_tokens=2, cached_tokens=0)
    """

    def __init__(
        self,
        name: str,
        reply: str | Callable[[str], str] | None = None,
        *,
        script: Sequence[str | BaseException] = (),
        latency: float = 0.0,
        failures: Mapping[int, BaseException] | None = None,
        report_usage: bool = True,
    ) -> None:
        self.name = name
        self.reply = reply
        self.script: list[Any] = list(script)
        self.latency = latency
        self.failures = dict(failures or {})
        self.report_usage = report_usage
        self._provider: ScriptedProvider[str] = ScriptedProvider()

    def __repr__(self) -> str:
        return f"ScriptedCompletionModel({self.name!r})"

    @property
    def calls(self) -> list[str]:
        """The prompts received, oldest first (failed calls included)."""
        return self._provider.calls

    def _answer(self, prompt: str) -> str:
        if self.reply is None:
            return prompt
        return self.reply if isinstance(self.reply, str) else self.reply(prompt)

    async def acomplete(self, prompt: str) -> Completion:
        """Answer ``prompt`` after ``latency`` seconds."""
        number = self._provider.record(prompt)
        await apause(self.latency)
        step, _ = self._provider.take(
            number, self.script, fallback=lambda: self._answer(prompt), failures=self.failures
        )
        text = str(step)
        usage = word_usage([prompt], text) if self.report_usage else None
        return Completion(text=text, usage=usage, model=self.name)


def echo_model(name: str = "echo") -> ScriptedCompletionModel:
    """A scripted model that answers each prompt with the prompt (a models-file factory).

    Example:
        >>> echo_model("parrot").name
        'parrot'
    """
    return ScriptedCompletionModel(name)
