"""Hostile text (issue 28 part 1): no super-linear work on what users send or store.

The time bombs are checked on inputs that the old code would take hours or longer on
(quadratic or exponential), run in a child process with a generous limit so a
regression fails clearly instead of hanging the suite. Nothing here measures speed:
``benchmarks/hostile_text.py`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from langroute import Exemplar, load_exemplars
from langroute.chains.deciders import HeuristicGate, HeuristicRule, has_code
from langroute.chains.patterns import MAX_PATTERN_TEXT_CHARS, UserPattern
from langroute.costs import LedgerFormatError
from langroute.costs.sinks import JSONLSink
from langroute.errors import ExemplarFormatError, RouterConfigError

REPO = Path(__file__).resolve().parents[2]
GENEROUS_SECONDS = 120  # the old code needs hours (or ages) on these inputs


def finishes(code: str) -> str:
    """Run ``code`` in a child process; its last line of output (fails if it never ends)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            cwd=str(REPO),
            timeout=GENEROUS_SECONDS,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {GENEROUS_SECONDS} s: super-linear work on the input")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# -- the built-in code rule -------------------------------------------------------------------


def test_code_rule_on_a_million_newlines_finishes() -> None:
    """The README's ``code = true`` rule: 40k newlines took 51 s (quadratic); 1M: hours."""
    out = finishes(
        """
        from langroute.chains.deciders import HeuristicRule
        rule = HeuristicRule(name="code", route="large", code=True)
        print(rule.matches("x" + "\\n" * 1_000_000 + "x"), rule.matches("a;" + " " * 10**6))
        """
    )
    assert out == "False False"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\nprint(1)\n```", True),
        ("def f(x):\n    return x;", True),
        ("import os\nimport sys", True),
        ("if (x > 1) {\n  y = 2;\n}", True),
        ("SELECT * FROM t;", True),  # a declaration-like start and a ';' end
        ("what is a for loop?", False),
        ("I like apples; pears too", False),
        ("for (each of these) tell me", False),
        ("\n\n\n   \n", False),
    ],
)
def test_code_rule_still_tells_code_from_prose(text: str, expected: bool) -> None:
    assert has_code(text) is expected


# -- user patterns ----------------------------------------------------------------------------


def test_a_catastrophic_user_pattern_runs_in_linear_time() -> None:
    """``(a+)+$`` took 31.6 s on 29 characters (doubling per character); here 5,000."""
    out = finishes(
        """
        from langroute.chains.deciders import HeuristicGate
        gate = HeuristicGate([{"name": "as", "route": "large", "pattern": "(a+)+$"}])
        print(gate.check("a" * 5_000 + "b"), gate.check("a" * 5_000) is not None)
        """
    )
    assert out == "None True"


def test_an_llm_router_reply_of_long_blank_and_dot_runs_is_read_in_linear_time() -> None:
    """The reply cleaner was quadratic on long inner runs (40k spaces: about 10 s)."""
    out = finishes(
        """
        from langroute.chains.deciders import parse_route_answer
        spaced = "small" + " " * 2_000_000 + "large"
        dotted = "route: small" + "." * 2_000_000
        print(parse_route_answer(spaced, ["small", "large"]),
              parse_route_answer(dotted, ["small", "large"]))
        """
    )
    assert out == "None small"


def test_patterns_the_linear_engine_cannot_run_are_refused_naming_the_rule() -> None:
    for pattern in (r"(?<=price: )\d+", r"(\w+) \1", r"(?!x)y"):
        with pytest.raises(RouterConfigError, match=r"rule 'greedy': pattern: .*cannot run on RE2"):
            HeuristicGate([{"name": "greedy", "route": "small", "pattern": pattern}])


def test_user_patterns_see_only_the_documented_number_of_characters() -> None:
    rule = HeuristicRule(name="tail", route="large", pattern="needle")
    hidden = "x" * MAX_PATTERN_TEXT_CHARS + "needle"
    shown = "x" * (MAX_PATTERN_TEXT_CHARS - 6) + "needle"
    assert (rule.matches(hidden), rule.matches(shown)) == (False, True)


def test_user_patterns_keep_their_meaning() -> None:
    rule = HeuristicRule(name="sql", route="large", pattern=r"(?i)\bselect\b.+\bfrom\b")
    assert rule.matches("please SELECT name FROM users") is True
    assert rule.matches("selection from the menu") is False
    assert UserPattern("b").search("a\ud800b") is True  # a lone surrogate does not crash it


# -- torn ledger lines ------------------------------------------------------------------------


def test_recovering_a_torn_ledger_line_of_many_objects_finishes(tmp_path: Path) -> None:
    """A torn 0.4 MB line took ``report`` 218 s (each ``{"`` re-parsed the line); here 4 MB."""
    record = json.dumps({"timestamp": "2026-01-01T00:00:00+00:00", "calls": [], "metadata": {}})
    body = ", ".join(f'"k{i}": {{"v": {i}}}' for i in range(150_000))
    torn = '{"timestamp": "2026-01-01T00:00:00Z", "metadata": {' + body[:-3]
    path = tmp_path / "costs.jsonl"
    path.write_text(torn + "\n" + torn + record + "\n")
    out = finishes(
        f"""
        import warnings
        from langroute.costs.sinks import JSONLSink
        sink = JSONLSink({str(path)!r})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = sink.read()
        print(len(records), sink.torn_lines)
        """
    )
    assert out == "1 [1, 2]"


def test_a_record_glued_to_a_torn_line_is_found_past_braces_and_quotes_in_strings(
    tmp_path: Path,
) -> None:
    record = {
        "timestamp": "2026-01-01T00:00:00+00:00",
        "calls": [],
        "metadata": {"note": 'a "quoted" {brace} \\ and } more {"', "nested": {"x": [1, {"y": 2}]}},
    }
    line = json.dumps(record)
    path = tmp_path / "costs.jsonl"
    path.write_text(line[:57] + line + "\n")
    sink = JSONLSink(path)
    with pytest.warns(UserWarning, match="skipped 1 torn line"):
        records = sink.read()
    assert [r.metadata for r in records] == [record["metadata"]]


# -- JSON nested deeply ------------------------------------------------------------------------


def test_a_ledger_line_nested_1000_deep_is_a_format_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "costs.jsonl"
    fine = json.dumps({"timestamp": "2026-01-01T00:00:00+00:00", "calls": [], "metadata": {}})
    deep = '{"timestamp": "2026-01-01T00:00:00Z", "metadata": {"x": ' + "[" * 1000
    path.write_text(fine + "\n" + deep + "]" * 1000 + "}}\n")
    with pytest.raises(LedgerFormatError, match=rf"{path}:2: JSON nested deeper than 100 levels"):
        JSONLSink(path).read()


def test_an_exemplar_nested_1000_deep_is_a_format_error_naming_the_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "ex.jsonl"
    nested = "[" * 1000 + "]" * 1000
    jsonl.write_text(
        '{"text": "hi", "route": "small"}\n{"text": "x", "metadata": {"a": ' + nested + "}}\n"
    )
    with pytest.raises(ExemplarFormatError, match=r"ex.jsonl:2: JSON nested deeper than 100"):
        load_exemplars(jsonl)
    csv = tmp_path / "ex.csv"
    csv.write_text(f'text,route,metadata\nhi,small,"{{""a"": {nested}}}"\n')
    with pytest.raises(ExemplarFormatError, match=r"ex.csv:2.*JSON nested deeper than 100"):
        load_exemplars(csv)


def test_what_is_written_nests_no_deeper_than_the_readers_take(tmp_path: Path) -> None:
    """A record or exemplar the readers would refuse is refused when written instead."""
    from langroute.costs import LedgerRecord
    from langroute.router.exemplars import save_exemplars

    for depth in (150, 5000):
        nested: list[object] = []
        for _ in range(depth):
            nested = [nested]
        with pytest.raises(ValueError, match="nested deeper than 100"):
            LedgerRecord(metadata={"x": nested})
        exemplar = Exemplar(text="hi", route="small", metadata={"x": nested})
        for name in ("ex.jsonl", "ex.csv"):
            with pytest.raises(ValueError, match="nested deeper than 100"):
                save_exemplars([exemplar], tmp_path / name)
            assert not (tmp_path / name).exists()


def test_a_labelling_journal_line_nested_1000_deep_is_an_error_naming_the_line(
    tmp_path: Path,
) -> None:
    from langroute.errors import LabellingError
    from langroute.files.journal import Journal

    path = tmp_path / "journal.jsonl"
    path.write_text('{"ok": 1}\n{"x": ' + "[" * 1000 + "]" * 1000 + "}\n")
    with pytest.raises(LabellingError, match=r"journal.jsonl:2: .*nested deeper than 100"):
        Journal(path).read()
