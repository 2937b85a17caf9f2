"""Upstream errors the client caused: answered as the same 4xx, never escalated.

A request the provider refuses as invalid (a prompt past the context window, a bad
parameter: HTTP 400, 413, 422) fails the same way on every route, so escalating it
would only pay for more refusals, and a 502 would make the ``openai`` client retry it.
:class:`EscalatingError` is the routing model's ``escalate_on``: it matches every error
except those; :func:`client_fault` turns one into the client's :class:`ApiError`.

An upstream 401/403 is not among them: the server calls upstream with its own
credentials, so it is the operator's fault, and another route may well answer.
"""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import ContextOverflowError

from langchain_langroute.server.openai_format import ApiError
from langchain_langroute.server.redaction import redact_secrets

__all__ = ["CLIENT_FAULT_STATUSES", "EscalatingError", "client_fault", "status_of"]

CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})
"""Upstream statuses that say the request itself is at fault."""


def status_of(error: BaseException) -> int | None:
    """The HTTP status of an upstream client error, if ``error`` is one the client caused."""
    if isinstance(error, ContextOverflowError):
        return 400
    status = getattr(error, "status_code", None)  # openai's and anthropic's APIStatusError
    return status if isinstance(status, int) and status in CLIENT_FAULT_STATUSES else None


class _EscalatingMeta(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, Exception) and status_of(instance) is None


class EscalatingError(Exception, metaclass=_EscalatingMeta):
    """Matches (``isinstance``) every error but an upstream refusal of the request itself.

    Example:
        >>> isinstance(TimeoutError("slow"), EscalatingError)
        True
    """


def _upstream_error(error: BaseException) -> dict[str, Any]:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        return inner
    return {}


def client_fault(error: BaseException) -> ApiError | None:
    """The client's error for an upstream refusal of its request (``None``: not one)."""
    status = status_of(error)
    if status is None:
        return None
    details = _upstream_error(error)
    message = str(details.get("message") or getattr(error, "message", None) or error)
    code = details.get("code")
    param = details.get("param")
    return ApiError(
        status,
        redact_secrets(f"the model refused the request: {message}"),
        type=str(details.get("type") or "invalid_request_error"),
        code=code if isinstance(code, str) else None,
        param=param if isinstance(param, str) else None,
    )
