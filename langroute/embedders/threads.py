"""How many threads the encoder and the index may use."""

from __future__ import annotations

import os

__all__ = ["configure_torch_threads", "encoder_threads", "num_threads"]


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
    """Intra-op threads of the process-wide encoder: :func:`num_threads`.

    The encoder runs one call at a time (concurrent queries are batched first), so these
    threads never multiply with the callers' threads.

    Example:
        >>> encoder_threads() >= 1
        True
    """
    return num_threads()


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
