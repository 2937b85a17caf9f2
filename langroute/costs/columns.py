"""A ledger's calls as numpy columns: the one read behind ``report`` and ``monitor``.

SQL ``GROUP BY`` sorts every row (a second or two per million rows on SQLite) and a
Python aggregate costs a call per row, so :func:`~langroute.costs.analytics.ledger_summary`
and :func:`~langroute.monitoring.monitor_ledger` read the calls once, in one plain
streamed ``SELECT`` of the few columns they need (flags packed into one integer, text
coded as small integers as it arrives), and group them with numpy: rows of a request
are brought together by a stable sort of integer codes, then reduced. Costs stay exact
(:func:`math.fsum` of the same floats) and percentiles rank the same values, so the
results equal the in-Python ones to the last bit.

Example:
    >>> from langroute.costs import LedgerRecord
    >>> from langroute.costs.analytics import open_session
    >>> with open_session([LedgerRecord(route="small", cost=0.5)]) as session:
    ...     calls = read_calls(session)
    >>> calls.routes[calls.route[0]], float(calls.cost[0])
    ('small', 0.5)
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from langroute.costs.analytics import (
    CALLS,
    EPOCH,
    INVALID_CALL,
    LedgerSession,
    _segment_key,
    parse_timestamp,
    refuse_invalid_calls,
)
from langroute.costs.records import (
    LABELLING_PURPOSE,
    OVERHEAD_ROLES,
    PURPOSE_KEY,
    ROLE_KEY,
    UNMEASURED_KEY,
)
from langroute.errors import LedgerFormatError

if TYPE_CHECKING:
    pass

__all__ = ["CallColumns", "epoch_micros", "first_seen", "group_starts", "micros", "read_calls"]

(
    FAILED,
    ESCALATED,
    REJECTED,
    MEASURED,
    LABELLING,
    OVERHEAD,
    CASCADE,
    INVALID,
    OUT_OF_DISTRIBUTION,
    LOW_CONFIDENCE,
    ALONE,
) = (1 << bit for bit in range(11))
"""Bits of :attr:`CallColumns.flags`."""

_ROW_FLAGS = f"""(failed + {ESCALATED} * (CASE WHEN escalated <> 0 THEN 1 ELSE 0 END)
    + {REJECTED} * (CASE WHEN accepted = 0 THEN 1 ELSE 0 END)
    + {CASCADE} * (CASE WHEN kind = 'cascade' THEN 1 ELSE 0 END)
    + {INVALID} * (CASE WHEN {INVALID_CALL} THEN 1 ELSE 0 END)
    + {OUT_OF_DISTRIBUTION} * (CASE WHEN reason = 'out_of_distribution' THEN 1 ELSE 0 END)
    + {LOW_CONFIDENCE} * (CASE WHEN reason = 'low_confidence' THEN 1 ELSE 0 END)
    + {ALONE} * (CASE WHEN run_id IS NULL THEN 1 ELSE 0 END))"""
_METADATA_FLAGS = f"({MEASURED} * measured + {LABELLING} * labelling + {OVERHEAD} * overhead)"
_KEYS = (*(json.dumps(key) for key in (PURPOSE_KEY, UNMEASURED_KEY, ROLE_KEY)), "\\")
_KEY_BYTES = tuple(key.encode() for key in _KEYS)
SIMILARITY_KEY = "max_similarity"

_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 20_000  # rows per fetch: small enough to stay in the CPU's caches


@dataclass
class CallColumns:
    """Every call of a ledger (no feedback), one numpy array per column, in ledger order.

    Text columns are codes into a list of their distinct values (``None`` included).
    Columns a reader did not ask for are empty.

    Attributes:
        request: Calls sharing a ``run_id`` share a code; a call without one has its own.
        time: Microseconds since the epoch (UTC).
        flags: The bits ``FAILED``, ``ESCALATED``, ``REJECTED`` (``accepted`` is 0),
            ``MEASURED``, ``LABELLING``, ``OVERHEAD`` (a judge or LLM router),
            ``CASCADE``, ``OUT_OF_DISTRIBUTION`` and ``LOW_CONFIDENCE`` (the reason) of
            each call.
        cost: The cost, ``NaN`` where unknown (a stored cost is never ``NaN``);
            ``baseline`` and ``latency`` likewise.
        similarity: ``metadata["max_similarity"]`` as a number (0 where ``has_similarity``
            is false: absent or not a number).
        segment: Codes into ``segments``, the names of the segment key's values
            (:func:`segment_name`; ``None`` where no key was read).
        judged: (row, record id) of the calls that some feedback names.
    """

    request: np.ndarray
    time: np.ndarray
    flags: np.ndarray
    cost: np.ndarray
    baseline: np.ndarray
    route: np.ndarray
    routes: list[str | None]
    model: np.ndarray
    models: list[str | None]
    baseline_model: np.ndarray
    baseline_models: list[str | None]
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_tokens: np.ndarray
    latency: np.ndarray
    similarity: np.ndarray
    has_similarity: np.ndarray
    segment: np.ndarray
    segments: list[str | None]
    judged: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.flags)

    def has(self, bit: int) -> np.ndarray:
        """Whether each call has the flag ``bit``."""
        return (self.flags & bit) != 0


def micros(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (when - EPOCH) // _MICROSECOND


def epoch_micros(stamps: Sequence[Any]) -> np.ndarray:
    """Stored timestamps as microseconds since the epoch, as :func:`parse_timestamp` reads them.

    The form langroute writes (``datetime.isoformat()`` in UTC:
    ``2026-11-01T00:00:00.604800+00:00``, or without the fraction) is decoded by numpy
    and checked field by field; any other form (another offset, ``Z``, a bad date) goes
    through :func:`parse_timestamp`.

    Example:
        >>> epoch_micros(["1970-01-01T00:00:01.5+00:00", "1970-01-01T00:00:02+00:00"])
        array([1500000, 2000000])
    """
    count = len(stamps)
    try:
        chars = np.array(stamps, dtype="S33").view(np.uint8).reshape(count, 33)
    except (TypeError, ValueError):  # not ASCII text (a driver's datetimes): one by one
        return np.fromiter((micros(parse_timestamp(s)) for s in stamps), np.int64, count)
    digits = chars[:, _DIGIT_AT].astype(np.int64) - ord("0")
    good = np.all((digits >= 0) & (digits <= 9), axis=1)
    good &= np.all(chars[:, _SEPARATOR_AT] == _SEPARATORS, axis=1)
    with_fraction = (chars[:, 19] == ord(".")) & np.all(chars[:, 26:33] == _OFFSET, axis=1)
    with_fraction[with_fraction] &= np.all(
        (chars[with_fraction, 20:26] >= ord("0")) & (chars[with_fraction, 20:26] <= ord("9")),
        axis=1,
    )
    good &= with_fraction | np.all(chars[:, 19:33] == _WHOLE_FORM, axis=1)

    def number(first: int, last: int) -> np.ndarray:
        value = digits[:, first]
        for column in range(first + 1, last + 1):
            value = value * 10 + digits[:, column]
        return value

    year, month, day = number(0, 3), number(4, 5), number(6, 7)
    hour, minute, second = number(8, 9), number(10, 11), number(12, 13)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
    good &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # days from the civil date (H. Hinnant's algorithm), then microseconds
    shifted = year - (month <= 2)
    era = shifted // 400
    of_era = shifted - era * 400
    of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + of_era * 365 + of_era // 4 - of_era // 100 + of_year - 719468
    result = (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000
    if with_fraction.any():
        fraction = chars[:, 20:26].astype(np.int64) - ord("0")
        fraction = fraction @ np.array([100_000, 10_000, 1_000, 100, 10, 1], dtype=np.int64)
        result += np.where(with_fraction, fraction, 0)
    for row in np.flatnonzero(~good).tolist():
        stamp = stamps[row]
        result[row] = micros(parse_timestamp(stamp.decode() if isinstance(stamp, bytes) else stamp))
    return result


_DIGIT_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_SEPARATOR_AT = [4, 7, 10, 13, 16]
_SEPARATORS = np.frombuffer(b"--T::", dtype=np.uint8)
_OFFSET = np.frombuffer(b"+00:00\0", dtype=np.uint8)
_WHOLE_FORM = np.frombuffer(b"+00:00" + b"\0" * 8, dtype=np.uint8)
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class _Codes:
    """Small integer codes of a text column's values, assigned as they arrive."""

    def __init__(self) -> None:
        self.codes: defaultdict[Any, int] = defaultdict()
        self.codes.default_factory = self.codes.__len__

    def of(self, values: Sequence[Any]) -> np.ndarray:
        return np.fromiter(map(self.codes.__getitem__, values), np.int32, len(values))

    def values(self) -> list[Any]:
        return list(self.codes)


def _number(text: str) -> float | None:
    """A JSON value's number as ``float(value)`` for ``int``/``float``/``bool``, else None."""
    try:
        return float(text)  # rounds exactly as json.loads, then float(), would
    except ValueError:
        return {"true": 1.0, "false": 0.0}.get(text)


def _metadata_flags(
    texts: Sequence[str] | Sequence[bytes], where: Any, parsed: Sequence[Any] | None = None
) -> np.ndarray:
    """``MEASURED``, ``LABELLING`` and ``OVERHEAD`` of each call, from its metadata text.

    As :class:`~langroute.costs.LedgerRecord` reads them. The texts are searched at
    once (joined) for the keys, or an escape; only the metadata that holds one is read
    (parsed here, or taken from ``parsed``).
    """
    flags = np.full(len(texts), MEASURED, dtype=np.int32)
    as_bytes = bool(texts) and isinstance(texts[0], bytes)
    joined = (b"\0" if as_bytes else "\0").join(texts)
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
    found: set[int] = set()
    for key in _KEY_BYTES if as_bytes else _KEYS:
        at = joined.find(key)
        while at >= 0:
            row = int(np.searchsorted(ends, at, side="right"))
            found.add(row)
            at = joined.find(key, int(ends[row]))  # the next row's text
    for row in sorted(found):
        metadata = _loads(texts[row], where) if parsed is None else parsed[row]
        if not isinstance(metadata, dict):
            continue
        role = metadata.get(ROLE_KEY)
        flags[row] = (
            MEASURED * (metadata.get(UNMEASURED_KEY) is not True)
            + LABELLING * (metadata.get(PURPOSE_KEY) == LABELLING_PURPOSE)
            + OVERHEAD * (isinstance(role, str) and role in OVERHEAD_ROLES)
        )
    return flags


def _loads(text: str | bytes, where: Any) -> Any:
    """A metadata text parsed (orjson; Python's json for what it refuses, as ``NaN``)."""
    import orjson

    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise LedgerFormatError(f"a call's metadata is not JSON: {exc}", path=where) from exc


def _parse_all(texts: Sequence[str] | Sequence[bytes], where: Any) -> list[Any]:
    """Every metadata text parsed (orjson reads a million in well under a second)."""
    import orjson

    try:
        return list(map(orjson.loads, texts))
    except orjson.JSONDecodeError:  # NaN, an empty text, or not JSON: one by one
        return [_loads(text, where) for text in texts]


def _similarities(parsed: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``max_similarity`` of each metadata as a finite number, and whether it is one."""
    values = [item.get(SIMILARITY_KEY) if type(item) is dict else None for item in parsed]
    if not all(type(value) in _NUMERIC for value in values):  # numpy would read "0.5"
        values = [value if type(value) in _NUMERIC else None for value in values]
    try:
        numbers = np.array(values, dtype=np.float64)  # None: NaN
    except OverflowError:  # an integer past a float's range
        numbers = np.array([_float(value) for value in values], dtype=np.float64)
    known = np.isfinite(numbers)
    return np.where(known, numbers, 0.0), known


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except OverflowError:
        return math.inf


_NUMERIC = {float, int, bool, type(None)}


def _segment_names(parsed: Sequence[Any], key: str) -> list[str]:
    """The segment of each call: its metadata's value of ``key`` as text, ``(none)`` if null."""
    values = [item.get(key) if type(item) is dict else None for item in parsed]
    return [
        value if type(value) is str else "(none)" if value is None else str(value)
        for value in values
    ]


def segment_name(text: str | None) -> str:
    """A segment's name from its value's JSON text: the value as text, ``(none)`` if null."""
    value = None if text is None else json.loads(text)
    return "(none)" if value is None else str(value)


def read_calls(
    session: LedgerSession,
    *,
    summary: bool = False,
    monitor: bool = False,
    segment_key: str | None = None,
    judged: Collection[str] = (),
) -> CallColumns:
    """Every call of a session's :data:`~langroute.costs.analytics.CALLS`, as columns.

    Args:
        session: An open session.
        summary: Read what the summary needs too (models, tokens, latency).
        monitor: Read what ``monitor`` needs too (similarity, segment).
        segment_key: The metadata key of the segments (the session's, when it reads
            the metadata in SQL).
        judged: The record ids that feedback names: the calls holding one are listed
            in :attr:`CallColumns.judged`.

    Raises:
        LedgerFormatError: A call with a negative or infinite cost or latency, or a
            timestamp outside 1970 .. 3000 (the first such call named).
    """
    # a SQLite ledger read in place hands over its metadata text: a substring test in
    # Python finds the few rows whose flags need their JSON, cheaper than SQL JSON
    in_python = session.raw_metadata
    flags = _ROW_FLAGS if in_python else f"{_ROW_FLAGS} + {_METADATA_FLAGS}"
    # each value fetched costs a Python object: texts come as bytes where the database
    # can (no decoding), floats without NULL (-1: none; a negative one is refused),
    # the three token counts packed in one integer
    raw = "CAST({} AS BLOB)" if session.dialect.sqlite else "{}"
    selected = [
        ("request", raw.format("COALESCE(run_id, '')")), ("time", raw.format("ts")),
        ("flags", flags),
        ("cost", "COALESCE(cost, -1.0)"), ("baseline", "COALESCE(baseline_cost, -1.0)"),
    ]  # fmt: skip
    if in_python:
        selected.append(("metadata", raw.format("COALESCE(metadata, '')")))
    if summary:  # one text for the three names: two columns fewer to fetch
        selected += [
            ("names", session.dialect.json_array("route", "model", "baseline_model")),
            ("tokens", _PACKED_TOKENS), ("latency", "COALESCE(latency_ms, -1.0)"),
        ]  # fmt: skip
    else:
        selected.append(("route", "route"))
    if monitor and not in_python:
        selected += [("similarity", "similarity"), ("segment", "segment")]
    if judged:
        selected.append(("judged", raw.format("record_id")))
        targets = {*judged, *(record_id.encode() for record_id in judged)}
    names = [name for name, _ in selected]
    columns = ", ".join(sql for _, sql in selected)
    # in ledger order: a SQLite ledger's row id, a staged table's key (no sort)
    chunks = session.query_chunks(f"SELECT {columns} FROM {CALLS} ORDER BY ord", _CHUNK)
    key = _segment_key(segment_key)
    coders = {name: _Codes() for name in names if name in _TEXTS}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names if name in _KEPT}
    if monitor and in_python:  # from the metadata, parsed in Python
        parts.update(similarity_value=[], has_similarity=[], segment=[])
        coders["segment"] = _Codes()
    judged_ids: list[tuple[int, str]] = []
    read = 0
    for chunk in chunks:
        values = dict(zip(names, zip(*chunk), strict=True))
        flags = np.array(values.pop("flags"), dtype=np.int32)
        if (flags & INVALID).any():  # checked before a timestamp is parsed
            refuse_invalid_calls(session, session.where)
        if in_python:
            texts = values.pop("metadata")
            parsed = _parse_all(texts, session.where) if monitor else None
            flags |= _metadata_flags(texts, session.where, parsed)
            if parsed is not None:
                similarity, known = _similarities(parsed)
                parts["similarity_value"].append(similarity)
                parts["has_similarity"].append(known)
                segments = [None] * len(parsed) if key is None else _segment_names(parsed, key)
                parts["segment"].append(coders["segment"].of(segments))
        parts["flags"].append(flags)
        parts["time"].append(epoch_micros(values.pop("time")))
        parts["request"].append(_fixed_width(values.pop("request")))
        if judged:
            judged_ids.extend(
                (read + row, record_id.decode() if isinstance(record_id, bytes) else record_id)
                for row, record_id in enumerate(values.pop("judged"))
                if record_id in targets
            )
        for name, column in values.items():
            if name in coders:
                parts[name].append(coders[name].of(column))
            elif _TYPES[name] is np.float64:
                known = np.array(column, dtype=np.float64)
                parts[name].append(np.where(known < 0, np.nan, known))
            else:
                parts[name].append(np.array(column, dtype=_TYPES[name]))
        read += len(chunk)
    if summary:
        _unpack_tokens(session, parts)
    return _assemble(parts, coders, judged_ids)


_TOKEN_BITS = 21
_FITS = " AND ".join(
    f"{name} BETWEEN 0 AND {2**_TOKEN_BITS - 1}"
    for name in ("input_tokens", "output_tokens", "cached_tokens")
)
_PACKED_TOKENS = f"""CASE WHEN {_FITS} THEN
    (CAST(input_tokens AS BIGINT) * {2**_TOKEN_BITS} + output_tokens) * {2**_TOKEN_BITS}
    + cached_tokens ELSE -1 END"""


def _unpack_tokens(session: LedgerSession, parts: dict[str, list[np.ndarray]]) -> None:
    """The token columns from their packed form (the rare calls that do not fit: read apart)."""
    packed = np.concatenate(parts.pop("tokens")) if parts["flags"] else np.zeros(0, np.int64)
    mask = 2**_TOKEN_BITS - 1
    columns = [packed >> (2 * _TOKEN_BITS), (packed >> _TOKEN_BITS) & mask, packed & mask]
    apart = np.flatnonzero(packed < 0)
    if len(apart):
        sql = (
            f"SELECT input_tokens, output_tokens, cached_tokens FROM {CALLS} "
            f"WHERE NOT ({_FITS}) ORDER BY ord"
        )
        rows = np.array(list(session.query(sql)), dtype=np.int64).reshape(-1, 3)
        for column, values in zip(columns, rows.T, strict=True):
            column[apart] = values
    for name, column in zip(
        ("input_tokens", "output_tokens", "cached_tokens"), columns, strict=True
    ):
        parts[name] = [column]


_TEXTS = {"route", "names", "similarity", "segment"}
_TYPES = {"cost": np.float64, "baseline": np.float64, "latency": np.float64, "tokens": np.int64}
_KEPT = {"flags", "time", "request", *_TEXTS, *_TYPES}


def _assemble(
    parts: dict[str, list[np.ndarray]], coders: dict[str, _Codes], judged: list[tuple[int, str]]
) -> CallColumns:
    empty = {"float": np.zeros(0, dtype=np.float64), "int": np.zeros(0, dtype=np.int32)}

    def whole(name: str, kind: str = "int") -> np.ndarray:
        chunks = parts.pop(name, None)  # released as soon as joined: one copy at a time
        return np.concatenate(chunks) if chunks else empty[kind]

    flags = whole("flags")
    request = request_codes(parts.pop("request", []), (flags & ALONE) != 0)
    similarity, has_similarity = empty["float"], np.zeros(0, dtype=bool)
    if "similarity_value" in parts:
        similarity = whole("similarity_value", "float")
        has_similarity = whole("has_similarity").astype(bool)
    elif "similarity" in coders:
        numbers = [
            None if text is None else _number(text) for text in coders["similarity"].values()
        ]
        codes = whole("similarity")
        known = np.array([value is not None for value in numbers], dtype=bool)
        value = np.array([value or 0.0 for value in numbers], dtype=np.float64)
        similarity, has_similarity = value[codes], known[codes]
    route, routes = whole("route"), coders["route"].values() if "route" in coders else []
    model = baseline_model = empty["int"]
    models: list[str | None] = []
    baseline_models: list[str | None] = []
    if "names" in coders:  # route, model and baseline model from their JSON array
        named = [json.loads(text) for text in coders["names"].values()]
        codes = whole("names")
        route, routes = _recoded(codes, [names[0] for names in named])
        model, models = _recoded(codes, [names[1] for names in named])
        baseline_model, baseline_models = _recoded(codes, [names[2] for names in named])
    segment, segments = whole("segment"), []
    if "segment" in coders:
        segments = coders["segment"].values()
        if "similarity" in coders:  # read in SQL: JSON texts, named here
            segment, segments = _recoded(segment, [segment_name(text) for text in segments])
    return CallColumns(
        request=request,
        time=whole("time"),
        flags=flags,
        cost=whole("cost", "float"),
        baseline=whole("baseline", "float"),
        route=route,
        routes=routes,
        model=model,
        models=models,
        baseline_model=baseline_model,
        baseline_models=baseline_models,
        input_tokens=whole("input_tokens"),
        output_tokens=whole("output_tokens"),
        cached_tokens=whole("cached_tokens"),
        latency=whole("latency", "float"),
        similarity=similarity,
        has_similarity=has_similarity,
        segment=segment,
        segments=segments,
        judged=judged,
    )


def _fixed_width(run_ids: Sequence[str] | Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run ids as a fixed-width byte array, and their lengths (numpy drops trailing NULs)."""
    encoded = (
        [run_id.encode() for run_id in run_ids]
        if run_ids and isinstance(run_ids[0], str)
        else run_ids
    )
    return np.array(encoded, dtype=bytes), np.fromiter(map(len, encoded), np.int64, len(encoded))


def request_codes(chunks: list[tuple[np.ndarray, np.ndarray]], alone: np.ndarray) -> np.ndarray:
    """A code per call: equal for the calls sharing a run id, its own for each ``alone``.

    Exact, without a Python object per run id (a million of them would hold a hundred
    MB): the ids' bytes, as 64-bit words, are hashed, sorted by the hash, and neighbours
    with equal hashes compared word for word; only if two ids share a hash are the
    words sorted themselves.
    """
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    width = max(ids.dtype.itemsize for ids, _ in chunks)
    width = max(8, width + -width % 8)  # whole 64-bit words
    ids = np.concatenate([ids.astype(f"S{width}") for ids, _ in chunks])
    length = np.concatenate([lengths for _, lengths in chunks])
    words = ids.view(np.uint64).reshape(len(ids), width // 8)
    del ids
    hashed = length.astype(np.uint64)
    for column in words.T:
        hashed = (hashed ^ column) * np.uint64(0x100000001B3)
    order = np.argsort(hashed, kind="stable")
    ranked = words[order]
    same = (length[order][1:] == length[order][:-1]) & np.all(ranked[1:] == ranked[:-1], axis=1)
    if np.any((hashed[order][1:] == hashed[order][:-1]) & ~same):  # two ids, one hash
        order = np.lexsort([*words.T[::-1], length])
        ranked = words[order]
        same = (length[order][1:] == length[order][:-1]) & np.all(ranked[1:] == ranked[:-1], axis=1)
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = np.concatenate(([0], np.cumsum(~same)))
    codes[alone] = codes.max(initial=0) + 1 + np.arange(int(alone.sum()))
    return codes


def _recoded(codes: np.ndarray, values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes of ``values[code]`` for each code: one per distinct value."""
    positions: dict[Any, int] = {}
    mapping = np.array([positions.setdefault(value, len(positions)) for value in values])
    return mapping.astype(np.int32)[codes], list(positions)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in sorted ``keys`` (empty for no keys)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def first_seen(codes: np.ndarray, names: list[Any]) -> list[Any]:
    """The non-``None`` names of ``codes`` in order of first appearance."""
    unique, first = np.unique(codes, return_index=True)
    return [
        names[code]
        for _, code in sorted(zip(first.tolist(), unique.tolist()))
        if names[code] is not None
    ]
