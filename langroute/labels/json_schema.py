"""Checking a JSON value against a JSON schema: the keywords a grading reference needs.

Supported (draft 2020-12 meanings): ``type`` (one or a list), ``enum``, ``const``,
``properties``, ``required``, ``additionalProperties`` (``false`` or a schema),
``items`` (a schema), ``minItems`` / ``maxItems``, ``minLength`` / ``maxLength``,
``pattern``, ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``,
``allOf`` / ``anyOf`` / ``oneOf`` / ``not``. Any other keyword is refused (a schema
we cannot check is an error, never a silent pass).

Example:
    >>> schema = {"type": "object", "required": ["city"],
    ...           "properties": {"city": {"type": "string", "minLength": 1}}}
    >>> schema_errors({"city": "Oslo"}, schema)
    []
    >>> schema_errors({"town": "Oslo"}, schema)
    ["$: 'city' is required"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SUPPORTED_KEYWORDS", "schema_errors"]

SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        # annotations, no effect on validity
        "$schema",
        "$id",
        "title",
        "description",
        "default",
        "examples",
    }
)

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def schema_errors(value: Any, schema: Mapping[str, Any] | bool, path: str = "$") -> list[str]:
    """What makes ``value`` invalid under ``schema`` (empty: valid), each with its path.

    Raises:
        ValueError: the schema uses a keyword that is not supported, or is malformed.
    """
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    if not isinstance(schema, Mapping):
        raise ValueError(f"a schema must be an object or a boolean, got {schema!r}")
    unknown = sorted(set(schema) - SUPPORTED_KEYWORDS)
    if unknown:
        raise ValueError(f"unsupported JSON-schema keyword(s) {unknown}")
    errors: list[str] = []
    if "type" in schema:
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for name in wanted:
            if name not in _TYPES:
                raise ValueError(f"unknown JSON-schema type {name!r}")
        if not any(_TYPES[name](value) for name in wanted):
            return [f"{path}: expected {' or '.join(wanted)}, got {_type_name(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    if isinstance(value, list):
        errors += _array_errors(value, schema, path)
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number_errors(value, schema, path)
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, path)
    if "anyOf" in schema and not any(not schema_errors(value, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema:
        matching = sum(not schema_errors(value, s, path) for s in schema["oneOf"])
        if matching != 1:
            errors.append(f"{path}: matches {matching} of oneOf, expected exactly 1")
    if "not" in schema and not schema_errors(value, schema["not"], path):
        errors.append(f"{path}: matches a schema it must not match")
    return errors


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _object_errors(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    errors = [
        f"{path}: {key!r} is required" for key in schema.get("required", []) if key not in value
    ]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            errors += schema_errors(item, properties[key], where)
        elif extra is False:
            errors.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, Mapping):
            errors += schema_errors(item, extra, where)
    return errors


def _array_errors(value: list[Any], schema: Mapping[str, Any], path: str) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: {len(value)} items, fewer than {schema['minItems']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: {len(value)} items, more than {schema['maxItems']}")
    if "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors


def _string_errors(value: str, schema: Mapping[str, Any], path: str) -> list[str]:
    errors = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{path}: does not match {schema['pattern']!r}")
    return errors


def _number_errors(value: float, schema: Mapping[str, Any], path: str) -> list[str]:
    checks = (
        ("minimum", lambda bound: value >= bound, "below"),
        ("maximum", lambda bound: value <= bound, "above"),
        ("exclusiveMinimum", lambda bound: value > bound, "not above"),
        ("exclusiveMaximum", lambda bound: value < bound, "not below"),
    )
    return [
        f"{path}: {value!r} is {word} {key} {schema[key]!r}"
        for key, ok, word in checks
        if key in schema and not ok(schema[key])
    ]
