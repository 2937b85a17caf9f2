"""Routers kept in Postgres: settings, exemplars with their vectors, a change sequence.

Each router is a row of ``langroute_routers`` (settings, embedder fingerprint and
dimension, calibration, tuning, and ``seq``: the number of its last change) and rows of
``langroute_exemplars`` (the exemplar as JSON, its vector as float32 bytes, and the
``seq`` of the change that wrote it). A removal leaves a tombstone row. Every change
takes the router row's lock, bumps ``seq`` and sends ``NOTIFY langroute_changes`` with
the router's name, so changes commit in sequence order and a follower that has applied
everything up to ``seq`` only needs the rows above it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from langroute.errors import RouterStoreError
from langroute.postgres.database import connect, ensure_schema, redact
from langroute.router.exemplars import Exemplar
from langroute.router.settings import RouterSettings

if TYPE_CHECKING:
    import psycopg

    from langroute.router.exemplar_router import ExemplarRouter

__all__ = ["CHANNEL", "Changes", "RouterRow", "read_changes", "read_router", "write_change"]

CHANNEL = "langroute_changes"
"""The LISTEN/NOTIFY channel; the payload is the changed router's name."""


@dataclass
class RouterRow:
    """A shared router's row: what a replica needs besides the exemplars."""

    name: str
    seq: int
    settings_seq: int
    settings: RouterSettings
    fingerprint: str
    dimension: int
    calibration: dict[str, Any] | None
    tuning: dict[str, Any] | None


@dataclass
class Changes:
    """Exemplar rows written after some sequence number, in sequence order."""

    seq: int
    """The sequence number these changes bring a follower to."""
    added: list[Exemplar]
    vectors: np.ndarray
    removed: list[str]


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def read_router(conn: psycopg.Connection, name: str, url: str) -> RouterRow:
    """The router row ``name``.

    Raises:
        RouterStoreError: No router of that name, or its settings are not valid.
    """
    row = conn.execute(
        "SELECT seq, settings_seq, settings, embedder, dimension, calibration, tuning "
        "FROM langroute_routers WHERE name = %s",
        (name,),
    ).fetchone()
    if row is None:
        raise RouterStoreError(
            f"no router named {name!r} in {redact(url)}; publish one first "
            "(langroute publish DIR URL, or langroute.postgres.publish_router)"
        )
    try:
        settings = RouterSettings.model_validate(row[2])
    except ValueError as exc:
        raise RouterStoreError(
            f"router {name!r} in {redact(url)}: invalid settings: {exc}"
        ) from exc
    return RouterRow(name, int(row[0]), int(row[1]), settings, row[3], int(row[4]), row[5], row[6])


def read_changes(
    conn: psycopg.Connection, name: str, after: int, dimension: int, url: str
) -> Changes:
    """Exemplar rows of router ``name`` with ``seq > after`` (all live ones for ``after=-1``).

    Raises:
        RouterStoreError: A row does not hold a valid exemplar or vector (id named).
    """
    query = (
        "SELECT id, seq, deleted, body, vector FROM langroute_exemplars "
        "WHERE router = %s AND seq > %s ORDER BY seq"
    )
    if after < 0:
        query = query.replace("seq > %s", "seq > %s AND NOT deleted")
    added: dict[str, tuple[Exemplar, bytes]] = {}
    removed: dict[str, None] = {}
    top = max(after, 0)
    with conn.cursor() as cursor:
        cursor.execute(query, (name, after), prepare=False)
        for key, seq, deleted, body, vector in cursor:
            top = max(top, int(seq))
            if deleted:
                added.pop(key, None)
                removed[key] = None
                continue
            try:
                exemplar = Exemplar.model_validate(body)
            except ValueError as exc:
                raise RouterStoreError(
                    f"router {name!r} in {redact(url)}: exemplar {key!r} is not valid: {exc}"
                ) from exc
            if vector is None or len(vector) != 4 * dimension:
                raise RouterStoreError(
                    f"router {name!r} in {redact(url)}: exemplar {key!r} has no vector of "
                    f"{dimension} float32 values"
                )
            removed.pop(key, None)
            added[key] = (exemplar, vector)
    vectors = (
        np.frombuffer(b"".join(v for _, v in added.values()), dtype="<f4")
        .astype(np.float32)
        .reshape(len(added), dimension)
    )
    return Changes(top, [ex for ex, _ in added.values()], vectors, list(removed))


def _settings_json(settings: RouterSettings) -> str:
    return json.dumps(settings.model_dump(mode="json"))


def write_change(
    conn: psycopg.Connection,
    name: str,
    *,
    added: Sequence[Exemplar] = (),
    vectors: np.ndarray | None = None,
    removed: Sequence[str] = (),
    settings: RouterSettings | None = None,
) -> int:
    """Write one change of router ``name`` in the current transaction; its sequence number.

    Takes the router row's lock first: concurrent writers of one router commit in
    sequence order. The caller commits (``NOTIFY`` is delivered at commit).
    """
    row = conn.execute(
        "UPDATE langroute_routers SET seq = seq + 1, updated_at = now() WHERE name = %s "
        "RETURNING seq",
        (name,),
    ).fetchone()
    if row is None:
        raise RouterStoreError(f"no router named {name!r}: publish one first")
    seq = int(row[0])
    if removed:
        conn.execute(
            "UPDATE langroute_exemplars SET deleted = true, body = NULL, vector = NULL, "
            "seq = %s WHERE router = %s AND id = ANY(%s)",
            (seq, name, list(removed)),
        )
    if added:
        assert vectors is not None and len(vectors) == len(added)
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO langroute_exemplars (router, id, seq, deleted, body, vector) "
                "VALUES (%s, %s, %s, false, %s::jsonb, %s) ON CONFLICT (router, id) DO UPDATE "
                "SET seq = excluded.seq, deleted = false, body = excluded.body, "
                "vector = excluded.vector",
                [
                    (name, ex.id, seq, ex.model_dump_json(), _vector_bytes(vector))
                    for ex, vector in zip(added, vectors)
                ],
            )
    if settings is not None:
        conn.execute(
            "UPDATE langroute_routers SET settings = %s::jsonb, settings_seq = %s WHERE name = %s",
            (_settings_json(settings), seq, name),
        )
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
    return seq


def publish(router: ExemplarRouter, url: str, name: str) -> int:
    """Write ``router`` as shared router ``name`` (replacing one of that name); its seq.

    Replicas following ``name`` pick up the new exemplars and settings as one change.

    Raises:
        DatabaseUnavailableError: The database cannot be reached.
    """
    exemplars = router.exemplars
    vectors = router.vectors()
    with connect(url) as conn:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute(
                "INSERT INTO langroute_routers "
                "(name, settings, embedder, dimension, calibration, tuning) "
                "VALUES (%s, %s::jsonb, %s, %s, %s::jsonb, %s::jsonb) ON CONFLICT (name) DO UPDATE "
                "SET settings = excluded.settings, embedder = excluded.embedder, "
                "dimension = excluded.dimension, calibration = excluded.calibration, "
                "tuning = excluded.tuning",
                (
                    name,
                    _settings_json(router.settings),
                    router.embedder.fingerprint,
                    router.embedder.dimension,
                    json.dumps(router.calibration) if router.calibration is not None else None,
                    json.dumps(router.tuning) if router.tuning is not None else None,
                ),
            )
            keep = [ex.id for ex in exemplars]
            stale = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM langroute_exemplars WHERE router = %s AND NOT deleted "
                    "AND NOT (id = ANY(%s))",
                    (name, keep),
                )
            ]
            return write_change(
                conn,
                name,
                added=exemplars,
                vectors=vectors,
                removed=stale,
                settings=router.settings,
            )
