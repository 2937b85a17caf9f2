"""How many threads the encoder and the index may use."""

from __future__ import annotations

import os
import threading
from types import TracebackType

__all__ = [
    "REQUESTS_IN_FLIGHT",
    "RequestsInFlight",
    "configure_torch_threads",
    "encoder_alone_threads",
    "encoder_calls",
    "encoder_threads",
    "num_threads",
    "set_encoder_threads",
]

_encoder_threads: int | None = None
"""Set by :func:`set_encoder_threads` (``None``: :func:`num_threads`)."""
_alone_threads: int | None = None
"""Set by :func:`set_encoder_threads` (``None``: as many as :func:`encoder_threads`)."""


def num_threads() -> int:
    """Threads for the encoder and the index, chosen so as not to oversubscribe the CPU.

    ``LANGROUTE_NUM_THREADS`` wins, then ``OMP_NUM_THREADS``; otherwise the cores this
    process may run on (``os.sched_getaffinity`` where available).

    Example:
        >>> num_threads() >= 1
        True
    """
    for name in ("LANGROUTE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value.split(",")[0]))
            except ValueError:
                continue
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def encoder_threads() -> int:
    """Intra-op threads of each call of the process-wide encoder.

    ``LANGROUTE_NUM_THREADS`` wins; then what :func:`set_encoder_threads` set (``langroute
    serve`` sets 1); otherwise :func:`num_threads`. Calls run :func:`encoder_calls` at a
    time, so their threads together never exceed the cores.

    Example:
        >>> encoder_threads() >= 1
        True
    """
    if _encoder_threads is not None and not os.environ.get("LANGROUTE_NUM_THREADS", "").strip():
        return _encoder_threads
    return num_threads()


def encoder_calls(threads: int) -> int:
    """How many encoder calls of ``threads`` intra-op threads may run at once: cores / threads.

    Example:
        >>> encoder_calls(num_threads()) == 1
        True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, num_threads()) // max(1, threads))


def encoder_alone_threads() -> int:
    """Intra-op threads of an encoder call made while the process serves one request at most.

    What :func:`set_encoder_threads` gave as ``alone``, never fewer than
    :func:`encoder_threads`; :func:`encoder_threads` itself when ``LANGROUTE_NUM_THREADS``
    pins the count or nothing was set.

    Example:
        >>> encoder_alone_threads() >= encoder_threads()
        True
    """
    threads = encoder_threads()
    if _alone_threads is None or os.environ.get("LANGROUTE_NUM_THREADS", "").strip():
        return threads
    return max(threads, _alone_threads)


def set_encoder_threads(threads: int | None, *, alone: int | None = None) -> None:
    """Give encoders loaded from now on ``threads`` intra-op threads per call (``None``: reset).

    For a server: under load, requests encoded side by side on one thread each use every
    core and leave the event loop its own. ``alone`` (ONNX backends only): the threads
    of a call made while :data:`REQUESTS_IN_FLIGHT` counts one request at most, when the
    other cores would sit idle while it waits (``langroute serve`` with one process sets
    every core). ``LANGROUTE_NUM_THREADS`` still wins over both.

    Example:
        >>> set_encoder_threads(1, alone=2); encoder_alone_threads() >= 1
        True
        >>> set_encoder_threads(None)
    """
    global _encoder_threads, _alone_threads
    for name, value in (("threads", threads), ("alone", alone)):
        if value is not None and value < 1:
            raise ValueError(f"encoder {name} must be at least 1, not {value}")
    _encoder_threads = threads
    _alone_threads = alone


class RequestsInFlight:
    """The requests a server in this process is handling now.

    A server enters it once per request, for the request's whole life (a stream until
    its last chunk). While it counts one at most, an encoder call is the only work the
    process has: the ONNX encoder then runs it on :func:`encoder_alone_threads` threads.
    Nothing enters it outside a server, so there it stays at zero.

    Example:
        >>> gauge = RequestsInFlight()
        >>> with gauge:
        ...     gauge.count, gauge.alone()
        (1, True)
        >>> gauge.count
        0
    """

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Requests under way now."""
        return self._count

    def alone(self) -> bool:
        """Whether one request at most is under way."""
        return self._count <= 1

    def __enter__(self) -> RequestsInFlight:
        with self._lock:
            self._count += 1
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._count -= 1


REQUESTS_IN_FLIGHT = RequestsInFlight()
"""The process-wide count :class:`RequestsInFlight` keeps for ``langroute serve``."""


def configure_torch_threads(threads: int | None = None) -> None:
    """Give torch ``threads`` intra-op threads (default :func:`num_threads`).

    Leaves torch alone when the user already set ``torch.set_num_threads`` to something
    smaller, and only touches inter-op threads while that is still allowed.
    """
    import torch

    wanted = threads or num_threads()
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)
    try:
        if torch.get_num_interop_threads() > wanted:
            torch.set_num_interop_threads(wanted)
    except RuntimeError:  # already started: it can be set only once
        pass
