from __future__ import annotations

import json
from pathlib import Path

import pytest

from langroute import Exemplar, ExemplarFormatError, load_exemplars, save_exemplars
from langroute.router.exemplars import text_id


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_id_is_derived_from_text_and_stable():
    a = Exemplar(text="hello", route="small")
    b = Exemplar(text="hello", route="large")
    assert a.id == b.id == text_id("hello")
    assert Exemplar(text="hello", id="custom").id == "custom"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "   "}, "text is empty"),
        ({"text": "q", "scores": {"a": 1.5}}, r"in \[0, 1\]"),
        ({"text": "q", "scores": {"a": float("nan")}}, r"in \[0, 1\]"),
        ({"text": "q", "weight": 0}, "positive"),
        ({"text": "q", "route": " "}, "route is empty"),
    ],
)
def test_invalid_exemplars_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Exemplar(**kwargs)


def test_label_derived_from_scores_is_cheapest_best():
    routes = ["weak", "strong"]
    assert Exemplar(text="q", scores={"weak": 1, "strong": 1}).label_for(routes) == "weak"
    assert Exemplar(text="q", scores={"weak": 0, "strong": 1}).label_for(routes) == "strong"
    assert Exemplar(text="q", scores={"weak": 0, "strong": 0}).label_for(routes) == "weak"
    # score keys can differ from route names
    ex = Exemplar(text="q", scores={"mixtral": 0.0, "gpt-4": 1.0})
    assert ex.label_for(routes, {"weak": "mixtral", "strong": "gpt-4"}) == "strong"


def test_label_implies_scores():
    ex = Exemplar(text="q", route="medium")
    assert ex.route_scores(["small", "medium", "large"]) == [0.0, 1.0, 1.0]


def test_jsonl_round_trip_with_shared_field_names(tmp_path):
    path = write(
        tmp_path / "data.jsonl",
        '{"prompt": "What is 2+2?", "scores": {"weak": 1.0, "strong": 1.0}, '
        '"contaminated": false}\n'
        "\n"
        '{"text": "hi", "label": "small", "source": "clinc150"}\n',
    )
    loaded = load_exemplars(path)
    assert [ex.text for ex in loaded] == ["What is 2+2?", "hi"]
    assert loaded[0].metadata == {"contaminated": False}
    assert loaded[1].route == "small" and loaded[1].metadata == {"source": "clinc150"}
    out = save_exemplars(loaded, tmp_path / "out.jsonl")
    assert load_exemplars(out) == loaded


def test_csv_round_trip_and_score_columns(tmp_path):
    path = write(
        tmp_path / "data.csv",
        "text,route,score:weak,score:strong\nhello,small,,\nprove it,,0,1\n",
    )
    loaded = load_exemplars(path)
    assert loaded[0].route == "small" and loaded[0].scores is None
    assert loaded[1].scores == {"weak": 0.0, "strong": 1.0}
    out = save_exemplars(loaded, tmp_path / "out.csv")
    assert load_exemplars(out) == loaded


@pytest.mark.parametrize(
    ("content", "line", "field"),
    [
        ('{"text": "ok", "route": "small"}\n{"text": "bad"\n', 2, None),
        ('{"text": "ok"}\n{"route": "small"}\n', 2, "text"),
        ('{"text": "ok"}\n{"text": "x", "scores": {"a": 2}}\n', 2, "scores"),
        ('{"text": "ok"}\n\n{"text": "x", "weight": -1}\n', 3, "weight"),
        ('["not", "an", "object"]\n', 1, None),
    ],
)
def test_malformed_jsonl_names_file_line_and_field(tmp_path, content, line, field):
    path = write(tmp_path / "bad.jsonl", content)
    with pytest.raises(ExemplarFormatError) as info:
        load_exemplars(path)
    error = info.value
    assert error.line == line
    assert error.field == field
    assert str(path) in str(error) and f":{line}:" in str(error)


def test_malformed_csv_names_line(tmp_path):
    path = write(tmp_path / "bad.csv", "text,score:weak\nfine,0.5\nbroken,abc\n")
    with pytest.raises(ExemplarFormatError) as info:
        load_exemplars(path)
    assert info.value.line == 3 and info.value.field == "score:weak"


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(ExemplarFormatError, match="unsupported file type"):
        load_exemplars(write(tmp_path / "x.txt", "hi"))
    with pytest.raises(ExemplarFormatError, match="no such file"):
        load_exemplars(tmp_path / "missing.jsonl")


def test_starter_pack_is_valid_and_balanced():
    from langroute.router.exemplar_router import STARTER_EXEMPLARS

    pack = load_exemplars(STARTER_EXEMPLARS)
    assert len(pack) >= 300
    routes = [ex.route for ex in pack]
    assert set(routes) == {"small", "large"}
    assert 0.4 < routes.count("small") / len(routes) < 0.6
    assert len({ex.id for ex in pack}) == len(pack)
    categories = {ex.metadata["category"] for ex in pack}
    for expected in ("chit_chat", "translation", "math", "code_generation", "planning"):
        assert expected in categories
    # every line is plain JSON we can read back without langroute
    for line in STARTER_EXEMPLARS.read_text(encoding="utf-8").splitlines():
        assert json.loads(line)["text"].strip()


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_invalid_utf8_is_reported_with_its_line(tmp_path, suffix):
    rows = (
        [b'{"text": "fine", "route": "small"}', b'{"text": "ok", "route": "large"}']
        if suffix == "jsonl"
        else [b"text,route", b"fine,small"]
    )
    bad = b'{"text": "caf\xe9", "route": "small"}' if suffix == "jsonl" else b"caf\xe9,small"
    path = tmp_path / f"latin1.{suffix}"
    path.write_bytes(b"\n".join([*rows, bad, b""]))
    with pytest.raises(ExemplarFormatError) as info:
        load_exemplars(path)
    assert info.value.line == 3
    assert f"{path}:3:" in str(info.value) and "not UTF-8" in str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"text": "hello", "route": "small"}\n')
    csv_file = tmp_path / "bom.csv"
    csv_file.write_bytes(b"\xef\xbb\xbftext,route\r\nhello,small\r\n")
    for path in (jsonl, csv_file):
        (exemplar,) = load_exemplars(path)
        assert (exemplar.text, exemplar.route, exemplar.metadata) == ("hello", "small", {})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("r.jsonl", '{"text": "a", "route": "small"}\n\n{"text": "b", "route": "medium"}\n'),
        ("r.csv", "text,route\na,small\n\nb,medium\n"),
    ],
)
def test_unknown_route_names_file_line_and_field(tmp_path, name, content):
    from langroute import ExemplarRouter, HashingEmbedder

    path = write(tmp_path / name, content)
    assert [ex.route for ex in load_exemplars(path)] == ["small", "medium"]  # no routes given
    for load in (
        lambda: load_exemplars(path, routes=["small", "large"]),
        lambda: ExemplarRouter.from_file(path, ["small", "large"], embedder=HashingEmbedder()),
    ):
        with pytest.raises(ExemplarFormatError) as info:
            load()
        assert (info.value.line, info.value.field) == (3 if name.endswith("jsonl") else 4, "route")
        assert "'medium'" in str(info.value) and f"{path}:" in str(info.value)


def test_csv_row_missing_its_route_cell_names_line_and_field(tmp_path):
    path = write(tmp_path / "short.csv", "text,route\nhello,small\nprove it\n")
    with pytest.raises(ExemplarFormatError) as info:
        load_exemplars(path)
    assert (info.value.line, info.value.field) == (3, "route")
    assert "missing cell" in str(info.value) and f"{path}:3:" in str(info.value)


@pytest.mark.parametrize(
    ("content", "field", "says"),
    [
        (
            '{"text": "hi", "route": "small"}\n{"text": "x", "route": "small"}\n'
            '{"text": "hi", "route": "large"}\n',
            "route",
            "the same text as line 1",
        ),
        (
            '{"id": "q1", "text": "hi", "route": "small"}\n'
            '{"id": "q1", "text": "hello", "route": "large"}\n{"text": "x"}\n',
            "route",
            "id 'q1' as line 1",
        ),
        (
            '{"text": "x"}\n{"text": "hi", "scores": {"a": 1.0}}\n'
            '{"text": "hi", "scores": {"a": 0.0}}\n',
            "scores",
            "the same text as line 2",
        ),
    ],
)
def test_duplicate_ids_with_conflicting_labels_are_errors(tmp_path, content, field, says):
    path = write(tmp_path / "dup.jsonl", content)
    with pytest.raises(ExemplarFormatError) as info:
        load_exemplars(path)
    error = info.value
    line = 2 if "q1" in content else 3
    assert (error.line, error.field) == (line, field) and says in str(error)


def test_duplicates_with_the_same_labels_are_allowed(tmp_path):
    path = write(
        tmp_path / "dup.jsonl",
        '{"text": "hi", "route": "small"}\n{"text": "hi", "route": "small", "weight": 2}\n',
    )
    assert [ex.weight for ex in load_exemplars(path)] == [1.0, 2.0]


def test_exemplar_text_of_invisible_characters_only_is_refused_with_its_line(tmp_path):
    path = tmp_path / "ex.jsonl"
    path.write_text(
        '{"text": "hello there", "route": "small"}\n{"text": "\\u200b\\u0000", "route": "small"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ExemplarFormatError, match=r"ex.jsonl:2.*no visible character"):
        load_exemplars(path)
