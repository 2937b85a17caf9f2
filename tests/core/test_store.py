from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from langroute import (
    EmbedderMismatchError,
    Exemplar,
    ExemplarRouter,
    HashingEmbedder,
    RouterStoreError,
)
from langroute.router import store
from langroute.router.exemplars import load_exemplars


def build(**options) -> ExemplarRouter:
    exemplars = [
        Exemplar(text="hello there friend", route="small", metadata={"category": "chit_chat"}),
        Exemplar(text="thanks so much", route="small", weight=2.0),
        Exemplar(text="prove the theorem step by step", route="large"),
        Exemplar(text="design a database migration plan", route="large"),
    ]
    options.setdefault("min_similarity", 0.05)
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder(), **options
    )


QUERIES = ["hello friend", "prove it step by step", "migration plan please", "thanks"]


def test_round_trip_without_re_embedding(tmp_path):
    router = build(k=3, threshold=0.4)
    router.remove_exemplars([router.exemplars[0].id])
    router.add_exemplars([Exemplar(text="hi hello hey", route="small")])
    path = router.save(tmp_path / "router")
    assert sorted(p.name for p in path.iterdir()) == [
        "exemplars.jsonl",
        "ids.npy",
        "index.faiss",
        "manifest.json",
    ]

    class NoDocuments(HashingEmbedder):
        def embed_documents(self, texts):
            raise AssertionError("load must not re-embed exemplars")

        def embed_queries(self, texts):
            return HashingEmbedder.embed_documents(self, texts)

    loaded = ExemplarRouter.load(path, embedder=NoDocuments())
    assert loaded.settings == router.settings
    assert loaded.exemplars == router.exemplars
    for query in QUERIES:
        before, after = router.route(query), loaded.route(query)
        assert (before.route, [n.id for n in before.neighbours]) == (
            after.route,
            [n.id for n in after.neighbours],
        )
        assert [n.similarity for n in before.neighbours] == pytest.approx(
            [n.similarity for n in after.neighbours]
        )
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["embedder"] == {"fingerprint": "hashing:256", "dimension": 256}
    assert manifest["settings"]["routes"] == ["small", "large"]


def test_loaded_router_can_be_tuned_and_saved_again(tmp_path):
    path = build().save(tmp_path / "r")
    loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
    loaded.feedback("quantum lattice chromodynamics", "small")
    loaded.save(path)
    again = ExemplarRouter.load(path, embedder=HashingEmbedder())
    assert len(again) == 5
    assert again.route("quantum lattice chromodynamics").neighbours[0].text.startswith("quantum")


def test_hnsw_router_round_trip(tmp_path):
    router = build(index="hnsw")
    loaded = ExemplarRouter.load(router.save(tmp_path / "h"), embedder=HashingEmbedder())
    assert loaded._index.kind == "hnsw"
    assert loaded.route("hello friend").route == "small"


def test_different_embedder_is_refused(tmp_path):
    path = build().save(tmp_path / "r")
    with pytest.raises(EmbedderMismatchError, match="hashing:256"):
        ExemplarRouter.load(path, embedder=HashingEmbedder(dimension=128))

    class SameNameOtherSize(HashingEmbedder):
        @property
        def fingerprint(self) -> str:
            return "hashing:256"

    with pytest.raises(EmbedderMismatchError, match="256-dimensional"):
        ExemplarRouter.load(path, embedder=SameNameOtherSize(dimension=64))


@pytest.fixture
def neutral_dir(tmp_path_factory) -> Path:
    """A folder whose path holds none of the words the refusal messages are checked for.

    ``tmp_path`` is named after the test, so a test called ``..._corrupted_...`` would
    satisfy ``match="corrupted"`` through the path in the message alone.
    """
    folder = tmp_path_factory.mktemp("store")
    for word in ("truncated", "altered", "corrupted", "checksum", "mismatch"):
        assert word not in str(folder).lower()
    return folder


@pytest.mark.parametrize("name", ["index.faiss", "exemplars.jsonl", "ids.npy"])
def test_truncated_or_corrupted_files_are_detected(neutral_dir, name):
    path = build().save(neutral_dir / "r")
    target = path / name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    half = len(data) // 2
    with pytest.raises(RouterStoreError, match=rf"truncated or altered: {half} bytes, expected"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    target.write_bytes(bytes(flipped))
    with pytest.raises(RouterStoreError, match=r"is corrupted: checksum mismatch$"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())


def _swap_route_label(data: bytes) -> bytes:
    """The first exemplar's route, "small", becomes "large": same length, valid JSON."""
    first, rest = data.split(b"\n", 1)
    assert b'"route": "small"' in first
    return first.replace(b'"route": "small"', b'"route": "large"') + b"\n" + rest


def _swap_two_ids(data: bytes) -> bytes:
    """The FAISS ids of the first two exemplars change places: a valid ``.npy`` file."""
    ids = np.load(io.BytesIO(data), allow_pickle=False)
    assert ids.tolist()[:2] == [0, 1]
    ids[[0, 1]] = ids[[1, 0]]
    out = io.BytesIO()
    np.save(out, ids, allow_pickle=False)
    return out.getvalue()


def _edit_one_float(data: bytes) -> bytes:
    """One component of the first exemplar's stored vector changes sign: same size."""
    vector = HashingEmbedder().embed_documents(["hello there friend"])[0]
    start = data.find(vector.tobytes())
    assert start >= 0, "the stored vector was not found in index.faiss"
    component = int(np.flatnonzero(vector)[0])
    edited = vector.copy()
    edited[component] = -edited[component]
    return data[:start] + edited.tobytes() + data[start + vector.nbytes :]


def _still_parses(path: Path, name: str) -> None:
    """The tampered file is readable on its own: only the checksum can tell."""
    if name == "exemplars.jsonl":
        assert load_exemplars(path / name)[0].route == "large"
    elif name == "ids.npy":
        assert np.load(path / name, allow_pickle=False).tolist()[:2] == [1, 0]
    else:
        import faiss

        assert faiss.read_index(str(path / name)).ntotal == 4


@pytest.mark.parametrize(
    ("name", "tamper"),
    [
        ("exemplars.jsonl", _swap_route_label),
        ("ids.npy", _swap_two_ids),
        ("index.faiss", _edit_one_float),
    ],
)
def test_tampered_files_that_still_parse_are_refused_by_checksum(neutral_dir, name, tamper):
    path = build().save(neutral_dir / "r")
    target = path / name
    data = target.read_bytes()
    tampered = tamper(data)
    assert len(tampered) == len(data) and tampered != data
    target.write_bytes(tampered)
    _still_parses(path, name)
    with pytest.raises(RouterStoreError) as refused:
        ExemplarRouter.load(path, embedder=HashingEmbedder())
    message = str(refused.value)
    assert message == f"{target} is corrupted: checksum mismatch"
    assert "checksum" not in str(target) and "mismatch" not in str(target)
    target.write_bytes(data)  # the original loads again
    assert len(ExemplarRouter.load(path, embedder=HashingEmbedder())) == 4


def write_manifest(path: Path, fields: dict) -> None:
    """Write manifest fields with a checksum that matches them: an edit, not damage.

    The checksum is computed here from the documented rule (SHA-256 of the other fields
    as JSON with sorted keys and no spaces), not by langroute's own code.
    """
    body = {key: value for key, value in fields.items() if key != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    (path / "manifest.json").write_text(json.dumps(body | {"manifest_sha256": digest}, indent=2))


def test_manifest_problems_are_clear(tmp_path):
    path = build().save(tmp_path / "r")
    manifest_path = path / "manifest.json"
    original = json.loads(manifest_path.read_text())

    write_manifest(path, original | {"surprise": 1})
    with pytest.raises(RouterStoreError, match="surprise"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())

    write_manifest(path, original | {"format_version": 99})
    with pytest.raises(RouterStoreError, match="upgrade langroute"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())

    settings = original["settings"] | {"k": 0}
    write_manifest(path, original | {"settings": settings})
    with pytest.raises(RouterStoreError, match=r"invalid settings: field 'settings\.k'"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())

    manifest_path.write_text("{not json")
    with pytest.raises(RouterStoreError, match="not JSON"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())

    manifest_path.unlink()
    with pytest.raises(RouterStoreError, match="not a saved langroute router"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())


def test_missing_router(tmp_path):
    with pytest.raises(RouterStoreError, match="no saved router"):
        ExemplarRouter.load(tmp_path / "nothing", embedder=HashingEmbedder())


def test_save_refuses_to_overwrite_foreign_directory(tmp_path):
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RouterStoreError, match="refusing"):
        build().save(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def test_crash_during_save_keeps_previous_copy(tmp_path, monkeypatch):
    path = build().save(tmp_path / "r")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    bigger = build()
    bigger.add_exemplars([Exemplar(text="one more", route="small")])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_synced", crash)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # staging cleaned up
    assert len(ExemplarRouter.load(path, embedder=HashingEmbedder())) == 4


def test_crash_between_renames_is_recovered(tmp_path, monkeypatch):
    path = build().save(tmp_path / "r")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # old copy moved aside, new copy not yet in place
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build().save(path)
    monkeypatch.undo()
    assert not path.exists()
    with pytest.warns(UserWarning, match="interrupted save"):
        recovered = ExemplarRouter.load(path, embedder=HashingEmbedder())
    assert len(recovered) == 4


def test_ids_file_is_plain_numpy(tmp_path):
    path = build().save(tmp_path / "r")
    ids = np.load(path / "ids.npy", allow_pickle=False)
    assert ids.dtype == np.int64 and len(ids) == 4


@pytest.mark.slow
def test_real_embedder_round_trip(tmp_path, minilm_embedder):
    router = ExemplarRouter(
        routes=["small", "large"],
        exemplars=[
            Exemplar(text="good morning!", route="small"),
            Exemplar(text="Prove Fermat's little theorem", route="large"),
        ],
        embedder=minilm_embedder,
    )
    loaded = ExemplarRouter.load(router.save(tmp_path / "r"))
    assert loaded.embedder.fingerprint == "sentence-transformers:all-MiniLM-L6-v2:normalized"
    assert loaded.route("hello, good morning to you").route == "small"


# -- the manifest: its own checksum, strict types -----------------------------------------


@pytest.mark.parametrize(
    "value", [b'"k": 7', b'"min_margin": 0.15', b'"temperature": 0.07', b'"format_version": 2']
)
def test_every_bit_flip_in_a_manifest_value_is_refused(neutral_dir, value):
    path = build(k=7, min_margin=0.15, temperature=0.07).save(neutral_dir / "r")
    manifest_path = path / "manifest.json"
    data = manifest_path.read_bytes()
    assert data.count(value) == 1
    start = data.index(value) + value.index(b":") + 2  # the value's bytes, after ": "
    still_json = 0
    for offset in range(start, data.index(value) + len(value)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[offset] ^= 1 << bit
            manifest_path.write_bytes(bytes(flipped))
            with pytest.raises(RouterStoreError) as refused:
                ExemplarRouter.load(path, embedder=HashingEmbedder())
            message = str(refused.value)
            assert str(manifest_path) in message
            try:
                json.loads(bytes(flipped))
            except ValueError:
                continue
            still_json += 1  # only the checksum can tell: it must, and say so
            assert message == (
                f"{manifest_path} is corrupted: checksum mismatch "
                "(field 'manifest_sha256' does not match the other fields)"
            ), message
    assert still_json > 0
    manifest_path.write_bytes(data)
    assert ExemplarRouter.load(path, embedder=HashingEmbedder()).settings.k == 7


@pytest.mark.parametrize("version", ["2", "1", 0, -5, True, 2.0, None])
def test_format_version_must_be_a_known_integer(neutral_dir, version):
    path = build().save(neutral_dir / "r")
    fields = json.loads((path / "manifest.json").read_text()) | {"format_version": version}
    write_manifest(path, fields)
    with pytest.raises(RouterStoreError, match="field 'format_version'") as refused:
        ExemplarRouter.load(path, embedder=HashingEmbedder())
    assert str(path / "manifest.json") in str(refused.value)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("settings.k", lambda m: m["settings"].update(k="7")),
        ("settings.k", lambda m: m["settings"].update(k=True)),
        ("settings.temperature", lambda m: m["settings"].update(temperature="0.07")),
        ("settings.routes", lambda m: m["settings"].update(routes="small")),
        ("exemplar_count", lambda m: m.update(exemplar_count="4")),
        ("exemplar_count", lambda m: m.update(exemplar_count=-1)),
        ("files.ids.npy.bytes", lambda m: m["files"]["ids.npy"].update(bytes=True)),
        ("embedder.dimension", lambda m: m["embedder"].update(dimension="256")),
    ],
)
def test_manifest_types_are_strict(neutral_dir, field, change):
    path = build().save(neutral_dir / "r")
    fields = json.loads((path / "manifest.json").read_text())
    change(fields)
    write_manifest(path, fields)
    with pytest.raises(RouterStoreError, match=re.escape(f"field '{field}'")) as refused:
        ExemplarRouter.load(path, embedder=HashingEmbedder())
    assert str(path / "manifest.json") in str(refused.value)


def test_format_version_1_without_manifest_checksum_still_loads(tmp_path):
    path = build(k=3).save(tmp_path / "r")
    fields = json.loads((path / "manifest.json").read_text())
    assert fields["format_version"] == store.FORMAT_VERSION == 2
    del fields["manifest_sha256"]
    # what langroute 0.1.0 wrote: format version 1, no checksum of the manifest
    (path / "manifest.json").write_text(json.dumps(fields | {"format_version": 1}, indent=2))
    loaded = ExemplarRouter.load(path, embedder=HashingEmbedder())
    assert (len(loaded), loaded.settings.k) == (4, 3)
    # version 2 must carry its checksum
    (path / "manifest.json").write_text(json.dumps(fields, indent=2))
    with pytest.raises(RouterStoreError, match="field 'manifest_sha256' is missing"):
        ExemplarRouter.load(path, embedder=HashingEmbedder())
    # saving again writes the current version
    loaded.save(path)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2


# -- where a save goes: modes, symlinks, places it cannot write ----------------------------


def test_save_keeps_the_directory_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        path = build().save(tmp_path / "r")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755  # a new router: mkdir's default
    for mode in (0o750, 0o705, 0o555):
        path.chmod(mode)
        build().save(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert [p.name for p in tmp_path.iterdir()] == ["r"]
    path.chmod(0o755)


@pytest.mark.parametrize("relative", [True, False])
def test_save_through_a_symlink_keeps_the_link(tmp_path, relative):
    real = build().save(tmp_path / "data" / "r")
    link = tmp_path / "current"
    link.symlink_to(Path("data") / "r" if relative else real)
    before = os.readlink(link)
    bigger = build()
    bigger.add_exemplars([Exemplar(text="one more", route="small")])
    assert bigger.save(link) == link
    assert link.is_symlink() and os.readlink(link) == before
    assert len(ExemplarRouter.load(real, embedder=HashingEmbedder())) == 5
    assert len(ExemplarRouter.load(link, embedder=HashingEmbedder())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "data"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["r"]


def test_save_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    for path in (blocker / "r", blocker / "deeper" / "r"):
        with pytest.raises(RouterStoreError, match="not a directory; nothing was written") as err:
            build().save(path)
        assert f"{blocker} is a file" in str(err.value)
    assert blocker.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_save_to_a_broken_symlink_is_a_clear_error(tmp_path):
    link = tmp_path / "r"
    link.symlink_to(tmp_path / "unmounted" / "r")
    with pytest.raises(RouterStoreError, match=r"symlink to .* which does not exist"):
        build().save(link)
    assert link.is_symlink() and not (tmp_path / "unmounted").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_save_into_a_read_only_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = build().save(folder / "r")
    (folder / ".r.saving-abcd1234").mkdir()  # left by a killed save
    folder.chmod(0o555)
    try:
        with pytest.raises(RouterStoreError, match=re.escape(f"{folder} is not writable")):
            build().save(folder / "r")
        with pytest.raises(RouterStoreError, match=re.escape(f"{folder} is not writable")):
            build().save(folder / "new")
        assert len(ExemplarRouter.load(path, embedder=HashingEmbedder())) == 4  # still reads
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == [".r.saving-abcd1234", "r"]
