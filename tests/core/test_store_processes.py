"""Saved routers under real processes: saves killed with SIGKILL, loads racing saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import langroute
from langroute import Exemplar, ExemplarRouter, HashingEmbedder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(langroute.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return env


def build(count: int = 4, **options: object) -> ExemplarRouter:
    texts = ["hello there friend", "thanks so much", "prove the theorem", "design a schema"]
    texts += [f"extra exemplar number {i}" for i in range(count - len(texts))]
    exemplars = [Exemplar(text=t, route="small" if i % 2 else "large") for i, t in enumerate(texts)]
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(), **options
    )


def beside(path: Path) -> list[str]:
    """Everything in the router's folder: the router alone once nothing is left over."""
    return sorted(p.name for p in path.parent.iterdir())


# A save of a 5-exemplar version over the saved 4-exemplar one, killed with SIGKILL at
# a chosen moment: the process really dies there, nothing of langroute runs after it.
KILLED_SAVE = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    from langroute import Exemplar, ExemplarRouter, HashingEmbedder
    from langroute.router import store

    path, moment = Path(sys.argv[1]), sys.argv[2]
    router = ExemplarRouter.load(path, embedder=HashingEmbedder())
    router.add_exemplars([Exemplar(text="one more exemplar", route="small")])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    renames = []
    real_replace = os.replace

    def replace(src, dst):
        renames.append(src)
        if (moment, len(renames)) in {("before-swap", 1), ("between-renames", 2)}:
            die()
        return real_replace(src, dst)

    if moment == "writing":  # the index is written, the exemplars not yet
        store.write_synced = die
    elif moment == "removing-old":  # the new copy is in, the old one not yet removed
        shutil.rmtree = die
    else:
        os.replace = replace
    router.save(path)
    print("the save was not killed")
    """
)

# (where the kill lands, how many exemplars the router holds afterwards: old 4, new 5)
MOMENTS = [("writing", 4), ("before-swap", 4), ("between-renames", 4), ("removing-old", 5)]


@pytest.mark.parametrize("then", ["load", "save"])
@pytest.mark.parametrize(("moment", "expected"), MOMENTS)
def test_killed_save_leaves_nothing_behind_after_the_next_load_or_save(
    tmp_path, moment, expected, then
):
    path = build().save(tmp_path / "r")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(path), moment],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert beside(path) != ["r"], "the kill left nothing behind: it came at the wrong moment"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if then == "load":
            loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
            assert len(loaded) == expected
        else:
            build(6).save(path)
            assert len(ExemplarRouter.load(path, embedder=HashingEmbedder())) == 6
    restored = [str(w.message) for w in caught if "interrupted save" in str(w.message)]
    assert len(restored) == (moment == "between-renames"), [str(w.message) for w in caught]
    assert beside(path) == ["r"]
    assert not (path.parent / ".r.lock").exists()


# Saves in a loop, each killed at whatever moment it has reached.
SAVING_LOOP = textwrap.dedent(
    """
    import sys
    from langroute import Exemplar, ExemplarRouter, HashingEmbedder

    path = sys.argv[1]
    router = ExemplarRouter.load(path, embedder=HashingEmbedder())
    while True:
        router.add_exemplars([Exemplar(text=f"exemplar {len(router)}", route="small")])
        print("saving", flush=True)
        router.save(path)
    """
)


def test_saves_killed_at_any_moment_leave_a_loadable_router_and_no_copies(tmp_path):
    path = build().save(tmp_path / "r")
    sizes = set()
    for kill in range(5):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVING_LOOP, str(path)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert saver.stdout is not None
        for _ in range(2 + kill):  # let a few saves finish; the kill lands in a later one
            assert saver.stdout.readline() == "saving\n", saver.stderr
        saver.send_signal(signal.SIGKILL)
        saver.communicate(timeout=60)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a copy put back after a kill between renames
            loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
        assert beside(path) == ["r"]
        # the router holds a version some save wrote in full: exemplars 0..n-1 in order
        assert [ex.text for ex in loaded.exemplars[4:]] == [
            f"exemplar {n}" for n in range(4, len(loaded))
        ]
        sizes.add(len(loaded))
    assert len(sizes) > 1  # the saves did replace the router between kills


# One process saves two versions in turn; another loads in a loop meanwhile.
SAVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from langroute import Exemplar, ExemplarRouter, HashingEmbedder

    path, stop = Path(sys.argv[1]), Path(sys.argv[2])
    texts = [f"exemplar number {i} on topic {i % 7}" for i in range(60)]
    versions = [
        ExemplarRouter(
            routes=["small", "large"],
            exemplars=[Exemplar(text=t, route="small") for t in texts[:n]],
            embedder=HashingEmbedder(),
            k=k,
        )
        for n, k in ((60, 10), (40, 3))
    ]
    print("ready", flush=True)
    sys.stdin.readline()
    saves = 0
    while not stop.exists() and saves < 5000:
        versions[saves % 2].save(path)
        saves += 1
    print(saves)
    """
)

LOADER = textwrap.dedent(
    """
    import json, sys, warnings
    from langroute import ExemplarRouter, HashingEmbedder

    warnings.simplefilter("error")  # a warning about an "interrupted save" is a failure too
    path, loads = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    seen, failures = [], []
    for _ in range(loads):
        try:
            router = ExemplarRouter.load(path, embedder=HashingEmbedder())
            seen.append([len(router), router.settings.k, router.exemplars[-1].text])
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"seen": seen, "failures": failures}))
    """
)


def test_loads_while_another_process_saves_see_the_old_or_the_new_copy(tmp_path):
    path = tmp_path / "r"
    build().save(path)
    stop = tmp_path / "stop"
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path), str(stop)],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    loader = subprocess.Popen(
        [sys.executable, "-c", LOADER, str(path), "300"],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for proc in (saver, loader):
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline() == "ready\n", proc.stderr
        for proc in (saver, loader):
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out, err = loader.communicate(timeout=120)
    finally:
        stop.touch()
        saved, saver_err = saver.communicate(timeout=120)
    assert loader.returncode == 0, err
    assert saver.returncode == 0, saver_err
    result = json.loads(out)
    assert result["failures"] == []
    versions = {tuple(seen) for seen in result["seen"]}
    # every load saw one whole version, and the saves replaced it while loading went on
    assert versions <= {(4, 10, "design a schema")} | {
        (60, 10, "exemplar number 59 on topic 3"),
        (40, 3, "exemplar number 39 on topic 4"),
    }
    assert len(versions - {(4, 10, "design a schema")}) == 2, versions
    assert int(saved) > 2
    assert beside(path) == ["r", "stop"]


def test_a_load_that_meets_the_old_copy_being_removed_reads_the_new_one(tmp_path, monkeypatch):
    """The race a saving process leaves for a load: the load finds only the copy moved
    aside, then the save puts the new copy in and removes the old one while the load
    opens its files. The load opens again and reads the new copy."""
    from langroute.router import store

    path = tmp_path / "r"
    build(4).save(path)
    retired = tmp_path / store._sibling_name(path, "old")
    os.replace(path, retired)  # the save, between its two renames
    new_copy = tmp_path / "new"
    build(6).save(new_copy)
    opened = store._open_file

    def open_while_the_save_finishes(directory, name, dir_fd):
        if directory == retired and name == "index.faiss" and not path.exists():
            os.replace(new_copy, path)  # the save's second rename, then its clean-up
            (retired / name).unlink()
        return opened(directory, name, dir_fd)

    monkeypatch.setattr(store, "_open_file", open_while_the_save_finishes)
    lock = store._acquire_lock(path, wait=True)  # the save holds its lock throughout
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "interrupted save": one is running
            loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
    finally:
        store._release_lock(path, lock)
    assert len(loaded) == 6
