"""What ``langroute serve`` runs: one :class:`RoutingChatModel`, its ledger, keys and metrics.

:class:`Gateway` is built from a models file (:class:`~langroute.models.config.ModelsConfig`
and its ``[serve]`` table), or from a router, models and a ledger passed in. It holds no
routing logic of its own: every request is one call of the routing chat model, with a
:class:`~langchain_langroute.callbacks.CostCallbackHandler` that writes the call's ledger rows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langroute.costs import CostLedger, LedgerRecord, Pricer
from langroute.costs.records import UNMEASURED_KEY, Verdict, new_record_id
from langroute.dispatch.breakers import BreakerRegistry
from langroute.dispatch.dispatcher import RouteDispatcher
from langroute.dispatch.escalation import escalation_path
from langroute.dispatch.routed_call import RoutedCall
from langroute.errors import ModelsConfigError, RouterConfigError
from langroute.models.config import ModelsConfig
from langroute.postgres.database import is_postgres_url
from langroute.postgres.spend import PostgresSpend
from langroute.protocols import Router
from langroute.router.scoped_learning import ScopedLearning
from langroute.serving.keys import ApiKey

from langchain_langroute.callbacks import QUERY_METADATA, RECORD_ID_METADATA
from langchain_langroute.chat_models import RoutingChatModel
from langchain_langroute.completion_models import chat_model_from_spec
from langchain_langroute.query import last_human_message
from langchain_langroute.routes import Route
from langchain_langroute.server.access import KEY_METADATA, KeyRing, Spend
from langchain_langroute.server.budgets import (
    Budgets,
    Reservation,
    StreamChargingHandler,
    StreamTallies,
    StreamTally,
    warn_memory_ledger,
)
from langchain_langroute.server.dial import start_dial
from langchain_langroute.server.fast_path import FastPath
from langchain_langroute.server.feedback import FeedbackQuorum, FeedbackRate, teach_router
from langchain_langroute.server.metrics import ServeMetrics
from langchain_langroute.server.upstream import EscalatingError

__all__ = [
    "ANONYMOUS",
    "FAST_PATH_FRAMEWORK",
    "QUERY_METADATA",
    "RESPONSE_METADATA",
    "Gateway",
    "record_id_of",
    "response_id",
]

RESPONSE_METADATA = RECORD_ID_METADATA
"""Run metadata key: the ledger ``record_id`` that the call's answer gets."""
ANONYMOUS = "anonymous"
"""The key name of requests to a server without a keys file."""
FAST_PATH_FRAMEWORK = "serve"
"""The ``framework`` of the ledger rows of calls that took the fast path."""
_RESPONSE_PREFIX = "chatcmpl-"


def response_id(record_id: str) -> str:
    """The ``id`` a client sees for the answer whose ledger record is ``record_id``."""
    return _RESPONSE_PREFIX + record_id


def record_id_of(response: str) -> str:
    """The ledger ``record_id`` of a response ``id`` (the id itself if it has no prefix)."""
    return response.removeprefix(_RESPONSE_PREFIX)


def _load_router(config: ModelsConfig) -> tuple[Router, Any]:
    """The router, and the Postgres replica that holds it when it is shared (else None)."""
    from langroute.embedders import embedder_from_spec
    from langroute.router.exemplar_router import ExemplarRouter, load_saved_router

    serve = config.serve
    if serve.shared_router is not None:
        from langroute.postgres import load_shared_router

        embedder = embedder_from_spec(serve.embedder) if serve.embedder else None
        replica = load_shared_router(serve.shared_router, name=serve.router_name, embedder=embedder)
        return replica.router, replica
    if serve.router is None:
        return ExemplarRouter.default(), None
    return load_saved_router(serve.router, serve.embedder), None


class Gateway:
    """The server's state: the routing model, the ledger, the keys, spend and metrics.

    Args:
        config: The models file: routes (models built from their specs unless ``models``
            is given), prices, and the ``[serve]`` table.
        router: The router (default: ``[serve] router``, else the starter router).
        models: Route -> chat model (default: built from the file's specs).
        ledger: The ledger (default: ``[serve] ledger``, priced with the file's prices).
            Any target :class:`~langroute.costs.CostLedger` accepts can be configured.

    Raises:
        ModelsConfigError: The router's routes and the file's routes differ, or a model
            cannot be built (the file is named).
        ApiKeysFileError: The keys file is malformed.
    """

    def __init__(
        self,
        config: ModelsConfig,
        *,
        router: Router | None = None,
        models: Mapping[str, BaseChatModel | Route] | None = None,
        ledger: CostLedger | None = None,
    ) -> None:
        self.config = config
        self.settings = config.serve
        where = f"{config.path}: " if config.path is not None else ""
        self.replica: Any = None  # the Postgres replica of a shared router
        # the keys file first: a missing one stops the start before the router loads
        self.keyring = KeyRing(self.settings.keys) if self.settings.keys is not None else None
        if router is not None:
            self.router = router
        else:
            self.router, self.replica = _load_router(config)
        # routes that speak the OpenAI API are relayed without LangChain objects; models
        # passed in are the caller's own, so every call goes through them
        self.fast = (
            FastPath.from_config({r: config.specs(r) for r in config.routes}, self.settings)
            if models is None
            else FastPath({}, {route: "its model was passed in" for route in config.routes})
        )
        if models is None:
            folder = config.path.parent if config.path is not None else None
            built: dict[str, BaseChatModel | Route] = {}
            for route in config.routes:
                specs = config.specs(route)
                try:
                    chat_models = [chat_model_from_spec(spec, folder) for spec in specs]
                except ModelsConfigError as exc:
                    raise ModelsConfigError(f"{where}route {route!r}: {exc}") from exc
                built[route] = Route(
                    models=chat_models,
                    weights=[spec.weight for spec in specs],
                    continue_streams=specs[0].continue_streams,
                    breaker_keys=[spec.key for spec in specs],
                )
            models = built
        # one registry per process, shared by both routing models (and /healthz)
        policy = self.settings.breaker_policy
        self.breakers = BreakerRegistry(policy) if policy is not None else None

        # a client key's feedback teaches its own routing at once, the shared router only
        # once enough keys agree (FeedbackQuorum)
        self.scoped: ScopedLearning | None = (
            ScopedLearning(self.router)
            if self.settings.learn and self.keyring is not None and hasattr(self.router, "embedder")
            else None
        )
        shadow, telemetry = _observers(config, self.router)

        def routing_model(escalation_order: list[str] | None) -> RoutingChatModel:
            try:
                return RoutingChatModel(
                    router=self.router,
                    models=dict(models),
                    timeout=self.settings.timeout,
                    max_retries=self.settings.max_retries,
                    warm_up=True,
                    escalate_on=(EscalatingError,),
                    escalation_order=escalation_order,
                    breakers=self.breakers,
                    shadow=shadow,
                    telemetry=telemetry,
                    scoped_learning=self.scoped,
                )
            except RouterConfigError as exc:
                raise ModelsConfigError(f"{where}{exc}") from exc

        self.llm = routing_model(None)
        # a key past its budget (over_budget = "degrade") gets the cheapest route only:
        # nothing after it to escalate to, so a failure there is its answer
        self.degraded_llm = routing_model([self.cheapest_route])
        if ledger is None:
            warn_memory_ledger(self.settings.ledger, self.keyring is not None)
        self.ledger = (
            ledger
            if ledger is not None
            else CostLedger(self.settings.ledger, pricer=Pricer(config.prices))
        )
        self.quorum = FeedbackQuorum(self.settings.learn_quorum)
        self.feedback_rate = FeedbackRate(self.settings.feedback_per_minute)
        self.metrics = ServeMetrics(self._gauges)
        self.streams = StreamTallies()
        self._unsettled = 0  # answers sent whose rows and budget are not settled yet
        self._settled = threading.Condition()
        # the answer's row takes the response's record id (RESPONSE_METADATA), so
        # POST /v1/feedback finds it in this process or any other reading the ledger;
        # a stream left before its end is charged for what it sent
        self.handler = StreamChargingHandler(
            self.ledger,
            streams=self.streams,
            segment_keys=(KEY_METADATA,),
            on_records=self._on_records,
        )
        # replicas (or workers) on one Postgres ledger share spend and reservations
        self.spend: Spend | PostgresSpend = (
            PostgresSpend(self.settings.ledger)
            if ledger is None and is_postgres_url(self.settings.ledger)
            else Spend()
        )
        self.budgets = Budgets(self.spend, self.ledger.pricer, config.routes)
        self.dial = start_dial(self.router, self.ledger, self.settings.adaptive_dial, where)
        """The ``[serve.adaptive_dial]`` controller (``None`` when not configured)."""
        if self.keyring is not None:
            self.spend.load(self.ledger.records(), self.keyring.keys())

    # ------------------------------------------------------------------ names
    @property
    def routes(self) -> list[str]:
        """The routes, cheapest first."""
        return list(self.router.routes)

    @property
    def cheapest_route(self) -> str:
        """Where a key past its budget is sent when ``over_budget = "degrade"``."""
        return self.routes[0]

    def forced_route(self, model: str) -> str | None:
        """The route a request's ``model`` forces (``None``: an alias, let the router choose).

        Raises:
            LookupError: ``model`` is no alias, route or route model.
        """
        if model in self.settings.aliases:
            return None
        try:
            return self.llm.dispatcher.route_for(model)
        except RouterConfigError:
            raise LookupError(model) from None

    # ------------------------------------------------------------------ calls
    def fast_dispatcher(self, forced: str | None, *, degraded: bool) -> RouteDispatcher | None:
        """The dispatcher of a call that takes the fast path (``None``: the LangChain path).

        A call takes the fast path when every route it may reach (the forced route and
        those it escalates to, else every route) is one the fast path serves.
        """
        dispatcher = (self.degraded_llm if degraded else self.llm).dispatcher
        order = dispatcher.escalation_order
        reachable = escalation_path(forced, order) if forced else order
        return dispatcher if self.fast.covers(reachable) else None

    def record_call(
        self,
        call: RoutedCall,
        key: ApiKey | None,
        query: str | None,
        tally: StreamTally | None = None,
    ) -> None:
        """Write a fast-path call's ledger rows (what the cost handler does for LangChain).

        A stream that ended before its end (``tally``) is charged for what it sent, as
        :class:`~langchain_langroute.server.budgets.StreamChargingHandler` charges one.
        """
        metadata: dict[str, Any] = {KEY_METADATA: key.name if key is not None else ANONYMOUS}
        kept = query if self.settings.stores_queries else None
        records = call.ledger_records(framework=FAST_PATH_FRAMEWORK, metadata=metadata, query=kept)
        if tally is not None and records:
            charged = tally.charged(records[-1])
            if charged is not None:
                charged.metadata.pop(UNMEASURED_KEY, None)  # estimated, so priced
                records[-1] = charged.model_copy(update={"record_id": call.record_id})
        stored = [self.ledger.record(record) for record in records]
        if stored:
            self._on_records(metadata, stored)

    def settlement(self, settle: Callable[[], None]) -> Callable[[], None]:
        """``settle`` (an answer's bookkeeping, run once it was sent), counted until it ran.

        :meth:`wait_settled` waits for every settlement handed out: a reader of the
        ledger in this process (a test, an app serving in a thread) sees the rows of the
        answers it got. Requests to the server need no wait: each is handled after the
        settlements of the answers sent before it.
        """
        with self._settled:
            self._unsettled += 1

        def run() -> None:
            try:
                settle()
            finally:
                with self._settled:
                    self._unsettled -= 1
                    self._settled.notify_all()

        return run

    def wait_settled(self, timeout: float = 10.0) -> bool:
        """Wait until every answer sent so far is settled; False if ``timeout`` ran out.

        Example:
            >>> gateway.wait_settled()  # doctest: +SKIP
            True
        """
        with self._settled:
            return self._settled.wait_for(lambda: self._unsettled == 0, timeout)

    def call_config(
        self,
        key: ApiKey | None,
        query: str | None,
        record_id: str,
        *,
        session: str | None = None,
    ) -> RunnableConfig:
        """The run config of one request: the cost handler and what it writes down.

        The key's name is the conversation's scope (``metadata["api_key"]``): a session,
        named by the client or derived from the transcript, never crosses keys.
        """
        metadata: dict[str, Any] = {
            RESPONSE_METADATA: record_id,
            KEY_METADATA: key.name if key is not None else ANONYMOUS,
        }
        if session is not None:
            metadata["session_id"] = session
        if self.settings.stores_queries and query is not None:
            metadata[QUERY_METADATA] = query
        return {"callbacks": [self.handler], "metadata": metadata, "run_name": "langroute-serve"}

    @staticmethod
    def new_record_id() -> str:
        """A fresh record id for the next answer."""
        return new_record_id()

    def query_of(self, messages: list[Any]) -> str | None:
        """The text the router routes on (the last human message)."""
        return last_human_message(messages)

    def _on_records(self, metadata: Mapping[str, Any], records: list[LedgerRecord]) -> None:
        name = str(metadata.get(KEY_METADATA) or ANONYMOUS)
        key = self.keyring.keys().named(name) if self.keyring is not None else None
        shown = name if self.settings.metrics_key_names else None
        for record in records:
            self.metrics.spend(route=record.route, key=shown, cost=record.cost)
            if key is not None and record.cost:
                self.spend.add(key, record.cost, record.timestamp)

    def _gauges(self) -> dict[str, tuple[str, float]]:
        stats = self.ledger.stats
        return {
            "langroute_ledger_pending_records": ("Records waiting to be written.", stats.pending),
            "langroute_ledger_dropped_records": ("Records dropped (queue full).", stats.dropped),
            "langroute_ledger_failed_records": ("Records whose write failed.", stats.failed),
        }

    # ------------------------------------------------------------------ feedback
    async def feedback(
        self, response: str, verdict: Verdict, key: ApiKey | None
    ) -> tuple[LedgerRecord, str | None, int | None, str | None]:
        """Store a verdict on a response; with ``[serve] learn``, teach the router.

        With a keys file, a client key's verdict teaches that key's own routing at once
        (:class:`~langroute.router.scoped_learning.ScopedLearning`) and the shared router
        only once ``learn_quorum`` distinct keys gave the same verdict on the same query
        (one tenant cannot re-route the others); an ``admin`` key's verdict teaches the
        shared router at once.

        Returns:
            The feedback record, the route the shared router labelled the query with
            (``None``: nothing learned there), while a verdict waits for agreement how
            many keys gave it so far (else ``None``), and the route the key's own
            routing labelled it with (``None``: not taught for the key alone).

        Raises:
            UnknownRecordError: No answer has that id, or it belongs to another key.
        """
        from langroute.errors import UnknownRecordError

        record_id = record_id_of(response)

        def store() -> tuple[LedgerRecord, str | None, int | None, str | None]:
            call = self.ledger.get(record_id)
            owner = key.name if key is not None else ANONYMOUS
            if call.is_feedback or call.metadata.get(KEY_METADATA, ANONYMOUS) != owner:
                raise UnknownRecordError(f"no answer has id {response!r}")
            stored = self.ledger.feedback(record_id, verdict, source="api")
            if not self.settings.learn:
                return stored, None, None, None
            own = None
            if key is not None and key.role != "admin":
                if self.scoped is not None and call.query and call.route in self.router.routes:
                    good = verdict == "good"
                    own = self.scoped.learn(key.name, call.query, call.route, good=good)
                agreed, keys = self.quorum.vote(
                    call.query or "", call.route or "", verdict, key.name
                )
                if not agreed:
                    return stored, None, keys, own
            shared = teach_router(self.router, call, verdict, learner=self.replica)
            return stored, shared, None, own

        result = await asyncio.to_thread(store)
        self.metrics.feedback(verdict=verdict)
        return result

    def admit(
        self,
        key: ApiKey | None,
        body: bytes,
        max_tokens: int | None,
        forced: str | None,
        *,
        media: int = 0,
    ) -> Reservation | bool:
        """Reserve a request's worst case against its key's budget.

        The worst case is priced on the dearest route the call may reach: the forced
        route and those it escalates to, else every route.

        Returns:
            What :meth:`Budgets.reserve` returns: a reservation to release with
            ``self.budgets.release`` after the call, ``True`` (no budget), or ``False``
            (the budget is used up: degrade or reject the request).
        """
        if key is None or key.budget is None:
            return True
        reachable = escalation_path(forced, self.routes) if forced else self.routes
        worst = self.budgets.worst_case(body, max_tokens, reachable, media)
        return self.budgets.reserve(key, worst)

    async def aadmit(
        self,
        key: ApiKey | None,
        body: bytes,
        max_tokens: int | None,
        forced: str | None,
        *,
        media: int = 0,
    ) -> Reservation | bool:
        """:meth:`admit` from the event loop, which a Postgres reservation must not block.

        A reservation in Postgres (a round trip, or a connect timeout while the database
        is away) runs on a worker thread; one in memory runs here.
        """
        if isinstance(self.spend, PostgresSpend) and key is not None and key.budget is not None:
            return await asyncio.to_thread(self.admit, key, body, max_tokens, forced, media=media)
        return self.admit(key, body, max_tokens, forced, media=media)

    def metrics_key(self, key: ApiKey | None) -> str | None:
        """The key name metrics may show (``None`` unless ``[serve] metrics_key_names``)."""
        if not self.settings.metrics_key_names:
            return None
        return key.name if key is not None else ANONYMOUS

    def close(self) -> None:
        """Write what the ledger still holds and close it; stop following a shared router."""
        if self.dial is not None:
            self.dial.stop()
        self.ledger.close()
        if isinstance(self.spend, PostgresSpend):
            self.spend.close()
        if self.replica is not None:
            self.replica.close()


def _observers(config: ModelsConfig, router: Router) -> tuple[Any, Any]:
    """``[serve]``'s shadow router (loaded once for every routing model) and telemetry."""
    from langroute.dispatch.shadow import ShadowRouter
    from langroute.errors import LangrouteError
    from langroute.telemetry import Telemetry

    settings = config.serve
    shadow = None
    if settings.shadow_router is not None:
        try:
            shadow = ShadowRouter.load(settings.shadow_router, live=router)
        except (LangrouteError, OSError) as exc:
            where = f"{config.path}: " if config.path is not None else ""
            raise ModelsConfigError(f"{where}[serve] shadow_router: {exc}") from exc
    telemetry = Telemetry(pricer=Pricer(config.prices)) if settings.otel else None
    return shadow, telemetry
