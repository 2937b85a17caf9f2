"""Tuned by default (issue 13 part 2): the tuner, build_router, the manifest record, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.evaluation import build_router, cross_validate, tune_router
from langroute.evaluation.tuning import (
    MIN_EXEMPLARS_TO_TUNE,
    TuningRecord,
    default_grid,
    tuning_skip_reason,
    weighted_error,
)

TOPICS = [[f"t{t}w{j}" for j in range(5)] for t in range(6)]
NEEDS_STRONG = [0.85, 0.8, 0.75, 0.15, 0.1, 0.05]
"""Chance that a query on each topic needs the strong model."""


def topic_rows(n: int, seed: int = 0, *, labelled: bool = False, start: int = 0) -> list[Exemplar]:
    """Queries whose topic sets how often they need the strong model; each row is a coin.

    One neighbour reads one coin (noisy); many neighbours read the topic's rate, so a
    large ``k`` clearly beats ``k=1``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = int(rng.integers(len(TOPICS)))
        text = " ".join(rng.choice(TOPICS[topic], 3, replace=False)) + f" q{start + i}"
        needs = bool(rng.random() < NEEDS_STRONG[topic])
        if labelled:
            rows.append(Exemplar(text=text, route="large" if needs else "small"))
        else:
            rows.append(Exemplar(text=text, scores={"weak": float(not needs), "strong": 1.0}))
    return rows


def write_rows(path: Path, rows: list[Exemplar]) -> Path:
    path.write_text("".join(ex.model_dump_json() + "\n" for ex in rows), encoding="utf-8")
    return path


def scored_router(rows: list[Exemplar], **options) -> ExemplarRouter:
    return ExemplarRouter(
        routes=["weak", "strong"], exemplars=rows, embedder=HashingEmbedder(1024), **options
    )


# -- the tuner ----------------------------------------------------------------------------


def test_tuner_picks_the_setting_that_clearly_wins_on_scored_data():
    router = scored_router(topic_rows(200))
    grid = [{"k": 1, "weighting": "uniform"}, {"k": 40, "weighting": "uniform"}]
    record = tune_router(router, grid=grid)
    assert record.metric == "apgr"
    assert record.chosen == {"k": 40, "weighting": "uniform"}
    assert router.settings.k == 40 and router.settings.weighting == "uniform"
    tried = {json.dumps({k: v for k, v in r.items() if "apgr" not in k}) for r in record.top}
    assert len(tried) == 3  # the two settings and the untuned defaults (k=10, softmax)
    one = next(r for r in record.top if r.get("k") == 1)
    assert record.validation > one["apgr"] + 0.03
    assert record.untuned is not None and record.validation >= record.untuned
    assert router.tuning == record.model_dump(mode="json")


def test_tuner_ranks_labelled_data_by_the_quality_loss_weighted_error():
    rows = topic_rows(200, seed=1, labelled=True)
    router = ExemplarRouter(
        routes=["small", "large"], exemplars=rows, embedder=HashingEmbedder(1024)
    )
    record = tune_router(router, grid=[{"k": 1}, {"k": 40, "weighting": "uniform"}])
    assert record.metric == "weighted_error" and not record.higher_is_better
    assert record.chosen == {"k": 40, "weighting": "uniform"}
    errors = [r["weighted_error"] for r in record.top]
    assert errors == sorted(errors)  # best (lowest) first
    assert record.validation == errors[0]


def test_weighted_error_counts_quality_loss_double():
    routes = ["small", "large"]
    expected = ["small", "large", "large", None]
    # inflation (0 -> 1) costs 1, loss (1 -> 0) costs 2, a right route 0, an unrejected oos 1
    assert weighted_error([1, 0, 1, 0], [False] * 4, expected, routes) == pytest.approx(4 / 4)
    assert weighted_error([0, 1, 1, 1], [False, False, False, True], expected, routes) == 0.0
    # unordered routes: every miss costs 1
    assert weighted_error([1, 0], [False] * 2, expected[:2], routes, rule="argmax") == 1.0


def test_default_grid_fits_the_exemplars_and_keeps_fixed_settings():
    assert all(c["k"] <= 60 for c in default_grid("scores", exemplars=60))
    assert {c["k"] for c in default_grid("scores", exemplars=10)} == {10}
    assert all("threshold" not in c for c in default_grid("labels", rule="argmax"))
    router = scored_router(topic_rows(150), k=7)
    record = tune_router(router, fixed={"k"})
    assert router.settings.k == 7 and "k" not in record.chosen
    assert record.fixed == {"k": 7}


def test_build_router_tunes_by_default_from_enough_exemplars():
    embedder = HashingEmbedder(1024)
    few = build_router(
        topic_rows(MIN_EXEMPLARS_TO_TUNE - 1), routes=["weak", "strong"], embedder=embedder
    )
    assert few.tuning is None and "tuning needs at least" in tuning_skip_reason(few)
    enough = build_router(topic_rows(150), routes=["weak", "strong"], embedder=embedder)
    assert enough.tuning is not None and tuning_skip_reason(enough) is None
    assert TuningRecord.model_validate(enough.tuning).exemplars == 150
    skipped = build_router(
        topic_rows(150), routes=["weak", "strong"], embedder=embedder, tune=False
    )
    assert skipped.tuning is None and skipped.settings.k == 10
    forced = build_router(topic_rows(40), routes=["weak", "strong"], embedder=embedder, tune=True)
    assert forced.tuning is not None
    with pytest.raises(RouterConfigError, match="cannot tune on 6 exemplars"):
        build_router(topic_rows(6), routes=["weak", "strong"], embedder=embedder, tune=True)


def test_labelled_routes_too_thin_to_tune_are_not_tuned():
    rows = topic_rows(300, labelled=True)
    rows = [r for r in rows if r.route == "large"] + [
        Exemplar(text=f"hello there {i}", route="small") for i in range(3)
    ]
    assert len(rows) >= MIN_EXEMPLARS_TO_TUNE
    router = build_router(rows, routes=["small", "large"], embedder=HashingEmbedder(1024))
    assert router.tuning is None
    assert "fewer than 5 exemplars" in tuning_skip_reason(router)


def test_tuning_record_round_trips_through_the_manifest(tmp_path):
    router = build_router(
        topic_rows(150), routes=["weak", "strong"], embedder=HashingEmbedder(1024)
    )
    path = router.save(tmp_path / "tuned")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["tuning"] == router.tuning
    loaded = ExemplarRouter.load(path, embedder=HashingEmbedder(1024))
    assert loaded.tuning == router.tuning
    assert loaded.settings == router.settings
    record = TuningRecord.model_validate(loaded.tuning)
    assert (
        record.chosen and {k: getattr(loaded.settings, k) for k in record.chosen} == record.chosen
    )
    # an untuned router writes no tuning key, so older langroute versions still read it
    plain = build_router(
        topic_rows(150), routes=["weak", "strong"], embedder=HashingEmbedder(1024), tune=False
    )
    plain_path = plain.save(tmp_path / "plain")
    assert "tuning" not in json.loads((plain_path / "manifest.json").read_text())
    assert ExemplarRouter.load(plain_path, embedder=HashingEmbedder(1024)).tuning is None


def test_cross_validation_tunes_within_each_fold():
    rows = topic_rows(200)
    report = cross_validate(
        rows, routes=["weak", "strong"], embedder=HashingEmbedder(1024), folds=4, tune=True
    )
    assert len(report.fold_tuning) == 4
    untuned = cross_validate(
        rows, routes=["weak", "strong"], embedder=HashingEmbedder(1024), folds=4
    )
    assert untuned.fold_tuning == []
    assert report.apgr > untuned.apgr


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


def test_cli_build_tunes_info_shows_it_and_no_tune_skips(tmp_path):
    data = write_rows(tmp_path / "scored.jsonl", topic_rows(150))
    common = ["--routes", "weak,strong", "--embedder", "hashing:1024"]
    built = run_cli("build", data, "-o", "tuned", *common, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "tuned in" in built.stdout and "validation apgr" in built.stdout
    manifest = json.loads((tmp_path / "tuned" / "manifest.json").read_text())
    record = TuningRecord.model_validate(manifest["tuning"])
    assert manifest["settings"]["k"] == record.chosen["k"]

    info = run_cli("info", "-r", "tuned", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "tuning: chosen" in info.stdout and f"k={record.chosen['k']}" in info.stdout
    assert f"{record.validation:.4f}" in info.stdout and "150 exemplars" in info.stdout

    plain = run_cli("build", data, "-o", "plain", *common, "--no-tune", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "not tuned (--no-tune)" in plain.stdout
    assert "tuning" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
    info = run_cli("info", "-r", "plain", cwd=tmp_path)
    assert "not tuned" in info.stdout

    tuned = run_cli("tune", data, *common, "--json", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    assert json.loads(tuned.stdout) == manifest["tuning"] | {
        "seconds": json.loads(tuned.stdout)["seconds"]
    }


def test_cli_eval_with_no_flags_evaluates_the_tuned_router(tmp_path):
    from typer.testing import CliRunner

    from langroute.cli.app import app

    train = write_rows(tmp_path / "train.jsonl", topic_rows(150))
    test = write_rows(tmp_path / "test.jsonl", topic_rows(100, seed=5, start=1000))
    args = ["eval", str(train), str(test), "--routes", "weak,strong", "--embedder", "hashing:1024"]
    args += ["--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "tuned.json")])
    assert result.exit_code == 0, result.output
    assert "tuned within the exemplars" in result.output
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    router = build_router(
        topic_rows(150), routes=["weak", "strong"], embedder=HashingEmbedder(1024)
    )
    assert tuned["tuning"]["chosen"] == router.tuning["chosen"]  # what build gives
    assert tuned["settings"]["k"] == router.settings.k
    result = CliRunner().invoke(app, [*args, "--no-tune", "--json", str(tmp_path / "plain.json")])
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert plain["tuning"] is None and plain["settings"]["k"] == 10


def test_tuned_build_beats_the_defaults_on_unseen_gsm8k_halves(shared_data):
    """The two-halves protocol on RouteLLM's GSM8K dev file (hashing embedder, quick)."""
    from langroute import load_exemplars
    from langroute.evaluation import assign_folds, evaluate

    weak, strong = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"
    rows = load_exemplars(shared_data / "routellm" / "gsm8k.dev.jsonl")
    halves = assign_folds([r.text for r in rows], 2, 0)
    for half in (0, 1):
        train = [r for r, h in zip(rows, halves) if h != half]
        test = [r for r, h in zip(rows, halves) if h == half]
        tuned = build_router(train, routes=[weak, strong], embedder=HashingEmbedder())
        plain = build_router(train, routes=[weak, strong], embedder=HashingEmbedder(), tune=False)
        assert tuned.tuning is not None and tuned.tuning["exemplars"] == len(train)
        assert evaluate(tuned, test).apgr > evaluate(plain, test).apgr


def test_the_one_standard_error_rule_keeps_the_first_setting_within_noise():
    # the settings as they are come first, then the grid in order. k=40 and k=41 read the
    # same neighbourhoods but for one neighbour: within noise, so the first one is kept;
    # the current k=1 is clearly worse and is passed over
    router = scored_router(topic_rows(240), k=1)
    record = tune_router(router, grid=[{"k": 40}, {"k": 41}], select="simplest")
    assert record.chosen == {"k": 40} and router.settings.k == 40
    # a current setting within noise of the best is kept as it is
    router = scored_router(topic_rows(240), k=40)
    record = tune_router(router, grid=[{"k": 41}], select="simplest")
    assert record.chosen == {} and router.settings.k == 40
