r"""Regular expressions written by users, run where their cost is bounded.

A pattern from a config file runs on text from requests: with a backtracking engine
(Python's ``re``) a pattern like ``(a+)+$`` takes time exponential in the text's length
(29 characters: 30 s). :class:`UserPattern` compiles the pattern with RE2
(``google-re2``), whose matching time is linear in the text, and searches at most
:data:`MAX_PATTERN_TEXT_CHARS` characters of it.

RE2 takes Python's syntax except what needs backtracking: lookarounds (``(?=...)``,
``(?<!...)``) and backreferences (``\1``) are refused when the pattern is compiled,
with the reason. ``\w``, ``\d`` and ``\b`` are ASCII-only in RE2.

Example:
    >>> pattern = UserPattern(r"(a+)+$")
    >>> pattern.search("a" * 10_000 + "b")
    False
    >>> try:
    ...     UserPattern(r"(?<=x)y")
    ... except ValueError as exc:
    ...     print(str(exc)[:58])
    pattern '(?<=x)y' cannot run on RE2: invalid perl operator
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_PATTERN_TEXT_CHARS", "UserPattern"]

MAX_PATTERN_TEXT_CHARS = 100_000
"""A user pattern is searched in at most this many leading characters of a text."""


class UserPattern:
    r"""A user's regular expression, compiled with RE2 and searched in linear time.

    Args:
        pattern: The regular expression (RE2 syntax: Python's, less lookarounds and
            backreferences).
        ignore_case: Match letters in any case.

    Raises:
        ValueError: The pattern is not a regular expression RE2 takes (the message
            says why).

    Example:
        >>> UserPattern(r"\bSELECT\b", ignore_case=True).search("select * from t")
        True
    """

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        import re2

        options = re2.Options()
        options.log_errors = False  # the reason goes into our error, not onto stderr
        options.case_sensitive = not ignore_case
        try:
            self._compiled: Any = re2.compile(pattern, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", errors="replace")
            raise ValueError(
                f"pattern {pattern!r} cannot run on RE2: {reason} (RE2 matches in time "
                "linear in the text, so it has no lookarounds or backreferences)"
            ) from exc
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"UserPattern({self.pattern!r})"

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in the first :data:`MAX_PATTERN_TEXT_CHARS` of ``text``."""
        text = text[:MAX_PATTERN_TEXT_CHARS]
        try:
            return self._compiled.search(text) is not None
        except UnicodeEncodeError:  # RE2 reads UTF-8: a lone surrogate becomes U+FFFD
            text = text.encode("utf-8", errors="replace").decode("utf-8")
            return self._compiled.search(text) is not None
