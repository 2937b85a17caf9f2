"""Validators: 1.0 when an answer passes a check, 0.0 when it fails.

JSON, a schema, a regex, refusals, non-empty answers, and several checks at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from langroute.scorers.base import (
    BaseScorer,
    Scorer,
    ScoreResult,
    as_scorer,
    fail_result,
    pass_result,
)


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
            return fail_result(self.name, "empty answer")
        if length < self.min_chars:
            return fail_result(
                self.name, f"answer has {length} characters, fewer than {self.min_chars}"
            )
        return pass_result(self.name, f"{length} characters")


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
            return fail_result(self.name, "empty answer, expected JSON")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return fail_result(
                self.name, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
        if self.require_object and not isinstance(value, dict):
            return fail_result(self.name, f"expected a JSON object, got {type(value).__name__}")
        return pass_result(self.name, "valid JSON")


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
            return fail_result(self.name, "empty answer, expected JSON")
        try:
            self._adapter.validate_json(text, strict=self.strict)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            parts = []
            for error in errors[:3]:
                loc = ".".join(str(part) for part in error["loc"])
                parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
            more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
            return fail_result(self.name, "; ".join(parts) + more)
        return pass_result(self.name, "valid")


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
                return pass_result(self.name, f"matches {shown!r}")
            return fail_result(self.name, f"does not match {shown!r}")
        if match:
            return fail_result(self.name, f"contains forbidden {match.group(0)[:80]!r}")
        return pass_result(self.name, f"does not contain {shown!r}")


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
            return fail_result(self.name, f"answer is a refusal ({phrase[:80]!r})")
        return pass_result(self.name, "no refusal")


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
