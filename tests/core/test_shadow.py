"""Shadow evaluation in the core: the dispatcher's candidate, the ledger's shadow columns,
``compare --ledger``, ``promote`` / ``revert``, and the replay against offline ``compare``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute import Exemplar, ExemplarRouter
from langroute.cli.app import app
from langroute.cli.shadow import PREVIOUS_SUFFIX, REVERTED_SUFFIX, promote, revert
from langroute.costs import CostLedger, LedgerRecord
from langroute.dispatch.dispatcher import RouteDispatcher, RouteRequest
from langroute.dispatch.routed_call import Attempt, TokenUsage
from langroute.dispatch.shadow import ShadowRouter
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError, RouterStoreError
from langroute.evaluation.shadow import NoShadowRowsError, compare_ledger

REPO = Path(__file__).resolve().parents[2]
EASY = ["hello there", "what is the capital of france", "thanks a lot", "translate hi"]
HARD = ["prove the theorem by induction", "derive the closed form and prove it"]
MODELS = {"small": "gpt-4o-mini", "large": "gpt-4o"}


def make(hard_route: str = "large", embedder=None) -> ExemplarRouter:
    exemplars = [Exemplar(text=t, route="small") for t in EASY]
    exemplars += [Exemplar(text=t, route=hard_route) for t in HARD]
    if hard_route == "small":
        exemplars.append(Exemplar(text="unused large exemplar xyzzy", route="large"))
    return ExemplarRouter(
        routes=["small", "large"],
        exemplars=exemplars,
        embedder=embedder or HashingEmbedder(),
        k=1,
        min_similarity=0.0,
        min_margin=0.0,
    )


class SlowRouter:
    routes = ("small", "large")

    def route(self, query):
        time.sleep(1.0)
        return make().route(query)

    async def aroute(self, query):
        await asyncio.sleep(1.0)
        return make().route(query)


# ---------------------------------------------------------------- the dispatcher
def test_the_candidate_decides_beside_the_live_router_but_not_on_forced_routes():
    dispatcher = RouteDispatcher(make(), MODELS, shadow=make("small"))
    decision = dispatcher.decide(RouteRequest(query=HARD[0]))
    assert decision.route == "large"
    assert (decision.shadow.route, decision.shadow.router) == ("small", "ExemplarRouter")
    assert dispatcher.decide(RouteRequest(forced="small")).shadow is None
    assert dispatcher.decide(RouteRequest(query=" ")).shadow is None


async def test_async_and_batched_decisions_carry_the_candidates():
    dispatcher = RouteDispatcher(make(), MODELS, shadow=make("small"), context=None, sessions=False)
    decision = await dispatcher.adecide(RouteRequest(query=HARD[1]))
    assert decision.shadow.route == "small"
    batch = dispatcher.decide_batch([EASY[0], None, HARD[0]])
    assert [d.shadow.route if d.shadow else None for d in batch] == ["small", None, "small"]
    abatch = await dispatcher.adecide_batch([HARD[0]])
    assert abatch[0].shadow.route == "small"


async def test_a_slow_candidate_times_out_and_the_live_decision_stands():
    shadow = ShadowRouter(SlowRouter(), name="slow", timeout_s=0.05)
    dispatcher = RouteDispatcher(make(), MODELS, shadow=shadow, context=None, sessions=False)
    for decision in (
        dispatcher.decide(RouteRequest(query=HARD[0])),
        await dispatcher.adecide(RouteRequest(query=HARD[0])),
    ):
        assert decision.route == "large"
        assert decision.shadow.route is None
        assert decision.shadow.error.startswith("TimeoutError")


def test_a_saved_candidate_with_the_live_embedder_reuses_the_querys_vector(tmp_path):
    live = make(embedder=HashingEmbedder())
    make("small", HashingEmbedder()).save(tmp_path / "candidate")
    shadow = ShadowRouter.load(tmp_path / "candidate", live=live)
    assert shadow.candidate.embedder is live.embedder and shadow.inline
    dispatcher = RouteDispatcher(live, MODELS, shadow=shadow, context=None, sessions=False)
    dispatcher.decide(RouteRequest(query="a brand new question about proofs"))
    info = live.embedder.cache_info()
    assert (info["misses"], info["hits"]) == (1, 1)  # embedded once, found by the candidate


def test_a_folder_without_a_router_is_refused(tmp_path):
    with pytest.raises(RouterStoreError):
        RouteDispatcher(make(), MODELS, shadow=tmp_path / "nothing")
    with pytest.raises(TypeError, match="shadow must be"):
        RouteDispatcher(make(), MODELS, shadow=42)


# ---------------------------------------------------------------- the ledger
def _run(dispatcher: RouteDispatcher, ledger: CostLedger, text: str, fail_first=False):
    call = dispatcher.start(dispatcher.decide(RouteRequest(query=text)))
    route = call.decision.route
    if fail_first and route == "small":
        call.add_attempt(Attempt(route="small", model="gpt-4o-mini", error="RateLimitError: 429"))
        route = "large"
    usage = TokenUsage(input_tokens=1000, output_tokens=100)
    call.add_attempt(Attempt(route=route, model=MODELS[route], usage=usage))
    for record in call.ledger_records(framework="core", query=text):
        ledger.record(record)
    return call


@pytest.mark.parametrize("name", ["ledger.db", "ledger.jsonl"])
def test_shadow_fields_round_trip_and_only_the_first_attempt_carries_them(tmp_path, name):
    dispatcher = RouteDispatcher(make(), MODELS, shadow=make("small"), context=None, sessions=False)
    with CostLedger(tmp_path / name) as ledger:
        _run(dispatcher, ledger, EASY[0], fail_first=True)
        _run(dispatcher, ledger, HARD[0])
    rows = CostLedger.open(tmp_path / name).records()
    assert [(r.route, r.escalated, r.shadow_route) for r in rows] == [
        ("small", False, "small"),
        ("large", True, None),
        ("large", False, "small"),
    ]
    assert rows[2].shadow_reason == "vote" and 0 < rows[2].shadow_confidence <= 1


def test_an_older_sqlite_ledger_loads_and_gains_the_shadow_columns(tmp_path):
    path = tmp_path / "old.db"
    old_columns = (
        "timestamp TEXT NOT NULL, framework TEXT NOT NULL, run_id TEXT, kind TEXT NOT NULL, "
        "route TEXT, model TEXT, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, "
        "cached_tokens INTEGER NOT NULL, cost REAL, baseline_model TEXT, baseline_cost REAL, "
        "latency_ms REAL, escalated INTEGER NOT NULL, escalated_from TEXT, error TEXT, "
        "reason TEXT, confidence REAL, tier INTEGER, accepted INTEGER, metadata TEXT NOT NULL, "
        "record_id TEXT, query TEXT, feedback_for TEXT, verdict TEXT"
    )
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, {old_columns})")
        conn.execute(
            "INSERT INTO ledger (timestamp, framework, kind, route, model, input_tokens, "
            "output_tokens, cached_tokens, escalated, metadata, record_id) VALUES "
            "('2026-01-01T00:00:00+00:00', 'core', 'route', 'small', 'gpt-4o-mini', 5, 5, 0, 0, "
            "'{}', 'old-1')"
        )
    ledger = CostLedger.open(path)
    [old] = ledger.records()
    assert (old.record_id, old.shadow_route) == ("old-1", None)
    ledger.record(LedgerRecord(route="large", shadow_router="c", shadow_route="small"))
    ledger.flush()
    assert [r.shadow_route for r in CostLedger.open(path).records()] == [None, "small"]
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text(json.dumps({"route": "small", "model": "gpt-4o-mini"}) + "\n")
    assert CostLedger.open(jsonl).records()[0].shadow_router is None


# ---------------------------------------------------------------- compare --ledger
def _rows(pairs, feedback=None):
    records = []
    for i, (live, shadow) in enumerate(pairs):
        records.append(
            LedgerRecord(
                record_id=f"r{i}",
                route=live,
                model=MODELS[live],
                baseline_model="gpt-4o",
                input_tokens=1000,
                output_tokens=100,
                metadata={"decided_route": live},
                shadow_router="cand",
                shadow_route=shadow,
                shadow_error=None if shadow else "RuntimeError: boom",
                query=f"query {i}",
            )
        )
    for route, verdicts in (feedback or {}).items():
        for j, verdict in enumerate(verdicts):
            records.append(
                LedgerRecord(
                    kind="feedback", route=route, feedback_for=f"{route}-{j}", verdict=verdict
                )
            )
    return records


def test_compare_ledger_counts_agreement_and_lists_harmful_flips_first():
    pairs = (
        [("small", "small")] * 6
        + [("large", "small")] * 3
        + [("small", "large")]
        + [("large", None)]
    )
    report = compare_ledger(_rows(pairs))
    assert report.routes == ["small", "large"]  # the baseline model's route is the strongest
    assert (report.n, report.shadow_errors, report.flipped, report.harmful_flips) == (10, 1, 4, 3)
    assert report.agreement == pytest.approx(0.6)
    low, high = report.agreement_ci
    assert 0 < low < 0.6 < high < 1
    assert [(g.live, g.shadow, g.count, g.harmful) for g in report.flips] == [
        ("large", "small", 3, True),
        ("small", "large", 1, False),
    ]
    assert report.flips[0].examples[0].query == "query 6"
    assert report.strong_share_delta == pytest.approx(0.1 - 0.3)
    # same tokens priced: small 1000*0.15e-6 + 100*0.6e-6, large 1000*2.5e-6 + 100*10e-6
    small, large = 0.00021, 0.0035
    assert report.cost_live == pytest.approx(7 * small + 3 * large)
    assert report.cost_shadow == pytest.approx(9 * small + 1 * large)
    assert report.cost_delta == pytest.approx((9 * small + large) / (7 * small + 3 * large) - 1)
    low, high = report.cost_delta_ci
    assert low <= report.cost_delta <= high
    assert report.quality_delta is None  # no feedback


def test_compare_ledger_estimates_the_quality_delta_from_feedback():
    pairs = [("small", "small")] * 5 + [("large", "small")] * 5
    feedback = {"small": ["good"] * 6 + ["bad"] * 4, "large": ["good"] * 9 + ["bad"]}
    report = compare_ledger(_rows(pairs, feedback))
    assert report.quality_live == pytest.approx(0.5 * 0.6 + 0.5 * 0.9)
    assert report.quality_shadow == pytest.approx(0.6)
    assert report.quality_delta == pytest.approx(0.6 - 0.75)
    low, high = report.quality_delta_ci
    assert low < report.quality_delta < high < 0.05
    assert report.feedback == {"large": (9, 10), "small": (6, 10)}


def test_compare_ledger_refuses_a_ledger_without_shadow_rows():
    with pytest.raises(NoShadowRowsError, match="no shadow decisions"):
        compare_ledger([LedgerRecord(route="small")])
    with pytest.raises(NoShadowRowsError, match="'other'"):
        compare_ledger(_rows([("small", "small")]), candidate="other")


def test_the_cli_prints_the_comparison_and_its_json(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with CostLedger(path) as ledger:
        for record in _rows([("small", "small")] * 3 + [("large", "small")]):
            ledger.record(record)
    runner = CliRunner()
    done = runner.invoke(app, ["compare", "--ledger", str(path), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert (report["n"], report["agreement"], report["harmful_flips"]) == (4, 0.75, 1)
    shown = runner.invoke(app, ["compare", "--ledger", str(path)])
    assert shown.exit_code == 0 and "agreement 75.0%" in shown.output
    assert "large -> small" in shown.output
    both = runner.invoke(app, ["compare", "a", "b", "c", "--ledger", str(path)])
    assert both.exit_code == 2
    empty = tmp_path / "empty.jsonl"
    CostLedger(empty).record(LedgerRecord(route="small"))
    assert runner.invoke(app, ["compare", "--ledger", str(empty)]).exit_code == 2


# ---------------------------------------------------------------- promote / revert
def test_promote_swaps_the_candidate_in_and_revert_puts_the_previous_back(tmp_path):
    live, candidate = tmp_path / "prod", tmp_path / "candidate"
    make().save(live)
    make("small").save(candidate)
    runner = CliRunner()
    done = runner.invoke(app, ["promote", str(candidate), str(live)])
    assert done.exit_code == 0, done.output
    promoted = ExemplarRouter.load(live, embedder=HashingEmbedder())
    assert promoted.route(HARD[0]).route == "small"
    assert (
        ExemplarRouter.load(tmp_path / f"prod{PREVIOUS_SUFFIX}", embedder=HashingEmbedder())
        .route(HARD[0])
        .route
        == "large"
    )
    assert runner.invoke(app, ["revert", str(live)]).exit_code == 0
    assert ExemplarRouter.load(live, embedder=HashingEmbedder()).route(HARD[0]).route == "large"
    kept = ExemplarRouter.load(tmp_path / f"prod{REVERTED_SUFFIX}", embedder=HashingEmbedder())
    assert kept.route(HARD[0]).route == "small"


def test_promote_refuses_other_routes_and_revert_needs_a_previous_router(tmp_path):
    make().save(tmp_path / "prod")
    other = ExemplarRouter(
        routes=["cheap", "strong"],
        exemplars=[Exemplar(text="hi", route="cheap"), Exemplar(text="prove", route="strong")],
        embedder=HashingEmbedder(),
    )
    other.save(tmp_path / "other")
    with pytest.raises(RouterConfigError, match="same routes"):
        promote(tmp_path / "other", tmp_path / "prod")
    with pytest.raises(RouterStoreError, match="nothing to revert"):
        revert(tmp_path / "prod")
    assert ExemplarRouter.load(tmp_path / "prod", embedder=HashingEmbedder()).routes == [
        "small",
        "large",
    ]


# ---------------------------------------------------------------- replays
def _replay_script():
    path = REPO / "benchmarks" / "shadow_replay.py"
    spec = importlib.util.spec_from_file_location("shadow_replay", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _matches_offline(figures):
    ledger, offline = figures["ledger"], figures["offline"]
    assert figures["n"] == offline["n"] and figures["shadow_errors"] == 0
    assert ledger["flipped"] == offline["flipped"]
    assert ledger["agreement"] == pytest.approx(offline["agreement"])
    if offline["strong_share_delta"] is not None:
        assert ledger["strong_share_delta"] == pytest.approx(offline["strong_share_delta"])


@pytest.mark.slow
def test_a_shadow_run_over_the_demo_workload_matches_offline_compare(tmp_path):
    pytest.importorskip("langchain_langroute")
    figures = _replay_script().run_demo(tmp_path)
    assert figures["n"] == 15
    _matches_offline(figures)
    assert figures["ledger"]["flipped"] > 0  # the candidate's lower dial moves traffic


@pytest.mark.slow
def test_a_shadow_replay_of_routellm_matches_offline_compare(tmp_path, shared_data):
    figures = _replay_script().run_routellm(shared_data, tmp_path, limit=100, train_limit=300)
    if figures is None:
        pytest.skip("RouteLLM files not in the shared data")
    _matches_offline(figures)
    ledger = figures["ledger"]
    assert ledger["quality_delta"] is not None and ledger["cost_delta"] is not None
    low, high = ledger["cost_delta_ci"]
    assert low <= ledger["cost_delta"] <= high


def test_a_models_file_prices_routes_the_live_router_never_took(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with CostLedger(path) as ledger:
        for record in _rows([("small", "small")] * 2 + [("small", "large")] * 2):
            ledger.record(record)
    runner = CliRunner()
    alone = json.loads(runner.invoke(app, ["compare", "--ledger", str(path), "--json"]).output)
    assert alone["unpriced"] == 2 and alone["cost_delta"] == pytest.approx(0.0)
    config = tmp_path / "models.toml"
    config.write_text('[routes]\nsmall = "openai:gpt-4o-mini"\nlarge = "openai:gpt-4o"\n')
    done = runner.invoke(app, ["compare", "--ledger", str(path), "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    priced = json.loads(done.output)
    small, large = 0.00021, 0.0035
    assert priced["unpriced"] == 0
    assert priced["cost_delta"] == pytest.approx((2 * small + 2 * large) / (4 * small) - 1)
