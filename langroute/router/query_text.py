r"""Query cleaning: what counts as an empty query, and what text is embedded.

The router cleans every query with :func:`clean_query` before embedding it, so the
integrations built on the router get the same rules:

* a query with no visible character (empty, whitespace, zero-width spaces, control
  characters such as ``\x00``, byte-order marks) is rejected with
  :class:`~langroute.errors.InvalidQueryError`, as an empty query is;
* a lone surrogate (``"\ud800"``, or the ``surrogateescape`` form of invalid UTF-8 in
  a command-line argument) cannot be encoded, so tokenizers refuse it; it is replaced
  by U+FFFD, the replacement character, and the rest of the query is routed (a
  high-low surrogate pair becomes the character it encodes).

Example:
    >>> clean_query("hi \ud800")
    'hi �'
    >>> has_visible_text("\u200b\x00 ")
    False
"""

from __future__ import annotations

import re
import unicodedata

from langroute.errors import InvalidQueryError

__all__ = ["Query", "clean_query", "has_visible_text"]

# Control, format (zero-width, bidi, BOM), surrogate and separator characters.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
_SURROGATE = re.compile("[\ud800-\udfff]")


class Query(str):
    """A query string that also says how many attachments (images, files) came with it.

    The integrations' query extractors return one when the routed message carries
    non-text content, so a decider chain's rule with ``attachments=True`` can send it to
    a route that reads them (:mod:`langroute.chains.deciders`). Anything that takes a ``str``
    takes it; :func:`clean_query` keeps the count.

    Example:
        >>> q = Query("what is in this picture?", attachments=1)
        >>> q.attachments, q.upper(), clean_query(q).attachments
        (1, 'WHAT IS IN THIS PICTURE?', 1)
    """

    attachments: int

    def __new__(cls, text: str, *, attachments: int = 0) -> Query:  # noqa: D102
        made = super().__new__(cls, text)
        made.attachments = attachments
        return made

    def __reduce__(self) -> tuple[object, ...]:
        return (_query, (str(self), self.attachments))


def _query(text: str, attachments: int) -> Query:
    return Query(text, attachments=attachments)


def has_visible_text(text: str) -> bool:
    """True when ``text`` holds at least one character a reader could see.

    Whitespace, zero-width and other format characters, control characters and lone
    surrogates are not visible.
    """
    return any(
        not char.isspace() and unicodedata.category(char) not in _INVISIBLE_CATEGORIES
        for char in text
    )


def clean_query(query: object) -> str:
    """The text to route on: ``query`` with surrogates made valid (lone ones: U+FFFD).

    Args:
        query: What the caller asked to route.

    Returns:
        The query, safe to hand to any tokenizer (unchanged when it was already).

    Raises:
        InvalidQueryError: ``query`` is not a string, or has no visible character.
    """
    if not isinstance(query, str):
        raise InvalidQueryError(f"query must be a string, got {type(query).__name__}")
    text = query
    if _SURROGATE.search(text) is not None:
        # UTF-16 joins high-low pairs back into the characters they encode.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if not has_visible_text(text):
        if text.strip():
            raise InvalidQueryError(
                "query has no visible characters (only zero-width, control, format or "
                f"surrogate characters: {text[:20]!r})"
            )
        raise InvalidQueryError("query is empty or whitespace")
    cleaned = _SURROGATE.sub("\ufffd", text)
    if isinstance(query, Query):
        return Query(cleaned, attachments=query.attachments)
    return cleaned
