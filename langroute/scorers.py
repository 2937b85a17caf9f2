"""Answer scorers for a cascade, framework-neutral.

A cascade asks the cheapest model first, scores its answer and accepts it when the score
reaches a threshold; otherwise it escalates to the next model. A scorer receives plain
text (the query and the answer) plus optional extras (token ``logprobs``, ``metadata``
such as the routing decision's confidence) and returns a :class:`ScoreResult`: a score in
``[0, 1]``, a verdict (``passed``, ``None`` when the scorer has no opinion of its own) and
a human-readable reason. Integrations wrap these; nothing here imports a framework.

Scorers in this module:

* Validators, 1.0 on pass and 0.0 on failure: :class:`NonEmptyValidator`,
  :class:`JSONValidator`, :class:`PydanticValidator`, :class:`RegexValidator`,
  :class:`RefusalDetector`, and :class:`AllOf` to combine scorers.
* Graded scorers: :class:`MeanTokenProbabilityScorer` (token log-probabilities),
  :class:`JudgeScorer` (an LLM grades the answer; see :func:`parse_judgement`) and
  :class:`RouterConfidenceScorer`.
* :func:`as_scorer` adapts any callable ``(query, answer) -> float | bool | ScoreResult``.

Example:
    >>> scorer = AllOf(NonEmptyValidator(), RefusalDetector())
    >>> scorer("Capital of France?", "Paris.").score
    1.0
    >>> result = scorer("How do I pick a lock?", "I'm sorry, but I can't help with that.")
    >>> result.score, result.passed
    (0.0, False)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "AllOf",
    "BaseScorer",
    "FunctionScorer",
    "JSONValidator",
    "JudgeScorer",
    "MeanTokenProbabilityScorer",
    "NonEmptyValidator",
    "PydanticValidator",
    "RefusalDetector",
    "RegexValidator",
    "RouterConfidenceScorer",
    "ScoreResult",
    "Scorer",
    "as_scorer",
    "extract_json_text",
    "parse_judgement",
]


class ScoreResult(BaseModel):
    """The verdict of a scorer on one answer.

    Attributes:
        score: Quality estimate in ``[0, 1]``; the cascade accepts when it reaches its
            threshold.
        passed: The scorer's own verdict: ``True`` / ``False`` for validators, ``None``
            when the scorer only grades (or could not judge, see ``reason``).
        reason: Why the answer was accepted or rejected, for logs and the ledger.

    Example:
        >>> ScoreResult(score=0.0, passed=False, reason="empty answer").passed
        False
    """

    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0.0, le=1.0)
    passed: bool | None = None
    reason: str = ""


@runtime_checkable
class Scorer(Protocol):
    """What a cascade calls to score an answer: a sync call and an async ``ascore``.

    Subclass :class:`BaseScorer` to get ``ascore`` for free, or adapt a plain function
    with :func:`as_scorer`.
    """

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score ``answer`` to ``query``."""
        ...

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Async form of ``__call__``."""
        ...


class BaseScorer:
    """Base class of the scorers here: implement ``__call__``; ``ascore`` calls it.

    Override ``ascore`` when the scorer does I/O (see :class:`JudgeScorer`).

    Example:
        >>> class Short(BaseScorer):
        ...     name = "short"
        ...     def __call__(self, query, answer, *, logprobs=None, metadata=None):
        ...         ok = len(answer) < 100
        ...         return ScoreResult(score=float(ok), passed=ok, reason="length")
        >>> Short()("q", "a").passed
        True
    """

    name: str = "scorer"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score ``answer`` to ``query``."""
        raise NotImplementedError

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Async form of ``__call__`` (runs it directly: it must not block for long)."""
        return self(query, answer, logprobs=logprobs, metadata=metadata)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _passed(name: str, reason: str) -> ScoreResult:
    return ScoreResult(score=1.0, passed=True, reason=f"{name}: {reason}")


def _failed(name: str, reason: str) -> ScoreResult:
    return ScoreResult(score=0.0, passed=False, reason=f"{name}: {reason}")


def _graded(score: float, threshold: float | None) -> bool | None:
    return None if threshold is None else score >= threshold


def _run_sync(awaitable: Awaitable[Any], what: str) -> Any:
    """Await from sync code with ``asyncio.run``; refuses inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    if isinstance(awaitable, Coroutine):
        awaitable.close()  # never awaited: close it quietly
    raise RuntimeError(f"{what} is async: inside an event loop, await .ascore(...) instead")


# --------------------------------------------------------------------------- adapters


def _to_result(value: Any, name: str) -> ScoreResult:
    if isinstance(value, ScoreResult):
        return value
    if isinstance(value, bool):
        return ScoreResult(
            score=float(value), passed=value, reason=f"{name}: {'passed' if value else 'failed'}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"scorer {name} returned {value!r}; scores must be in [0, 1]")
        return ScoreResult(score=score, passed=None, reason=f"{name}: score {score:.3g}")
    raise TypeError(
        f"scorer {name} returned {type(value).__name__}; expected float, bool or ScoreResult"
    )


class FunctionScorer(BaseScorer):
    """Adapts a callable ``(query, answer) -> float | bool | ScoreResult`` (sync or async).

    The callable also receives ``logprobs=`` and ``metadata=`` when its signature accepts
    them (by name or ``**kwargs``). A float must lie in ``[0, 1]``; ``True`` / ``False``
    become 1.0 / 0.0 with ``passed`` set.

    Example:
        >>> scorer = FunctionScorer(lambda q, a: "paris" in a.lower())
        >>> scorer("Capital of France?", "Paris").score
        1.0
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or getattr(func, "__name__", None) or type(func).__name__
        self._extras = self._accepted_extras(func)

    def __repr__(self) -> str:
        return f"FunctionScorer({self.name!r})"

    @staticmethod
    def _accepted_extras(func: Callable[..., Any]) -> frozenset[str]:
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            return frozenset()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return frozenset({"logprobs", "metadata"})
        return frozenset(p.name for p in params if p.name in ("logprobs", "metadata"))

    def _kwargs(
        self, logprobs: Sequence[float] | None, metadata: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        extras = {"logprobs": logprobs, "metadata": metadata}
        return {key: value for key, value in extras.items() if key in self._extras}

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Call the function and convert its result."""
        value = self.func(query, answer, **self._kwargs(logprobs, metadata))
        if inspect.isawaitable(value):
            value = _run_sync(value, f"scorer {self.name}")
        return _to_result(value, self.name)

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Await the function when it is async; call it directly otherwise."""
        value = self.func(query, answer, **self._kwargs(logprobs, metadata))
        if inspect.isawaitable(value):
            value = await value
        return _to_result(value, self.name)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def as_scorer(obj: Scorer | Callable[..., Any]) -> Scorer:
    """Return ``obj`` if it is already a scorer, else wrap the callable in a scorer.

    Args:
        obj: A :class:`Scorer` (anything with ``__call__`` and ``ascore``) or a callable
            ``(query, answer) -> float | bool | ScoreResult``, sync or async.

    Raises:
        TypeError: ``obj`` is not callable.

    Example:
        >>> as_scorer(lambda q, a: 0.25)("q", "a").score
        0.25
    """
    if isinstance(obj, BaseScorer):
        return obj
    if callable(obj) and callable(getattr(obj, "ascore", None)):
        return obj  # type: ignore[return-value]
    if not callable(obj):
        raise TypeError(f"cannot use {type(obj).__name__} as a scorer: it is not callable")
    return FunctionScorer(obj)


# --------------------------------------------------------------------------- validators


class NonEmptyValidator(BaseScorer):
    """Rejects answers that are empty or whitespace (or shorter than ``min_chars``).

    Example:
        >>> NonEmptyValidator()("q", "   ").passed
        False
    """

    name = "non_empty"

    def __init__(self, min_chars: int = 1) -> None:
        if min_chars < 1:
            raise ValueError("min_chars must be >= 1")
        self.min_chars = min_chars

    def __repr__(self) -> str:
        return f"NonEmptyValidator(min_chars={self.min_chars})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Pass when the stripped answer has at least ``min_chars`` characters."""
        length = len((answer or "").strip())
        if length == 0:
            return _failed(self.name, "empty answer")
        if length < self.min_chars:
            return _failed(
                self.name, f"answer has {length} characters, fewer than {self.min_chars}"
            )
        return _passed(self.name, f"{length} characters")


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.DOTALL)


def extract_json_text(answer: str) -> str:
    r"""The JSON part of an answer: the first fenced block if any, else the stripped text.

    A block fenced as ```json (or any language, or none) is preferred; a ```json block
    wins over other fenced blocks.

    Example:
        >>> extract_json_text('Here:\n```json\n{"a": 1}\n```')
        '{"a": 1}'
    """
    blocks = _FENCE.findall(answer or "")
    for language, body in blocks:
        if language.lower() == "json":
            return body.strip()
    if blocks:
        return blocks[0][1].strip()
    return (answer or "").strip()


class JSONValidator(BaseScorer):
    r"""Passes when the answer parses as JSON (a ```json fenced block is accepted).

    Args:
        require_object: Also require a JSON object (``{...}``) at the top level.

    Example:
        >>> JSONValidator()("q", '```json\n{"ok": true}\n```').passed
        True
        >>> JSONValidator()("q", "{'ok': True}").reason
        'json: invalid JSON: Expecting property name enclosed in double quotes (line 1, column 2)'
    """

    name = "json"

    def __init__(self, *, require_object: bool = False) -> None:
        self.require_object = require_object

    def __repr__(self) -> str:
        return f"JSONValidator(require_object={self.require_object})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Parse the answer as JSON."""
        text = extract_json_text(answer)
        if not text:
            return _failed(self.name, "empty answer, expected JSON")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return _failed(
                self.name, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
        if self.require_object and not isinstance(value, dict):
            return _failed(self.name, f"expected a JSON object, got {type(value).__name__}")
        return _passed(self.name, "valid JSON")


class PydanticValidator(BaseScorer):
    """Passes when the answer's JSON validates against a pydantic model (or any type).

    Args:
        model_cls: A ``BaseModel`` subclass, or any type pydantic can validate
            (``list[int]``, a ``TypedDict``...).
        strict: Use pydantic's strict mode.

    Example:
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        ...     population: int
        >>> PydanticValidator(City)("q", '{"name": "Paris", "population": 2100000}').passed
        True
        >>> PydanticValidator(City)("q", '{"name": "Paris"}').reason
        'City: population: Field required'
    """

    def __init__(self, model_cls: Any, *, strict: bool = False) -> None:
        self.model_cls = model_cls
        self.strict = strict
        self._adapter: TypeAdapter[Any] = TypeAdapter(model_cls)
        self.name = getattr(model_cls, "__name__", None) or repr(model_cls)

    def __repr__(self) -> str:
        return f"PydanticValidator({self.name})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Validate the answer's JSON."""
        text = extract_json_text(answer)
        if not text:
            return _failed(self.name, "empty answer, expected JSON")
        try:
            self._adapter.validate_json(text, strict=self.strict)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            parts = []
            for error in errors[:3]:
                loc = ".".join(str(part) for part in error["loc"])
                parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
            more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
            return _failed(self.name, "; ".join(parts) + more)
        return _passed(self.name, "valid")


class RegexValidator(BaseScorer):
    r"""Passes when the answer matches a pattern (or, with ``must_match=False``, does not).

    Args:
        pattern: A regular expression (string or compiled).
        must_match: ``True``: the pattern must be found; ``False``: it must not be.
        fullmatch: Match the whole stripped answer instead of searching in it.
        flags: ``re`` flags for a string pattern.

    Example:
        >>> RegexValidator(r"\b\d{4}\b")("Year?", "It was 1969.").passed
        True
        >>> RegexValidator(r"(?i)lorem ipsum", must_match=False)("q", "Lorem ipsum").passed
        False
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        *,
        must_match: bool = True,
        fullmatch: bool = False,
        flags: int = 0,
    ) -> None:
        self.pattern = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        self.must_match = must_match
        self.fullmatch = fullmatch
        self.name = "regex" if must_match else "regex_absent"

    def __repr__(self) -> str:
        return f"RegexValidator({self.pattern.pattern!r}, must_match={self.must_match})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Apply the pattern."""
        text = answer or ""
        match = (
            self.pattern.fullmatch(text.strip()) if self.fullmatch else self.pattern.search(text)
        )
        shown = self.pattern.pattern
        if self.must_match:
            if match:
                return _passed(self.name, f"matches {shown!r}")
            return _failed(self.name, f"does not match {shown!r}")
        if match:
            return _failed(self.name, f"contains forbidden {match.group(0)[:80]!r}")
        return _passed(self.name, f"does not contain {shown!r}")


_CANNOT = (
    r"(?:can(?:not|'t|\s+not)|(?:won't|will\s+not)\s+be\s+able\s+to|won't|will\s+not"
    r"|(?:am|'m)\s+(?:not\s+able|unable)|(?:am|'m)\s+not\s+(?:allowed|permitted|comfortable)"
    r"|must\s+(?:decline|refuse))"
)
_ACTION = (
    r"(?:help|assist|provide|comply|fulfil+|answer|respond|do\s+(?:that|this)|share|create"
    r"|generate|write|give|support|engage|discuss|offer|complete|perform|produce|continue)"
)
_REFUSAL_PATTERNS: tuple[str, ...] = (
    # "I'm sorry, but I cannot ...", "I apologize, but I'm unable to ..."
    rf"\b(?:sorry|i\s+apologi[sz]e|apologies)\b[^.!?\n]{{0,60}}?\bi\s*{_CANNOT}\b",
    # "Unfortunately, I cannot provide ..." (an action is required: "I can't be sure" is fine)
    rf"\b(?:unfortunately|regrettably)\b[^.!?\n]{{0,40}}?\bi\s*{_CANNOT}\s+"
    rf"(?:\w+\s+){{0,2}}?{_ACTION}\b(?!\s+but\b)",
    # "I can't help with that", "I won't provide ...", "I'm unable to assist ..."
    rf"^\W*i\s*{_CANNOT}\s+(?:\w+\s+){{0,2}}?{_ACTION}\b(?!\s+but\b)",
    # "As an AI language model, I cannot ..." / "As an AI, I don't ..."
    rf"\bas\s+an?\s+(?:ai|artificial\s+intelligence|language\s+model)\b[^.!?\n]{{0,40}}?"
    rf"\bi\s*{_CANNOT}\b",
    # "I must decline", "I have to refuse this request"
    r"\bi\s+(?:must|have\s+to|need\s+to|will\s+have\s+to)\s+(?:respectfully\s+)?(?:decline|refuse)\b",
    # "That's not something I can help with"
    r"\bnot\s+something\s+i\s+(?:can|am\s+able\s+to|'m\s+able\s+to)\s+(?:help|assist)\b",
    # "I cannot and will not ..."
    r"\bi\s+(?:cannot|can't)\s+and\s+(?:will\s+not|won't)\b",
)


class RefusalDetector(BaseScorer):
    """Rejects answers that refuse ("I'm sorry, but I can't help with that").

    A small set of compiled, case-insensitive patterns looks at the start of the answer
    (``window`` characters: refusals come first, and long answers that merely quote a
    refusal should pass). Curly apostrophes are normalised. The idiom "I can't help but
    ..." is not a refusal.

    Args:
        window: Characters from the start of the answer to inspect (``None``: all).
        extra_patterns: More regular expressions (case-insensitive) that mark a refusal.

    Example:
        >>> RefusalDetector()("q", "As an AI language model, I cannot browse.").passed
        False
        >>> RefusalDetector()("q", "I can't help but admire the question: 42.").passed
        True
    """

    name = "refusal"

    def __init__(self, *, window: int | None = 400, extra_patterns: Iterable[str] = ()) -> None:
        self.window = window
        self.patterns: tuple[re.Pattern[str], ...] = tuple(
            re.compile(p, re.IGNORECASE | re.MULTILINE)
            for p in (*_REFUSAL_PATTERNS, *extra_patterns)
        )

    def __repr__(self) -> str:
        return f"RefusalDetector(window={self.window})"

    def find(self, answer: str) -> str | None:
        """The refusal phrase found in ``answer``, or ``None``."""
        text = (answer or "").replace("\u2019", "'").replace("\u2018", "'")
        if self.window is not None:
            text = text[: self.window]
        for pattern in self.patterns:
            match = pattern.search(text)
            if match:
                return match.group(0).strip()
        return None

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Fail when the answer is a refusal."""
        phrase = self.find(answer)
        if phrase is not None:
            return _failed(self.name, f"answer is a refusal ({phrase[:80]!r})")
        return _passed(self.name, "no refusal")


class AllOf(BaseScorer):
    """Combines scorers: the lowest score wins, and the first rejection stops the chain.

    ``passed`` is ``False`` as soon as one scorer says ``False`` (later scorers, such as
    an LLM judge, are then not called), ``True`` when all say ``True``, else ``None``.
    Put cheap validators before expensive scorers.

    Example:
        >>> scorer = AllOf(NonEmptyValidator(), JSONValidator())
        >>> scorer("q", "not json").reason
        'json: invalid JSON: Expecting value (line 1, column 1)'
    """

    name = "all_of"

    def __init__(self, *scorers: Scorer | Callable[..., Any]) -> None:
        if not scorers:
            raise ValueError("AllOf needs at least one scorer")
        self.scorers: tuple[Scorer, ...] = tuple(as_scorer(s) for s in scorers)

    def __repr__(self) -> str:
        return f"AllOf({', '.join(repr(s) for s in self.scorers)})"

    @staticmethod
    def _combine(results: list[ScoreResult]) -> ScoreResult:
        last = results[-1]
        lowest = min(results, key=lambda r: r.score)
        if last.passed is False:
            return ScoreResult(score=lowest.score, passed=False, reason=last.reason)
        passed = True if all(r.passed is True for r in results) else None
        reason = "; ".join(r.reason for r in results if r.reason)
        return ScoreResult(score=lowest.score, passed=passed, reason=reason)

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Run the scorers in order, stopping at the first rejection."""
        results: list[ScoreResult] = []
        for scorer in self.scorers:
            results.append(scorer(query, answer, logprobs=logprobs, metadata=metadata))
            if results[-1].passed is False:
                break
        return self._combine(results)

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Async form: awaits each scorer's ``ascore`` in order."""
        results: list[ScoreResult] = []
        for scorer in self.scorers:
            results.append(await scorer.ascore(query, answer, logprobs=logprobs, metadata=metadata))
            if results[-1].passed is False:
                break
        return self._combine(results)


# --------------------------------------------------------------------------- graded scorers


class MeanTokenProbabilityScorer(BaseScorer):
    """Scores an answer by its mean token probability, ``exp(mean(logprobs))``.

    The geometric mean of the token probabilities: near 1.0 when the model was sure of
    every token, lower when it hesitated. Natural-log probabilities are expected (what
    OpenAI-style ``logprobs`` return).

    When ``logprobs`` is missing or empty the scorer cannot judge: it returns
    ``missing_score`` with ``passed=None`` and says so in the reason. The default
    ``missing_score=0.0`` is biased toward escalation (a cascade then moves on to the
    stronger model rather than trust an unscored answer); set it to 1.0 to accept
    instead.

    Args:
        threshold: When given, ``passed = score >= threshold``; else ``passed=None``.
        missing_score: The score when no logprobs are available.

    Example:
        >>> import math
        >>> MeanTokenProbabilityScorer()("q", "a", logprobs=[math.log(0.9)] * 3).score
        0.9
        >>> MeanTokenProbabilityScorer()("q", "a").reason
        'token_probability: logprobs unavailable, score 0 (escalate)'
    """

    name = "token_probability"

    def __init__(self, threshold: float | None = None, *, missing_score: float = 0.0) -> None:
        if not 0.0 <= missing_score <= 1.0:
            raise ValueError("missing_score must be in [0, 1]")
        self.threshold = threshold
        self.missing_score = missing_score

    def __repr__(self) -> str:
        return (
            f"MeanTokenProbabilityScorer(threshold={self.threshold}, "
            f"missing_score={self.missing_score})"
        )

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Score from ``logprobs``."""
        # positive values can only be rounding noise: treated as 0 (probability 1)
        values = [min(float(v), 0.0) for v in logprobs or () if not math.isnan(float(v))]
        if not values:
            verdict = "escalate" if self.missing_score == 0.0 else "neutral"
            return ScoreResult(
                score=self.missing_score,
                passed=None,
                reason=(
                    f"{self.name}: logprobs unavailable, score {self.missing_score:g} ({verdict})"
                ),
            )
        score = min(1.0, math.exp(math.fsum(values) / len(values)))
        passed = _graded(score, self.threshold)
        return ScoreResult(
            score=score,
            passed=passed,
            reason=f"{self.name}: mean token probability {score:.3f} over {len(values)} tokens",
        )


class RouterConfidenceScorer(BaseScorer):
    """Uses the routing decision's confidence, ``metadata["confidence"]``, as the score.

    Without a confidence it returns ``missing_score`` with ``passed=None``.

    Args:
        threshold: When given, ``passed = score >= threshold``; else ``passed=None``.
        missing_score: The score when metadata has no confidence (0.0: escalate).
        key: The metadata key to read.

    Example:
        >>> RouterConfidenceScorer()("q", "a", metadata={"confidence": 0.82}).score
        0.82
    """

    name = "router_confidence"

    def __init__(
        self,
        threshold: float | None = None,
        *,
        missing_score: float = 0.0,
        key: str = "confidence",
    ) -> None:
        if not 0.0 <= missing_score <= 1.0:
            raise ValueError("missing_score must be in [0, 1]")
        self.threshold = threshold
        self.missing_score = missing_score
        self.key = key

    def __repr__(self) -> str:
        return f"RouterConfidenceScorer(threshold={self.threshold}, key={self.key!r})"

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Read the confidence from ``metadata``."""
        value = (metadata or {}).get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ScoreResult(
                score=self.missing_score,
                passed=None,
                reason=f"{self.name}: no {self.key!r} in metadata, score {self.missing_score:g}",
            )
        score = min(1.0, max(0.0, float(value)))
        return ScoreResult(
            score=score,
            passed=_graded(score, self.threshold),
            reason=f"{self.name}: routing confidence {score:.3f}",
        )


# --------------------------------------------------------------------------- LLM judge


DEFAULT_JUDGE_PROMPT = """\
You are grading an AI assistant's answer to a user's question.

Question:
{query}

Answer:
{answer}

Is the answer correct, complete and directly useful for the question? Rate it on a \
scale from 0 (wrong, unhelpful or a refusal) to 10 (fully correct and complete).
Reply with a single line in the form "Score: N/10"."""

_NUM = r"(\d+(?:\.\d+)?|\.\d+)"
_LABELLED = re.compile(
    r"\b(?:score|rating|grade|mark|judg(?:e?ment)|evaluation)\b[\s\"'`*_:=\-]{0,6}"
    rf"{_NUM}(?:\s*(?:/|out\s+of)\s*{_NUM})?(\s*%)?",
    re.IGNORECASE,
)
_FRACTION = re.compile(rf"(?<![\w.]){_NUM}\s*(?:/|out\s+of)\s*{_NUM}(?!\w|\.\d)", re.IGNORECASE)
_PERCENT = re.compile(rf"(?<![\w.]){_NUM}\s*%")
_ONLY_NUMBER = re.compile(rf"^[\s*_`\"']*{_NUM}[\s*_`\"'.]*$")
_VERDICT_LABEL = re.compile(
    r"\b(?:verdict|answer|decision|result|judg(?:e?ment)|grade)\b[\s\"'`*_:=\-]{0,6}([a-z]+)",
    re.IGNORECASE,
)
_FIRST_WORD = re.compile(r"^[\W_]*([a-z]+)", re.IGNORECASE)
_POSITIVE = frozenset(
    {"yes", "pass", "passed", "correct", "true", "good", "acceptable", "accept", "accepted", "y"}
)
_NEGATIVE = frozenset(
    {
        "no",
        "fail",
        "failed",
        "incorrect",
        "wrong",
        "false",
        "bad",
        "unacceptable",
        "reject",
        "rejected",
        "n",
    }
)


def _on_scale(value: float, scale: tuple[float, float] | None) -> float | None:
    if scale is not None:
        low, high = scale
        if high <= low or not low <= value <= high:
            return None
        return (value - low) / (high - low)
    if 0.0 < value < 1.0 and value != int(value):
        return value  # 0.85: the 0-1 scale
    if 0.0 <= value <= 10.0:
        return value / 10.0
    return None


def _fraction(numerator: str, denominator: str) -> float | None:
    top, bottom = float(numerator), float(denominator)
    if bottom <= 0 or top > bottom:
        return None
    return top / bottom


def _verdict(word: str) -> float | None:
    word = word.lower()
    if word in _POSITIVE:
        return 1.0
    if word in _NEGATIVE:
        return 0.0
    return None


def parse_judgement(text: str, scale: tuple[float, float] | None = None) -> float | None:
    """Read a grade from a judge's reply and normalise it to ``[0, 1]``.

    Tried in order; the last occurrence wins within a rule (judges reason first and
    conclude last):

    1. A labelled score: ``Score: 7/10``, ``**Rating:** 4 out of 5``, ``"score": 0.8``,
       ``Grade: 85%``. A denominator or ``%`` sets the scale, else ``scale`` does.
    2. A fraction anywhere: ``8/10``, ``3 out of 5``.
    3. A percentage: ``85%``.
    4. A reply (or last line) that is just a number: read on ``scale``.
    5. A verdict: the first word, or a labelled ``Verdict: pass``: yes / pass / correct /
       true / good → 1.0; no / fail / incorrect / wrong / false / bad → 0.0.

    A bare number is read on ``scale = (low, high)`` as ``(x - low) / (high - low)``;
    without ``scale`` a fraction like ``0.8`` is read on 0-1 and anything else on 0-10
    (so ``7`` → 0.7 and ``1`` → 0.1). Out-of-range numbers are not parsed.

    Args:
        text: The judge's reply.
        scale: The scale the prompt asked for, e.g. ``(0, 10)`` or ``(1, 5)``.

    Returns:
        The normalised score, or ``None`` when nothing could be read.

    Example:
        >>> parse_judgement("Reasoning... Score: 7/10")
        0.7
        >>> parse_judgement("4", scale=(1, 5))
        0.75
        >>> parse_judgement("PASS")
        1.0
        >>> parse_judgement("I think it is fine") is None
        True
    """
    text = (text or "").strip()
    if not text:
        return None

    labelled = list(_LABELLED.finditer(text))
    if labelled:
        match = labelled[-1]
        value, denominator, percent = match.group(1), match.group(2), match.group(3)
        if denominator is not None:
            return _fraction(value, denominator)
        if percent:
            return _fraction(value, "100")
        return _on_scale(float(value), scale)

    fractions = list(_FRACTION.finditer(text))
    if fractions:
        return _fraction(fractions[-1].group(1), fractions[-1].group(2))

    percents = list(_PERCENT.finditer(text))
    if percents:
        return _fraction(percents[-1].group(1), "100")

    last_line = text.splitlines()[-1]
    for candidate in (text, last_line):
        match = _ONLY_NUMBER.match(candidate)
        if match:
            return _on_scale(float(match.group(1)), scale)

    labelled_verdicts = list(_VERDICT_LABEL.finditer(text))
    for match in reversed(labelled_verdicts):
        verdict = _verdict(match.group(1))
        if verdict is not None:
            return verdict
    first = _FIRST_WORD.match(text)
    if first:
        return _verdict(first.group(1))
    return None


JudgeFn = Callable[[str], "str | Awaitable[str]"]


class JudgeScorer(BaseScorer):
    """Asks a judge (usually a cheap LLM) to grade the answer, then parses its grade.

    The prompt is ``prompt_template.format(query=..., answer=...)`` (double any literal
    braces in a custom template). The reply is read with :func:`parse_judgement` on
    ``scale`` (0-10 for the default prompt). An unparseable reply, or a judge that
    raises, scores ``unparseable_score`` (0.0: escalate) with ``passed=None`` and the
    reason says why.

    Args:
        judge: ``prompt -> reply``; may be async (then the sync call runs it with
            ``asyncio.run`` when no event loop is running).
        ajudge: An async ``prompt -> reply`` used by :meth:`ascore` (default: ``judge``,
            run in a worker thread if it is sync).
        prompt_template: Template with ``{query}`` and ``{answer}`` placeholders.
        scale: The grading scale the prompt asks for.
        threshold: When given, ``passed = score >= threshold``; else ``passed=None``.
        unparseable_score: The score when no grade can be read.

    Example:
        >>> scorer = JudgeScorer(lambda prompt: "Score: 8/10")
        >>> scorer("Capital of France?", "Paris").score
        0.8
    """

    name = "judge"

    def __init__(
        self,
        judge: JudgeFn | None = None,
        *,
        ajudge: Callable[[str], Awaitable[str]] | None = None,
        prompt_template: str = DEFAULT_JUDGE_PROMPT,
        scale: tuple[float, float] | None = (0, 10),
        threshold: float | None = None,
        unparseable_score: float = 0.0,
    ) -> None:
        if judge is None and ajudge is None:
            raise ValueError("JudgeScorer needs judge= or ajudge=")
        if not 0.0 <= unparseable_score <= 1.0:
            raise ValueError("unparseable_score must be in [0, 1]")
        missing = [key for key in ("{query}", "{answer}") if key not in prompt_template]
        if missing:
            raise ValueError(f"prompt_template lacks {' and '.join(missing)}")
        try:
            prompt_template.format(query="", answer="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"prompt_template cannot be formatted ({type(exc).__name__}: {exc}); "
                "double literal braces: {{ and }}"
            ) from exc
        self.judge = judge
        self.ajudge = ajudge
        self.prompt_template = prompt_template
        self.scale = scale
        self.threshold = threshold
        self.unparseable_score = unparseable_score

    def __repr__(self) -> str:
        return f"JudgeScorer(scale={self.scale}, threshold={self.threshold})"

    def prompt(self, query: str, answer: str) -> str:
        """The grading prompt sent to the judge."""
        return self.prompt_template.format(query=query, answer=answer)

    def _result(self, reply: str) -> ScoreResult:
        score = parse_judgement(reply, scale=self.scale)
        shown = " ".join(str(reply).split())[:120]
        if score is None:
            return ScoreResult(
                score=self.unparseable_score,
                passed=None,
                reason=f"{self.name}: could not read a grade from {shown!r}",
            )
        return ScoreResult(
            score=score,
            passed=_graded(score, self.threshold),
            reason=f"{self.name}: {score:.2f} from {shown!r}",
        )

    def _error(self, exc: BaseException) -> ScoreResult:
        return ScoreResult(
            score=self.unparseable_score,
            passed=None,
            reason=f"{self.name}: judge failed: {type(exc).__name__}: {exc}",
        )

    def __call__(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Grade synchronously."""
        prompt = self.prompt(query, answer)
        try:
            if self.judge is not None:
                reply = self.judge(prompt)
                if inspect.isawaitable(reply):
                    reply = _run_sync(reply, "the judge")
            else:
                assert self.ajudge is not None
                reply = _run_sync(self.ajudge(prompt), "the judge")
        except RuntimeError as exc:
            if "inside an event loop" in str(exc):
                raise
            return self._error(exc)
        except Exception as exc:
            return self._error(exc)
        return self._result(str(reply))

    async def ascore(
        self,
        query: str,
        answer: str,
        *,
        logprobs: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ScoreResult:
        """Grade asynchronously (a sync judge runs in a worker thread)."""
        prompt = self.prompt(query, answer)
        try:
            if self.ajudge is not None:
                reply = await self.ajudge(prompt)
            else:
                assert self.judge is not None
                if inspect.iscoroutinefunction(self.judge):
                    reply = await self.judge(prompt)
                else:
                    reply = await asyncio.to_thread(self.judge, prompt)
                    if inspect.isawaitable(reply):
                        reply = await reply
        except Exception as exc:
            return self._error(exc)
        return self._result(str(reply))
