"""Evaluation, cross-validation, calibration and the eval/calibrate CLI."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.evaluation import assign_folds, calibrate, cross_validate, evaluate, tune
from langroute.evaluation import metrics as m
from langroute.evaluation.batches import neighbourhood
from langroute.router import engine

# -- metrics: hand-computed cases -----------------------------------------------------------


def test_curve_ties_move_as_one_block_and_order_does_not_matter():
    # z ties: {0, 1} at 1.0 and {2, 3} at 0.0. W = 0.5, S = 0.75.
    z = np.array([1.0, 1.0, 0.0, 0.0])
    w = np.array([0.0, 1.0, 0.0, 1.0])
    s = np.array([1.0, 1.0, 1.0, 0.0])
    curve = m.cost_quality_curve(z, w, s)
    assert curve.share.tolist() == [0.0, 0.5, 1.0]
    assert curve.quality.tolist() == pytest.approx([0.5, 0.75, 0.75])
    assert curve.pgr.tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert curve.apgr == pytest.approx(0.75)
    assert curve.cpt(0.5) == pytest.approx(0.25)
    assert curve.cpt(1.0) == pytest.approx(0.5)
    for perm in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]):
        other = m.cost_quality_curve(z[perm], w[perm], s[perm])
        assert other.apgr == pytest.approx(curve.apgr)
        assert other.share.tolist() == curve.share.tolist()
        assert other.quality.tolist() == pytest.approx(curve.quality.tolist())


def test_curve_pgr_above_one():
    # Gains in score order: +1, +1, 0, -1. W = 0.5, S = 0.75, gap 0.25.
    z = np.array([4.0, 1.0, 3.0, 2.0])
    w = np.array([0.0, 1.0, 0.0, 1.0])
    s = np.array([1.0, 0.0, 1.0, 1.0])
    curve = m.cost_quality_curve(z, w, s)
    assert curve.share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.pgr.tolist() == pytest.approx([0.0, 1.0, 2.0, 2.0, 1.0])
    assert curve.max_pgr == pytest.approx(2.0)
    assert curve.apgr == pytest.approx(1.375)
    assert curve.cpt(0.5) == pytest.approx(0.125)
    assert curve.cpt(0.8) == pytest.approx(0.2)
    assert curve.cpt(2.5) != curve.cpt(2.5)  # never reached: NaN
    # 95% of S = 0.7125, reached a fifth of the way... at 0.25 * 0.2125 / 0.25.
    assert curve.share_for_quality(0.95) == pytest.approx(0.2125)
    metrics = m.PointMetrics.of(curve)
    assert metrics.apgr == pytest.approx(1.375)


def test_curve_perfect_and_inverted_routers():
    w = np.array([0.0, 0.0, 1.0, 1.0])
    s = np.array([1.0, 1.0, 1.0, 1.0])
    good = m.cost_quality_curve([1.0, 0.9, 0.1, 0.0], w, s)
    bad = m.cost_quality_curve([0.0, 0.1, 0.9, 1.0], w, s)
    assert good.apgr == pytest.approx(0.75)
    assert bad.apgr == pytest.approx(0.25)
    constant = m.cost_quality_curve([0.5] * 4, w, s)  # one tie block: the random line
    assert constant.apgr == pytest.approx(0.5)


def test_curve_rejects_bad_input():
    with pytest.raises(ValueError):
        m.cost_quality_curve([1.0], [1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        m.cost_quality_curve([], [], [])
    with pytest.raises(ValueError):
        m.cost_quality_curve([float("nan")], [0.0], [1.0])


def test_routellm_protocol_hand_computed():
    # 3 points: thresholds 0, 1, 2; at the top edge z > 2 selects nobody.
    z = np.array([0.0, 1.0, 2.0])
    w = np.array([1.0, 0.0, 0.0])
    s = np.array([0.0, 1.0, 1.0])
    r = m.routellm_protocol(z, w, s, points=3)
    assert r.share.tolist() == pytest.approx([0.0, 2 / 3, 1.0])
    assert r.pgr.tolist() == pytest.approx([0.0, 2.0, 1.0])
    assert r.apgr == pytest.approx(7 / 6)
    assert r.cpt50 == pytest.approx(1 / 6)


def test_routellm_protocol_skips_points_the_exact_curve_has():
    # 11 distinct scores: the 11 thresholds give shares 11/11 ... 2/11 and 0: 1/11 is skipped.
    z = np.arange(11, dtype=float)
    w = np.zeros(11)
    s = np.zeros(11)
    s[10] = 1.0  # only the top-scored query gains
    r = m.routellm_protocol(z, w, s)
    assert 1 / 11 not in [pytest.approx(x) for x in r.share.tolist()]
    assert r.share[0] == 0.0 and r.share[1] == pytest.approx(2 / 11)
    exact = m.cost_quality_curve(z, w, s)
    assert exact.apgr == pytest.approx(1 - 0.5 / 11)
    assert r.apgr == pytest.approx(1 - 1 / 11)  # the first segment spans 2/11
    # RouteLLM's np.interp reading agrees on a monotone curve.
    target = 0.5
    assert r.cpt50 == pytest.approx(np.interp(target, r.pgr, r.share))


def test_oracle_and_random_baselines():
    w = np.array([0.0, 1.0, 0.0, 1.0])
    s = np.array([1.0, 0.0, 1.0, 1.0])
    oracle = m.cost_quality_curve(m.oracle_scores(w, s), w, s)
    assert oracle.max_pgr == pytest.approx(2.0)
    assert oracle.cpt(1.0) == pytest.approx(0.25)
    # RouteLLM's oracle never spends a call that loses quality: flat at its best.
    best = m.oracle_curve(w, s)
    assert best.pgr.tolist() == pytest.approx([0.0, 2.0, 2.0])
    assert best.apgr == pytest.approx(1.5)
    rng = np.random.default_rng(12345)
    w_big = (rng.random(4000) < 0.6).astype(float)
    s_big = (rng.random(4000) < 0.8).astype(float)
    exact, protocol = m.random_baseline(w_big, s_big, seeds=5)
    assert exact.apgr == pytest.approx(0.5, abs=0.03)
    assert exact.cpt50 == pytest.approx(0.5, abs=0.06)
    assert protocol["apgr"] == pytest.approx(0.5, abs=0.03)


def test_loss_weight_one_is_the_plain_gain():
    from langroute.router import votes

    rng = np.random.default_rng(0)
    scores = (rng.random((6, 9, 3)) < 0.6).astype(float)
    weights = rng.random((6, 9))
    plain = votes.escalation_from_estimates(votes.estimate(weights, scores))
    assert votes.escalation_from_scores(weights, scores, 1.0) == pytest.approx(plain)
    # Counting losses less can only raise the escalation.
    assert (votes.escalation_from_scores(weights, scores, 0.5) >= plain - 1e-12).all()


def test_length_evidence_hand_computed():
    from langroute.router import votes

    # Two neighbours: a short one the weak model solved, a long one it failed.
    scores = np.array([[[1.0, 1.0], [0.0, 1.0]]])
    weights = np.array([[1.0, 1.0]])
    by_length = votes.length_weights(np.array([400]), np.array([[40, 400]]), weights, 0.1)
    assert by_length[0, 1] == pytest.approx(1.0) and by_length[0, 0] < 1e-9
    plain = votes.escalation_from_estimates(votes.estimate(weights, scores))
    mixed = votes.escalation_from_estimates(
        votes.blend(votes.estimate(weights, scores), votes.estimate(by_length, scores), 1.0)
    )
    assert plain[0, 0] == pytest.approx(1.0)  # 0.5 + gain 0.5
    assert mixed[0, 0] == pytest.approx(1.0)  # the long query follows the long neighbour
    short = votes.length_weights(np.array([40]), np.array([[40, 400]]), weights, 0.1)
    mixed_short = votes.escalation_from_estimates(
        votes.blend(votes.estimate(weights, scores), votes.estimate(short, scores), 1.0)
    )
    assert mixed_short[0, 0] == pytest.approx(0.75)  # (0.5 gain + 0 gain) / 2


def test_label_metrics_hand_computed():
    routes = ["small", "medium", "large"]
    expected = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 0, 2, 2]
    lm = m.label_metrics(expected, predicted, routes)
    assert lm.accuracy == pytest.approx(4 / 6)
    assert lm.confusion == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert lm.precision == pytest.approx({"small": 0.5, "medium": 0.5, "large": 1.0})
    assert lm.recall == pytest.approx({"small": 0.5, "medium": 0.5, "large": 1.0})
    assert lm.cost_inflation == pytest.approx(1 / 6)
    assert lm.quality_loss == pytest.approx(1 / 6)
    never = m.label_metrics([0, 0], [0, 0], ["a", "b"])
    assert math.isnan(never.precision["b"]) and math.isnan(never.recall["b"])


# -- data helpers -----------------------------------------------------------------------------

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]  # fmt: skip


def scored_rows(n: int = 240, seed: int = 0) -> list[Exemplar]:
    """Queries on the 'hard' topic need the strong model more often."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hard = rng.random() < 0.35
        vocabulary = WORDS[:10] if hard else WORDS[10:]
        words = list(rng.choice(vocabulary, 3, replace=False))
        weak = float(rng.random() < (0.45 if hard else 0.85))
        strong = float(rng.random() < 0.9)
        rows.append(
            Exemplar(
                text=" ".join(words) + f" item{i}",
                scores={"weak": weak, "strong": strong},
                metadata={"contaminated": i % 50 == 7},
            )
        )
    return rows


def scored_router(rows: list[Exemplar], **options) -> ExemplarRouter:
    settings = {"k": 30, "weighting": "uniform", "min_similarity": -1.0, "min_margin": 0.0}
    return ExemplarRouter(
        routes=["weak", "strong"],
        exemplars=rows,
        embedder=HashingEmbedder(),
        **(settings | options),
    )


def write_jsonl(path: Path, rows: list[Exemplar]) -> Path:
    lines = []
    for row in rows:
        record = {"prompt": row.text, **row.metadata}
        if row.scores is not None:
            record["scores"] = row.scores
        if row.route is not None:
            record["label"] = row.route
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- evaluate ----------------------------------------------------------------------------------


def test_evaluate_scored_report_and_baselines():
    rows = scored_rows()
    router = scored_router(rows[:160])
    report = evaluate(router, rows[160:])
    held_out = [r for r in rows[160:] if not r.metadata["contaminated"]]
    assert report.kind == "scores"
    assert report.n == len(held_out)
    assert report.excluded_contaminated == 80 - len(held_out)
    assert 0.5 < report.apgr < 1.5  # the hard words are learnable
    names = [b.name for b in report.baselines]
    assert names == ["random (10 seeds)", "always-cheap", "always-strong", "oracle"]
    oracle = report.baselines[-1]
    assert oracle.apgr > report.apgr
    # The report's curve is the exact curve of the decisions' escalation scores.
    z = [d.escalation for d in router.route_batch([r.text for r in held_out])]
    w = [r.scores["weak"] for r in held_out]
    s = [r.scores["strong"] for r in held_out]
    assert report.apgr == pytest.approx(m.cost_quality_curve(z, w, s).apgr)
    data = report.to_json_dict()
    assert {"apgr", "cpt50", "cpt80"} <= set(data)
    json.dumps(data, allow_nan=False)


PARITY_OPTIONS = [
    {},
    {"weighting": "power", "power": 2.0, "loss_weight": 0.75},
    {"weighting": "linear", "local_k": 5, "length_weight": 0.5, "length_scale": 0.2},
    {"weighting": "uniform", "local_k": 10, "length_weight": 1.0, "loss_weight": 0.5},
    {"weighting": "softmax", "temperature": 0.1, "min_margin": 0.2},
]


def _assert_replay_matches_routing(router, texts):
    """The engine replayed over one search gives exactly the live decisions."""
    nb = neighbourhood(router, texts)
    live = router.route_batch(texts)
    evidence, choice = engine.weigh_and_choose(nb, router.settings, router.mode)
    assert evidence.escalation == pytest.approx([d.escalation for d in live])
    assert [router.routes[i] for i in choice.route_index] == [d.route for d in live]
    assert choice.escalated.tolist() == [d.escalated for d in live]
    replayed = engine.decide(nb, router.settings, router.mode)
    assert [(d.route, d.reason) for d in replayed] == [(d.route, d.reason) for d in live]
    assert [d.confidence for d in replayed] == pytest.approx([d.confidence for d in live])


@pytest.mark.parametrize("rule", ["threshold", "argmax"])
@pytest.mark.parametrize("mode", ["vote", "scores"])
@pytest.mark.parametrize("options", PARITY_OPTIONS)
def test_evaluation_replay_and_live_routing_decide_alike(rule, mode, options):
    rows = scored_rows()
    texts = [r.text for r in rows[160:]]
    if mode == "scores":
        router = scored_router(rows[:160], **({"rule": rule, "min_margin": 0.05} | options))
    else:
        labelled = [
            Exemplar(text=r.text, route=r.label_for(["weak", "strong"])) for r in rows[:160]
        ]
        router = ExemplarRouter(
            routes=["weak", "strong"],
            exemplars=labelled,
            embedder=HashingEmbedder(),
            k=7,
            rule=rule,
            **options,
        )
    assert router.mode == mode
    _assert_replay_matches_routing(router, texts)
    # A deeper search cut to k replays the same (tuning searches once at the largest k),
    # except where exemplars tie at the cut: FAISS may then keep either of them.
    k = router.settings.k
    deep = neighbourhood(router, texts, k=k + 20)
    clear = [i for i in range(len(texts)) if deep.sims[i, k - 1] > deep.sims[i, k] + 1e-6]
    if clear:  # the hashing embedder's coarse similarities tie often at large k
        live = router.route_batch([texts[i] for i in clear])
        evidence, choice = engine.weigh_and_choose(deep.rows(clear), router.settings, router.mode)
        assert evidence.escalation == pytest.approx([d.escalation for d in live])
        assert [router.routes[i] for i in choice.route_index] == [d.route for d in live]
    # Some decisions escalate and some do not, so both paths are compared.
    escalated = [d.escalated for d in router.route_batch(texts)]
    assert any(escalated) and not all(escalated)


def test_three_routes_replay_matches_routing_with_a_middle_fallback():
    rows = [
        Exemplar(text=" ".join(WORDS[i % 8 : i % 8 + 3]), route=route)
        for i, route in enumerate(["small", "medium", "large"] * 30)
    ]
    router = ExemplarRouter(
        routes=["small", "medium", "large"],
        exemplars=rows,
        embedder=HashingEmbedder(),
        fallback="medium",
        k=9,
    )
    texts = [" ".join(WORDS[i : i + 2]) for i in range(20)]
    _assert_replay_matches_routing(router, texts)


def test_evaluate_labels_with_out_of_scope_rows():
    rng = np.random.default_rng(3)
    groups = {"greet": WORDS[:8], "bill": WORDS[8:16], "trip": WORDS[16:24]}
    rows = [
        Exemplar(text=" ".join(rng.choice(words, 3)), route=label)
        for label, words in groups.items()
        for _ in range(30)
    ]
    router = ExemplarRouter(
        routes=list(groups),
        exemplars=rows[::2],
        embedder=HashingEmbedder(4096),  # wide: no hash collisions with the oos words
        rule="argmax",
        min_similarity=0.2,
        min_margin=0.0,
    )
    oos = [Exemplar(text="xyzzy plugh frobozz", route="oos") for _ in range(3)]
    report = evaluate(router, rows[1::2] + oos)
    lab = report.labels
    assert report.kind == "labels" and lab is not None
    assert lab.n == 45 and lab.out_of_scope == 3
    assert lab.oos_recall == 1.0
    assert lab.accuracy > 0.6
    assert sum(map(sum, lab.confusion)) == 45
    assert lab.in_scope_accuracy is not None and lab.in_scope_accuracy <= lab.accuracy
    assert report.to_json_dict()["accuracy"] == lab.accuracy
    assert any(b.name.startswith("majority") for b in report.baselines)


# -- cross-validation ----------------------------------------------------------------------------


def test_assign_folds_keeps_identical_texts_together():
    texts = [f"text {i % 37}" for i in range(200)]
    folds = assign_folds(texts, 5, seed=1)
    for text in set(texts):
        assert len({folds[i] for i, t in enumerate(texts) if t == text}) == 1
    sizes = np.bincount([folds[texts.index(t)] for t in set(texts)], minlength=5)
    assert sizes.max() - sizes.min() <= 1
    assert (assign_folds(texts, 5, seed=1) == folds).all()
    with pytest.raises(ValueError):
        assign_folds(texts, 1)


def test_cross_validation_never_lets_a_query_find_its_twin():
    rng = np.random.default_rng(5)
    rows = []
    for i in range(40):
        text = " ".join(rng.choice(WORDS, 5)) + f" q{i}"
        label = "a" if rng.random() < 0.5 else "b"
        rows += [
            Exemplar(text=text, route=label, id=f"{i}-1"),
            Exemplar(text=text, route=label, id=f"{i}-2"),
        ]
    report = cross_validate(
        rows,
        routes=["a", "b"],
        embedder=HashingEmbedder(),
        folds=4,
        k=1,
        rule="argmax",
        min_similarity=-1.0,
        min_margin=0.0,
    )
    # A leaked twin would make k=1 perfect; labels are random, so honest CV is near chance.
    assert report.accuracy < 0.85
    assert report.folds == 4 and len(report.fold_metrics) == 4


def test_cross_validate_scored_excludes_contaminated():
    rows = scored_rows()
    report = cross_validate(
        rows,
        embedder=HashingEmbedder(),
        folds=4,
        weak="weak",
        strong="strong",
        k=15,
        weighting="uniform",
    )
    assert report.n == sum(not r.metadata["contaminated"] for r in rows)
    assert report.apgr > 0.5
    assert all("apgr" in f for f in report.fold_metrics)


def test_tune_reports_validation_results_best_first():
    rows = scored_rows()
    result = tune(
        rows,
        {"k": [1, 25], "weighting": ["uniform", "softmax"]},
        embedder=HashingEmbedder(),
        weak="weak",
        strong="strong",
        folds=3,
    )
    assert result.metric == "apgr" and len(result.results) == 4
    scores = [r["apgr"] for r in result.results]
    assert scores == sorted(scores, reverse=True)
    assert result.best == result.results[0]
    assert result.best["k"] == 25  # one neighbour is a noisy estimate


# -- calibration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.1, 0.3, 0.6])
def test_calibrate_hits_target_strong_share(target):
    rows = scored_rows(400)
    router = scored_router(rows[:200])
    held_out = rows[200:]
    result = calibrate(router, held_out, target_strong_share=target)
    n = sum(not r.metadata["contaminated"] for r in held_out)
    assert result.n == n
    # The closest share the router can give: equal escalation scores move together.
    report = evaluate(router, held_out)
    achievable = np.asarray(report.scores.curve.share)
    assert abs(result.strong_share - target) == pytest.approx(np.abs(achievable - target).min())
    assert abs(result.strong_share - target) <= 0.1
    assert router.threshold == result.threshold
    assert router.calibration is not None and router.calibration["threshold"] == result.threshold
    report = evaluate(router, held_out)
    assert report.scores.strong_share == pytest.approx(result.strong_share)
    assert report.scores.quality == pytest.approx(result.quality)


def test_calibrate_says_why_a_low_share_is_out_of_reach():
    rows = scored_rows(400)
    # Half of the held-out rows are far from every exemplar: they always escalate.
    router = scored_router(rows[:200], min_similarity=0.5)
    with pytest.warns(UserWarning, match="always escalate"):
        result = calibrate(router, rows[200:], target_strong_share=0.0)
    assert not result.reached
    assert result.strong_share > 0.02


def test_calibrate_target_quality_is_the_cheapest_that_reaches_it():
    rows = scored_rows(400)
    router = scored_router(rows[:200])
    result = calibrate(router, rows[200:], target_quality=0.95)
    assert result.reached
    assert result.quality_fraction_of_strong >= 0.95
    # Any dial that sends fewer queries to the strong model falls short.
    report = evaluate(router, rows[200:])
    curve = report.scores.curve
    cheaper = [
        q for share, q in zip(curve.share, curve.quality) if share < result.strong_share - 1e-9
    ]
    assert all(q < 0.95 * report.scores.strong_quality for q in cheaper)


def test_calibration_is_saved_with_the_router(tmp_path):
    rows = scored_rows()
    router = scored_router(rows[:160])
    result = calibrate(router, rows[160:], target_strong_share=0.4)
    router.save(tmp_path / "r")
    loaded = ExemplarRouter.load(tmp_path / "r", embedder=HashingEmbedder())
    assert loaded.threshold == pytest.approx(result.threshold)
    assert loaded.calibration["strong_share"] == pytest.approx(result.strong_share)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["calibration"]["target_strong_share"] == 0.4


def test_calibrate_rejects_bad_targets():
    rows = scored_rows(60)
    router = scored_router(rows[:30])
    with pytest.raises(RouterConfigError):
        calibrate(router, rows[30:])
    with pytest.raises(RouterConfigError):
        calibrate(router, rows[30:], target_strong_share=0.3, target_quality=0.9)
    with pytest.raises(RouterConfigError):
        calibrate(router, rows[30:], target_strong_share=1.5)


def test_calibrate_warns_when_rows_are_exemplars():
    rows = scored_rows(60)
    router = scored_router(rows)
    with pytest.warns(UserWarning, match="find"):
        result = calibrate(router, rows, target_strong_share=0.5)
    assert result.overlap_with_exemplars == result.n == 58  # 2 contaminated rows left out


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture()
def cli_app():
    import typer

    from langroute.cli.evaluation import calibrate_command, eval_command

    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("calibrate")(calibrate_command)
    return app


def test_cli_eval_scored_cross_validation_writes_json_and_png(tmp_path, cli_app):
    from typer.testing import CliRunner

    data = write_jsonl(tmp_path / "scored.jsonl", scored_rows())
    out, png = tmp_path / "out.json", tmp_path / "curve.png"
    result = CliRunner().invoke(
        cli_app,
        [
            "eval",
            str(data),
            str(data),
            "--weak",
            "weak",
            "--strong",
            "strong",
            "--embedder",
            "hashing",
            "--k",
            "15",
            "--weighting",
            "uniform",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "APGR" in result.output and "oracle" in result.output
    figures = json.loads(out.read_text())
    assert {"apgr", "cpt50", "cpt80"} <= set(figures)
    assert figures["folds"] == 5
    assert 0.3 < figures["apgr"] < 1.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_eval_labelled_two_files(tmp_path, cli_app):
    from typer.testing import CliRunner

    rng = np.random.default_rng(9)
    rows = [
        Exemplar(text=" ".join(rng.choice(WORDS[:10] if i % 2 else WORDS[10:], 3)), route=label)
        for i, label in enumerate(["small", "large"] * 40)
    ]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:60])
    rejected = Exemplar(text="qqq www eee", route="oos")
    test = write_jsonl(tmp_path / "test.jsonl", [*rows[60:], rejected])
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        cli_app,
        [
            "eval",
            str(train),
            str(test),
            "--routes",
            "small,large",
            "--embedder",
            "hashing:4096",
            "--min-similarity",
            "0.2",
            "--out-of-scope",
            "oos",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert "accuracy" in figures and 0.0 <= figures["accuracy"] <= 1.0
    assert figures["labels"]["confusion"]
    assert figures["labels"]["out_of_scope"] == 1
    assert figures["oos_recall"] == 1.0


def test_cli_calibrate_saves_back(tmp_path, cli_app):
    from typer.testing import CliRunner

    rows = scored_rows()
    scored_router(rows[:160]).save(tmp_path / "router")
    data = write_jsonl(tmp_path / "held.jsonl", rows[160:])
    result = CliRunner().invoke(
        cli_app,
        [
            "calibrate",
            str(data),
            "--router",
            str(tmp_path / "router"),
            "--target-strong-share",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "router" / "manifest.json").read_text())
    assert manifest["calibration"]["target_strong_share"] == 0.3
    assert abs(manifest["calibration"]["strong_share"] - 0.3) <= 0.1
    assert manifest["settings"]["threshold"] == manifest["calibration"]["threshold"]
    bad = CliRunner().invoke(
        cli_app, ["calibrate", str(data), "--router", str(tmp_path / "router")]
    )
    assert bad.exit_code != 0


def test_commands_module_imports_light():
    import subprocess
    import sys

    code = (
        "import sys, langroute.cli.evaluation; "
        "print(any(m in sys.modules for m in ('numpy', 'faiss', 'sentence_transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- shared data ---------------------------------------------------------------------------------


def test_shared_data_oracle_matches_the_readme(shared_data):
    from langroute.evaluation.datasets import is_contaminated, load_eval_set

    expected = {
        "mmlu": (7097, 0.060, 0.096, 1.43, 1.31),
        "gsm8k": (630, 0.113, 0.179, 1.28, 1.10),
    }
    for name, (n, cpt50, cpt80, max_pgr, apgr) in expected.items():
        rows = [r for r in load_eval_set(shared_data / "routellm" / f"{name}.dev.jsonl")]
        rows = [r for r in rows if not is_contaminated(r)]
        assert len(rows) == n
        w = np.array([r.scores["mixtral-8x7b-instruct-v0.1"] for r in rows])
        s = np.array([r.scores["gpt-4-1106-preview"] for r in rows])
        oracle = m.cost_quality_curve(m.oracle_scores(w, s), w, s)
        # The README counts whole queries (first count reaching x); we interpolate.
        assert oracle.cpt(0.5) == pytest.approx(cpt50, abs=0.0015)
        assert oracle.cpt(0.8) == pytest.approx(cpt80, abs=0.0015)
        assert oracle.max_pgr == pytest.approx(max_pgr, abs=0.005)
        assert m.oracle_curve(w, s).apgr == pytest.approx(apgr, abs=0.005)


def test_shared_data_gsm8k_cross_validation(shared_data):
    report = cross_validate(
        shared_data / "routellm" / "gsm8k.dev.jsonl",
        embedder=HashingEmbedder(),
        weak="mixtral-8x7b-instruct-v0.1",
        strong="gpt-4-1106-preview",
        folds=5,
        k=50,
        weighting="uniform",
    )
    assert report.n == 630 and report.excluded_contaminated == 4
    assert 0.3 < report.apgr < 0.9
    random = report.baselines[0]
    assert random.apgr == pytest.approx(0.5, abs=0.05)


EVALUATION_ALL = [
    "CalibrationResult",
    "Comparison",
    "CostQualityCurve",
    "EvalReport",
    "TuningRecord",
    "TuningReport",
    "assign_folds",
    "build_router",
    "calibrate",
    "compare",
    "cost_quality_curve",
    "cross_validate",
    "evaluate",
    "label_metrics",
    "load_eval_set",
    "plot_report",
    "routellm_protocol",
    "tune",
    "tune_router",
]


def test_evaluation_package_exports_each_name_as_itself():
    import langroute.evaluation as package

    assert sorted(package.__all__) == EVALUATION_ALL
    for name in EVALUATION_ALL:
        value = getattr(package, name)
        # a function or class of the evaluation package, exported under its own name
        assert inspect.isfunction(value) or inspect.isclass(value), name
        assert value.__name__ == name
        assert value.__module__.startswith("langroute.evaluation."), value.__module__


def test_package_exports_the_evaluate_function():
    from langroute.evaluation import EvalReport
    from langroute.evaluation import evaluate as exported

    assert inspect.isfunction(exported) and exported.__name__ == "evaluate"
    rows = scored_rows(80)
    router = scored_router(rows[:40])
    report = exported(router, rows[40:])
    assert isinstance(report, EvalReport) and report.kind == "scores"
    # rows 40..79: row 57 is marked contaminated (i % 50 == 7) and left out
    assert (report.n, report.excluded_contaminated) == (39, 1)
    assert report.overlap_with_exemplars == 0
    assert report.threshold == router.threshold == 0.6
    assert {b.name for b in report.baselines} == {
        "random (10 seeds)",
        "always-cheap",
        "always-strong",
        "oracle",
    }
    assert report.labels is not None and sum(report.labels.support.values()) == 39
