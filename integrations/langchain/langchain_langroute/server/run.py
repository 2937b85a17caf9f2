"""Running the server: ``langroute serve`` (:func:`run_server`) and in a thread (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI
from langroute.embedders import num_threads, set_encoder_threads
from langroute.errors import LangrouteError
from langroute.models.config import ModelsConfig, ServeConfig, load_models_config

from langchain_langroute.server.app import create_app
from langchain_langroute.server.gateway import Gateway
from langchain_langroute.server.redaction import redact_logs, redact_secrets

__all__ = [
    "bind",
    "freeze_startup_objects",
    "run_server",
    "serve_in_thread",
    "worker_app",
    "workers_refusal",
]

WORKER_CONFIG_ENV = "LANGROUTE_SERVE_CONFIG"
"""Environment variable naming the models file each worker process serves (``--workers``)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port=0``: a free port, read it from ``getsockname()``).

    Its protocol is named (``IPPROTO_TCP``): the event loop sets ``TCP_NODELAY`` only on
    connections whose socket says TCP, and without it each keep-alive response waits
    for the client's delayed ACK (about 40 ms per request on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(app: FastAPI, drain_seconds: float = 10.0) -> object:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",  # the fast path's HTTP client opens and closes with the server
        timeout_graceful_shutdown=drain_seconds,
    )
    return uvicorn.Server(config)


def workers_refusal(settings: ServeConfig) -> str | None:
    """Why a ``[serve]`` table cannot be served by several worker processes (``None``: it can).

    Each worker is a process of its own, like a replica: what a server keeps in memory
    is kept once per worker. So several workers are refused where replicas could not
    share it either: a ``memory`` ledger (each worker would keep its own, and feedback
    on another worker's answer would not be found), a JSONL ledger (one file cannot
    take appends from several processes), a keys file on a ledger that is not Postgres
    (budgets and their reservations are shared between processes only in Postgres:
    N workers would let a key spend N budgets), and ``learn`` on a router that is not
    shared through Postgres (each worker would learn alone).

    Example:
        >>> workers_refusal(ServeConfig(ledger="costs.db"))
        >>> workers_refusal(ServeConfig(ledger="costs.jsonl"))[:40]
        'a JSONL ledger cannot take appends from '
    """
    from langroute.postgres.database import is_postgres_url

    ledger = settings.ledger
    if ledger == "memory":
        return (
            'with ledger = "memory" each worker keeps its own ledger (feedback on another '
            "worker's answer is not found); use a .db file or a postgresql:// URL"
        )
    if ledger.endswith(".jsonl"):
        return (
            "a JSONL ledger cannot take appends from several processes at once; "
            "use a .db file or a postgresql:// URL"
        )
    if settings.keys is not None and not is_postgres_url(ledger):
        return (
            "with a keys file, budgets (and their reservations) are shared between "
            "processes only on a postgresql:// ledger; on this one, N workers would let "
            "a key spend N budgets"
        )
    if settings.learn and settings.shared_router is None:
        return (
            "with learn = true each worker would learn alone; share the router through "
            "Postgres ([serve] shared_router) or run one worker"
        )
    return None


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's app factory for ``--workers``).

    It serves the models file named by :data:`WORKER_CONFIG_ENV` and closes its gateway
    (writing its ledger) when the worker stops.
    """
    config = load_models_config(Path(os.environ[WORKER_CONFIG_ENV]))
    configure_encoder(one_process=False)
    app = create_app(Gateway(config), close_gateway=True)
    freeze_startup_objects()
    return app


def configure_encoder(*, one_process: bool) -> None:
    """The encoder's threads in a server of one process, or in one of its workers.

    Called before the encoder loads.

    One intra-op thread per call: under load the cores each encode a batch of their own
    and the event loop keeps one. A single process also encodes the query of a request
    alone in it on every core, which would otherwise sit idle while it waits (see
    :data:`~langroute.embedders.REQUESTS_IN_FLIGHT`); several workers share the cores,
    so none takes them all. ``LANGROUTE_NUM_THREADS`` wins over both.

    Example:
        >>> from langroute.embedders import encoder_alone_threads, encoder_threads
        >>> configure_encoder(one_process=False)
        >>> encoder_alone_threads() == encoder_threads()  # no wider calls
        True
        >>> set_encoder_threads(None)  # as it was
    """
    set_encoder_threads(1, alone=num_threads() if one_process else None)


def freeze_startup_objects() -> None:
    """Keep what start-up allocated out of the garbage collector's full collections.

    The frameworks, models and routers loaded at start are a few hundred thousand
    objects that live as long as the server; a full collection walked them all (about
    100-250 ms here: a pause for every request under way). Frozen, a collection walks
    only what was made since.
    """
    gc.collect()
    gc.freeze()


def _run_workers(config: ModelsConfig, host: str | None, port: int | None, workers: int) -> None:
    """Serve with ``workers`` processes sharing one listening socket (uvicorn's supervisor)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings = config.serve
    problem = workers_refusal(settings)
    if problem is not None:
        raise LangrouteError(f"--workers {workers}: {problem}")
    if config.path is None:
        raise LangrouteError("--workers needs a models file: each worker process reads it")
    os.environ[WORKER_CONFIG_ENV] = str(config.path.resolve())
    sock = bind(host or settings.host, settings.port if port is None else port)
    bound_host, bound_port = sock.getsockname()[:2]
    server_config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=settings.drain_seconds,
    )
    redact_logs("uvicorn", "uvicorn.error", "langroute")
    print(
        redact_secrets(
            f"langroute serve: listening on http://{bound_host}:{bound_port} "
            f"({workers} workers, ledger {settings.ledger}, "
            f"drain {settings.drain_seconds:g} s)"
        ),
        file=sys.stderr,
        flush=True,
    )
    try:
        Multiprocess(server_config, sockets=[sock]).run()
    finally:
        sock.close()


def run_server(
    config: ModelsConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
) -> None:
    """Serve a models file until interrupted (the ``langroute serve`` command).

    Prints ``langroute serve: listening on http://HOST:PORT`` to stderr once the port is
    bound (with ``port=0``, the port picked). On SIGINT/SIGTERM it stops taking
    requests, lets those under way finish for up to ``[serve] drain_seconds`` (streams
    still running then are cut) and writes the ledger's pending records. Credentials
    (database passwords, keys) are masked in what it prints and logs.

    With ``workers`` > 1, that many processes serve the one socket, each with its own
    gateway; :func:`workers_refusal` says which settings refuse it.

    Raises:
        LangrouteError: The router, a model, the keys file or the ledger cannot be set up,
            or the settings cannot be served by several workers.
    """
    if workers > 1:
        _run_workers(config, host, port, workers)
        return
    configure_encoder(one_process=True)
    try:
        gateway = Gateway(config)
    except LangrouteError as exc:  # a database URL in the message keeps no password
        masked = redact_secrets(str(exc))
        if masked != str(exc):
            raise LangrouteError(masked) from None
        raise
    try:
        settings = config.serve
        sock = bind(host or settings.host, settings.port if port is None else port)
        bound_host, bound_port = sock.getsockname()[:2]
        server = _server(create_app(gateway), settings.drain_seconds)
        freeze_startup_objects()
        redact_logs("uvicorn", "uvicorn.error", "langroute")
        print(
            redact_secrets(
                f"langroute serve: listening on http://{bound_host}:{bound_port} "
                f"(routes {gateway.routes}, aliases {list(settings.aliases)}, "
                f"ledger {settings.ledger}, drain {settings.drain_seconds:g} s)"
            ),
            file=sys.stderr,
            flush=True,
        )
        with _exit_quietly_on_signals():
            server.run(sockets=[sock])  # type: ignore[attr-defined]
    finally:
        gateway.close()


@contextlib.contextmanager
def _exit_quietly_on_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``SystemExit(0)`` while the server runs.

    uvicorn shuts down gracefully on these signals, then raises the signal again for
    the handler in force before it started: this one, so the process ends normally and
    the ledger's pending records are written (``finally`` blocks run).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread; yields its base URL (``http://...``).

    On exit the server stops (requests under way finish first, for up to the gateway's
    ``[serve] drain_seconds``).
    """
    sock = bind(host, port)
    gateway = getattr(app.state, "gateway", None)
    server = _server(app, gateway.settings.drain_seconds if gateway is not None else 10.0)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])),  # type: ignore[attr-defined]
        name="langroute-serve",
        daemon=True,
    )
    thread.start()
    started = threading.Event()

    def wait_started() -> None:
        while thread.is_alive() and not server.started:  # type: ignore[attr-defined]
            started.wait(0.01)

    wait_started()
    if not thread.is_alive():
        raise RuntimeError("the server thread stopped before it started serving")
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=30)
        sock.close()
