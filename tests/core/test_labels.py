"""Labelling (issue 13, part 1): graders, the models file, resumable budgeted runs, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langroute.costs import CostLedger
from langroute.errors import ExemplarFormatError, LabellingError, ModelsConfigError
from langroute.files.journal import Journal
from langroute.labels import (
    JudgeGrader,
    LabelQuery,
    ReferenceGrader,
    ValidatorGrader,
    alabel,
    grader_from_name,
    label,
    load_queries,
)
from langroute.labels.calls import is_retryable
from langroute.labels.json_schema import schema_errors
from langroute.models.config import load_models_config
from langroute.models.scripted import ScriptedCompletionModel, ScriptedRateLimitError
from langroute.router.exemplars import load_exemplars
from langroute.scorers import JSONValidator

REPO = Path(__file__).resolve().parents[2]
PRICES = {
    "cheap-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    "strong-model": {"input_per_mtok": 10.0, "output_per_mtok": 20.0},
}


def grade(grader, reference, answers, ask=None):
    query = LabelQuery(id="q", text="question?", reference=reference)
    grades = asyncio.run(grader.grade(query, answers, ask))
    return {route: g.score for route, g in grades.items()}


# --------------------------------------------------------------------------- graders


@pytest.mark.parametrize(
    ("matcher", "reference", "answer", "expected"),
    [
        ("exact", "Paris", " Paris\n", 1.0),
        ("exact", "Paris", "paris", 0.0),
        ("normalised", "The Eiffel Tower", "eiffel tower!", 1.0),
        ("normalised", "Paris", "Paris, France", 0.0),
        ("numeric", "42", "So the answer is #### 42", 1.0),
        ("numeric", 1234, "It costs $1,234.00 in total", 1.0),
        ("numeric", "18", "First 18, then 20.", 0.0),  # the last number counts
        ("numeric", "0.5", "no number here", 0.0),
        ("contains", "Paris", "The capital is Paris, of course.", 1.0),
        ("contains", "Par", "The capital is Paris.", 0.0),  # word boundaries
        ("regex", r"^\s*\(?B\)?\b", "B) because ...", 1.0),
        ("regex", r"^\s*\(?B\)?\b", "A) because ...", 0.0),
        ("json-schema", {"type": "object", "required": ["n"]}, '```json\n{"n": 1}\n```', 1.0),
        ("json-schema", '{"type": "object", "required": ["n"]}', '{"m": 1}', 0.0),
        ("json-schema", {"type": "object"}, "not json", 0.0),
    ],
)
def test_reference_matchers(matcher, reference, answer, expected):
    assert grade(ReferenceGrader(matcher), reference, {"r": answer}) == {"r": expected}


def test_a_bad_reference_fails_only_its_query():
    from langroute.labels import GradingError

    with pytest.raises(GradingError, match="not a regular expression"):
        grade(ReferenceGrader("regex"), "(unclosed", {"r": "x"})
    with pytest.raises(GradingError, match="holds no number"):
        grade(ReferenceGrader("numeric"), "none", {"r": "4"})
    with pytest.raises(GradingError, match="unsupported JSON-schema keyword"):
        grade(ReferenceGrader("json-schema"), {"$ref": "#/x"}, {"r": "{}"})


def test_json_schema_keywords():
    schema = {
        "type": "object",
        "required": ["name", "tags"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 2, "pattern": "^[A-Z]"},
            "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "kind": {"anyOf": [{"const": "x"}, {"type": "null"}]},
        },
    }
    assert schema_errors({"name": "Al", "age": 3, "tags": ["a"], "kind": None}, schema) == []
    errors = schema_errors({"name": "al", "age": 150.0, "tags": ["c", "a", "b"], "z": 1}, schema)
    assert errors == [
        "$.name: does not match '^[A-Z]'",
        "$.age: 150.0 is not below exclusiveMaximum 150",
        "$.tags: 3 items, more than 2",
        "$.tags[0]: 'c' is not one of ['a', 'b']",
        "$: unexpected property 'z'",
    ]
    assert schema_errors(True, {"type": "integer"}) == ["$: expected integer, got boolean"]


def test_a_callable_reference_grader_and_its_name():
    def first_word(answer, reference):
        return answer.split()[0].lower() == reference.lower()

    grader = ReferenceGrader(first_word)
    assert grader.name == "reference:first_word"
    assert grade(grader, "yes", {"a": "Yes it is", "b": "No"}) == {"a": 1.0, "b": 0.0}
    halves = ReferenceGrader(lambda answer, reference: 0.5)
    assert grade(halves, "x", {"a": "y"}) == {"a": 0.5}


def test_judge_grades_against_the_strongest_answer():
    prompts = []

    async def judge(prompt):
        prompts.append(prompt)
        if "Answer to grade:\n<answer>\nLyon\n" in prompt:
            return "The reference says Paris. Score: 2/10"
        return "Score: 9/10"

    scores = grade(JudgeGrader(), None, {"small": "Lyon", "large": "Paris"}, judge)
    assert scores == {"small": 0.2, "large": 0.9}
    assert "Reference answer:\n<reference>\nParis\n</reference>" in prompts[0]
    assert "Reference answer" not in prompts[1]  # the strongest route is graded on its own


def test_judge_reply_without_a_grade_fails_the_query():
    from langroute.labels import GradingError

    async def judge(prompt):
        return "I would rather not say."

    with pytest.raises(GradingError, match="no single grade in range could be read"):
        grade(JudgeGrader(), None, {"a": "x", "b": "y"}, judge)


def test_validator_grader_uses_the_scorers():
    assert grade(ValidatorGrader(JSONValidator()), None, {"a": '{"x": 1}', "b": "{x"}) == {
        "a": 1.0,
        "b": 0.0,
    }
    refusal = grader_from_name("validators")
    answers = {"a": "Sure: here it is.", "b": "I'm sorry, but I can't help with that."}
    assert grade(refusal, None, answers) == {"a": 1.0, "b": 0.0}


def test_grader_names(tmp_path):
    assert grader_from_name("normalized").name == "reference:normalised"
    assert grader_from_name("judge").needs_judge
    (tmp_path / "my_grading_13.py").write_text(
        "version = '3'\ndef close(answer, reference):\n    return abs(float(answer) - "
        "float(reference)) < 1\nclose.version = '2'\n",
        encoding="utf-8",
    )
    custom = grader_from_name("my_grading_13:close", folder=tmp_path)
    assert (custom.name, custom.version) == ("my_grading_13:close", "2")
    with pytest.raises(LabellingError, match="unknown grader 'fuzzy'"):
        grader_from_name("fuzzy")
    with pytest.raises(LabellingError, match="cannot import 'no_such_module_xyz'"):
        grader_from_name("no_such_module_xyz:f")


# --------------------------------------------------------------------------- models file


def test_models_file_errors_name_the_file_and_route(tmp_path):
    path = tmp_path / "models.toml"
    cases = {
        "[routes]\nsmall = 3\n": "route 'small': expected a spec string or a table",
        "[routes]\nsmall = 'gpt-4o'\n": "'gpt-4o' is not 'provider:model'",
        "[routes]\nsmall = { model = 'a:b', factory = 'c.d:e' }\n": "exactly one of",
        "[route]\nsmall = 'a:b'\n": "unknown table(s) ['route']",
        "[routes]\n": "a [routes] table naming at least one route",
        "[routes]\nsmall = 'a:b'\n[prices.x]\ninput_per_mtok = -1\n": "prices for 'x'",
        "[routes\n": "models.toml",
        "[routes]\nsmall = { model = 'a:b', max_output_tokens = 0 }\n": "route 'small'",
    }
    for text, message in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ModelsConfigError) as caught:
            load_models_config(path)
        assert str(path) in str(caught.value) and message in str(caught.value), text


def test_models_file_factories_load_from_its_folder(tmp_path):
    (tmp_path / "stand_ins.py").write_text(
        "from langroute.models.scripted import ScriptedCompletionModel\n"
        "def make(name, answer):\n"
        "    return ScriptedCompletionModel(name, reply=answer)\n"
        "def broken():\n"
        "    return object()\n",
        encoding="utf-8",
    )
    path = tmp_path / "models.toml"
    path.write_text(
        "[routes]\n"
        'small = { factory = "stand_ins:make", name = "cheap-model", answer = "4" }\n'
        'large = { factory = "stand_ins:broken" }\n'
        '[judge]\nfactory = "stand_ins:make"\nname = "judge-model"\nanswer = "Score: 7/10"\n',
        encoding="utf-8",
    )
    config = load_models_config(path)
    assert config.route_names == ["small", "large"]
    assert config.routes["small"].key == "stand_ins:make[answer='4',name='cheap-model']"
    small = config.build("small")
    assert small.name == "cheap-model" and asyncio.run(small.acomplete("2+2")).text == "4"
    assert config.build("judge").name == "judge-model"
    with pytest.raises(ModelsConfigError, match="route 'large': object has no async acomplete"):
        config.build("large")


# --------------------------------------------------------------------------- journal


def test_journal_cuts_a_torn_tail_and_refuses_a_damaged_line(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.append({"n": 1})
    journal.close()
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"n": 2, "te')
    again = Journal(path)
    assert again.read() == [{"n": 1}] and again.torn_bytes == len('{"n": 2, "te')
    again.append({"n": 3})
    again.close()
    assert [row["n"] for row in Journal(path).read()] == [1, 3]
    path.write_text('{"n": 1}\n[1, 2]\n{"n": 3}\n', encoding="utf-8")
    with pytest.raises(LabellingError, match=r"j\.jsonl:2: expected a JSON object"):
        Journal(path).read()


def test_journal_appends_from_many_threads_share_fsyncs(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    journal = Journal(tmp_path / "j.jsonl")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: journal.append({"n": n, "pad": "x" * 500}), range(400)))
    journal.close()
    assert sorted(row["n"] for row in Journal(tmp_path / "j.jsonl").read()) == list(range(400))


# --------------------------------------------------------------------------- runs

QUESTIONS = [(f"What is {a} + {b}?", str(a + b)) for a, b in [(2, 2), (3, 4), (10, 5), (7, 8)]]


def arithmetic_models(**strong_options):
    """The cheap model is right on sums below 10; the strong one always."""

    def cheap(prompt):
        a, b = (int(x) for x in prompt.removeprefix("What is ").rstrip("?").split(" + "))
        return str(a + b) if a + b < 10 else str(a + b + 1)

    def strong(prompt):
        a, b = (int(x) for x in prompt.removeprefix("What is ").rstrip("?").split(" + "))
        return f"The answer is {a + b}."

    return {
        "small": ScriptedCompletionModel("cheap-model", reply=cheap),
        "large": ScriptedCompletionModel("strong-model", reply=strong, **strong_options),
    }


def write_queries(path: Path, questions=QUESTIONS) -> Path:
    rows = [{"text": q, "reference": r, "metadata": {"topic": "sums"}} for q, r in questions]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_label_writes_scored_exemplars_answers_and_ledger(tmp_path):
    queries = write_queries(tmp_path / "queries.jsonl")
    models = arithmetic_models()
    out = tmp_path / "scored.jsonl"
    report = label(
        queries, models, out, grader="numeric", answers=tmp_path / "answers.jsonl", prices=PRICES
    )
    assert report.labelled == 4 and report.complete and report.paid_calls == 8
    scored = {ex.text: ex for ex in load_exemplars(out)}  # in the order queries finished
    assert [scored[q].scores for q, _ in QUESTIONS] == [
        {"small": 1.0, "large": 1.0},
        {"small": 1.0, "large": 1.0},
        {"small": 0.0, "large": 1.0},
        {"small": 0.0, "large": 1.0},
    ]
    meta = scored[QUESTIONS[0][0]].metadata
    assert meta == {
        "topic": "sums",
        "reference": "4",
        "grader": "reference:numeric",
        "grader_version": "1",
    }
    lines = (tmp_path / "answers.jsonl").read_text().splitlines()
    answers = {row["text"]: row for row in map(json.loads, lines)}
    assert answers[QUESTIONS[2][0]]["answers"] == {"small": "16", "large": "The answer is 15."}
    assert answers[QUESTIONS[2][0]]["grades"]["small"]["reason"] == "numeric: 16 vs 15"
    records = CostLedger.open(tmp_path / "scored.ledger.jsonl").records()
    assert len(records) == 8
    assert {r.metadata["purpose"] for r in records} == {"labelling"}
    assert sum(r.cost for r in records) == pytest.approx(report.spent)
    assert report.spent > 0


def test_identical_calls_are_paid_once_and_a_rerun_pays_nothing(tmp_path):
    # The same question under two ids, and two routes served by one model spec.
    questions = [*QUESTIONS, QUESTIONS[0]]
    rows = [{"id": f"q{i}", "text": q, "reference": r} for i, (q, r) in enumerate(questions)]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    models = arithmetic_models()
    out = tmp_path / "scored.jsonl"
    first = label(queries, models, out, grader="numeric", prices=PRICES)
    assert first.labelled == 5 and first.paid_calls == 8 and first.cache_hits == 2
    assert len(models["small"].calls) == 4 and len(models["large"].calls) == 4
    out.unlink()  # the output is gone, the call journal is not
    again = label(queries, arithmetic_models(), out, grader="numeric", prices=PRICES)
    assert again.labelled == 5 and again.paid_calls == 0 and again.spent == 0.0
    assert again.spent_total == pytest.approx(first.spent_total)
    assert len(load_exemplars(out)) == 5


def test_rate_limits_are_retried_and_a_failing_query_spares_the_others(tmp_path):
    queries = write_queries(tmp_path / "queries.jsonl")
    models = arithmetic_models(failures={1: ScriptedRateLimitError("429"), 2: TimeoutError()})
    models["small"] = ScriptedCompletionModel(
        "cheap-model", script=["4", "7", ValueError("bad request: context too long"), "16"]
    )
    out = tmp_path / "scored.jsonl"
    report = label(queries, models, out, grader="numeric", retry_delay=0.0, concurrency=1)
    assert report.retries == 2
    assert report.labelled == 3 and len(report.failed) == 1
    failed = report.failed[0]
    assert failed.line == 3 and failed.error == "ValueError: bad request: context too long"
    assert not report.complete
    # the next run labels only the failed query; the strong model's answer comes from the cache
    models = arithmetic_models()
    again = label(queries, models, out, grader="numeric", retry_delay=0.0)
    assert again.labelled == 1 and again.skipped == 3 and again.complete
    assert models["small"].calls == ["What is 10 + 5?"] and models["large"].calls == []


def test_is_retryable():
    class APIStatusError(Exception):
        def __init__(self, status_code):
            self.status_code = status_code

    assert is_retryable(APIStatusError(429)) and is_retryable(APIStatusError(503))
    assert not is_retryable(APIStatusError(400)) and not is_retryable(KeyError("x"))
    assert is_retryable(TimeoutError()) and is_retryable(ConnectionResetError())


def test_budget_stops_before_passing_it_and_a_rerun_goes_on(tmp_path):
    questions = [(f"What is {a} + 1?", str(a + 1)) for a in range(12)]
    queries = write_queries(tmp_path / "queries.jsonl", questions)
    out = tmp_path / "scored.jsonl"
    # A query's estimate: 2 calls of (prompt bytes + 32) input and 1024 output tokens;
    # the budget holds one estimate and a little more. Calls cost their real usage.
    per_query = (15 + 32) * (1 + 10) / 1e6 + 1024 * (2 + 20) / 1e6
    budget = per_query + 0.0005
    models = arithmetic_models()
    report = label(
        queries, models, out, grader="numeric", budget=budget, prices=PRICES, concurrency=1
    )
    assert report.stopped_by_budget and not report.complete
    assert 0 < report.labelled < 12 and report.labelled + report.not_started == 12
    assert 0 < report.spent <= budget
    assert report.budget_left == pytest.approx(budget - report.spent)
    assert report.budget_left < per_query  # it stopped only when it had to
    assert "stopped before a call that could pass the budget" in report.summary()
    assert len(load_exemplars(out)) == report.labelled
    # the spend counts across runs: the same budget labels at most the query whose cheap
    # answer the first run already paid for ...
    same = label(queries, models, out, grader="numeric", budget=budget, prices=PRICES)
    assert same.labelled <= 1 and same.stopped_by_budget and same.spent_total <= budget
    # ... a larger one finishes, and no finished call is paid again
    done = label(queries, models, out, grader="numeric", budget=1.0, prices=PRICES)
    assert done.complete and done.spent_total <= 1.0
    assert sorted(models["small"].calls) == sorted(q for q, _ in questions)


def test_a_budget_needs_prices(tmp_path):
    queries = write_queries(tmp_path / "queries.jsonl")
    models = {"small": ScriptedCompletionModel("my-local-llm")}
    with pytest.raises(LabellingError, match=r"no price known for small \(my-local-llm\)"):
        label(queries, models, tmp_path / "out.jsonl", budget=1.0)
    assert not (tmp_path / "out.jsonl").exists()


def test_runs_refuse_missing_references_and_damaged_outputs(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"text": "a", "reference": "x"}\n{"text": "b"}\n', encoding="utf-8")
    models = arithmetic_models()
    with pytest.raises(LabellingError, match=r"1 of 2 queries have no 'reference' \(first: line 2"):
        label(queries, models, tmp_path / "out.jsonl")
    assert load_queries(queries)[1].line == 2
    out = tmp_path / "out.jsonl"
    out.write_text('{"text": "a", "scores": {"small": 2}}\n', encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(ExemplarFormatError, match=r"out\.jsonl:1: not a scored exemplar"):
        label(["a"], models, out, grader="validators")
    assert out.read_bytes() == before  # nothing stored is touched
    with pytest.raises(LabellingError, match="needs a judge model"):
        label(["a"], models, tmp_path / "other.jsonl", grader="judge")


def test_judge_run_through_the_models_file(tmp_path):
    (tmp_path / "judge_stand_ins.py").write_text(
        "from langroute.models.scripted import ScriptedCompletionModel\n"
        "def model(name, reply):\n"
        "    return ScriptedCompletionModel(name, reply=reply)\n"
        "def judge():\n"
        "    return ScriptedCompletionModel('judge-model', reply=lambda p: "
        "'Score: 3/10' if '<answer>\\nLyon' in p else 'Score: 8/10')\n",
        encoding="utf-8",
    )
    models = tmp_path / "models.toml"
    models.write_text(
        "[routes]\n"
        'small = { factory = "judge_stand_ins:model", name = "cheap-model", reply = "Lyon" }\n'
        'large = { factory = "judge_stand_ins:model", name = "strong-model", reply = "Paris" }\n'
        '[judge]\nfactory = "judge_stand_ins:judge"\n',
        encoding="utf-8",
    )
    out = tmp_path / "scored.jsonl"
    report = label(["What is the capital of France?"], models, out, grader="judge")
    assert report.labelled == 1 and report.paid_calls == 4  # 2 answers, 2 judgements
    [scored] = load_exemplars(out)
    assert scored.scores == {"small": 0.3, "large": 0.8}
    assert scored.metadata["grader"] == "judge"
    roles = [
        r.metadata["role"] for r in CostLedger.open(tmp_path / "scored.ledger.jsonl").records()
    ]
    assert sorted(roles) == ["answer", "answer", "judge", "judge"]


def test_alabel_runs_inside_an_event_loop(tmp_path):
    models = {"small": ScriptedCompletionModel("cheap-model")}  # echoes

    async def main():
        with pytest.raises(RuntimeError, match="await alabel"):
            label(["hi"], models, tmp_path / "x.jsonl", grader="validators")
        return await alabel(["hi"], models, tmp_path / "x.jsonl", grader="validators")

    assert asyncio.run(main()).labelled == 1


# --------------------------------------------------------------------------- the CLI, killed

FAKE_MODELS = '''\
import json
import os

from langroute.models.scripted import ScriptedCompletionModel

LOG = os.environ["LABEL_CALL_LOG"]


class Logged(ScriptedCompletionModel):
    """Logs each call once it is answered: a paid call."""

    async def acomplete(self, prompt):
        completion = await super().acomplete(prompt)
        with open(LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps([self.name, prompt]) + "\\n")
        return completion


def model(name, right_below, latency=0.0):
    def reply(prompt):
        number = int(prompt.split()[-1].rstrip("?"))
        return str(number) if number < right_below else "no idea"

    return Logged(name, reply=reply, latency=latency)
'''


def cli_env(log: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COLUMNS": "80",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LABEL_CALL_LOG": str(log),
    }


def setup_cli_run(tmp_path: Path, n: int, latency: float) -> tuple[list[str], Path]:
    (tmp_path / "fake_models.py").write_text(FAKE_MODELS, encoding="utf-8")
    (tmp_path / "models.toml").write_text(
        "[routes]\n"
        f'small = {{ factory = "fake_models:model", name = "cheap-model", right_below = 40, '
        f"latency = {latency} }}\n"
        f'large = {{ factory = "fake_models:model", name = "strong-model", right_below = 90, '
        f"latency = {latency} }}\n"
        '[prices."cheap-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
        '[prices."strong-model"]\ninput_per_mtok = 10.0\noutput_per_mtok = 20.0\n',
        encoding="utf-8",
    )
    rows = [{"text": f"Repeat the number {i}?", "reference": str(i)} for i in range(n)]
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
    )
    args = [
        sys.executable,
        "-m",
        "langroute.cli.app",
        "label",
        "queries.jsonl",
        "--models",
        "models.toml",
        "-o",
        "scored.jsonl",
        "--grader",
        "exact",
        "--concurrency",
        "4",
        "--no-progress",
    ]
    return args, tmp_path / "calls.log"


def paid(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text(encoding="utf-8").splitlines()]


def test_a_killed_run_resumes_without_paying_twice(tmp_path):
    args, log = setup_cli_run(tmp_path, n=60, latency=0.01)
    out = tmp_path / "scored.jsonl"
    process = subprocess.Popen(args, cwd=tmp_path, env=cli_env(log), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 15:
                break
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    written = (
        {ex.id for ex in load_exemplars(out)} if out.read_bytes().endswith(b"\n") else None
    )  # a torn last line is cut on resume
    journal = Journal(tmp_path / "scored.calls.jsonl").read()  # cuts a torn tail too
    cached = {row["key"] for row in journal}
    before = paid(log)
    assert 15 <= len(Journal(out).read()) < 60

    done = subprocess.run(args, cwd=tmp_path, env=cli_env(log), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    scored = load_exemplars(out)  # complete and well-formed
    assert len(scored) == len({ex.id for ex in scored}) == 60
    texts = {ex.text: ex for ex in scored}
    assert texts["Repeat the number 50?"].scores == {"small": 0.0, "large": 1.0}
    assert texts["Repeat the number 5?"].scores == {"small": 1.0, "large": 1.0}
    after = paid(log)[len(before) :]
    from langroute.labels.calls import call_key

    spec = {
        "cheap-model": "fake_models:model[latency=0.01,name='cheap-model',right_below=40]",
        "strong-model": "fake_models:model[latency=0.01,name='strong-model',right_below=90]",
    }
    for name, prompt in after:
        assert call_key(spec[name], prompt) not in cached  # a finished call is never repaid
        if written is not None:
            assert texts[prompt].id not in written
    # only calls in flight at the kill (4 queries x 2 routes at most) were made twice
    repeated = len(before) + len(after) - len(set(before) | set(after))
    assert repeated <= 8
    assert len(set(before) | set(after)) == 120
    # every paid call is in the ledger once (a call journalled but not yet recorded when
    # the run was killed is recorded by the next run)
    ledger = CostLedger.open(tmp_path / "scored.ledger.jsonl").records()
    keys = [r.metadata["call_key"] for r in ledger]
    assert len(keys) == len(set(keys)) == 120


def test_cli_budget_stop_says_what_is_left(tmp_path):
    args, log = setup_cli_run(tmp_path, n=10, latency=0.0)
    # a query's estimate: 2 calls of (~25 bytes + 32) input and 1024 output tokens = ~$0.0231
    result = subprocess.run(
        [*args, "--budget", "0.05"], cwd=tmp_path, env=cli_env(log), capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    stdout = result.stdout.decode()
    assert "labelled 2 of 10 queries" in stdout
    assert (
        "budget: stopped cleanly;" in stdout and "of $0.05 left, 8 queries not labelled" in stdout
    )
    assert len(load_exemplars(tmp_path / "scored.jsonl")) == 2
    fuzzy = [*args[: args.index("--grader")], "--grader", "fuzzy"]
    bad = subprocess.run(fuzzy, cwd=tmp_path, env=cli_env(log), capture_output=True)
    assert bad.returncode == 1 and b"unknown grader 'fuzzy'" in bad.stderr
    assert b"Traceback" not in bad.stderr


# --------------------------------------------------------------------------- reproduction

WEAK = "mixtral-8x7b-instruct-v0.1"
STRONG = "gpt-4-1106-preview"


def test_labelling_reproduces_the_routellm_scores_and_apgr(shared_data, tmp_path):
    """Scripted models right or wrong exactly as the data says give back the data's scores."""
    from langroute import Exemplar, ExemplarRouter
    from langroute.embedders import HashingEmbedder
    from langroute.evaluation import evaluate
    from langroute.evaluation.datasets import is_contaminated, load_eval_set

    rows = [r for r in load_eval_set(shared_data / "routellm" / "mmlu.dev.jsonl")]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.text] = counts.get(row.text, 0) + 1
    rows = [r for r in rows if counts[r.text] == 1 and not is_contaminated(r)]
    rows.sort(key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())
    train, held_out = rows[:200], rows[200:400]

    def letter(text: str, shift: int = 0) -> str:
        return "ABCD"[(int(hashlib.sha256(text.encode()).hexdigest(), 16) + shift) % 4]

    truth = {r.text: r.scores for r in train}

    def answers_as_data_says(model):
        return lambda prompt: letter(prompt, 0 if truth[prompt][model] == 1.0 else 1)

    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(
            json.dumps({"id": r.id, "prompt": r.text, "reference": letter(r.text)}) + "\n"
            for r in train
        ),
        encoding="utf-8",
    )
    models = {
        WEAK: ScriptedCompletionModel(WEAK, reply=answers_as_data_says(WEAK)),
        STRONG: ScriptedCompletionModel(STRONG, reply=answers_as_data_says(STRONG)),
    }
    report = label(queries, models, tmp_path / "scored.jsonl", grader="exact")
    assert report.labelled == 200
    labelled = load_exemplars(tmp_path / "scored.jsonl")
    assert {ex.id: ex.scores for ex in labelled} == {r.id: r.scores for r in train}

    settings = {"k": 30, "weighting": "uniform", "min_similarity": -1.0, "min_margin": 0.0}

    def apgr(exemplars: list[Exemplar]) -> float:
        router = ExemplarRouter(
            routes=[WEAK, STRONG], exemplars=exemplars, embedder=HashingEmbedder(), **settings
        )
        return evaluate(router, held_out).apgr

    from_data = apgr(train)
    assert apgr(labelled) == from_data
    assert 0.0 < from_data < 2.0


# --------------------------------------------------------------------------- reports, imports


def test_cost_reports_show_labelling_spend_apart(tmp_path):
    from typer.testing import CliRunner

    from langroute.cli.app import app
    from langroute.costs import LedgerRecord, report_csv

    queries = write_queries(tmp_path / "queries.jsonl")
    report = label(queries, arithmetic_models(), tmp_path / "scored.jsonl", prices=PRICES)
    path = tmp_path / "scored.ledger.jsonl"
    with CostLedger(path) as ledger:  # a serving call in the same ledger
        ledger.record(LedgerRecord(route="small", model="gpt-4o-mini", input_tokens=100))
    summary = CostLedger.open(path).summary()
    assert summary.calls == 1 and summary.routes[0].models == ["gpt-4o-mini"]
    assert summary.labelling is not None and summary.labelling.calls == 8
    assert summary.labelling.cost == pytest.approx(report.spent)
    rows = [line.split(",")[0] for line in report_csv(summary).splitlines()[1:]]
    assert rows == ["route", "total", "labelling_route", "labelling_route", "labelling_total"]
    shown = CliRunner().invoke(app, ["report", str(path)], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "langroute cost report" in shown.output
    assert "labelling spend (langroute label; not in the serving figures)" in shown.output


def test_the_core_loads_no_framework_for_labelling():
    code = (
        "import sys\n"
        "import langroute.labels.runner, langroute.cli.labels, langroute.models.config\n"
        "print(sorted(m for m in ('langchain_core', 'llama_index', 'langchain_langroute') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
