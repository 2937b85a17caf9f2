"""Bad data gets a clear error before anything is computed (issue 28 part 6).

Each test is one attempt from the issue: money that is not a finite non-negative
number, timestamps at the ends of the calendar, a scored set with a row unscored, a
typo'd or case-different label, a one-route set, booleans as scores, controls in
``--json`` output, help text losing bracketed words, and a bad file found only after
embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute import Exemplar, ExemplarRouter, load_exemplars
from langroute.cli.app import app
from langroute.costs import LedgerFormatError, LedgerRecord
from langroute.embedders import HashingEmbedder
from langroute.errors import ExemplarFormatError, RouterConfigError
from langroute.evaluation import evaluate

runner = CliRunner()

SMALL = ["hello there", "thanks a lot", "translate cat into German", "what time is it"]
LARGE = ["prove the theorem", "write a web crawler in Go", "plan a marketing launch", "derive it"]
HOSTILE = "\x7f\x9b\u202e\u2066"  # DEL, a C1 control (CSI), a bidi override, an isolate


def flat(output: str) -> str:
    """Command output with rich's line wrapping undone."""
    return " ".join(output.split())


def good_record(**change: object) -> dict[str, object]:
    return {
        "timestamp": "2026-01-01T00:00:00+00:00",
        "route": "small",
        "model": "gpt-4o-mini",
        "cost": 0.01,
        "baseline_cost": 0.1,
        "metadata": {},
        **change,
    }


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def labelled(n_each: int = 4) -> list[dict[str, object]]:
    rows = []
    for i in range(n_each):
        rows.append({"text": f"{SMALL[i % 4]} {i}", "route": "small"})
        rows.append({"text": f"{LARGE[i % 4]} {i}", "route": "large"})
    return rows


def scored(n: int = 8) -> list[dict[str, object]]:
    return [
        {"text": f"{(SMALL + LARGE)[i % 8]} {i}", "scores": {"small": i % 2, "large": 1.0}}
        for i in range(n)
    ]


def saved_router(path: Path, flip: bool = False) -> Path:
    rows = [Exemplar(**row) for row in labelled()]  # type: ignore[arg-type]
    if flip:
        rows = [
            r.model_copy(update={"route": "large" if r.route == "small" else "small"}) for r in rows
        ]
    ExemplarRouter(routes=["small", "large"], exemplars=rows, embedder=HashingEmbedder()).save(path)
    return path


# -- money and time in the ledger ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cost": float("nan")}, "finite"),
        ({"cost": float("inf")}, "finite"),
        ({"baseline_cost": float("inf")}, "finite"),
        ({"cost": -995.0}, "greater than or equal to 0"),
        ({"timestamp": "9999-12-31T23:00:00-05:00"}, "out of range"),
        ({"timestamp": "0001-01-01T01:00:00+05:00"}, "out of range"),
    ],
)
def test_report_and_monitor_refuse_bad_money_and_time_naming_the_line(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    """Before: totals ``$nan``/``$inf``, "saved $995", bare ``NaN`` in JSON, OverflowError."""
    path = write_jsonl(tmp_path / "costs.jsonl", [good_record(), good_record(**change)])
    for args in (["report", str(path)], ["report", str(path), "--json"], ["monitor", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert "costs.jsonl:2" in flat(result.output) and problem in flat(result.output), (
            result.output
        )
        assert "NaN" not in result.stdout and "Traceback" not in result.output


def test_bad_money_and_time_are_refused_when_written() -> None:
    for change in ({"cost": float("nan")}, {"latency_ms": -1.0}, {"cost": -0.5}):
        with pytest.raises(ValueError):
            LedgerRecord(**change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        LedgerRecord(timestamp="9999-12-31T23:59:00-01:00")  # type: ignore[arg-type]
    assert LedgerRecord(cost=0.0, baseline_cost=-0.0).cost == 0.0


def test_a_sqlite_ledger_row_with_bad_money_is_a_format_error(tmp_path: Path) -> None:
    import sqlite3

    from langroute.costs.sinks import SQLiteSink

    sink = SQLiteSink(tmp_path / "costs.sqlite")
    sink.write(LedgerRecord(route="small", cost=0.5))
    sink.close()
    with sqlite3.connect(tmp_path / "costs.sqlite") as conn:
        conn.execute("UPDATE ledger SET cost = -3")
    with pytest.raises(LedgerFormatError, match="greater than or equal to 0"):
        SQLiteSink(tmp_path / "costs.sqlite").read()


# -- evaluation sets ----------------------------------------------------------------------------


def test_a_scored_set_with_one_row_unscored_is_an_error_naming_its_line(tmp_path: Path) -> None:
    """Before: ``eval`` printed nothing and exited 0; ``compare`` said OK in labels mode."""
    rows = scored()
    rows[5] = {"text": rows[5]["text"]}
    evalset = write_jsonl(tmp_path / "eval.jsonl", rows)
    exemplars = write_jsonl(tmp_path / "ex.jsonl", scored(12))
    result = runner.invoke(
        app,
        ["eval", str(exemplars), str(evalset), "--embedder", "hashing", "--no-tune",
         "--routes", "small,large", "--plot", str(tmp_path / "p.png")],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "eval.jsonl:6: no scores, while" in flat(result.output)
    a, b = saved_router(tmp_path / "a"), saved_router(tmp_path / "b")
    result = runner.invoke(app, ["compare", str(a), str(b), str(evalset)])
    assert result.exit_code == 2, result.output
    assert "eval.jsonl:6: no scores" in flat(result.output) and "OK" not in flat(result.output)


def test_a_label_differing_from_a_route_in_case_is_an_error_naming_label_and_routes(
    tmp_path: Path,
) -> None:
    """Before: ``Large`` was counted as out of scope."""
    rows = labelled()
    rows[3]["route"] = "Large"
    evalset = write_jsonl(tmp_path / "eval.jsonl", rows)
    router = ExemplarRouter.load(saved_router(tmp_path / "r"), embedder=HashingEmbedder())
    with pytest.raises(
        RouterConfigError, match=r"eval.jsonl:4: label 'Large' .*'large'.*\['small', 'large'\]"
    ):
        evaluate(router, evalset)


def test_a_one_route_set_is_refused_instead_of_scoring_100_percent(tmp_path: Path) -> None:
    rows = [{"text": f"question number {i}", "route": "small"} for i in range(12)]
    exemplars = write_jsonl(tmp_path / "ex.jsonl", rows)
    result = runner.invoke(
        app,
        [
            "eval",
            str(exemplars),
            str(exemplars),
            "--embedder",
            "hashing",
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "one route" in flat(result.output) and "accuracy" not in result.output
    one = ExemplarRouter(
        routes=["small"], exemplars=[Exemplar(**r) for r in rows], embedder=HashingEmbedder()
    )  # type: ignore[arg-type]
    with pytest.raises(RouterConfigError, match="one route"):
        evaluate(one, exemplars)


def test_a_typo_label_in_many_exemplars_is_not_made_a_route(tmp_path: Path) -> None:
    """Before: one ``lagre`` among 100k rows became the strongest route and the fallback."""
    rows = labelled(100)
    rows.append({"text": "one more hard question", "route": "lagre"})
    exemplars = write_jsonl(tmp_path / "ex.jsonl", rows)
    result = runner.invoke(
        app, ["build", str(exemplars), "--output", str(tmp_path / "r"), "--embedder", "hashing"]
    )
    assert result.exit_code != 0, result.output
    assert "ex.jsonl:201: label 'lagre' is on 1 of 201" in flat(result.output)
    assert not (tmp_path / "r").exists()
    result = runner.invoke(
        app,
        ["tune", str(exemplars), "--embedder", "hashing"],
    )
    assert result.exit_code == 1 and "ex.jsonl:201: label 'lagre'" in flat(result.output)


def test_booleans_are_not_scores(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "ex.jsonl", [{"text": "hi", "scores": {"small": True, "large": 1}}]
    )
    with pytest.raises(ExemplarFormatError, match=r"ex.jsonl:1.*boolean"):
        load_exemplars(path)
    with pytest.raises(ValueError, match="boolean"):
        Exemplar(text="hi", scores={"small": False})


# -- files are checked before embedding ------------------------------------------------------------


def test_eval_compare_and_calibrate_check_the_file_before_anything_heavy(tmp_path: Path) -> None:
    """Before: ``eval`` read the evaluation file only after embedding and tuning (minutes).

    The embedder (a model path that does not exist) and the routers (missing folders)
    would fail if they were reached: the file's error shows they are not.
    """
    exemplars = write_jsonl(tmp_path / "ex.jsonl", labelled())
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"text": "fine", "route": "small"}\n{"text": "torn\n')
    missing_model = str(tmp_path / "no-such-model")
    result = runner.invoke(app, ["eval", str(exemplars), str(bad), "--embedder", missing_model])
    assert result.exit_code == 1 and "eval.jsonl:2" in flat(result.output), result.output
    nowhere = str(tmp_path / "no-router")
    result = runner.invoke(app, ["compare", nowhere, nowhere, str(bad)])
    assert result.exit_code == 2 and "eval.jsonl:2" in flat(result.output), result.output
    result = runner.invoke(
        app, ["calibrate", str(bad), "--router", nowhere, "--target-strong-share", "0.5"]
    )
    assert result.exit_code == 1 and "eval.jsonl:2" in flat(result.output), result.output


# -- JSON output and help text ---------------------------------------------------------------------


def assert_no_raw_controls(text: str) -> None:
    raw = sorted({hex(ord(c)) for c in text if c in HOSTILE})
    assert not raw, f"raw control or bidi characters in JSON output: {raw}"


def test_json_output_escapes_controls_and_bidi_characters(tmp_path: Path) -> None:
    """Before: ``route``/``compare``/``monitor --json`` passed DEL, C1 and bidi raw."""
    router = saved_router(tmp_path / "r")
    result = runner.invoke(
        app, ["route", f"hello {HOSTILE} there", "--router", str(router), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.stdout)
    assert json.loads(result.stdout)["query"] == f"hello {HOSTILE} there"

    ledger = write_jsonl(tmp_path / "costs.jsonl", [good_record(route=f"small{HOSTILE}")])
    result = runner.invoke(app, ["monitor", str(ledger), "--json"])
    assert_no_raw_controls(result.stdout)
    assert f"small{HOSTILE}" in json.dumps(json.loads(result.stdout), ensure_ascii=False)

    rows = [{**row, "text": f"{row['text']} {HOSTILE}"} for row in labelled()]
    evalset = write_jsonl(tmp_path / "eval.jsonl", rows)
    flipped = saved_router(tmp_path / "flipped", flip=True)
    result = runner.invoke(app, ["compare", str(router), str(flipped), str(evalset), "--json"])
    assert result.exit_code in (0, 1), result.output
    assert_no_raw_controls(result.stdout)
    flips = json.loads(result.stdout)["flipped"]
    assert flips and all(flip["text"].endswith(HOSTILE) for flip in flips)


def test_help_keeps_words_in_brackets() -> None:
    """Before: "a models file with a  table" and "the keys file named in  keys"."""
    wide = {"COLUMNS": "300"}
    assert "[chain] table" in runner.invoke(app, ["eval", "--help"], env=wide).output
    assert "[serve] keys" in runner.invoke(app, ["--help"], env=wide).output
    assert "(default: [serve] host)" in runner.invoke(app, ["serve", "--help"], env=wide).output
