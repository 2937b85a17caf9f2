"""Gate every routing change (issue 13 part 3): compare two routers on one evaluation set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.evaluation import compare

WORDS = {
    "small": ["hello", "thanks", "weather", "lunch", "movie"],
    "large": ["prove", "theorem", "compile", "kernel", "derive"],
}


def rows(n: int, start: int = 0, *, mislabel: bool = False) -> list[Exemplar]:
    """Easy chit-chat goes small, hard technical queries go large (or the other way round)."""
    out = []
    for i in range(start, start + n):
        route = "small" if i % 2 else "large"
        words = WORDS[route]
        text = f"{words[i % 5]} {words[(i + 2) % 5]} {words[(i + 3) % 5]} n{i}"
        label = {"small": "large", "large": "small"}[route] if mislabel else route
        out.append(Exemplar(text=text, route=label))
    return out


def router_of(exemplars: list[Exemplar]) -> ExemplarRouter:
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=HashingEmbedder(1024),
        k=5,
        min_similarity=0.0,
    )


def test_comparing_a_router_with_itself_finds_no_flips():
    router = router_of(rows(40))
    result = compare(router, router, rows(30, start=100))
    assert result.flipped_count == 0 and result.flipped == []
    assert not result.worse and result.verdict.startswith("B is not worse")
    assert all(delta == 0 for delta in result.deltas.values())
    assert result.quality_loss_added == 0 and result.cost_inflation_removed == 0


def test_a_router_from_mislabelled_exemplars_is_worse_and_its_flips_are_listed():
    good, bad = router_of(rows(40)), router_of(rows(40, mislabel=True))
    golden = rows(30, start=100)
    result = compare(good, bad, golden)
    assert result.kind == "labels" and result.metric == "weighted_error"
    assert result.worse and result.verdict.startswith("B is worse")
    assert result.a["accuracy"] == 1.0 and result.b["accuracy"] == 0.0
    assert result.flipped_count == 30 == len(result.flipped)
    assert result.effects["quality_loss_added"] == 15  # large queries now go small
    assert result.effects["cost_inflation_added"] == 15
    assert result.quality_loss_added == pytest.approx(0.5)
    assert result.cost_inflation_removed == pytest.approx(-0.5)
    first = result.flipped[0]
    assert first.effect == "quality_loss_added"  # the harmful flips come first
    assert (first.route_a, first.route_b, first.expected) == ("large", "small", "large")
    assert first.neighbours_a[0]["route"] == "large" and first.neighbours_b[0]["route"] == "small"
    assert (
        first.neighbours_a[0]["text"] == first.neighbours_b[0]["text"]
    )  # same exemplar, relabelled
    # the other way round, B is the better router: not worse
    assert not compare(bad, good, golden).worse


def test_tolerance_decides_how_much_worse_is_too_much():
    base = rows(40)
    worse = base[:-16] + rows(16, start=24, mislabel=True)
    golden = rows(60, start=100)
    result = compare(router_of(base), router_of(worse), golden, tolerance=0.0)
    change = result.deltas["weighted_error"]
    assert change > 0 and result.worse
    assert not compare(router_of(base), router_of(worse), golden, tolerance=change + 1e-9).worse


def test_scored_comparison_gates_on_apgr():
    def scored(n: int, start: int = 0, flip: bool = False) -> list[Exemplar]:
        out = []
        for ex in rows(n, start):
            hard = (ex.route == "large") != flip
            out.append(Exemplar(text=ex.text, scores={"weak": float(not hard), "strong": 1.0}))
        return out

    def router(exemplars: list[Exemplar]) -> ExemplarRouter:
        return ExemplarRouter(
            routes=["weak", "strong"], exemplars=exemplars, embedder=HashingEmbedder(1024), k=5
        )

    result = compare(router(scored(40)), router(scored(40, flip=True)), scored(30, start=100))
    assert result.kind == "scores" and result.metric == "apgr" and result.higher_is_better
    assert result.deltas["apgr"] < 0 and result.worse
    assert result.flipped_count > 0
    assert {f.effect for f in result.flipped} <= {"quality_loss_added", "cost_inflation_added"}


def test_routers_over_different_routes_are_refused():
    other = ExemplarRouter(
        routes=["cheap", "large"],
        exemplars=[
            Exemplar(text=e.text, route="cheap" if e.route == "small" else "large")
            for e in rows(10)
        ],
        embedder=HashingEmbedder(1024),
    )
    with pytest.raises(RouterConfigError, match="different models"):
        compare(router_of(rows(10)), other, rows(10, start=100))
    with pytest.raises(RouterConfigError, match="tolerance"):
        compare(other, other, rows(10, start=100), tolerance=-0.1)


# -- the CLI, in a subprocess ----------------------------------------------------------------


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def write(path: Path, exemplars: list[Exemplar]) -> Path:
    path.write_text("".join(ex.model_dump_json() + "\n" for ex in exemplars), encoding="utf-8")
    return path


def test_cli_compare_blocks_a_worse_router_and_passes_an_identical_one(tmp_path):
    good, bad = router_of(rows(40)), router_of(rows(40, mislabel=True))
    good.save(tmp_path / "good")
    bad.save(tmp_path / "bad")
    golden = write(tmp_path / "golden.jsonl", rows(30, start=100))

    worse = run_cli("compare", "good", "bad", golden, "--json", cwd=tmp_path)
    assert worse.returncode == 1, worse.stderr
    report = json.loads(worse.stdout)
    assert report["worse"] is True and report["flipped_count"] == 30
    flipped = report["flipped"][0]
    assert flipped["route_a"] == "large" and flipped["route_b"] == "small"
    assert flipped["neighbours_a"] and flipped["neighbours_b"]

    shown = run_cli("compare", "good", "bad", golden, "--show", "3", cwd=tmp_path)
    assert shown.returncode == 1
    assert "flipped queries" in shown.stdout and "FAIL B is worse" in shown.stdout
    assert "quality loss added +50.00%" in shown.stdout

    same = run_cli("compare", "good", "good", golden, cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "routes flipped: 0" in same.stdout and "OK B is not worse" in same.stdout

    missing = run_cli("compare", "good", "nowhere", golden, cwd=tmp_path)
    assert missing.returncode == 2 and "error:" in missing.stderr


def test_cli_eval_baseline_exits_non_zero_for_a_worse_candidate(tmp_path):
    from typer.testing import CliRunner

    from langroute.cli.app import app

    router_of(rows(40)).save(tmp_path / "prod")
    candidate = write(tmp_path / "candidate.jsonl", rows(40, mislabel=True))
    golden = write(tmp_path / "golden.jsonl", rows(30, start=100))
    args = [
        "eval",
        str(candidate),
        str(golden),
        "--routes",
        "small,large",
        "--embedder",
        "hashing:1024",
    ]
    args += ["--k", "5", "--min-similarity", "0", "--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(
        app, [*args, "--baseline", str(tmp_path / "prod"), "--json", str(tmp_path / "e.json")]
    )
    assert result.exit_code == 1, result.output
    assert "FAIL B is worse" in result.output
    assert json.loads((tmp_path / "e.json").read_text())["comparison"]["worse"] is True
    ok = CliRunner().invoke(app, [*args, "--baseline", str(tmp_path / "prod"), "--tolerance", "5"])
    assert ok.exit_code == 0, ok.output
