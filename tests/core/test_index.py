from __future__ import annotations

import threading

import numpy as np
import pytest

from langroute.embedders import normalize
from langroute.router.index import VectorIndex


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalize(np.random.default_rng(seed).normal(size=(n, d)))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_matches_brute_force(kind):
    vectors = random_unit(300, 16)
    keys = [f"e{i}" for i in range(300)]
    index = VectorIndex(16, kind)
    index.add(keys, vectors)
    queries = random_unit(20, 16, seed=1)
    sims, found = index.search(queries, k=5)
    exact = queries @ vectors.T
    for row in range(20):
        best = [keys[i] for i in np.argsort(-exact[row])[:5]]
        if kind == "flat":
            assert found[row] == best
        else:
            assert len(set(found[row]) & set(best)) >= 4
        assert np.all(np.diff(sims[row]) <= 1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_remove_and_replace(kind):
    index = VectorIndex(4, kind)
    eye = np.eye(4, dtype=np.float32)
    index.add(["a", "b", "c"], eye[:3])
    assert index.remove(["a", "zzz"]) == 1
    assert "a" not in index and len(index) == 2
    _, keys = index.search(eye[:1], k=3)
    assert keys == [["b", "c"]] or keys == [["c", "b"]]
    index.add(["b"], eye[3:4])  # replace b's vector
    _, keys = index.search(eye[3:4], k=1)
    assert keys == [["b"]]
    assert len(index) == 2


def test_hnsw_compacts_tombstones():
    index = VectorIndex(8, "hnsw")
    vectors = random_unit(400, 8)
    index.add([str(i) for i in range(400)], vectors)
    index.remove([str(i) for i in range(300)])
    assert len(index) == 100
    _, keys = index.search(vectors[350:351], k=1)
    assert keys == [["350"]]
    assert index._index.ntotal < 400  # rebuilt without the removed nodes


def test_rejects_bad_vectors():
    index = VectorIndex(4)
    with pytest.raises(ValueError, match="shape"):
        index.add(["a"], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["a"], np.full((1, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        index.add(["a", "a"], np.ones((2, 4), dtype=np.float32))


def test_auto_kind_picks_by_size():
    small = VectorIndex(4, "auto", auto_threshold=10)
    small.add(["a"], np.eye(4, dtype=np.float32)[:1])
    assert small.kind == "flat"
    large = VectorIndex(8, "auto", auto_threshold=10)
    large.add([str(i) for i in range(20)], random_unit(20, 8))
    assert large.kind == "hnsw"


def test_search_stays_consistent_while_adding_from_another_thread():
    index = VectorIndex(16)
    base = random_unit(50, 16)
    index.add([f"base{i}" for i in range(50)], base)
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        for batch in range(40):
            vectors = random_unit(25, 16, seed=100 + batch)
            index.add([f"w{batch}-{i}" for i in range(25)], vectors)
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            sims, keys = index.search(base[:5], k=1)
            for row in range(5):
                # each base vector is its own nearest neighbour, whatever is being added
                if keys[row] != [f"base{row}"] or abs(sims[row, 0] - 1.0) > 1e-4:
                    errors.append(f"row {row}: {keys[row]} {sims[row]}")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(index) == 50 + 40 * 25
