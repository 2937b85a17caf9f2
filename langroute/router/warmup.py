"""Warming a router up before its first request: now, in a background thread, or not."""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from langroute.errors import RouterConfigError

__all__ = ["WarmUp", "start_warm_up"]

WarmUp = Literal[False, True, "background"]
"""When a routing model warms its router: not at all, in its constructor, or in a thread."""

_log = logging.getLogger("langroute")


def start_warm_up(router: Any, when: WarmUp) -> threading.Thread | None:
    """Warm ``router`` (its ``warm_up()``) now, in a daemon thread, or not at all.

    What the routing models' ``warm_up=`` option calls: ``True`` warms before returning,
    ``"background"`` returns the started thread (a failure there is logged, and the
    first request meets it again), ``False`` does nothing.

    Raises:
        RouterConfigError: ``when`` is not one of the three, or the router has no
            ``warm_up()`` method.

    Example:
        >>> start_warm_up(router, "background").join()
    """
    if when is False:
        return None
    if when is not True and when != "background":
        raise RouterConfigError(f"warm_up must be False, True or 'background', got {when!r}")
    warm = getattr(router, "warm_up", None)
    if not callable(warm):
        raise RouterConfigError(
            f"warm_up={when!r} needs a router with a warm_up() method; "
            f"{type(router).__name__} has none"
        )
    if when is True:
        warm()
        return None

    def run() -> None:
        try:
            warm()
        except Exception:
            _log.warning("warming the router in the background failed", exc_info=True)

    thread = threading.Thread(target=run, name="langroute-warm-up", daemon=True)
    thread.start()
    return thread
