"""Shadow evaluation: a candidate router decides next to the live one, without answering.

A :class:`ShadowRouter` wraps the candidate (a saved router's folder, a router object or
a :class:`~langroute.chains.deciders.DeciderChain`). The
:class:`~langroute.dispatch.dispatcher.RouteDispatcher` asks it for a decision on every
request the live router decides (not on forced routes or requests with nothing to
route on) and puts it on the live decision as
:attr:`~langroute.router.decision.RouteDecision.shadow`; the request's ledger row then
carries it (``shadow_router``, ``shadow_route``, ``shadow_reason``,
``shadow_confidence``, ``shadow_error``), and ``langroute compare --ledger`` reports
agreement, flips and the candidate's estimated deltas.

The candidate never answers and never fails the request: an error, or a decision that
takes longer than ``timeout_s``, is recorded as ``shadow_error`` and the live request
goes on. A saved router built with the live router's embedder shares the live
router's embedding cache, so the query is embedded once for both; the candidate's
decision is then a nearest-neighbour search (about 1 ms on the starter router), made in
the caller's thread (``inline``). Other candidates decide in a worker thread, waited
for at most ``timeout_s``.

Example:
    >>> from langroute import Exemplar, ExemplarRouter
    >>> from langroute.embedders import HashingEmbedder
    >>> def make(hard_route):
    ...     return ExemplarRouter(
    ...         routes=["small", "large"],
    ...         exemplars=[Exemplar(text="hi there", route="small"),
    ...                    Exemplar(text="prove the theorem", route=hard_route)],
    ...         embedder=HashingEmbedder(),
    ...     )
    >>> shadow = ShadowRouter(make("small"), name="all-small")
    >>> decision = shadow.decide("prove the theorem")
    >>> decision.router, decision.route, decision.error
    ('all-small', 'small', None)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from langroute.dispatch.routed_call import error_text
from langroute.router.conversation import ChatTurn, ConversationContext, ConversationRouting
from langroute.router.decision import RouteDecision, ShadowDecision

__all__ = ["DEFAULT_SHADOW_TIMEOUT_S", "ShadowRouter", "as_shadow"]

DEFAULT_SHADOW_TIMEOUT_S = 0.25
"""How long a live request waits for the candidate's decision at most (seconds)."""

_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The threads that run synchronous shadow decisions (so a slow one can be left behind)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="langroute-shadow")
        return _POOL


class ShadowRouter:
    """A candidate router that decides on live requests next to the live router.

    Args:
        candidate: Any :class:`~langroute.protocols.Router` (an ``ExemplarRouter``, a
            ``DeciderChain``...). Its routes should be the live router's; a route it
            names that the live router lacks is still recorded, as it is.
        name: How the ledger names the candidate (default: its class name).
        timeout_s: The longest a live request waits for the candidate's decision; past
            it, ``shadow_error`` says ``TimeoutError`` and the request goes on.
        context: The conversation strategy for requests routed on their turns (the
            dispatcher passes the live one); sessions are never kept for the candidate.
        inline: Decide in the caller's thread (no thread hop, no timeout): for a
            candidate that shares the live router's embedder object, whose decision is
            a search on the vector the live decision just cached. ``None`` (default):
            decided by :func:`as_shadow` / :meth:`load` from the embedders.

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """

    def __init__(
        self,
        candidate: Any,
        *,
        name: str | None = None,
        timeout_s: float = DEFAULT_SHADOW_TIMEOUT_S,
        context: ConversationContext | None = None,
        inline: bool | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.candidate = candidate
        self.name = name or type(candidate).__name__
        self.timeout_s = timeout_s
        self.inline = bool(inline)
        self._conversation = (
            ConversationRouting(candidate, context, False)
            if hasattr(candidate, "route_vectors") and hasattr(candidate, "embedder")
            else None
        )

    def __repr__(self) -> str:
        return f"ShadowRouter({self.name!r})"

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        live: Any = None,
        timeout_s: float = DEFAULT_SHADOW_TIMEOUT_S,
        context: ConversationContext | None = None,
    ) -> ShadowRouter:
        """The saved router at ``path`` as a candidate, named by its path.

        When it was saved with the embedder ``live`` (the live router) uses, it is
        loaded with that very embedder, so both share one embedding cache and a query
        is embedded once.

        Raises:
            RouterStoreError: ``path`` holds no saved router.
        """
        from langroute.router.exemplar_router import ExemplarRouter, load_saved_router
        from langroute.router.store import read_manifest

        embedder = getattr(live, "embedder", None)
        same = False
        if embedder is not None:
            try:
                same = read_manifest(Path(path)).embedder.fingerprint == embedder.fingerprint
            except Exception:  # the load below names what is wrong with the folder
                same = False
        router = ExemplarRouter.load(path, embedder=embedder) if same else load_saved_router(path)
        return cls(router, name=str(path), timeout_s=timeout_s, context=context, inline=same)

    # ------------------------------------------------------------------ decisions
    def _decision(self, decision: RouteDecision, started: float) -> ShadowDecision:
        return ShadowDecision(
            router=self.name,
            route=decision.route,
            reason=decision.reason,
            confidence=decision.confidence,
            stage=decision.stage,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def _failure(self, error: BaseException, started: float) -> ShadowDecision:
        if isinstance(error, (FutureTimeout, asyncio.TimeoutError)):
            text = f"TimeoutError: no decision within {self.timeout_s:g} s"
        else:
            text = error_text(error)
        return ShadowDecision(
            router=self.name, error=text, elapsed_ms=(time.perf_counter() - started) * 1000
        )

    def _route_sync(self, query: str | None, turns: Sequence[ChatTurn] | None) -> RouteDecision:
        if turns is not None and self._conversation is not None:
            return self._conversation.route(list(turns), None, None)
        return self.candidate.route(_text(query, turns))

    async def _route_async(
        self, query: str | None, turns: Sequence[ChatTurn] | None
    ) -> RouteDecision:
        if turns is not None and self._conversation is not None:
            return await self._conversation.aroute(list(turns), None, None)
        return await self.candidate.aroute(_text(query, turns))

    def decide(
        self, query: str | None = None, turns: Sequence[ChatTurn] | None = None
    ) -> ShadowDecision:
        """The candidate's decision on one request; never raises (errors are recorded)."""
        started = time.perf_counter()
        try:
            if self.inline:
                return self._decision(self._route_sync(query, turns), started)
            future = _pool().submit(self._route_sync, query, turns)
            return self._decision(future.result(timeout=self.timeout_s), started)
        except Exception as exc:
            return self._failure(exc, started)

    async def adecide(
        self, query: str | None = None, turns: Sequence[ChatTurn] | None = None
    ) -> ShadowDecision:
        """Async :meth:`decide`."""
        started = time.perf_counter()
        try:
            decision = await asyncio.wait_for(self._route_async(query, turns), self.timeout_s)
            return self._decision(decision, started)
        except Exception as exc:
            return self._failure(exc, started)

    def decide_batch(self, queries: Sequence[str]) -> list[ShadowDecision]:
        """The candidate's decisions on many queries with one batched call.

        When the batched call fails or takes longer than ``timeout_s``, every query
        gets that error (the live decisions are not affected).
        """
        started = time.perf_counter()
        try:
            if self.inline:
                decisions = list(self.candidate.route_batch(list(queries)))
            else:
                future = _pool().submit(self.candidate.route_batch, list(queries))
                decisions = list(future.result(timeout=self.timeout_s))
        except Exception as exc:
            return [self._failure(exc, started)] * len(queries)
        return [self._decision(decision, started) for decision in decisions]

    async def adecide_batch(self, queries: Sequence[str]) -> list[ShadowDecision]:
        """Async :meth:`decide_batch`."""
        started = time.perf_counter()
        try:
            decisions = await asyncio.wait_for(
                self.candidate.aroute_batch(list(queries)), self.timeout_s
            )
        except Exception as exc:
            return [self._failure(exc, started)] * len(queries)
        return [self._decision(decision, started) for decision in decisions]


def _text(query: str | None, turns: Sequence[ChatTurn] | None) -> str:
    """The text a candidate without conversation routing decides on: the last user turn."""
    if query is not None:
        return query if isinstance(query, str) else str(query)
    for turn in reversed(list(turns or ())):
        if turn.role == "user":
            return turn.text
    return ""


def as_shadow(
    shadow: ShadowRouter | str | Path | Any | None,
    live: Any,
    *,
    context: ConversationContext | None = None,
) -> ShadowRouter | None:
    """A :class:`ShadowRouter` from what an entry point's ``shadow=`` argument was given.

    Args:
        shadow: ``None`` (no shadow), a :class:`ShadowRouter`, a saved router's folder
            (loaded with the live router's embedder when it was saved with it), or a
            router object (an ``ExemplarRouter``, a ``DeciderChain``).
        live: The live router (for its embedder).
        context: The live conversation strategy, for a candidate that routes vectors.

    Raises:
        RouterStoreError: A folder holds no saved router.
        TypeError: ``shadow`` is none of these.
    """
    if shadow is None or isinstance(shadow, ShadowRouter):
        return shadow
    if isinstance(shadow, (str, Path)):
        return ShadowRouter.load(shadow, live=live, context=context)
    if not (hasattr(shadow, "route") and hasattr(shadow, "aroute")):
        raise TypeError(
            "shadow must be a saved router's folder, a router (route/aroute) or a "
            f"ShadowRouter; got {type(shadow).__name__}"
        )
    shared = getattr(shadow, "embedder", None)
    inline = shared is not None and shared is getattr(live, "embedder", None)
    return ShadowRouter(shadow, context=context, inline=inline)
