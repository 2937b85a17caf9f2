from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from langroute.cli import app

runner = CliRunner()

EXEMPLARS = "\n".join(
    json.dumps(row)
    for row in [
        {"text": "hello there, how are you?", "route": "small"},
        {"text": "thanks a lot!", "route": "small"},
        {"text": "translate 'cat' into German", "route": "small"},
        {"text": "prove that the square root of 2 is irrational", "route": "large"},
        {"text": "write a multithreaded web crawler in Go with rate limiting", "route": "large"},
        {
            "text": "plan a three month marketing launch with budget and milestones",
            "route": "large",
        },
    ]
)


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from langroute.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "names = ('torch', 'sentence_transformers', 'faiss', 'numpy')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_langroute_is_light():
    code = (
        "import sys, langroute\nprint([m for m in ('torch', 'faiss', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_build_route_add_info(tmp_path):
    source = tmp_path / "ex.jsonl"
    source.write_text(EXEMPLARS + "\n")
    router_dir = tmp_path / "router"
    result = runner.invoke(
        app, ["build", str(source), "-o", str(router_dir), "--routes", "small,large"]
    )
    assert result.exit_code == 0, result.output
    assert "6 exemplars" in result.output and (router_dir / "manifest.json").is_file()

    result = runner.invoke(
        app, ["route", "--json", "--router", str(router_dir), "prove that pi is irrational"]
    )
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert {"route", "confidence", "reason", "neighbours"} <= set(decision)
    assert decision["route"] == "large"
    assert decision["neighbours"][0]["text"].startswith("prove that the square root")

    result = runner.invoke(app, ["route", "--router", str(router_dir), "hello, how are you doing?"])
    assert (
        result.exit_code == 0 and "small" in result.output and "nearest exemplars" in result.output
    )

    extra = tmp_path / "extra.csv"
    extra.write_text("text,route\nwhat's the weather like,small\n")
    result = runner.invoke(app, ["add", str(extra), "--router", str(router_dir)])
    assert result.exit_code == 0, result.output
    assert "router now holds 7" in result.output

    result = runner.invoke(app, ["info", "--router", str(router_dir)])
    assert result.exit_code == 0
    assert "small -> large" in result.output and "small: 4" in result.output


@pytest.mark.slow
def test_route_with_bundled_router():
    result = runner.invoke(app, ["route", "--json", "Write a red-black tree in C++ with deletion"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["route"] == "large"


def test_bad_input_gives_clear_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "route": "small"}\n{"text": "oops", "route": }\n')
    result = runner.invoke(app, ["build", str(bad), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "bad.jsonl:2" in result.output and "invalid JSON" in result.output
    assert not (tmp_path / "r").exists()

    result = runner.invoke(app, ["info", "--router", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no saved router" in result.output


def test_report_command(tmp_path):
    from langroute.costs import CostLedger, LedgerRecord

    path = tmp_path / "costs.jsonl"
    ledger = CostLedger(path)
    for route, model, cost in [("small", "gpt-4o-mini", 0.001), ("large", "gpt-4o", 0.02)]:
        ledger.record(
            LedgerRecord(
                framework="core",
                route=route,
                model=model,
                input_tokens=100,
                output_tokens=50,
                cost=cost,
                baseline_model="gpt-4o",
                baseline_cost=0.02,
                latency_ms=12.0,
            )
        )
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 0, result.output
    assert "small" in result.output and "large" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "error" in result.output


def _route_rows(output: str) -> list[str]:
    """The route column of the report's body rows, top to bottom (total row excluded)."""
    routes = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if line.lstrip().startswith("│") and cells[0] not in ("", "total"):
            routes.append(cells[0])
    return routes


@pytest.mark.parametrize("suffix", ["jsonl", "db"])
def test_report_order_option_orders_the_rows(tmp_path, suffix):
    from langroute.costs import CostLedger, LedgerRecord

    path = tmp_path / f"costs.{suffix}"
    ledger = CostLedger(path)
    for route, model in [("alpha", "m-one"), ("omega", "m-three"), ("beta", "m-two")]:
        ledger.record(
            LedgerRecord(
                framework="core",
                route=route,
                model=model,
                input_tokens=10,
                output_tokens=5,
                cost=0.001,
            )
        )
    plain = runner.invoke(app, ["report", str(path)])
    assert plain.exit_code == 0, plain.output
    assert _route_rows(plain.output) == ["alpha", "omega", "beta"]  # first appearance
    ordered = runner.invoke(app, ["report", str(path), "--order", "beta, omega"])
    assert ordered.exit_code == 0, ordered.output
    # the named routes first, in the order given; the others follow
    assert _route_rows(ordered.output) == ["beta", "omega", "alpha"]
    every = runner.invoke(app, ["report", str(path), "--order", "omega,beta,alpha,unused"])
    assert _route_rows(every.output) == ["omega", "beta", "alpha"]  # no row for "unused"
