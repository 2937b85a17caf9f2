r"""Reading UTF-8 data files so that an undecodable byte is reported with its line.

JSON read from data files goes through :func:`load_json`, which refuses values nested
deeper than :data:`MAX_JSON_DEPTH` (legal JSON 1,000 deep would otherwise end in a
``RecursionError`` traceback) in time linear in the text.

The exemplar files (JSONL and CSV) are read through these functions; the reader passes
its format error (``ExemplarFormatError``), which is raised naming the file, the line
and the byte. A leading UTF-8 byte-order mark (as spreadsheet programs write it) is
dropped.

Example:
    >>> from pathlib import Path
    >>> from langroute.errors import ExemplarFormatError
    >>> path = Path("notes.jsonl")
    >>> _ = path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"b": "\xff"}\n')
    >>> with path.open("rb") as handle:
    ...     lines = utf8_lines(handle, path, ExemplarFormatError)
    ...     print(next(lines))
    ...     try:
    ...         next(lines)
    ...     except ExemplarFormatError as exc:
    ...         print(exc)
    (1, '{"a": 1}\n')
    notes.jsonl:2: not UTF-8 text: invalid start byte at byte 8 of the line
    >>> read_utf8(Path("ex.jsonl"), ExemplarFormatError)[:23]
    '{"text": "hello there",'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = [
    "MAX_JSON_DEPTH",
    "FormatErrorType",
    "JSONTooDeepError",
    "json_too_deep",
    "load_json",
    "read_utf8",
    "utf8_lines",
]

MAX_JSON_DEPTH = 100
"""How deeply arrays and objects may nest in JSON read from a data file."""

# A JSON string (a torn one runs to the end; the unrolled loop never backtracks), and
# what is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeepError(ValueError):
    """JSON whose arrays and objects nest deeper than :data:`MAX_JSON_DEPTH`."""


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in the JSON ``text`` nest deeper than ``limit``.

    Text with no more than ``limit`` brackets is not scanned. Otherwise strings and all
    but the brackets are dropped and the running depth is taken over what is left: one
    linear pass, each step in C (the regular-expression engine, ``map`` and
    ``itertools.accumulate``).

    Example:
        >>> json_too_deep("[" * 101 + "]" * 101), json_too_deep('["[[[[", {"a": [1]}]', 3)
        (True, False)
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def load_json(text: str | bytes) -> Any:
    """``json.loads(text)``, refusing values nested deeper than :data:`MAX_JSON_DEPTH`.

    Raises:
        JSONTooDeepError: Nested too deeply (say where: the caller knows the file and line).
        json.JSONDecodeError: Not JSON.
        UnicodeDecodeError: ``text`` is bytes that are not UTF-8.

    Example:
        >>> load_json('{"a": [1, 2]}')
        {'a': [1, 2]}
        >>> load_json("[" * 1000 + "]" * 1000)
        Traceback (most recent call last):
        ...
        langroute.files.textfiles.JSONTooDeepError: JSON nested deeper than 100 levels
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if json_too_deep(text):
        raise JSONTooDeepError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:  # not reached after the check above; kept as a backstop
        raise JSONTooDeepError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc


_BOM = "\ufeff"


class FormatErrorType(Protocol):
    """An error class built as ``error(message, path=..., line=...)``."""

    def __call__(
        self, message: str, *, path: str | Path | None = None, line: int | None = None
    ) -> Exception:
        """Build the error."""
        ...


def _not_utf8(reason: str, column: int) -> str:
    return f"not UTF-8 text: {reason} at byte {column} of the line"


def utf8_lines(handle: BinaryIO, path: Path, error: FormatErrorType) -> Iterator[tuple[int, str]]:
    """The lines of a file opened in binary mode, decoded, with their 1-based numbers.

    Lines are split at newlines and keep their endings.

    Raises:
        error: A line is not UTF-8 (the lines before it have been yielded).
    """
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(_not_utf8(exc.reason, exc.start + 1), path=path, line=number) from exc
        yield number, (line.removeprefix(_BOM) if number == 1 else line)


def read_utf8(path: Path, error: FormatErrorType) -> str:
    """The whole text of a UTF-8 file.

    Raises:
        error: The file is not UTF-8 (the line of the first bad byte named).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        message = _not_utf8(exc.reason, exc.start - line_start + 1)
        raise error(message, path=path, line=line) from exc
    return text.removeprefix(_BOM)
