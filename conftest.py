"""Test set-up for the whole repository: the core's tests and doctests, and both integrations'.

Never reach a model hub; caches in a fresh folder; shared data located beside the repo;
the names the core's doctests use (``router``, ``Exemplar``, an exemplar file).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches (embedded starter pack, ONNX exports) go to a fresh folder per test session,
# shared with the subprocesses the tests start; never to the user's home.
os.environ["LANGROUTE_CACHE_DIR"] = tempfile.mkdtemp(prefix="langroute-test-cache-")

REPO = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("LANGROUTE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared benchmark data folder; tests using it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def _provider_server_module() -> Any:
    """``tests/provider_server.py``, loaded by path (``tests`` is not a package)."""
    name = "langroute_provider_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "provider_server.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def _provider_server() -> Iterator[Any]:
    server = _provider_server_module().FakeProvider().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def provider(_provider_server: Any) -> Any:
    """A local fake OpenAI/Anthropic server (``tests/provider_server.py``), reset per test.

    Point real clients at ``provider.openai_url`` / ``provider.anthropic_url``; script
    faults with ``provider.script(model, "429", "ok")``; count requests with
    ``provider.count(model)``.
    """
    _provider_server.reset()
    return _provider_server


@pytest.fixture(scope="session")
def minilm_embedder():
    """The bundled all-MiniLM-L6-v2, loaded once per test session."""
    from langroute.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def starter_router(minilm_embedder):
    """The bundled starter router over the real embedder (built once; do not mutate)."""
    from langroute import ExemplarRouter

    return ExemplarRouter.default(embedder=minilm_embedder)


_DOCTEST_EXEMPLARS = """\
{"text": "hello there", "route": "small"}
{"text": "translate good night into German", "route": "small"}
{"text": "prove the theorem step by step", "route": "large"}
{"text": "design a distributed payment system", "route": "large"}
"""


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    """Doctests run in a temporary folder holding ``ex.jsonl``, with a small ``router``.

    The router uses the hashing embedder, so examples run offline in milliseconds; an
    example that needs the bundled model or the network is marked ``+SKIP``.
    """
    if not isinstance(request.node, pytest.DoctestItem):
        return
    from langroute import Exemplar, ExemplarRouter, load_exemplars
    from langroute.embedders import HashingEmbedder

    folder = request.getfixturevalue("tmp_path")
    (folder / "ex.jsonl").write_text(_DOCTEST_EXEMPLARS, encoding="utf-8")
    request.getfixturevalue("monkeypatch").chdir(folder)
    namespace = request.getfixturevalue("doctest_namespace")
    namespace["Exemplar"] = Exemplar
    namespace["ExemplarRouter"] = ExemplarRouter
    namespace["router"] = ExemplarRouter(
        routes=["small", "large"],
        exemplars=load_exemplars(folder / "ex.jsonl"),
        embedder=HashingEmbedder(),
        min_similarity=0.1,
    )


def _start_postgres() -> tuple[str, str | None]:
    """A Postgres URL for the tests, and the folder of a cluster started here (or None).

    ``LANGROUTE_TEST_POSTGRES`` wins (``.ci/run`` sets it); otherwise ``.ci/postgres.sh``
    starts a throwaway cluster. Outside CI a failure skips the tests that need it, with
    the reason; with ``CI`` set it fails them.
    """
    import subprocess

    url = os.environ.get("LANGROUTE_TEST_POSTGRES")
    if url:
        return url, None
    script = REPO / ".ci" / "postgres.sh"
    try:
        done = subprocess.run(
            ["bash", str(script), "start"], capture_output=True, text=True, timeout=180
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"could not run {script}: {exc}"
    else:
        lines = done.stdout.split()
        if done.returncode == 0 and len(lines) == 2:
            return lines[1], lines[0]
        reason = f"{script} failed: {done.stderr.strip()[-500:]}"
    message = f"no Postgres for the tests (set LANGROUTE_TEST_POSTGRES): {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a real Postgres server for the session (see ``_start_postgres``)."""
    import subprocess

    url, folder = _start_postgres()
    try:
        yield url
    finally:
        if folder is not None:
            subprocess.run(
                ["bash", str(REPO / ".ci" / "postgres.sh"), "stop", folder],
                capture_output=True,
                timeout=120,
            )


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped after the test; its URL."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"langroute_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(postgres_server)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
