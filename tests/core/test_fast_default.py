"""Fast by default (issue 12): the ONNX encoder, shared, portable, warmed up front.

No timing assertions: what is checked is which encoder runs, that it is shared, that
saved routers load across backends, and where the one-time load is recorded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from langroute import Exemplar, ExemplarRouter, HashingEmbedder
from langroute.dispatch.routed_call import Attempt, RoutedCall
from langroute.embedders import (
    DEFAULT_BACKEND,
    SentenceTransformerEmbedder,
    embedder_for_fingerprint,
)
from langroute.embedders.sentence_transformer import _SharedEncoder
from langroute.errors import EmbedderMismatchError
from langroute.router.decision import RouteDecision
from langroute.router.warmup import start_warm_up

REPO = Path(__file__).resolve().parents[2]
EXEMPLARS = [
    Exemplar(text="hello there", route="small"),
    Exemplar(text="translate good night into German", route="small"),
    Exemplar(text="prove the theorem step by step", route="large"),
    Exemplar(text="design a distributed payment system", route="large"),
]
QUERIES = ["hi, how are you?", "prove that there are infinitely many primes"]
FP32 = "sentence-transformers:all-MiniLM-L6-v2:normalized"


def small_router(embedder) -> ExemplarRouter:
    return ExemplarRouter(routes=["small", "large"], exemplars=EXEMPLARS, embedder=embedder)


@pytest.fixture
def fresh_encoders(monkeypatch):
    """No encoder loaded in this process yet (the shared ones come back afterwards)."""
    monkeypatch.setattr(_SharedEncoder, "_registry", {})


def test_the_default_is_onnx_and_needs_no_extra(monkeypatch, tmp_path):
    monkeypatch.delenv("LANGROUTE_BACKEND", raising=False)
    assert DEFAULT_BACKEND == "onnx"
    assert SentenceTransformerEmbedder().backend == "onnx"
    assert SentenceTransformerEmbedder(str(tmp_path)).backend == "onnx"  # a local folder
    hub = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
    assert hub.backend == "torch"  # a hub name cannot be exported from local weights
    pyproject = (REPO / "pyproject.toml").read_text()
    core = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"onnxruntime' in core and '"onnx>' in core
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^pip install .*$", readme, flags=re.M)[:2]
    assert len(commands) == 2
    assert all("[fast]" not in c and "LANGROUTE_BACKEND" not in c for c in commands)


def test_saved_fingerprints_pick_a_matching_backend(monkeypatch):
    monkeypatch.delenv("LANGROUTE_BACKEND", raising=False)
    assert embedder_for_fingerprint(FP32).backend == "onnx"  # torch's vectors, fast
    assert embedder_for_fingerprint(FP32 + ":int8-ffn").backend == "onnx-int8"
    assert embedder_for_fingerprint("hashing:256").backend == DEFAULT_BACKEND
    monkeypatch.setenv("LANGROUTE_BACKEND", "torch")
    assert embedder_for_fingerprint(FP32).backend == "torch"  # the preference matches
    assert embedder_for_fingerprint(FP32 + ":int8-ffn").backend == "onnx-int8"


def test_mismatch_says_how_to_convert_and_reembedded_converts(tmp_path):
    path = small_router(HashingEmbedder()).save(tmp_path / "r")
    with pytest.raises(EmbedderMismatchError, match=r"reembedded\(<new embedder>\)\.save"):
        ExemplarRouter.load(path, embedder=HashingEmbedder(dimension=64))
    converted = ExemplarRouter.load(path, embedder=HashingEmbedder()).reembedded(
        HashingEmbedder(dimension=64)
    )
    converted.save(path)
    loaded = ExemplarRouter.load(path, embedder=HashingEmbedder(dimension=64))
    assert len(loaded) == len(EXEMPLARS) and loaded.settings == converted.settings


def test_one_load_is_kept_apart_in_timings_and_ledger():
    decision = RouteDecision(
        route="small",
        confidence=0.9,
        reason="vote",
        elapsed_ms=2.0,
        timings_ms={"load": 900.0, "embed": 1.5, "search": 0.3, "decide": 0.2},
    )
    call = RoutedCall(
        decision=decision, baseline_route="large", attempts=[Attempt(route="small", model="m")]
    )
    assert call.metadata()["routing_ms"] == 2.0 and call.metadata()["router_load_ms"] == 900.0
    (record,) = call.ledger_records(framework="test")
    assert record.metadata["routing_ms"] == 2.0 and record.metadata["router_load_ms"] == 900.0


# -- with the bundled model --------------------------------------------------------------


@pytest.mark.slow
def test_embedders_share_one_encoder_per_backend():
    a, b = SentenceTransformerEmbedder(), SentenceTransformerEmbedder()
    assert a.model is b.model
    assert a.load() == 0.0 and b.loaded
    assert SentenceTransformerEmbedder(backend="onnx").model is a.model  # the default
    assert SentenceTransformerEmbedder(backend="onnx-int8").model is not a.model


@pytest.mark.slow
def test_first_route_records_the_load_apart_and_warm_up_takes_it(tmp_path, fresh_encoders):
    saved = small_router(SentenceTransformerEmbedder()).save(tmp_path / "r")
    _SharedEncoder._registry.clear()
    cold = ExemplarRouter.load(saved)
    assert not load_encoder_done(cold)
    first = cold.route(QUERIES[0])
    assert first.timings_ms["load"] > 0
    parts = first.timings_ms["embed"] + first.timings_ms["search"] + first.timings_ms["decide"]
    assert first.elapsed_ms == pytest.approx(parts)  # the load is not in elapsed_ms
    assert "load" not in cold.route(QUERIES[1]).timings_ms

    _SharedEncoder._registry.clear()
    warmed = ExemplarRouter.load(saved)
    assert warmed.warm_up() > 0 and load_encoder_done(warmed)
    assert warmed.embedder.cache_info()["size"] == 0  # warming leaves the cache alone
    assert "load" not in warmed.route(QUERIES[0]).timings_ms

    _SharedEncoder._registry.clear()
    background = ExemplarRouter.load(saved)
    start_warm_up(background, "background").join()
    assert load_encoder_done(background)


def load_encoder_done(router: ExemplarRouter) -> bool:
    return router.embedder.inner.loaded


@pytest.mark.slow
def test_routers_saved_with_torch_load_with_the_default(tmp_path):
    torch_router = small_router(SentenceTransformerEmbedder(backend="torch"))
    path = torch_router.save(tmp_path / "torch")
    loaded = ExemplarRouter.load(path)  # no embedder: the fast one with the same vectors
    assert loaded.embedder.inner.backend == "onnx"
    for slow, fast in zip(torch_router.route_batch(QUERIES), loaded.route_batch(QUERIES)):
        assert slow.route == fast.route
        assert slow.confidence == pytest.approx(fast.confidence, abs=1e-3)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8")
    with pytest.raises(EmbedderMismatchError, match=r"backend='onnx'.*reembedded"):
        ExemplarRouter.load(path, embedder=int8)
    converted = loaded.reembedded(int8).save(tmp_path / "int8")
    assert ExemplarRouter.load(converted).embedder.inner.backend == "onnx-int8"
    with pytest.raises(EmbedderMismatchError, match=r"backend='onnx-int8'"):
        ExemplarRouter.load(converted, embedder=SentenceTransformerEmbedder())


@pytest.mark.slow
def test_a_fresh_process_routes_without_torch(tmp_path):
    path = small_router(SentenceTransformerEmbedder()).save(tmp_path / "r")
    code = (
        "import json, sys\n"
        "from langroute import ExemplarRouter\n"
        f"decision = ExemplarRouter.load({str(path)!r}).route({QUERIES[1]!r})\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers')\n"
        "print(json.dumps({'route': decision.route,"
        " 'imported': [m for m in heavy if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"route": "large", "imported": []}
