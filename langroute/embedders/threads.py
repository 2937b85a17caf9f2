"""How many threads the encoder and the index may use."""

from __future__ import annotations

import os

__all__ = [
    "configure_torch_threads",
    "encoder_calls",
    "encoder_threads",
    "num_threads",
    "set_encoder_threads",
]

_encoder_threads: int | None = None
"""Set by :func:`set_encoder_threads` (``None``: :func:`num_threads`)."""


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


def set_encoder_threads(threads: int | None) -> None:
    """Give encoders loaded from now on ``threads`` intra-op threads per call (``None``: reset).

    For a server: one short query gains little from several threads (each of the
    model's small operations would wake them all), while requests encoded side by side
    use every core. ``LANGROUTE_NUM_THREADS`` still wins.

    Example:
        >>> set_encoder_threads(1); encoder_threads() >= 1; set_encoder_threads(None)
        True
    """
    global _encoder_threads
    if threads is not None and threads < 1:
        raise ValueError(f"encoder threads must be at least 1, not {threads}")
    _encoder_threads = threads


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
