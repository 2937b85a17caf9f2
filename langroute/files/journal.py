"""Append-only JSON Lines files that survive a crash: each line fsync'd, a torn tail cut off.

A labelling run keeps its output, its answers and its call cache in such files. A
record is one line, written whole and fsync'd before the run goes on, so a process
killed at any moment leaves every finished record intact; at most the line being
written is cut short. Opening a journal cuts such a torn last line off (it never held a
finished record) before anything is appended after it. A complete line that is not a
JSON object is an error naming the file and the line: nothing stored is overwritten.

Example:
    >>> journal = Journal("calls.jsonl")
    >>> journal.read()
    []
    >>> journal.append({"key": "a", "text": "Paris"})
    >>> with open("calls.jsonl", "a", encoding="utf-8") as handle:
    ...     _ = handle.write('{"key": "b", "te')  # a writer killed mid-line
    >>> [row["key"] for row in Journal("calls.jsonl").read()]
    ['a']
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from langroute.errors import LabellingError
from langroute.files.textfiles import JSONTooDeepError, load_json

__all__ = ["Journal"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(line: str) -> str:
    r"""``line`` with each lone surrogate written as a JSON ``\uXXXX`` escape.

    UTF-8 cannot hold a lone surrogate (a model may answer one), so the raw line would
    fail to write after the call was paid. In a JSON line one only occurs inside a string,
    where the escape is valid JSON that reads back as the same character.

    Example:
        >>> _escape_surrogates('{"text": "a\ud800b"}')
        '{"text": "a\\ud800b"}'
    """
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", line)


class Journal:
    """One append-only JSONL file: :meth:`read` (repairing a torn tail), :meth:`append`.

    Args:
        path: The file; created (with its folder) on the first append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0
        self._synced = 0
        self.torn_bytes = 0

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def read(self) -> list[dict[str, Any]]:
        """The records written so far; a torn last line is cut off the file first.

        Raises:
            LabellingError: a complete line is not a JSON object (file and line named).
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # the last line was being written when its writer died
            self.torn_bytes = len(data) - end
            with self.path.open("r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
            data = data[:end]
        records = []
        for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                value = load_json(raw)
            except (UnicodeDecodeError, json.JSONDecodeError, JSONTooDeepError) as exc:
                raise LabellingError(f"{self.path}:{number}: not a JSON line ({exc})") from exc
            if not isinstance(value, dict):
                raise LabellingError(f"{self.path}:{number}: expected a JSON object")
            records.append(value)
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line, then flush and fsync it."""
        self.append_line(json.dumps(record, ensure_ascii=False))

    async def aappend(self, record: Mapping[str, Any]) -> None:
        """:meth:`append` in a worker thread: the event loop goes on during the fsync."""
        await asyncio.to_thread(self.append, record)

    async def aappend_line(self, line: str) -> None:
        """:meth:`append_line` in a worker thread."""
        await asyncio.to_thread(self.append_line, line)

    def append_line(self, line: str) -> None:
        """Write one already serialised JSON line (without its newline), fsync'd.

        Thread-safe. Appends from several threads share fsyncs (a group commit): a
        line is durable when this returns, whichever thread's fsync covered it. Lone
        surrogates are written as JSON escapes (they read back unchanged).
        """
        line = _escape_surrogates(line)
        with self._write_lock:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8", newline="")
            self._handle.write(line + "\n")
            self._handle.flush()
            self._written += 1
            mine = self._written
        with self._sync_lock:
            if self._synced >= mine:
                return  # another thread's fsync came after this write
            with self._write_lock:
                target = self._written
                assert self._handle is not None
                descriptor = self._handle.fileno()
            os.fsync(descriptor)
            self._synced = target

    def close(self) -> None:
        """Close the file (a later append opens it again)."""
        with self._sync_lock, self._write_lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
