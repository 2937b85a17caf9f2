"""Exemplars: labelled example queries, and reading/writing them as JSONL or CSV.

A file is read whole and validated before anything is returned, so a malformed file
never half-loads. Errors name the file, the line and the field.

Example:
    >>> from langroute.router.exemplars import Exemplar
    >>> ex = Exemplar(text="Translate 'good morning' into French", route="small")
    >>> ex.id == Exemplar(text="Translate 'good morning' into French").id
    True
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from langroute.errors import ExemplarFormatError, RouterConfigError
from langroute.files.durable import atomic_write_text
from langroute.files.textfiles import (
    MAX_JSON_DEPTH,
    JSONTooDeepError,
    json_too_deep,
    load_json,
    read_utf8,
    utf8_lines,
)
from langroute.router.query_text import has_visible_text

# Field names of the shared benchmark data sets accepted as synonyms.
TEXT_ALIASES = ("text", "prompt", "query")
ROUTE_ALIASES = ("route", "label")
_KNOWN_FIELDS = {*TEXT_ALIASES, *ROUTE_ALIASES, "id", "scores", "weight", "metadata", "messages"}


def text_id(text: str) -> str:
    """Stable id of a text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Exemplar(BaseModel):
    """One labelled example query.

    Attributes:
        text: the query as a user would send it.
        route: the cheapest route that handles it well (vote mode).
        scores: quality per route or model name, each in [0, 1] (scores mode).
        weight: how much this exemplar's vote counts (> 0).
        id: stable identifier; derived from the text when absent, so adding the same
            text twice replaces the earlier exemplar.
        metadata: free-form extra fields (kept when saving).
        messages: a conversation in OpenAI chat format, given instead of ``text`` in a
            file; ``text`` is then its user turns joined by newlines (what an exemplar
            embeds), and evaluation routes the messages with its conversation strategy.
    """

    model_config = ConfigDict(extra="forbid")

    text: str
    route: str | None = None
    scores: dict[str, float] | None = None
    weight: float = 1.0
    id: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None

    @field_validator("messages")
    @classmethod
    def _messages_valid(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None:
            from langroute.router.conversation import parse_messages

            parse_messages(value)
        return value

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        # an exemplar nobody can read (zero-width or control characters only) would
        # attract every invisible query; it is as empty as a blank one
        if not has_visible_text(value):
            raise ValueError("text is empty (no visible character)")
        return value

    @field_validator("route")
    @classmethod
    def _route_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("route is empty")
        return value

    @field_validator("scores", mode="before")
    @classmethod
    def _scores_not_booleans(cls, value: Any) -> Any:
        # true/false are not qualities: taken as 1.0/0.0 they would pass for scores
        if isinstance(value, Mapping):
            for name, score in value.items():
                if isinstance(score, bool):
                    raise ValueError(
                        f"score for {name!r} must be a number in [0, 1], got {score!r} "
                        "(a boolean: write 1 or 0)"
                    )
        return value

    @field_validator("scores")
    @classmethod
    def _scores_in_unit_interval(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        for name, score in value.items():
            if not isinstance(score, (int, float)) or math.isnan(score) or not 0.0 <= score <= 1.0:
                raise ValueError(f"score for {name!r} must be a number in [0, 1], got {score!r}")
        return {name: float(score) for name, score in value.items()}

    @field_validator("weight")
    @classmethod
    def _weight_positive(cls, value: float) -> float:
        if math.isnan(value) or value <= 0 or math.isinf(value):
            raise ValueError(f"weight must be a positive finite number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _derive_id(self) -> Exemplar:
        if not self.id:
            self.id = text_id(self.text)
        return self

    def label_for(
        self, routes: list[str], score_keys: Mapping[str, str] | None = None
    ) -> str | None:
        """The route this exemplar votes for among ``routes`` (cheapest first).

        The explicit ``route`` wins; otherwise the cheapest route whose score equals
        the best score (the cheapest model that does as well as any).
        """
        if self.route is not None:
            return self.route
        scores = self.route_scores(routes, score_keys)
        if scores is None:
            return None
        best = max(scores)
        return routes[scores.index(best)]

    def route_scores(
        self, routes: list[str], score_keys: Mapping[str, str] | None = None
    ) -> list[float] | None:
        """Quality per route in route order, or None when a route has no score.

        A labelled exemplar without scores implies scores: 1 for its route and every
        stronger one, 0 for cheaper ones.
        """
        if self.scores is not None:
            keys = [(score_keys or {}).get(route, route) for route in routes]
            if all(key in self.scores for key in keys):
                return [self.scores[key] for key in keys]
        if self.route is not None and self.route in routes:
            position = routes.index(self.route)
            return [1.0 if i >= position else 0.0 for i in range(len(routes))]
        return None


def _record_to_exemplar(raw: Mapping[str, Any], path: Path, line: int) -> Exemplar:
    """Map a raw record (with accepted aliases) onto an Exemplar, naming what is wrong."""
    text_keys = [key for key in TEXT_ALIASES if key in raw]
    has_messages = raw.get("messages") not in (None, "")
    if text_keys and has_messages:
        raise ExemplarFormatError(
            f"give {text_keys[0]} or messages, not both", path=path, line=line, field="messages"
        )
    if not text_keys and not has_messages:
        raise ExemplarFormatError(
            f"missing (expected one of {', '.join(TEXT_ALIASES)}, or messages)",
            path=path,
            line=line,
            field="text",
        )
    route_keys = [key for key in ROUTE_ALIASES if raw.get(key) not in (None, "")]
    if text_keys:
        data: dict[str, Any] = {"text": raw[text_keys[0]]}
    else:
        data = _conversation_fields(raw["messages"], path, line)
    if route_keys:
        data["route"] = raw[route_keys[0]]
    for key in ("id", "scores", "weight"):
        if raw.get(key) not in (None, ""):
            data[key] = raw[key]
    metadata = dict(raw.get("metadata") or {}) if isinstance(raw.get("metadata"), dict) else {}
    if raw.get("metadata") not in (None, "") and not isinstance(raw.get("metadata"), dict):
        raise ExemplarFormatError("must be an object", path=path, line=line, field="metadata")
    # Unknown columns (source, category, contaminated, ...) are kept as metadata.
    for key, value in raw.items():
        if key not in _KNOWN_FIELDS:
            metadata[key] = value
    data["metadata"] = metadata
    try:
        return Exemplar.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        raise ExemplarFormatError(message, path=path, line=line, field=field) from exc


def _conversation_fields(messages: Any, path: Path, line: int) -> dict[str, Any]:
    """``text`` (the user turns joined) and ``messages`` of a row given as a conversation."""
    from langroute.router.conversation import parse_messages, user_texts

    try:
        turns = parse_messages(messages)
    except ValueError as exc:
        raise ExemplarFormatError(str(exc), path=path, line=line, field="messages") from exc
    return {"text": "\n".join(user_texts(turns)), "messages": messages}


def _parse_jsonl(lines: Iterable[tuple[int, str]], path: Path) -> list[tuple[int, Exemplar]]:
    """Numbered JSONL lines to ``(line, exemplar)`` pairs, errors naming file and line."""
    exemplars = []
    for line_no, line in lines:
        if not line.strip():
            continue
        try:
            raw = load_json(line)
        except JSONTooDeepError as exc:
            raise ExemplarFormatError(str(exc), path=path, line=line_no) from exc
        except json.JSONDecodeError as exc:
            raise ExemplarFormatError(f"invalid JSON: {exc.msg}", path=path, line=line_no) from exc
        if not isinstance(raw, dict):
            raise ExemplarFormatError("expected a JSON object", path=path, line=line_no)
        exemplars.append((line_no, _record_to_exemplar(raw, path, line_no)))
    return exemplars


def _read_jsonl(path: Path) -> list[tuple[int, Exemplar]]:
    with path.open("rb") as handle:
        return _parse_jsonl(utf8_lines(handle, path, ExemplarFormatError), path)


def _parse_csv_cell(column: str, value: str, path: Path, line: int) -> Any:
    if column in ("scores", "metadata") and value:
        try:
            return load_json(value)
        except JSONTooDeepError as exc:
            raise ExemplarFormatError(str(exc), path=path, line=line, field=column) from exc
        except json.JSONDecodeError as exc:
            raise ExemplarFormatError(
                f"invalid JSON object: {exc.msg}", path=path, line=line, field=column
            ) from exc
    if column.startswith("score:"):
        return value
    if column == "weight" and value:
        try:
            return float(value)
        except ValueError as exc:
            raise ExemplarFormatError(
                f"not a number: {value!r}", path=path, line=line, field=column
            ) from exc
    return value


def _read_csv(path: Path) -> list[tuple[int, Exemplar]]:
    exemplars = []
    reader = csv.DictReader(io.StringIO(read_utf8(path, ExemplarFormatError), newline=""))
    if not reader.fieldnames:
        return []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ExemplarFormatError("more cells than header columns", path=path, line=line)
        missing = [column for column, value in row.items() if value is None]
        if missing:
            raise ExemplarFormatError(
                f"missing cell: the row has {len(row) - len(missing)} cells, the header "
                f"{len(row)} columns",
                path=path,
                line=line,
                field=missing[0],
            )
        raw: dict[str, Any] = {}
        scores: dict[str, Any] = {}
        for column, value in row.items():
            if column.startswith("score:"):
                if value != "":
                    try:
                        scores[column.removeprefix("score:")] = float(value)
                    except ValueError as exc:
                        raise ExemplarFormatError(
                            f"not a number: {value!r}", path=path, line=line, field=column
                        ) from exc
                continue
            raw[column] = _parse_csv_cell(column, value, path, line)
        if scores:
            raw["scores"] = scores
        exemplars.append((line, _record_to_exemplar(raw, path, line)))
    return exemplars


def _check_rows(
    rows: list[tuple[int, Exemplar]], path: Path, routes: Sequence[str] | None
) -> list[Exemplar]:
    """Unknown routes and one id given conflicting labels are errors (file, line, field)."""
    first: dict[str, tuple[int, Exemplar]] = {}
    for line, ex in rows:
        if routes is not None and ex.route is not None and ex.route not in routes:
            raise ExemplarFormatError(
                f"unknown route {ex.route!r}; the routes are {list(routes)}",
                path=path,
                line=line,
                field="route",
            )
        seen = first.setdefault(ex.id, (line, ex))
        earlier_line, earlier = seen
        if earlier is ex:
            continue
        same = f"id {ex.id!r}" if ex.id != text_id(ex.text) else "the same text"
        for field in ("route", "scores"):
            if getattr(earlier, field) != getattr(ex, field):
                raise ExemplarFormatError(
                    f"{same} as line {earlier_line} with a different {field} "
                    f"({getattr(earlier, field)!r} there, {getattr(ex, field)!r} here); "
                    "keep one of them",
                    path=path,
                    line=line,
                    field=field,
                )
    return [ex for _, ex in rows]


MIXED_KINDS_HINT = (
    "with mode 'auto' one scored exemplar puts the whole router in scores mode, where "
    "labels count as scores (1 from their route up, 0 below); say which you mean: "
    "mode='scores' (--mode scores) or mode='vote' (--mode vote), or keep labelled and "
    "scored exemplars in separate files"
)
"""How to resolve a mix of labelled and scored exemplars (part of the error message)."""


def first_of_other_kind(exemplars: Sequence[Exemplar]) -> int | None:
    """Index of the first exemplar that is scored where the first one is labelled only.

    Or labelled only where the first one is scored; ``None`` when all are of one kind.

    Example:
        >>> first_of_other_kind([Exemplar(text="a", route="s"),
        ...                      Exemplar(text="b", scores={"s": 1.0})])
        1
    """
    if not exemplars:
        return None
    scored = bool(exemplars[0].scores)
    return next((i for i, ex in enumerate(exemplars) if bool(ex.scores) != scored), None)


def mixed_kinds_message(odd: Exemplar, labelled: int, scored: int) -> str:
    """Why ``odd`` cannot join the others: ``labelled`` and ``scored`` count them all."""
    kind = "carries scores" if odd.scores else "has a route and no scores"
    return (
        f"{kind}, but the exemplars would mix labels and scores ({labelled} labelled "
        f"only, {scored} scored): {MIXED_KINDS_HINT}"
    )


def check_one_kind(
    rows: Sequence[tuple[int, Exemplar]], path: str | os.PathLike[str], mode: str = "auto"
) -> None:
    """In mode ``auto``, a file mixing labelled and scored rows is an error (file, line).

    Raises:
        ExemplarFormatError: naming the first row of the other kind than the first row's.

    Example:
        >>> check_one_kind(load_exemplar_rows("ex.jsonl"), "ex.jsonl")
    """
    if mode != "auto":
        return
    exemplars = [ex for _, ex in rows]
    odd = first_of_other_kind(exemplars)
    if odd is not None:
        scored = sum(bool(ex.scores) for ex in exemplars)
        raise ExemplarFormatError(
            mixed_kinds_message(exemplars[odd], len(exemplars) - scored, scored),
            path=path,
            line=rows[odd][0],
            field="scores",
        )


def load_exemplar_rows(
    path: str | os.PathLike[str], *, routes: Sequence[str] | None = None
) -> list[tuple[int, Exemplar]]:
    """:func:`load_exemplars` with each exemplar's line in the file: ``(line, exemplar)``.

    Rows repeating an earlier text (or id) with the same labels are all returned.

    Raises:
        ExemplarFormatError: naming file, line and field.

    Example:
        >>> [(line, ex.route) for line, ex in load_exemplar_rows("ex.jsonl")][:2]
        [(1, 'small'), (2, 'small')]
    """
    path = Path(path)
    if not path.is_file():
        raise ExemplarFormatError("no such file", path=path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ExemplarFormatError(
            f"unsupported file type {suffix!r} (use .jsonl or .csv)", path=path
        )
    rows = _read_csv(path) if suffix == ".csv" else _read_jsonl(path)
    _check_rows(rows, path, routes)
    return rows


def load_exemplars(
    path: str | os.PathLike[str], *, routes: Sequence[str] | None = None
) -> list[Exemplar]:
    """Read exemplars from a ``.jsonl`` or ``.csv`` file.

    JSONL: one object per line with ``text`` (or ``prompt``), optional ``route`` (or
    ``label``), ``scores``, ``weight``, ``id``, ``metadata``; other keys go to metadata.
    CSV: the same columns; ``scores`` and ``metadata`` as JSON cells, or one
    ``score:<route>`` column per route. Files are UTF-8, with or without a byte-order
    mark. The same text (or id) twice with different labels is an error; with the
    same labels the later row wins.

    Args:
        path: The file.
        routes: When given, a row labelled with a route not among them is an error.

    Raises:
        ExemplarFormatError: naming file, line and field; nothing is returned then.

    Example:
        >>> exemplars = load_exemplars("ex.jsonl")
        >>> exemplars[0].text, exemplars[0].route
        ('hello there', 'small')
    """
    return [ex for _, ex in load_exemplar_rows(path, routes=routes)]


def exemplars_to_jsonl(exemplars: Iterable[Exemplar]) -> str:
    """Serialise exemplars as JSONL text (one compact object per line).

    Raises:
        ValueError: An exemplar nests deeper than the readers take (``MAX_JSON_DEPTH``).
    """
    lines = []
    for ex in exemplars:
        fields = ex.model_dump(exclude_defaults=True, exclude={"text"} if ex.messages else None)
        lines.append(_readable_json(fields | {"id": ex.id}, ex))
    return "".join(line + "\n" for line in lines)


def _readable_json(value: Any, exemplar: Exemplar) -> str:
    """``value`` as JSON that the readers take back (never a file they would refuse)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except RecursionError:
        text = None
    if text is None or json_too_deep(text):
        raise JSONTooDeepError(
            f"exemplar {exemplar.id}: nested deeper than {MAX_JSON_DEPTH} levels; not saved"
        )
    return text


def exemplars_from_jsonl(text: str, source: str | os.PathLike[str]) -> list[Exemplar]:
    """Parse JSONL text written by :func:`exemplars_to_jsonl`; errors name ``source``.

    Raises:
        ExemplarFormatError: naming ``source``, line and field.

    Example:
        >>> text = exemplars_to_jsonl([Exemplar(text="hi", route="small")])
        >>> exemplars_from_jsonl(text, "ex.jsonl")[0].route
        'small'
    """
    lines = enumerate(io.StringIO(text, newline=None), start=1)
    return [exemplar for _, exemplar in _parse_jsonl(lines, Path(source))]


def save_exemplars(exemplars: Iterable[Exemplar], path: str | os.PathLike[str]) -> Path:
    """Write exemplars to ``.jsonl`` or ``.csv``, atomically (temp file then rename).

    Example:
        >>> save_exemplars([Exemplar(text="hi", route="small")], "out.jsonl").name
        'out.jsonl'
        >>> load_exemplars("out.jsonl")[0].route
        'small'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    exemplars = list(exemplars)
    if suffix in (".jsonl", ".ndjson"):
        payload = exemplars_to_jsonl(exemplars)
    elif suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=["id", "text", "route", "weight", "scores", "metadata"]
        )
        writer.writeheader()
        for ex in exemplars:
            writer.writerow(
                {
                    "id": ex.id,
                    "text": ex.text,
                    "route": ex.route or "",
                    "weight": ex.weight,
                    "scores": json.dumps(ex.scores) if ex.scores is not None else "",
                    "metadata": _readable_json(ex.metadata, ex) if ex.metadata else "",
                }
            )
        payload = buffer.getvalue()
    else:
        raise ExemplarFormatError(
            f"unsupported file type {suffix!r} (use .jsonl or .csv)", path=path
        )
    atomic_write_text(path, payload)
    return path


LocatedRows = Sequence[tuple[str, Exemplar]]
"""Rows with where each was read: ``("file.jsonl:12", exemplar)`` or ``("row 12", ...)``."""

MIN_INFERRED_ROUTE_SHARE = 0.01
"""Routes taken from labels: in a file of 100 labelled rows or more, a label on fewer
than this share of them is refused as a likely typo (declare the routes to keep it)."""


def located_rows(data: str | os.PathLike[str] | Iterable[Exemplar]) -> list[tuple[str, Exemplar]]:
    """Rows of a file (or exemplars as they are) with where each one is, for error messages.

    Example:
        >>> located_rows("ex.jsonl")[0][0]
        'ex.jsonl:1'
    """
    if isinstance(data, (str, os.PathLike)):
        return [(f"{data}:{line}", ex) for line, ex in load_exemplar_rows(data)]
    return [(f"row {number}", ex) for number, ex in enumerate(data, start=1)]


def check_scores_complete(rows: LocatedRows) -> None:
    """A set where some rows have scores must have them on every row.

    Otherwise the evaluation would silently switch to the route labels (or find none).

    Raises:
        RouterConfigError: Naming the first row without scores and one with them.
    """
    scored = next((where for where, ex in rows if ex.scores), None)
    if scored is None:
        return
    for where, ex in rows:
        if not ex.scores:
            raise RouterConfigError(
                f"{where}: no scores, while {scored} has them: give every row of a scored "
                "set its scores"
            )


def check_route_labels(
    rows: LocatedRows,
    routes: Sequence[str] | None = None,
    *,
    out_of_scope: Iterable[str] = (),
) -> list[str]:
    """Check the rows' route labels; the routes (``routes``, or inferred from the labels).

    A label that differs from a route only in case (``Large`` for ``large``) is an
    error. When ``routes`` is ``None`` they are the labels in order of first appearance
    (``out_of_scope`` labels left out), and then: fewer than two is an error (one route
    makes every figure 100%), and in a set of 100 labelled rows or more a label on
    fewer than :data:`MIN_INFERRED_ROUTE_SHARE` of them is an error (one typo would
    otherwise become a route, even the strongest route and the fallback).

    Raises:
        RouterConfigError: Naming the row (``file:line``), the label and the routes.

    Example:
        >>> rows = [("a.jsonl:1", Exemplar(text="hi", route="small")),
        ...         ("a.jsonl:2", Exemplar(text="prove it", route="large"))]
        >>> check_route_labels(rows)
        ['small', 'large']
        >>> typo = ("a.jsonl:3", Exemplar(text="x", route="Large"))
        >>> try:
        ...     check_route_labels([*rows, typo], ["small", "large"])
        ... except RouterConfigError as exc:
        ...     print(str(exc)[:77])
        a.jsonl:3: label 'Large' is not a route but differs from 'large' only in case
    """
    skip = set(out_of_scope)
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for where, ex in rows:
        if ex.route is not None and ex.route not in skip:
            counts[ex.route] = counts.get(ex.route, 0) + 1
            first.setdefault(ex.route, where)
    if routes is None:
        known: list[str] = []
        for label in counts:  # case twins first: they are the likelier mistake
            twin = next((r for r in known if r.casefold() == label.casefold()), None)
            if twin is not None:
                raise RouterConfigError(
                    f"{first[label]}: label {label!r} differs from {twin!r} "
                    f"({first[twin]}) only in case: labels are case-sensitive route names"
                )
            known.append(label)
        labelled = sum(counts.values())
        if len(known) == 1:
            raise RouterConfigError(
                f"{first[known[0]]}: every labelled row names one route ({known[0]!r}): a "
                "router needs two or more (with one, every query goes there and every "
                "figure is 100%)"
            )
        if labelled >= 100:
            for label in known:
                if counts[label] < labelled * MIN_INFERRED_ROUTE_SHARE:
                    raise RouterConfigError(
                        f"{first[label]}: label {label!r} is on {counts[label]} of {labelled} "
                        f"labelled rows (under {MIN_INFERRED_ROUTE_SHARE:.0%}): a typo? "
                        f"Declare the routes (--routes, cheapest first) to use it; "
                        f"labels: {known}"
                    )
        return known
    folded = {route.casefold(): route for route in routes}
    for label, where in first.items():
        twin = folded.get(label.casefold())
        if label not in routes and twin is not None:
            raise RouterConfigError(
                f"{where}: label {label!r} is not a route but differs from {twin!r} only "
                f"in case (routes: {list(routes)})"
            )
    return list(routes)
