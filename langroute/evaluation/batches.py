"""Routing and searching many evaluation texts: in chunks, with a progress bar if asked.

Shared by evaluation, tuning, calibration and chain measurement, so none of them
depends on another for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from langroute.errors import RouterConfigError
from langroute.protocols import Router
from langroute.router import engine
from langroute.router.decision import RouteDecision
from langroute.router.exemplar_router import ExemplarRouter
from langroute.router.settings import RouterSettings

__all__ = ["KEEP_NEIGHBOURS", "in_chunks", "neighbourhood", "route_all", "settings_for"]

T = TypeVar("T")


KEEP_NEIGHBOURS = 5
"""Neighbours kept per decision in an evaluation (the report shows only the nearest)."""


def settings_for(routes: Sequence[str], options: Mapping[str, Any]) -> RouterSettings:
    """Validated router settings for ``routes`` and ``options`` (``k=``, ``rule=``, ...).

    Raises:
        RouterConfigError: the options are not valid router settings.
    """
    try:
        return RouterSettings(routes=list(routes), **options)
    except ValueError as exc:
        raise RouterConfigError(f"invalid router settings: {exc}") from exc


def in_chunks(
    texts: Sequence[Any],
    work: Callable[[list[Any]], T],
    *,
    show_progress: bool = False,
    label: str = "Routing",
    size: int = 256,
) -> list[T]:
    """``work`` on consecutive chunks of ``texts``, with a progress bar if asked."""
    chunks = [list(texts[start : start + size]) for start in range(0, len(texts), size)]
    if not show_progress or len(chunks) <= 1:
        return [work(chunk) for chunk in chunks]
    from rich.progress import Progress

    out = []
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(texts))
        for chunk in chunks:
            out.append(work(chunk))
            progress.advance(task, len(chunk))
    return out


def route_all(
    router: Router, texts: Sequence[str], show_progress: bool = False
) -> list[RouteDecision]:
    """Route in chunks, keeping only the nearest few neighbours of each decision.

    With a large ``k`` the full neighbour lists of thousands of decisions would take
    gigabytes; the report only shows the nearest ones.
    """

    def run(chunk: list[str]) -> list[RouteDecision]:
        return [
            d.model_copy(update={"neighbours": d.neighbours[:KEEP_NEIGHBOURS]})
            if len(d.neighbours) > KEEP_NEIGHBOURS
            else d
            for d in router.route_batch(chunk)
        ]

    return [d for part in in_chunks(texts, run, show_progress=show_progress) for d in part]


def neighbourhood(
    router: ExemplarRouter,
    texts: Sequence[str],
    show_progress: bool = False,
    k: int | None = None,
) -> engine.Neighbourhood:
    """:meth:`ExemplarRouter.neighbours` of many texts, searched in chunks.

    Example:
        >>> nb = neighbourhood(router, ["hello"] * 1000, k=50)  # doctest: +SKIP
    """
    parts = in_chunks(
        texts,
        lambda chunk: router.neighbours(chunk, k),
        show_progress=show_progress,
        label="Searching",
    )
    return engine.Neighbourhood.concat(parts)
