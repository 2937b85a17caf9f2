r"""Reading UTF-8 data files so that an undecodable byte is reported with its line.

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

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["FormatErrorType", "read_utf8", "utf8_lines"]

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
