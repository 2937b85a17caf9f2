r"""Showing data in a terminal: control characters made visible, rich markup left inert.

Exemplar texts, route and model names, ledger fields and file paths come from files
that anyone may have written. Printed as they are, ``[/]`` breaks rich markup,
``[bold red]`` restyles the output and ANSI escape sequences (clear the screen, set
the window title) reach the terminal. Every command builds what it prints from data
with :func:`printable` (plain strings) or :func:`data_text` (rich renderables).

Example:
    >>> printable("route [bold red]x[/] \x1b[2J")
    'route [bold red]x[/] \\x1b[2J'
    >>> data_text("[/]").plain
    '[/]'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["data_text", "json_text", "printable"]

# C0 and C1 controls except tab and newline, DEL, bidi overrides and isolates (which
# reorder what is shown), and lone surrogates (which cannot be written as UTF-8).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(value: object, *, one_line: bool = False) -> str:
    r"""``str(value)`` with unsafe characters written as Python escapes (``\x1b``).

    Args:
        value: Anything; it is converted with ``str``.
        one_line: Also escape newlines and tabs (for table cells and headers).
    """
    text = _UNSAFE.sub(_escape, str(value))
    if one_line:
        text = text.replace("\t", "\\t").replace("\n", "\\n")
    return text


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(value: object, *, indent: int | None = 2) -> str:
    r"""``value`` as JSON for a terminal or a pipe: every unsafe character ``\u``-escaped.

    Readable Unicode stays as it is (``ensure_ascii=False``); C0 and C1 controls, DEL,
    bidi overrides and isolates, and lone surrogates are written as ``\uXXXX``, so the
    JSON means the same and nothing in it reaches the terminal raw.

    Example:
        >>> print(json_text({"route": "é\x7f\x9b\u202e"}, indent=None))
        {"route": "é\u007f\u009b\u202e"}
    """
    import json

    return _UNSAFE.sub(_json_escape, json.dumps(value, ensure_ascii=False, indent=indent))


def data_text(value: object, style: str = "", *, one_line: bool = False) -> Text:
    """A rich ``Text`` of :func:`printable` ``(value)``: never read as markup or emoji."""
    from rich.text import Text

    return Text(printable(value, one_line=one_line), style=style)
