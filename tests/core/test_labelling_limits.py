"""Labelling that never pays twice or past its budget (issue 28, part 3).

Each test is an attempt from the issue: a model answering 10 MB, a spec whose own
``max_tokens`` is larger than ``max_output_tokens``, an answer holding a lone
surrogate, a model that never answers. Offline: scripted models, real journal and
ledger files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute.costs import CostLedger
from langroute.files.journal import Journal
from langroute.labels import label
from langroute.models.scripted import ScriptedCompletionModel

HUGE_ANSWER = "word " * 2_097_152  # 10 MiB, 2,097,152 output tokens (word-count usage)
PRICES = {
    "cheap-model": {"input_per_mtok": 0.0, "output_per_mtok": 0.0},
    "huge-model": {"input_per_mtok": 1.0, "output_per_mtok": 5.0},  # a 10 MB answer: $10.49
}


def questions(n: int) -> list[str]:
    return [f"Describe topic number {i}." for i in range(n)]


def test_a_10mb_answer_overruns_honestly_and_stops_the_run(tmp_path):
    from langroute.labels.calls import DEFAULT_MAX_ANSWER_CHARS

    huge = ScriptedCompletionModel("huge-model", reply=HUGE_ANSWER)
    models = {"small": ScriptedCompletionModel("cheap-model", reply="ok"), "large": huge}
    out = tmp_path / "scored.jsonl"
    report = label(
        questions(3),
        models,
        out,
        grader="validators",
        budget=1.00,
        prices=PRICES,
        concurrency=1,
    )
    assert len(huge.calls) == 1  # the overrun stops the run: no second 10 MB answer
    assert report.spent_total == pytest.approx(10.49, abs=0.01)
    assert report.overrun == pytest.approx(report.spent_total - 1.00)
    summary = report.summary()
    assert "$0.0000 left" not in summary
    assert "budget $1.00 overrun by $9.48" in summary
    assert "2,097,152 output tokens against a cap of 1,024" in summary
    assert report.not_started == 2
    # the stored answer is cut; the journal says by how much
    [stored] = [row for row in Journal(tmp_path / "scored.calls.jsonl").read() if row["cut_chars"]]
    assert len(stored["text"]) == DEFAULT_MAX_ANSWER_CHARS
    assert stored["cut_chars"] == len(HUGE_ANSWER) - DEFAULT_MAX_ANSWER_CHARS
    assert (tmp_path / "scored.calls.jsonl").stat().st_size < 2 * DEFAULT_MAX_ANSWER_CHARS


MODULE = """\
from langroute.models.scripted import ScriptedCompletionModel


def model(name, reply_words=1, max_tokens=None):
    # answers as long as the cap it was given lets it (one token a word)
    words = max_tokens if max_tokens is not None else reply_words
    return ScriptedCompletionModel(name, reply="word " * words)
"""


def write_models(tmp_path: Path, module: str, large: str) -> Path:
    (tmp_path / f"{module}.py").write_text(MODULE, encoding="utf-8")
    path = tmp_path / "models.toml"
    path.write_text(
        "[routes]\n"
        f'small = {{ factory = "{module}:model", name = "cheap-model" }}\n'
        f"large = {large}\n"
        '[prices."cheap-model"]\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n'
        '[prices."huge-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 5.0\n',
        encoding="utf-8",
    )
    return path


def test_the_cli_says_the_budget_was_overrun_not_stopped_cleanly(tmp_path, monkeypatch):
    from langroute.cli.app import app

    models = write_models(
        tmp_path,
        "huge_answers_cli",
        '{ factory = "huge_answers_cli:model", name = "huge-model", reply_words = 2097152 }',
    )
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"text": q}) + "\n" for q in questions(3)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "label",
            str(queries),
            "-m",
            str(models),
            "-o",
            "scored.jsonl",
            "--grader",
            "validators",
            "--budget",
            "1.00",
            "--concurrency",
            "1",
            "--no-progress",
        ],
        env={"COLUMNS": "200"},
    )
    sys.modules.pop("huge_answers_cli", None)
    assert result.exit_code == 1, result.output
    assert "stopped cleanly" not in result.output
    assert "overrun by $9.48" in result.output and "cap of 1,024" in result.output


def test_a_spec_max_tokens_is_the_cap_the_budget_reserves(tmp_path):
    # max_tokens reaches the model itself (8192), max_output_tokens stays at 1024
    models = write_models(
        tmp_path,
        "capped_answers",
        '{ factory = "capped_answers:model", name = "huge-model", max_tokens = 8192 }',
    )
    try:
        report = label(
            questions(4),
            models,
            tmp_path / "scored.jsonl",
            grader="validators",
            budget=0.10,
            concurrency=1,
        )
    finally:
        sys.modules.pop("capped_answers", None)
    # each large call costs $0.041 (8192 output tokens at $5/M): two fit in $0.10
    assert report.stopped_by_budget and report.labelled == 2
    assert report.spent_total <= 0.10 and report.overrun == 0.0
    assert "overrun" not in report.summary()


def test_an_answer_with_a_lone_surrogate_is_journalled_and_never_paid_twice(tmp_path):
    broken = ScriptedCompletionModel("cheap-model", reply="half a pair: \ud800 end")
    models = {"small": broken}
    out = tmp_path / "scored.jsonl"
    first = label(["Say something odd."], models, out, grader="validators", prices=PRICES)
    assert first.labelled == 1 and not first.failed and first.paid_calls == 1
    [row] = Journal(tmp_path / "scored.calls.jsonl").read()
    assert row["text"] == "half a pair: \ud800 end"  # read back unchanged
    assert len(CostLedger.open(tmp_path / "scored.ledger.jsonl").records()) == 1
    out.unlink()  # the output is gone, the call journal is not
    again = label(["Say something odd."], models, out, grader="validators", prices=PRICES)
    assert again.labelled == 1 and again.paid_calls == 0
    assert len(broken.calls) == 1
    assert len(CostLedger.open(tmp_path / "scored.ledger.jsonl").records()) == 1


def test_a_model_that_never_answers_times_out_and_is_retried(tmp_path):
    silent = ScriptedCompletionModel("cheap-model", reply="late", latency=3600.0)
    other = ScriptedCompletionModel("huge-model", reply="fine")
    report = label(
        ["Will you answer?"],
        {"small": silent, "large": other},
        tmp_path / "scored.jsonl",
        grader="validators",
        prices=PRICES,
        timeout=0.05,
        max_retries=2,
        retry_delay=0.0,
    )
    assert report.labelled == 0 and report.retries == 2
    [failed] = report.failed
    assert failed.error == "TimeoutError: no answer within 0.05 s"
    assert len(silent.calls) == 3  # the first try and two retries
    errors = [
        r.error for r in CostLedger.open(tmp_path / "scored.ledger.jsonl").records() if r.error
    ]
    assert errors == ["TimeoutError: no answer within 0.05 s"] * 3
