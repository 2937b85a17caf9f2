"""The dial a user gets from ``build``: set by cross-validation for a stated quality target."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.evaluation import build_router, evaluate
from langroute.evaluation.calibration import (
    CalibrationResult,
    calibrate_by_cross_validation,
)

from .test_tuning import run_cli, scored_router, topic_rows, write_rows


def build(rows, **options):
    return build_router(rows, routes=["weak", "strong"], embedder=HashingEmbedder(1024), **options)


def test_build_sets_the_dial_for_95_percent_of_the_strong_quality_by_default():
    router = build(topic_rows(300))
    record = CalibrationResult.model_validate(router.calibration)
    assert (record.method, record.target_quality, record.folds) == ("cross-validation", 0.95, 5)
    assert record.reached and record.quality_fraction_of_strong >= 0.95
    assert router.threshold == pytest.approx(record.threshold)
    assert record.strong_share_sd is not None and record.quality_fraction_sd is not None
    # on unseen rows of the same kind the operating point holds (within its spread)
    report = evaluate(router, topic_rows(400, seed=7, start=5000))
    fraction = report.scores.quality / report.scores.strong_quality
    assert fraction >= 0.95 - 3 * record.quality_fraction_sd
    assert (
        abs(report.scores.strong_share - record.strong_share) <= 3 * record.strong_share_sd + 0.05
    )


def test_the_default_dial_sends_less_to_the_strong_route_than_the_old_default():
    rows, unseen = topic_rows(300), topic_rows(400, seed=7, start=5000)
    calibrated = build(rows)
    old = build(rows, quality_target=None)
    assert old.calibration is None and old.threshold == 0.6
    assert (
        evaluate(calibrated, unseen).scores.strong_share < evaluate(old, unseen).scores.strong_share
    )


def test_a_threshold_given_is_kept_and_a_strong_share_can_be_the_target():
    rows = topic_rows(300)
    fixed = build(rows, threshold=0.42)
    assert fixed.threshold == 0.42 and fixed.calibration is None
    shared = build(rows, strong_share=0.5)
    record = CalibrationResult.model_validate(shared.calibration)
    assert record.target_strong_share == 0.5 and abs(record.strong_share - 0.5) <= 0.1


def test_labelled_exemplars_are_calibrated_to_the_share_on_a_good_enough_route():
    router = build_router(
        topic_rows(300, labelled=True), routes=["small", "large"], embedder=HashingEmbedder(1024)
    )
    record = CalibrationResult.model_validate(router.calibration)
    assert record.quality_fraction_of_strong is None  # no scores: the labelled measure
    assert record.quality >= 0.95 and record.reached


def test_too_few_exemplars_are_not_calibrated_and_say_why():
    router = build(topic_rows(12))
    assert router.calibration is None
    with pytest.raises(RouterConfigError, match="too few for 5-fold"):
        calibrate_by_cross_validation(router)


def test_an_unreachable_target_warns_and_says_so():
    # nearly every query is out of distribution, so nearly all must go to the strong route
    router = scored_router(topic_rows(200), min_similarity=0.99)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = calibrate_by_cross_validation(router, target_quality=None, target_strong_share=0.1)
    assert not record.reached
    assert any("target not reached" in str(w.message) for w in caught)
    assert "NOT reached" in record.summary()


def test_cli_build_and_info_print_the_operating_point(tmp_path):
    data = write_rows(tmp_path / "scored.jsonl", topic_rows(300))
    common = ["--routes", "weak,strong", "--embedder", "hashing:1024"]
    built = run_cli("build", data, "-o", "r", *common, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "dial: target: keep 95% of the strongest route's quality" in built.stdout
    assert "sent to the strongest route" in built.stdout
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["calibration"]["method"] == "cross-validation"
    assert manifest["settings"]["threshold"] == pytest.approx(manifest["calibration"]["threshold"])
    info = run_cli("info", "-r", "r", cwd=tmp_path)
    shown = " ".join(info.stdout.replace("│", " ").split())  # the table wraps its cells
    assert "cross-validation" in shown and "sent to the strongest" in shown
    assert "with 1 standard error to spare" in built.stdout  # the default margin
    fixed = run_cli("build", data, "-o", "f", *common, "--threshold", "0.5", cwd=tmp_path)
    assert "threshold 0.5 as given (not calibrated)" in fixed.stdout
    target = run_cli("build", data, "-o", "t", *common, "--quality-target", "0.9", cwd=tmp_path)
    assert "keep 90% of the strongest route's quality" in target.stdout
    inside = run_cli("build", data, "-o", "i", *common, "--standard-errors", "1", cwd=tmp_path)
    assert "with 1 standard error to spare (lower bound" in inside.stdout
    saved = json.loads((tmp_path / "i" / "manifest.json").read_text())["calibration"]
    assert saved["standard_errors"] == 1.0 and saved["quality_lower_bound"] >= 0.95
    bad = run_cli("build", data, "-o", "b", *common, "--quality-target", "1.5", cwd=tmp_path)
    assert bad.returncode != 0


def test_the_fold_spread_is_finite():
    record = CalibrationResult.model_validate(build(topic_rows(300)).calibration)
    assert np.isfinite(record.strong_share_sd) and np.isfinite(record.quality_fraction_sd)


def test_aiming_standard_errors_inside_the_target_buys_quality_with_strong_share():
    rows = topic_rows(300)
    router = scored_router(rows, k=40, weighting="uniform")
    at_mean = calibrate_by_cross_validation(router, standard_errors=0.0)
    inside = calibrate_by_cross_validation(router, standard_errors=2.0)
    # the point estimate just reaches the target; the lower bound is the point itself
    assert at_mean.quality_lower_bound == pytest.approx(at_mean.quality_fraction_of_strong)
    assert at_mean.quality_fraction_of_strong >= 0.95
    # two standard errors inside: the lower bound reaches the target, the point is above it
    assert inside.standard_errors == 2.0 and inside.quality_lower_bound >= 0.95
    assert inside.quality_fraction_of_strong > inside.quality_lower_bound
    assert inside.quality_fraction_of_strong > at_mean.quality_fraction_of_strong
    assert inside.strong_share > at_mean.strong_share
    assert router.threshold == pytest.approx(inside.threshold)
    assert "2 standard errors to spare" in inside.summary()
    assert "to spare" not in at_mean.summary()
    with pytest.raises(RouterConfigError, match="standard_errors must be 0 or more"):
        calibrate_by_cross_validation(router, standard_errors=-1.0)


def test_a_labelled_target_gets_a_binomial_lower_bound():
    router = build_router(
        topic_rows(300, labelled=True), routes=["small", "large"], embedder=HashingEmbedder(1024)
    )
    record = calibrate_by_cross_validation(router, standard_errors=1.0)
    share = record.quality  # of queries on a route at least as strong as they need
    standard_error = np.sqrt(share * (1 - share) / (record.n - 1))
    assert record.quality_lower_bound == pytest.approx(share - standard_error)
    assert record.quality_lower_bound >= 0.95
