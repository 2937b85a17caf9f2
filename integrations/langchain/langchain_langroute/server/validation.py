"""Strict input for ``langroute serve``: bounded bodies, and fields checked before any call.

Every check fails with an :class:`~langchain_langroute.server.openai_format.ApiError`
naming the field (HTTP 400), or HTTP 413 for a body past ``[serve] max_body_bytes``, so
that nothing a client sends reaches a provider (and is paid for) only to fail there, and
nothing a client sends becomes a 500.

Example:
    >>> check_messages([{"role": "user", "content": None}], max_messages=10)
    Traceback (most recent call last):
    ...
    langchain_langroute.server.openai_format.ApiError: messages[0].content: ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from langchain_langroute.server.openai_format import ApiError

__all__ = ["check_depth_and_text", "check_messages", "check_tools", "read_body"]

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_PART_FIELDS = {  # content part type -> the field it must hold (an object or a string)
    "text": ("text", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
    "refusal": ("refusal", str),
}
_PARTS_OF = {
    "user": ("text", "image_url", "input_audio", "file"),
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "assistant": ("text", "refusal"),
    "function": ("text",),
}
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _fail(field: str, problem: str, status: int = 400) -> ApiError:
    return ApiError(status, f"{field}: {problem}", param=field)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` (read no further than that).

    Raises:
        ApiError: 413 when the body (or its declared length) is larger than ``max_bytes``.
    """
    too_large = ApiError(
        413,
        f"the request body is larger than {max_bytes} bytes ([serve] max_body_bytes)",
        code="request_too_large",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _path(parent: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{parent}[{part}]"
    return f"{parent}.{part}" if parent else part


def check_depth_and_text(data: Any, max_depth: int) -> None:
    r"""No nesting deeper than ``max_depth``, no string (or key) that is not valid Unicode.

    A lone surrogate (``"\ud800"``, valid JSON) cannot be encoded to send upstream.

    Raises:
        ApiError: 400 naming the first field at fault.
    """
    stack: list[tuple[str, Any, int]] = [("", data, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(path or "body", value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise _fail(path or "body", f"nested deeper than {max_depth} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for name, item in items:
            if isinstance(name, str):
                _check_text(_path(path, "<key>"), name)
            stack.append((_path(path, name), item, depth + 1))


def _check_text(field: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise _fail(field, f"not valid Unicode text (a lone surrogate \\u{ord(bad):04x})") from None


def _check_content(field: str, role: str, message: Mapping[str, Any]) -> None:
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return  # an assistant turn of tool calls only
        if role == "assistant" and "content" not in message:
            raise _fail(field, "an assistant message needs content or tool_calls")
        raise _fail(field, "must be a string or an array of content parts, not null")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _fail(field, f"must be a string or an array of content parts, not {_kind(content)}")
    allowed = _PARTS_OF.get(role, ())
    for index, part in enumerate(content):
        where = _path(field, index)
        if not isinstance(part, dict):
            raise _fail(where, f"a content part must be an object, not {_kind(part)}")
        kind = part.get("type")
        if kind not in allowed:
            raise _fail(
                _path(where, "type"),
                f"unknown content part type {kind!r} for a {role} message; "
                f"expected one of {list(allowed)}",
            )
        name, expected = _PART_FIELDS[kind]
        if not isinstance(part.get(name), expected):
            raise _fail(_path(where, name), f"a {kind!r} part needs {name!r}")
        if kind == "image_url" and not isinstance(part["image_url"].get("url"), str):
            raise _fail(_path(_path(where, "image_url"), "url"), "must be a string")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_messages(messages: list[Any], *, max_messages: int) -> None:
    """Each message is an object with a known role and content of the shape its role takes.

    Raises:
        ApiError: 400 naming the first message field at fault.
    """
    if len(messages) > max_messages:
        raise _fail("messages", f"{len(messages)} messages; at most {max_messages} are accepted")
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _fail(field, f"a message must be an object, not {_kind(message)}")
        role = message.get("role")
        if role not in _ROLES:
            raise _fail(_path(field, "role"), f"unknown role {role!r}; expected one of {_ROLES}")
        _check_content(_path(field, "content"), role, message)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(_path(field, "tool_call_id"), "a tool message needs a tool_call_id")


def _schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a JSON Schema for function arguments (``None``: it is)."""
    if not isinstance(schema, dict):
        return f"must be a JSON Schema object, not {_kind(schema)}"
    if schema.get("type", "object") != "object":
        return f"the arguments' schema must have type 'object', not {schema.get('type')!r}"
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def check_tools(tools: list[Any] | None, *, max_tools: int) -> None:
    """Each tool is a named function with a valid JSON Schema for its arguments.

    Raises:
        ApiError: 400 naming the first tool field at fault.
    """
    if not tools:
        return
    if len(tools) > max_tools:
        raise _fail("tools", f"{len(tools)} tools; at most {max_tools} are accepted")
    for index, tool in enumerate(tools):
        field = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _fail(field, f"a tool must be an object, not {_kind(tool)}")
        if tool.get("type", "function") != "function":
            raise _fail(_path(field, "type"), f"only 'function' tools, not {tool.get('type')!r}")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _fail(_path(field, "function"), "a function tool needs a 'function' object")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _fail(
                _path(_path(field, "function"), "name"),
                "a tool needs a name of 1 to 64 letters, digits, '_' or '-'",
            )
        if "description" in function and not isinstance(function["description"], str):
            raise _fail(_path(_path(field, "function"), "description"), "must be a string")
        if "parameters" in function:
            problem = _schema_problem(function["parameters"])
            if problem is not None:
                raise _fail(_path(_path(field, "function"), "parameters"), problem)
