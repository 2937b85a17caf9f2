"""Saving and loading routers: a directory with a manifest, exemplars and a FAISS index.

Layout of a saved router::

    manifest.json      format version, embedder fingerprint and dimension, settings,
                       the SHA-256 of every other file, and its own SHA-256
    exemplars.jsonl    the exemplars, one per line
    ids.npy            FAISS id of each exemplar, in file order (int64, no pickle)
    index.faiss        the FAISS index (vectors included: loading never re-embeds)

A save writes a complete new directory beside the target (``.NAME.saving-XXXXXXXX``)
and swaps it in with renames (the previous copy goes aside as ``.NAME.old-XXXXXXXX``,
then is removed), so a crash leaves the previous copy loadable. A saved directory is
never changed in place. The directory keeps its permission bits, and a router reached
through a symlink stays a symlink: the copy is swapped where the link points.

Saves of one router take turns: each holds an exclusive ``flock`` on ``.NAME.lock``
beside the router, and removes the file when done. The next save or load cleans up
after a killed save: it removes the copies it left, and puts the previous copy back
when the kill came between the two renames.

Loading opens the directory and every file in it before reading any, so it reads one
copy even while another process saves over it: the old or the new, never a mix. It
checks the manifest's own checksum and types, the format version, each file's checksum,
the embedder fingerprint and dimension before anything is used. (The lock and the
one-copy reads need POSIX ``flock`` and directory descriptors; elsewhere saves are not
serialised, killed saves are not cleaned up, and loads racing a save may fail.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langroute.embedders import (
    Embedder,
    as_embedder,
    conversion_hint,
    embedder_for_fingerprint,
)
from langroute.errors import EmbedderMismatchError, ExemplarFormatError, RouterStoreError
from langroute.files.durable import fsync_dir, write_synced
from langroute.router.exemplars import Exemplar, exemplars_from_jsonl, exemplars_to_jsonl
from langroute.router.index import VectorIndex
from langroute.router.settings import RouterSettings

FORMAT_NAME = "langroute-router"
FORMAT_VERSION = 2
"""The version this langroute writes. 2: the manifest holds its own SHA-256."""
READABLE_FORMAT_VERSIONS = (1, 2)
"""Versions this langroute reads; 1 (no manifest checksum) is still read."""
MANIFEST = "manifest.json"
EXEMPLARS = "exemplars.jsonl"
IDS = "ids.npy"
INDEX = "index.faiss"
MANIFEST_CHECKSUM = "manifest_sha256"
"""Manifest field: SHA-256 of the manifest's other fields as canonical JSON."""

_DATA_FILES = (EXEMPLARS, IDS, INDEX)
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_READ_ATTEMPTS = 20
"""How often a load reopens a router that concurrent saves keep replacing."""
_DIR_FDS = os.open in os.supports_dir_fd
"""POSIX: a load opens the files through its directory's descriptor."""


class FileEntry(BaseModel):
    """Checksum of one stored file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sha256: str
    bytes: int = Field(ge=0)


class EmbedderInfo(BaseModel):
    """Which embedder produced the stored vectors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    fingerprint: str
    dimension: int = Field(ge=1)


class Manifest(BaseModel):
    """The manifest of a saved router (unknown keys and loose types are an error)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["langroute-router"]
    format_version: int
    langroute_version: str
    created_at: datetime
    embedder: EmbedderInfo
    settings: dict[str, Any]
    index_kind: Literal["flat", "hnsw"]
    exemplar_count: int = Field(ge=0)
    files: dict[str, FileEntry]
    calibration: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None
    """What tuning chose, with its validation figures (``TuningRecord``); absent if untuned."""
    manifest_sha256: str | None = None
    """Required from format version 2 on (see :data:`MANIFEST_CHECKSUM`)."""


def _manifest_digest(body: dict[str, Any]) -> str:
    """SHA-256 of a manifest's fields (all but the checksum) as canonical JSON.

    Canonical: keys sorted, no spaces, ASCII; any change to a key, a value or the
    structure changes the digest, while indentation does not.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _digest(handle: BinaryIO) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
    return FileEntry(sha256=digest.hexdigest(), bytes=size)


def _sha256(path: Path) -> FileEntry:
    with path.open("rb") as handle:
        return _digest(handle)


# -- what sits beside a router: its lock file and the copies of unfinished saves --------


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _sibling_name(target: Path, kind: Literal["saving", "old"]) -> str:
    token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(8))
    return f".{target.name}.{kind}-{token}"


def _leftovers(target: Path) -> list[Path]:
    """Copies that unfinished saves of ``target`` left beside it (partial or retired)."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(saving|old)-[a-z0-9_]{8}")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    found = []
    for name in names:
        candidate = target.parent / name
        if not pattern.fullmatch(name) or candidate.is_symlink() or not candidate.is_dir():
            continue
        try:
            contents = set(os.listdir(candidate))
        except OSError:
            continue
        if contents <= {MANIFEST, *_DATA_FILES}:  # never touch anything but our own files
            found.append(candidate)
    return found


def _newest_retired(leftovers: list[Path]) -> Path | None:
    """The copy a save moved aside most recently, if it is complete."""
    retired = [
        p
        for p in leftovers
        if p.name.rsplit(".", 1)[1].startswith("old-") and (p / MANIFEST).is_file()
    ]
    return max(retired, key=lambda p: p.stat().st_mtime_ns, default=None)


def _remove_tree(path: Path) -> None:
    with suppress(OSError):
        os.chmod(path, 0o700)  # a copy saved read-only must still be removable
    shutil.rmtree(path, ignore_errors=True)


def _acquire_lock(target: Path, *, wait: bool) -> int | None:
    """Lock ``target`` against other saves: the lock file's descriptor, or None.

    None when ``wait`` is false and another process holds the lock, or where the file
    system offers no locks. Raises OSError when the lock file cannot be created.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no save lock
        return None
    lock_path = _lock_path(target)
    while True:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:  # held elsewhere (no wait), or no locks on this file system
            os.close(fd)
            return None
        try:
            current: os.stat_result | None = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(fd)):
            return fd
        os.close(fd)  # the holder we waited for removed that file: lock the new one


def _release_lock(target: Path, fd: int | None) -> None:
    if fd is None:
        return
    with suppress(OSError):
        _lock_path(target).unlink()
    os.close(fd)


def _save_running(target: Path) -> bool:
    """Whether another process holds the save lock of ``target`` right now."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no save lock
        return False
    try:
        fd = os.open(_lock_path(target), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _clean_up(target: Path) -> None:
    """Clear up after killed saves; call with the lock held (so no save is running)."""
    leftovers = _leftovers(target)
    if not target.exists():
        retired = _newest_retired(leftovers)
        if retired is not None:  # killed between its renames: the previous copy goes back
            os.replace(retired, target)
            leftovers.remove(retired)
            warnings.warn(
                f"{target} was missing after an interrupted save; restored the previous "
                f"copy from {retired.name}",
                stacklevel=5,
            )
    for leftover in leftovers:
        _remove_tree(leftover)


def _tidy(target: Path) -> None:
    """Before a load: clean up after killed saves, unless a save is running now."""
    if not _leftovers(target) and not _lock_path(target).exists():
        return
    try:
        fd = _acquire_lock(target, wait=False)
    except OSError:  # a folder we cannot write to: load what is there
        return
    try:
        if fd is not None:
            _clean_up(target)
    except OSError:
        pass  # cleaning is a courtesy; the load goes on with what is there
    finally:
        _release_lock(target, fd)


# -- saving -------------------------------------------------------------------------------


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


def _cannot_save(path: Path, exc: OSError) -> RouterStoreError:
    """A clear error for a save that could not start (nothing was written)."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        for ancestor in path.parents:
            if ancestor.exists() and not ancestor.is_dir():
                return RouterStoreError(
                    f"cannot save to {path}: {ancestor} is a file, not a directory; "
                    "nothing was written"
                )
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = Path(exc.filename).parent if exc.filename else path.parent
        return RouterStoreError(
            f"cannot save to {path}: {where} is not writable ({reason}); nothing was written"
        )
    return RouterStoreError(
        f"cannot save to {path}: {exc.filename or path}: {reason}; nothing was written"
    )


def _save_target(path: Path) -> Path:
    """The directory a save replaces: ``path``, or where ``path`` links to."""
    if not path.is_symlink():
        target = path
    else:
        target = Path(os.path.realpath(path))
        if not target.exists() and _newest_retired(_leftovers(target)) is None:
            raise RouterStoreError(
                f"{path} is a symlink to {os.readlink(path)}, which does not exist "
                f"(resolved: {target}); create it or remove the link. Nothing was written"
            )
    if target.exists() and not target.is_dir():
        raise RouterStoreError(f"{path} exists and is not a directory; nothing was written")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise RouterStoreError(
            f"{path} is a non-empty directory that does not hold a saved router; "
            "refusing to replace it (nothing was written)"
        )
    return target


def _new_copy_dir(target: Path) -> Path:
    """Create an empty directory beside ``target`` for a new copy (mode from the umask)."""
    while True:
        staging = target.parent / _sibling_name(target, "saving")
        try:
            os.mkdir(staging, 0o777)
        except FileExistsError:
            continue
        return staging


def save_router(
    path: Path,
    *,
    settings: RouterSettings,
    embedder: Embedder,
    write_index: IndexWriter,
    calibration: dict[str, Any] | None = None,
    tuning: dict[str, Any] | None = None,
) -> Path:
    """Write a router to directory ``path`` atomically (see module docs).

    ``write_index`` (:meth:`ExemplarRouter.write_index`) writes a consistent snapshot
    of the index and says which exemplars it holds.

    Raises:
        RouterStoreError: ``path`` is not ours to replace, or cannot be written (a
            read-only folder, a file in the way, a symlink to nothing); nothing is written.
    """
    target = _save_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(target, wait=True)
    except OSError as exc:
        raise _cannot_save(path, exc) from exc
    try:
        if lock is not None:
            with suppress(OSError):  # cleaning is a courtesy; the save goes on regardless
                _clean_up(target)
        try:
            staging = _new_copy_dir(target)
        except OSError as exc:
            raise _cannot_save(path, exc) from exc
        _write_copy(staging, target, settings, embedder, write_index, calibration, tuning)
    finally:
        _release_lock(target, lock)
    return path


def _write_copy(
    staging: Path,
    target: Path,
    settings: RouterSettings,
    embedder: Embedder,
    write_index: IndexWriter,
    calibration: dict[str, Any] | None,
    tuning: dict[str, Any] | None = None,
) -> None:
    """Fill ``staging`` with a complete copy, then swap it in for ``target``."""
    from langroute import __version__

    retired = None
    try:
        snapshot = write_index(staging / INDEX)
        exemplars = snapshot.exemplars
        write_synced(staging / EXEMPLARS, exemplars_to_jsonl(exemplars).encode("utf-8"))
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
            files={name: _sha256(staging / name) for name in _DATA_FILES},
            calibration=calibration,
            tuning=tuning,
        )
        exclude = {MANIFEST_CHECKSUM} | ({"tuning"} if tuning is None else set())
        fields = json.loads(manifest.model_dump_json(exclude=exclude))
        fields[MANIFEST_CHECKSUM] = _manifest_digest(fields)
        write_synced(
            staging / MANIFEST, json.dumps(fields, indent=2, ensure_ascii=False).encode("utf-8")
        )
        fsync_dir(staging)
        if target.is_dir():
            os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
        # Swap: old copy aside, new copy in, old copy removed. A crash in between leaves
        # only the old copy's ".old" twin, which the next load or save puts back.
        if target.exists():
            retired = target.parent / _sibling_name(target, "old")
            os.replace(target, retired)
        os.replace(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        _remove_tree(staging)
        raise
    if retired is not None:
        _remove_tree(retired)


# -- loading ------------------------------------------------------------------------------


def _problems(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        field = prefix + ".".join(str(p) for p in err["loc"])
        parts.append(f"field {field.rstrip('.')!r}: {err['msg']}")
    return "; ".join(parts)


def _parse_manifest(data: bytes, manifest_path: Path) -> Manifest:
    """Check and parse the bytes of a manifest; errors name the file and the field."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RouterStoreError(f"{manifest_path} is corrupted (not JSON): {exc}") from exc
    if not isinstance(raw, dict):
        raise RouterStoreError(f"{manifest_path} is not a JSON object")
    if MANIFEST_CHECKSUM in raw:
        fields = {key: value for key, value in raw.items() if key != MANIFEST_CHECKSUM}
        if raw[MANIFEST_CHECKSUM] != _manifest_digest(fields):
            raise RouterStoreError(
                f"{manifest_path} is corrupted: checksum mismatch (field "
                f"{MANIFEST_CHECKSUM!r} does not match the other fields)"
            )
    if raw.get("format") != FORMAT_NAME:
        raise RouterStoreError(f"{manifest_path} is not a langroute manifest")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RouterStoreError(
            f"{manifest_path}: field 'format_version' must be an integer, not {version!r}"
        )
    if version > FORMAT_VERSION:
        raise RouterStoreError(
            f"{manifest_path} has format version {version}; this langroute reads up to "
            f"{FORMAT_VERSION}: upgrade langroute"
        )
    if version not in READABLE_FORMAT_VERSIONS:
        raise RouterStoreError(
            f"{manifest_path}: field 'format_version' is {version}, which no langroute "
            f"wrote (known: {', '.join(map(str, READABLE_FORMAT_VERSIONS))})"
        )
    if version >= 2 and MANIFEST_CHECKSUM not in raw:
        raise RouterStoreError(
            f"{manifest_path}: field {MANIFEST_CHECKSUM!r} is missing "
            f"(format version {version} requires it)"
        )
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise RouterStoreError(f"{manifest_path} is invalid: {_problems(exc)}") from exc


def read_manifest(path: Path) -> Manifest:
    """Read and validate ``manifest.json`` of a saved router directory."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RouterStoreError(f"{path} holds no {MANIFEST}: not a saved langroute router")
    return _parse_manifest(manifest_path.read_bytes(), manifest_path)


@dataclass(frozen=True)
class StoredRouter:
    """What a saved router directory holds, checked, for :meth:`ExemplarRouter.from_index`."""

    settings: RouterSettings
    embedder: Embedder
    exemplars: list[Exemplar]
    index: VectorIndex
    calibration: dict[str, Any] | None
    tuning: dict[str, Any] | None = None


def _copy_to_read(path: Path, target: Path) -> Path:
    """The directory to read: ``target``, or the copy an interrupted save moved aside."""
    if target.exists():
        return target
    retired = _newest_retired(_leftovers(target))
    if retired is not None:
        if not _save_running(target):  # otherwise a save is between its renames right now
            warnings.warn(
                f"{path} is missing; loading the copy left by an interrupted save: {retired}",
                stacklevel=4,
            )
        return retired
    if target.exists():  # a save finished meanwhile
        return target
    raise RouterStoreError(f"no saved router at {path}")


def _still_linked(directory: Path, dir_fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(directory), os.fstat(dir_fd))
    except FileNotFoundError:
        return False


def _open_file(directory: Path, name: str, dir_fd: int | None) -> BinaryIO:
    if dir_fd is None:  # pragma: no cover - platforms without directory descriptors
        return (directory / name).open("rb")
    return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dir_fd), "rb")


@contextmanager
def _open_copy(
    directory: Path, *, retired: bool = False
) -> Iterator[dict[str, BinaryIO | None] | None]:
    """Open ``directory`` and each file of a saved router in it (None for a missing file).

    Open files keep one copy readable whatever saves do meanwhile. Yields None when
    the directory was replaced or removed before every file was open: open again.
    ``retired``: the copy a save moved aside; it was whole when moved, so a file missing
    from it is being removed by the save that just finished (open again: the new copy).
    """
    dir_fd = None
    if _DIR_FDS:
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            yield None
            return
        except NotADirectoryError as exc:
            raise RouterStoreError(f"{directory} is a file, not a saved langroute router") from exc
        except OSError as exc:
            raise RouterStoreError(f"cannot read {directory}: {exc.strerror or exc}") from exc
    handles: dict[str, BinaryIO | None] = {}
    replaced = False
    try:
        for name in (MANIFEST, *_DATA_FILES):
            try:
                handles[name] = _open_file(directory, name, dir_fd)
            except FileNotFoundError:
                if retired or (dir_fd is not None and not _still_linked(directory, dir_fd)):
                    replaced = True
                    break
                handles[name] = None
            except OSError as exc:
                raise RouterStoreError(
                    f"cannot read {directory / name}: {exc.strerror or exc}"
                ) from exc
        yield None if replaced else handles
    finally:
        for handle in handles.values():
            if handle is not None:
                handle.close()
        if dir_fd is not None:
            os.close(dir_fd)


def stored_embedder(fingerprint: str, dimension: int, embedder: Any, where: str) -> Embedder:
    """The embedder for vectors stored by ``fingerprint``: ``embedder`` checked, or rebuilt.

    Args:
        fingerprint: The stored embedder's fingerprint.
        dimension: The stored vectors' dimension.
        embedder: The embedder given by the caller, or ``None`` to build one from the
            fingerprint.
        where: Names the stored router in messages (a directory, a database URL).

    Raises:
        EmbedderMismatchError: ``embedder`` is another model, or of another dimension.
    """
    resolved = (
        as_embedder(embedder) if embedder is not None else embedder_for_fingerprint(fingerprint)
    )
    if resolved.fingerprint != fingerprint:
        raise EmbedderMismatchError(
            f"{where} was built with embedder {fingerprint!r}, but "
            f"{resolved.fingerprint!r} was given; {conversion_hint(fingerprint)}"
        )
    if resolved.dimension != dimension:
        raise EmbedderMismatchError(
            f"{where} stores {dimension}-dimensional vectors, but the "
            f"embedder produces {resolved.dimension}"
        )
    return resolved


def load_router(path: Path, embedder: Any = None) -> StoredRouter:
    """Read a router saved by :func:`save_router` (checks everything before use).

    Reads one copy, old or new, while another process saves over it (see module docs).
    """
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    _tidy(target)
    for _ in range(_READ_ATTEMPTS):
        directory = _copy_to_read(path, target)
        with _open_copy(directory, retired=directory != target) as handles:
            if handles is not None:
                return _read_copy(directory, handles, embedder)
    raise RouterStoreError(
        f"{path} was replaced {_READ_ATTEMPTS} times while being opened; try again"
    )


def _read_copy(directory: Path, handles: dict[str, BinaryIO | None], embedder: Any) -> StoredRouter:
    """Check and read the open files of one saved copy."""
    manifest_handle = handles[MANIFEST]
    if manifest_handle is None:
        raise RouterStoreError(f"{directory} holds no {MANIFEST}: not a saved langroute router")
    manifest_path = directory / MANIFEST
    manifest = _parse_manifest(manifest_handle.read(), manifest_path)
    opened: dict[str, BinaryIO] = {}
    for name in _DATA_FILES:
        entry = manifest.files.get(name)
        file = directory / name
        handle = handles[name]
        if entry is None:
            raise RouterStoreError(f"{manifest_path} lists no checksum for {name}")
        if handle is None:
            raise RouterStoreError(f"{file} is missing")
        actual = _digest(handle)
        handle.seek(0)
        if actual.bytes != entry.bytes:
            raise RouterStoreError(
                f"{file} is truncated or altered: {actual.bytes} bytes, expected {entry.bytes}"
            )
        if actual.sha256 != entry.sha256:
            raise RouterStoreError(f"{file} is corrupted: checksum mismatch")
        opened[name] = handle
    try:
        settings = RouterSettings.model_validate_json(json.dumps(manifest.settings), strict=True)
    except ValidationError as exc:
        raise RouterStoreError(
            f"{manifest_path}: invalid settings: {_problems(exc, 'settings.')}"
        ) from exc
    resolved = stored_embedder(
        manifest.embedder.fingerprint, manifest.embedder.dimension, embedder, str(directory)
    )
    try:
        exemplars = exemplars_from_jsonl(
            opened[EXEMPLARS].read().decode("utf-8"), directory / EXEMPLARS
        )
        faiss_ids = np.load(opened[IDS], allow_pickle=False)
    except (ExemplarFormatError, ValueError, OSError) as exc:
        raise RouterStoreError(f"{directory} could not be read: {exc}") from exc
    if (
        faiss_ids.ndim != 1
        or len(faiss_ids) != len(exemplars)
        or len(exemplars) != manifest.exemplar_count
    ):
        raise RouterStoreError(f"{directory}: exemplar count does not match the index ids")
    index = VectorIndex(manifest.embedder.dimension, settings.index)
    try:
        index.read(opened[INDEX], [ex.id for ex in exemplars], [int(i) for i in faiss_ids])
    except (RuntimeError, ValueError) as exc:
        raise RouterStoreError(f"{directory / INDEX} could not be read: {exc}") from exc
    return StoredRouter(settings, resolved, exemplars, index, manifest.calibration, manifest.tuning)
