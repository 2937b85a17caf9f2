"""Hostile-text benchmark (issue 28 part 1): time spent on user-controlled text.

::

    python benchmarks/hostile_text.py                   # the issue's sizes
    python benchmarks/hostile_text.py --cap 20          # give up on a case after 20 s

Cases, each run in a child process so a case that would take hours is stopped at
``--cap`` seconds (reported as ``null`` with ``"capped": true``):

* ``code_rule_newlines``: the built-in ``code = true`` rule on a query of
  ``--newlines`` newlines (issue: 40k newlines took 51 s).
* ``code_rule_spaces``: the same rule on one line of spaces ending in a letter.
* ``user_regex``: a chain rule with pattern ``(a+)+$`` on ``--regex-chars`` letters
  ``a`` and a ``b`` (issue: 29 characters took 31.6 s).
* ``torn_ledger_line``: reading a JSONL ledger whose only line is a torn record of
  about ``--torn-mb`` MB holding many nested objects (issue: 0.4 MB took ``report``
  218 s).
* ``deep_json``: a ledger line nested 1,000 deep; records whether the reader fails
  with a clear error (``LedgerFormatError``) or a traceback (``RecursionError``).

Run against another checkout (for example ``main``) with ``PYTHONPATH=that/checkout``
to get the "before" figures. Results go to ``benchmarks/results/hostile_text.json``
(``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

CASES: dict[str, str] = {
    "code_rule_newlines": """
        try:
            from langroute.chains.deciders import HeuristicRule
        except ImportError:  # a checkout from before the layout of issue 22
            from langroute.deciders import HeuristicRule
        rule = HeuristicRule(name="code", route="large", code=True)
        text = "x" + "\\n" * {newlines} + "x"
        started = time.perf_counter()
        rule.matches(text)
        print(json.dumps({{"seconds": time.perf_counter() - started}}))
    """,
    "code_rule_spaces": """
        try:
            from langroute.chains.deciders import HeuristicRule
        except ImportError:  # a checkout from before the layout of issue 22
            from langroute.deciders import HeuristicRule
        rule = HeuristicRule(name="code", route="large", code=True)
        text = ";" + " " * {newlines} + "x"
        started = time.perf_counter()
        rule.matches(text)
        print(json.dumps({{"seconds": time.perf_counter() - started}}))
    """,
    "user_regex": """
        try:
            from langroute.chains.deciders import HeuristicGate
        except ImportError:
            from langroute.deciders import HeuristicGate
        gate = HeuristicGate([{{"name": "as", "route": "large", "pattern": "(a+)+$"}}])
        text = "a" * {regex_chars} + "b"
        started = time.perf_counter()
        gate.check(text)
        print(json.dumps({{"seconds": time.perf_counter() - started}}))
    """,
    "torn_ledger_line": """
        import warnings
        from langroute.costs.sinks import JSONLSink
        objects = int({torn_mb} * 1e6 / 30)
        body = ", ".join(f'"k{{i}}": {{{{"v": {{i}}}}}}' for i in range(objects))
        line = '{{"timestamp": "2026-01-01T00:00:00Z", "metadata": {{' + body
        path = Path(tempfile.mkdtemp()) / "costs.jsonl"
        path.write_text(line[: len(line) - 3] + "\\n")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = JSONLSink(path).read()
        print(json.dumps({{"seconds": time.perf_counter() - started,
                           "bytes": path.stat().st_size, "records": len(records)}}))
    """,
    "deep_json": """
        from langroute.costs.sinks import JSONLSink
        path = Path(tempfile.mkdtemp()) / "costs.jsonl"
        path.write_text('{{"timestamp": "2026-01-01T00:00:00Z", "metadata": {{"x": '
                        + "[" * 1000 + "]" * 1000 + "}}}}\\n")
        started = time.perf_counter()
        try:
            JSONLSink(path).read()
            outcome = "read"
        except Exception as exc:
            outcome = f"{{type(exc).__name__}}: {{str(exc)[:120]}}"
        print(json.dumps({{"seconds": time.perf_counter() - started, "outcome": outcome}}))
    """,
}


def run_case(name: str, cap: float, sizes: dict[str, Any]) -> dict[str, Any]:
    code = "import json, tempfile, time\nfrom pathlib import Path\n" + textwrap.dedent(
        CASES[name].format(**sizes)
    )
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=cap
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "capped": True, "cap_seconds": cap}
    if done.returncode != 0:
        wall = time.perf_counter() - started
        return {"error": done.stderr.strip().splitlines()[-1:], "wall": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "capped": False}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--newlines", type=int, default=40_000)
    parser.add_argument("--regex-chars", type=int, default=29)
    parser.add_argument("--torn-mb", type=float, default=0.4)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per case at most")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "hostile_text.json"
    )
    args = parser.parse_args(argv)
    sizes = {"newlines": args.newlines, "regex_chars": args.regex_chars, "torn_mb": args.torn_mb}
    results = {"sizes": sizes, "cases": {}}
    for name in args.cases:
        results["cases"][name] = run_case(name, args.cap, sizes)
        print(name, json.dumps(results["cases"][name]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
