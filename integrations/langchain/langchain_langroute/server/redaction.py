"""Credentials kept out of what ``langroute serve`` prints, logs and answers.

:func:`redact_secrets` masks database passwords (``postgresql://user:***@host``,
``password=***``), bearer tokens and API keys in a text; :class:`RedactingFilter` applies
it to every log record, and :func:`redact_logs` installs it on the process's log
handlers (warnings included) when the server starts.
"""

from __future__ import annotations

import logging
import re

from langroute.postgres.database import redact

__all__ = ["RedactingFilter", "redact_logs", "redact_secrets"]

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_API_KEY = re.compile(r"\b((?:sk|lr|sk-ant|sk-proj)-)[A-Za-z0-9_\-]{6,}")


def redact_secrets(text: str) -> str:
    """``text`` with passwords in URLs and DSNs, bearer tokens and API keys masked.

    Example:
        >>> redact_secrets("ledger postgresql://app:s3cret@db/x, key lr-abcdefgh123")
        'ledger postgresql://app:***@db/x, key lr-***'
    """
    text = redact(text)
    text = _BEARER.sub(r"\1***", text)
    return _API_KEY.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a log record's message (its arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the handler
            return True
        record.msg, record.args = redact_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_logs(*loggers: str) -> None:
    """Mask credentials in every record the root logger and ``loggers`` handle.

    Warnings are routed through logging (``py.warnings``) so they are masked too. Call
    it once the handlers exist (after uvicorn configured its own).
    """
    logging.captureWarnings(True)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    seen: set[int] = set()
    for name in ("", "py.warnings", *loggers):
        for handler in logging.getLogger(name).handlers:
            if id(handler) not in seen and not any(
                isinstance(f, RedactingFilter) for f in handler.filters
            ):
                handler.addFilter(RedactingFilter())
            seen.add(id(handler))
