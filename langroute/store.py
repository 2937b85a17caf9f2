"""Saving and loading routers: a directory with a manifest, exemplars and a FAISS index.

Layout of a saved router::

    manifest.json      format version, embedder fingerprint and dimension, settings,
                       and the SHA-256 of every other file
    exemplars.jsonl    the exemplars, one per line
    ids.npy            FAISS id of each exemplar, in file order (int64, no pickle)
    index.faiss        the FAISS index (vectors included: loading never re-embeds)

A save writes a complete new directory beside the target and swaps it in with renames,
so a crash leaves the previous copy loadable. Loading verifies checksums, format
version, embedder fingerprint and dimension before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from langroute.embedders import Embedder, as_embedder
from langroute.errors import EmbedderMismatchError, ExemplarFormatError, RouterStoreError
from langroute.exemplars import Exemplar, exemplars_to_jsonl, load_exemplars
from langroute.index import VectorIndex
from langroute.settings import RouterSettings

FORMAT_NAME = "langroute-router"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXEMPLARS = "exemplars.jsonl"
IDS = "ids.npy"
INDEX = "index.faiss"


class FileEntry(BaseModel):
    """Checksum of one stored file."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int


class EmbedderInfo(BaseModel):
    """Which embedder produced the stored vectors."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    dimension: int


class Manifest(BaseModel):
    """The manifest of a saved router (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["langroute-router"]
    format_version: int
    langroute_version: str
    created_at: datetime
    embedder: EmbedderInfo
    settings: dict[str, Any]
    index_kind: Literal["flat", "hnsw"]
    exemplar_count: int
    files: dict[str, FileEntry]
    calibration: dict[str, Any] | None = None


def _sha256(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return FileEntry(sha256=digest.hexdigest(), bytes=size)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class IndexSnapshot:
    """What a router wrote when it saved its index: one consistent state."""

    exemplars: list[Exemplar]
    """The exemplars, in index order."""
    faiss_ids: list[int]
    """FAISS id of each exemplar, in the same order."""
    kind: Literal["flat", "hnsw"]


IndexWriter = Callable[[Path], IndexSnapshot]
"""Writes a FAISS index to a path and says what it holds."""


def save_router(
    path: Path,
    *,
    settings: RouterSettings,
    embedder: Embedder,
    write_index: IndexWriter,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write a router to directory ``path`` atomically (see module docs).

    ``write_index`` (:meth:`ExemplarRouter.write_index`) writes a consistent snapshot
    of the index and says which exemplars it holds.
    """
    from langroute import __version__

    if path.exists() and not path.is_dir():
        raise RouterStoreError(f"{path} exists and is not a directory; nothing was written")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise RouterStoreError(
            f"{path} is a non-empty directory that does not hold a saved router; "
            "refusing to replace it (nothing was written)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.saving-"))
    try:
        snapshot = write_index(staging / INDEX)
        exemplars = snapshot.exemplars
        _write_file(staging / EXEMPLARS, exemplars_to_jsonl(exemplars).encode("utf-8"))
        with (staging / IDS).open("wb") as handle:
            np.save(handle, np.asarray(snapshot.faiss_ids, dtype=np.int64), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        manifest = Manifest(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            langroute_version=__version__,
            created_at=datetime.now(timezone.utc),
            embedder=EmbedderInfo(fingerprint=embedder.fingerprint, dimension=embedder.dimension),
            settings=settings.model_dump(mode="json"),
            index_kind=snapshot.kind,
            exemplar_count=len(exemplars),
            files={name: _sha256(staging / name) for name in (EXEMPLARS, IDS, INDEX)},
            calibration=calibration,
        )
        _write_file(staging / MANIFEST, manifest.model_dump_json(indent=2).encode("utf-8"))
        _fsync_dir(staging)
        # Swap: old copy aside, new copy in, old copy removed. A crash in between leaves
        # either the old directory or its ".old" twin, which load() finds.
        retired = None
        if path.exists():
            retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            retired.rmdir()
            os.replace(path, retired)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _recover(path: Path) -> Path:
    """A save interrupted between its two renames leaves only the ``.old`` copy."""
    if path.exists():
        return path
    leftovers = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for candidate in reversed(leftovers):
        if (candidate / MANIFEST).is_file():
            warnings.warn(
                f"{path} is missing; loading the copy left by an interrupted save: {candidate}",
                stacklevel=3,
            )
            return candidate
    raise RouterStoreError(f"no saved router at {path}")


def read_manifest(path: Path) -> Manifest:
    """Read and validate ``manifest.json`` of a saved router directory."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RouterStoreError(f"{path} holds no {MANIFEST}: not a saved langroute router")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RouterStoreError(f"{manifest_path} is corrupted (not JSON): {exc}") from exc
    if not isinstance(raw, dict):
        raise RouterStoreError(f"{manifest_path} is not a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise RouterStoreError(f"{manifest_path} is not a langroute manifest")
    version = raw.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise RouterStoreError(
            f"{manifest_path} has format version {version}; this langroute reads up to "
            f"{FORMAT_VERSION}: upgrade langroute"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RouterStoreError(f"{manifest_path} is invalid: {problems}") from exc


@dataclass(frozen=True)
class StoredRouter:
    """What a saved router directory holds, checked, for :meth:`ExemplarRouter.from_index`."""

    settings: RouterSettings
    embedder: Embedder
    exemplars: list[Exemplar]
    index: VectorIndex
    calibration: dict[str, Any] | None


def load_router(path: Path, embedder: Any = None) -> StoredRouter:
    """Read a router saved by :func:`save_router` (checks everything before use)."""
    path = _recover(path)
    manifest = read_manifest(path)
    for name in (EXEMPLARS, IDS, INDEX):
        entry = manifest.files.get(name)
        file = path / name
        if entry is None:
            raise RouterStoreError(f"{path / MANIFEST} lists no checksum for {name}")
        if not file.is_file():
            raise RouterStoreError(f"{file} is missing")
        actual = _sha256(file)
        if actual.bytes != entry.bytes:
            raise RouterStoreError(
                f"{file} is truncated or altered: {actual.bytes} bytes, expected {entry.bytes}"
            )
        if actual.sha256 != entry.sha256:
            raise RouterStoreError(f"{file} is corrupted: checksum mismatch")
    try:
        settings = RouterSettings.model_validate(manifest.settings)
    except ValidationError as exc:
        raise RouterStoreError(f"{path / MANIFEST}: invalid settings: {exc}") from exc
    resolved = as_embedder(embedder)
    if resolved.fingerprint != manifest.embedder.fingerprint:
        raise EmbedderMismatchError(
            f"{path} was built with embedder {manifest.embedder.fingerprint!r}, but "
            f"{resolved.fingerprint!r} was given; pass the same embedder or rebuild the router"
        )
    if resolved.dimension != manifest.embedder.dimension:
        raise EmbedderMismatchError(
            f"{path} stores {manifest.embedder.dimension}-dimensional vectors, but the "
            f"embedder produces {resolved.dimension}"
        )
    try:
        exemplars = load_exemplars(path / EXEMPLARS)
        faiss_ids = np.load(path / IDS, allow_pickle=False)
    except (ExemplarFormatError, ValueError, OSError) as exc:
        raise RouterStoreError(f"{path} could not be read: {exc}") from exc
    if (
        faiss_ids.ndim != 1
        or len(faiss_ids) != len(exemplars)
        or len(exemplars) != manifest.exemplar_count
    ):
        raise RouterStoreError(f"{path}: exemplar count does not match the index ids")
    index = VectorIndex(manifest.embedder.dimension, settings.index)
    try:
        index.read(path / INDEX, [ex.id for ex in exemplars], [int(i) for i in faiss_ids])
    except (RuntimeError, ValueError) as exc:
        raise RouterStoreError(f"{path / INDEX} could not be read: {exc}") from exc
    return StoredRouter(settings, resolved, exemplars, index, manifest.calibration)
