r"""Durable writes: a file replaced whole or not at all, and synced to disk before it counts.

Every file langroute rewrites (exemplars, API keys, a saved router's files) goes through
here; append-only files go through :mod:`langroute.files.journal`.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "routes.txt"
    >>> atomic_write_text(path, "small\nlarge\n")
    >>> path.read_text()
    'small\nlarge\n'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Sync a folder, so that a rename or a new file in it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and sync it before returning."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, payload: str, *, mode: int | None = None) -> None:
    """Replace ``path`` so that readers see the old content or the new, never a part.

    Args:
        path: The file to write (its folder is created).
        payload: The new content, written as UTF-8 with newlines untranslated.
        mode: Permission bits for the new file (e.g. ``0o600`` for secrets).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
        fsync_dir(path.parent)  # the rename itself survives a crash
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
