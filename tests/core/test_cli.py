from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute.cli.app import app

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
        "from langroute.cli.app import app\n"
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


@pytest.mark.slow
def test_build_sets_the_same_dial_as_the_python_api(tmp_path, minilm_embedder):
    from langroute import ExemplarRouter, HashingEmbedder

    source = tmp_path / "scored.jsonl"
    rows = [
        {"text": "hello there", "scores": {"small": 1.0, "large": 1.0}},
        {"text": "translate cat into German", "scores": {"small": 0.9, "large": 1.0}},
        {"text": "prove the four colour theorem", "scores": {"small": 0.1, "large": 0.8}},
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    api = ExemplarRouter.from_file(source, ["small", "large"], embedder=HashingEmbedder())
    for extra, expected in (([], api.threshold), (["--threshold", "0.7"], 0.7)):
        out = tmp_path / f"router{len(extra)}"
        args = ["build", str(source), "-o", str(out), "--routes", "small,large", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        built = ExemplarRouter.load(out, embedder=minilm_embedder)
        assert built.mode == api.mode == "scores"
        assert built.threshold == expected
    assert api.threshold == 0.6


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


# --------------------------------------------------------------------------- hostile data
# The CLI runs in a subprocess with a pipe for stdout (not a terminal) and COLUMNS=80, as
# in CI logs. Text from files must be shown as text: no rich markup, no escape sequence.

REPO = Path(__file__).resolve().parents[2]
MARKUP_ROUTE = "sm[/]all"
ANSI_ROUTE = "la[bold red]rge\x1b[2J"
HOSTILE_EASY = [
    "hello [/] there \x1b]0;pwned\x07 friend",
    "thanks a lot [bold red]red[/]",
    "what time is it",
    "translate cat into german",
    "hi how are you",
    "what is the capital of france",
]
HOSTILE_HARD = [
    "prove the theorem [link=x]step[/link] by step",
    "design a distributed database",
    "derive the gradient step by step",
    "write a compiler pass",
    "prove that primes are infinite",
    "analyse the algorithm complexity",
]


def run_cli(*args: str | bytes | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``python -m langroute.cli.app ARGS`` with stdout on a pipe, 80 columns, this checkout."""
    env = {
        **os.environ,
        "COLUMNS": "80",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), str(REPO / "integrations" / "langchain"), os.environ.get("PYTHONPATH", "")]
        ),
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", *map(os.fsencode, args)],
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def assert_clean(result: subprocess.CompletedProcess[bytes]) -> str:
    """No traceback, no markup error, no escape byte from data; returns stdout as text."""
    both = result.stdout + result.stderr
    assert b"Traceback" not in both and b"MarkupError" not in both, both.decode(errors="replace")
    assert b"\x1b" not in both and b"\x07" not in both
    return result.stdout.decode("utf-8")


def write_hostile_exemplars(path: Path) -> Path:
    rows = [{"text": t, "route": MARKUP_ROUTE} for t in HOSTILE_EASY]
    rows += [{"text": t, "route": ANSI_ROUTE} for t in HOSTILE_HARD]
    rows.append({"text": "hello there friend [/]", "route": ANSI_ROUTE})  # misrouted
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_route_and_info_show_hostile_data_as_text(tmp_path, minilm_embedder):
    from langroute import Exemplar, ExemplarRouter

    exemplars = [Exemplar(text=t, route=MARKUP_ROUTE) for t in HOSTILE_EASY]
    exemplars += [Exemplar(text=t, route=ANSI_ROUTE) for t in HOSTILE_HARD]
    folder = tmp_path / "r[/]outer [bold red]x"  # "r[" holding "]outer [bold red]x"
    ExemplarRouter(
        routes=[MARKUP_ROUTE, ANSI_ROUTE], exemplars=exemplars, embedder=minilm_embedder, k=3
    ).save(folder)

    # invalid UTF-8 in the query (argv): routed on the rest, no traceback
    routed = run_cli("route", "--router", folder, b"hello there \xff friend", cwd=tmp_path)
    out = assert_clean(routed)
    assert routed.returncode == 0, routed.stderr.decode(errors="replace")
    assert "hello [/] there \\x1b]0;pwned\\x07" in out  # the exemplar, escaped, as text
    assert f"route {MARKUP_ROUTE}" in out and "la[bold red]rge\\x1b[2J" in out

    info = run_cli("info", "--router", folder, cwd=tmp_path)
    out = assert_clean(info)
    assert info.returncode == 0, info.stderr.decode(errors="replace")
    flat = " ".join(out.split())
    assert "r[/]outer [bold red]x" in flat
    assert f"{MARKUP_ROUTE} -> la[bold red]rge\\x1b[2J" in flat

    invisible = run_cli("route", "--router", folder, b"\xff\xe2\x80\x8b", cwd=tmp_path)
    assert_clean(invisible)
    assert invisible.returncode == 1 and b"error: query has no visible" in invisible.stderr


def test_eval_shows_hostile_labels_and_texts_as_text(tmp_path):
    data = write_hostile_exemplars(tmp_path / "[bold red]evil.jsonl")
    routes = f"{MARKUP_ROUTE},{ANSI_ROUTE}"
    args = ["--folds", "2", "--embedder", "hashing", "--routes", routes, "--plot", "p.png"]
    result = run_cli("eval", data, data, *args, cwd=tmp_path)
    out = assert_clean(result)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    flat = " ".join(out.split())
    assert "langroute eval: [bold red]evil.jsonl" in flat
    labels = r"(sm\[/\]all|la\[bold red\]rge\\x1b\[2J)"
    assert re.search(rf"misrouted '[^']*': expected {labels}, got {labels}", flat), flat
    assert "la[bold red]rge\\x1b[2J" in flat


def test_build_error_shows_a_hostile_path_and_line(tmp_path):
    folder = tmp_path / "d[/]ir"  # "d[" holding "]ir"
    folder.mkdir(parents=True)
    data = folder / "ex[bold red].jsonl"
    data.write_text('{"text": "hi", "route": "small"}\n{"text": "x", "route": "medium"}\n')
    result = run_cli("build", data, "-o", tmp_path / "out", "--routes", "small,large", cwd=tmp_path)
    assert_clean(result)
    assert result.returncode == 1
    error = " ".join(result.stderr.decode().split())
    assert f"{data}:2: field 'route': unknown route 'medium'" in error
    assert not (tmp_path / "out").exists()


def _ledger(path: Path, names: tuple[str, str] = (MARKUP_ROUTE, ANSI_ROUTE)) -> list[str]:
    """A ledger with big numbers and an unpriced model; returns the costs as printed."""
    from langroute.costs import CostLedger, LedgerRecord
    from langroute.costs.report import _fmt_usd

    ledger = CostLedger(path, auto_price=False)
    rows = [
        (names[0], "gpt-4o-mini-2024-07-18", 1234.56789, 10),
        (names[1], "gpt[bold red]-4o\x1b]0;pwned\x07", 98765.4321, 3),
        ("unpriced", "home-made-model", None, 2),
    ]
    for route, model, cost, calls in rows:
        for _ in range(calls):
            ledger.record(
                LedgerRecord(
                    framework="core",
                    route=route,
                    model=model,
                    input_tokens=12_345_678,
                    output_tokens=2_345_678,
                    cost=None if cost is None else cost / calls,
                    baseline_model="gpt-4o",
                    baseline_cost=20_000.0,
                    latency_ms=12_345.0,
                    escalated=route == names[1],
                )
            )
    summary = ledger.summary()
    return [_fmt_usd(item.cost) for item in [*summary.routes, summary] if item.cost is not None]


@pytest.mark.parametrize("suffix", ["jsonl", "db"])
def test_report_keeps_the_money_visible_at_80_columns(tmp_path, suffix):
    path = tmp_path / f"costs.{suffix}"
    money = _ledger(path, names=("small", "large"))
    result = run_cli("report", path, cwd=tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out
    for amount in money:  # every cost, whole
        assert amount in out, (amount, out)
    assert f"{money[-1]}*" in out and "* leaves out 2 unpriced calls" in out
    assert _route_rows(out) == ["small", "large", "unpriced"]


def test_report_shows_hostile_names_as_text(tmp_path):
    path = tmp_path / "costs.jsonl"
    money = _ledger(path)
    result = run_cli("report", path, cwd=tmp_path)
    out = assert_clean(result)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert all(amount in out for amount in money)
    flat = " ".join(out.split())
    assert MARKUP_ROUTE in out and "gpt[bold red]-4o\\x1b]0;pwned\\x07" in flat
    assert "la[bold red]rge\\x1b[2J" in flat


def test_report_json_and_csv(tmp_path):
    import csv

    from langroute.costs import CostLedger

    path = tmp_path / "costs.jsonl"
    _ledger(path)
    summary = CostLedger.open(path).summary()

    as_json = run_cli("report", path, "--json", cwd=tmp_path)
    assert_clean(as_json)
    data = json.loads(as_json.stdout)
    assert data["cost"] == pytest.approx(summary.cost)
    assert [r["route"] for r in data["routes"]] == [MARKUP_ROUTE, ANSI_ROUTE, "unpriced"]
    assert data["routes"][1]["models"] == ["gpt[bold red]-4o\x1b]0;pwned\x07"]  # lossless
    assert data["savings"] == pytest.approx(summary.savings)

    as_csv = run_cli("report", path, "--csv", "--order", "unpriced", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(assert_clean(as_csv))))
    assert [(r["row"], r["route"]) for r in rows] == [
        ("route", "unpriced"),
        ("route", MARKUP_ROUTE),
        ("route", "la[bold red]rge\\x1b[2J"),
        ("total", ""),
    ]
    assert rows[0]["cost"] == "" and rows[0]["unpriced_calls"] == "2"
    assert float(rows[1]["cost"]) == pytest.approx(1234.56789)
    assert float(rows[3]["cost"]) == pytest.approx(summary.cost)
    assert float(rows[3]["savings"]) == pytest.approx(summary.savings)
    assert rows[1]["savings"] == ""

    both = run_cli("report", path, "--json", "--csv", cwd=tmp_path)
    assert both.returncode == 1 and b"choose one of --json and --csv" in both.stderr


def test_report_on_a_ledger_that_is_not_utf8(tmp_path):
    from langroute.costs import LedgerRecord

    path = tmp_path / "costs.jsonl"
    good = LedgerRecord(route="a", model="m").model_dump_json().encode()
    path.write_bytes(good + b"\n" + good.replace(b'"a"', b'"caf\xe9"') + b"\n")
    result = run_cli("report", path, cwd=tmp_path)
    assert_clean(result)
    assert result.returncode == 1
    assert f"error: {path}:2: not valid UTF-8" in " ".join(result.stderr.decode().split())


def test_printable_escapes_what_a_terminal_would_act_on():
    from langroute.terminal import data_text, printable

    hostile = "a\x1b[2Jb\x07c\rd\u202eevil\u2066e\x9bf\udcffg"
    assert printable(hostile) == "a\\x1b[2Jb\\x07c\\rd\\u202eevil\\u2066e\\x9bf\\udcffg"
    assert printable("line\ttab\nnext") == "line\ttab\nnext"
    assert printable("line\ttab\nnext", one_line=True) == "line\\ttab\\nnext"
    assert printable("日本語 [bold]x[/] 👨‍👩‍👧") == "日本語 [bold]x[/] 👨‍👩‍👧"  # ZWJ kept
    assert data_text(":smile: [red]x[/]").plain == ":smile: [red]x[/]"


def test_demo_tiers_is_two_or_three(tmp_path: Path) -> None:
    result = run_cli("demo", "--tiers", "4", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        b"Invalid value for '--tiers'" in result.stderr
        and b"less than or equal to 3" in result.stderr
    )


def test_build_and_info_say_the_mode_and_refuse_a_mixed_file(tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    scored = json.dumps({"text": "what is 17 * 23?", "scores": {"small": 1.0, "large": 1.0}})
    mixed.write_text(EXEMPLARS + "\n" + scored + "\n")
    router_dir = tmp_path / "router"
    args = ["build", str(mixed), "-o", str(router_dir), "--embedder", "hashing"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and not router_dir.exists()
    assert "mixed.jsonl:7" in result.output and "--mode scores" in result.output
    result = runner.invoke(app, [*args, "--mode", "scores"])
    assert result.exit_code == 0, result.output
    assert "mode: scores (set explicitly)" in result.output
    result = runner.invoke(app, ["info", "--router", str(router_dir)])
    assert result.exit_code == 0 and "scores (set explicitly)" in result.output

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(EXEMPLARS + "\n")
    result = runner.invoke(
        app, ["build", str(labelled), "-o", str(tmp_path / "r2"), "--embedder", "hashing"]
    )
    assert result.exit_code == 0 and "mode: vote (auto: no exemplar carries scores)" in (
        " ".join(result.output.split())
    )
    extra = tmp_path / "extra.jsonl"
    extra.write_text(scored + "\n")
    result = runner.invoke(app, ["add", str(extra), "--router", str(tmp_path / "r2")])
    assert result.exit_code != 0 and "carries scores" in " ".join(result.output.split())
