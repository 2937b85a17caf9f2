"""Decider chains: the heuristic gate, the kNN router, the LLM router, and their costs."""

from __future__ import annotations

import asyncio

import pytest

from langroute import Exemplar, ExemplarRouter
from langroute.chains.deciders import (
    DeciderChain,
    HeuristicGate,
    HeuristicRule,
    LLMRouter,
    Query,
    chain_from_config,
    has_code,
    parse_route_answer,
)
from langroute.costs import CostLedger, ModelPrice, Pricer
from langroute.dispatch.routed_call import Attempt, RoutedCall, TokenUsage
from langroute.embedders import HashingEmbedder
from langroute.errors import RouterConfigError
from langroute.models.config import Completion
from langroute.models.scripted import ScriptedCompletionModel
from langroute.monitoring import monitor

EASY = ["hi there", "thanks a lot", "what time is it", "good morning friend"]
HARD = [
    "prove the riemann hypothesis",
    "design a distributed database",
    "write a compiler in rust",
    "analyse the merger contract",
]
UNSURE = "zebra quantum marmalade"  # like nothing: out of distribution


@pytest.fixture
def knn() -> ExemplarRouter:
    exemplars = [Exemplar(text=t, route="small") for t in EASY]
    exemplars += [Exemplar(text=t, route="large") for t in HARD]
    return ExemplarRouter(
        routes=["small", "large"], exemplars=exemplars, embedder=HashingEmbedder()
    )


def test_rule_conditions_all_have_to_hold() -> None:
    short_greeting = HeuristicRule(
        name="greeting", route="small", max_words=4, keywords=["hi", "thanks"]
    )
    assert short_greeting.matches("Hi!")
    assert not short_greeting.matches("hi, could you plan the whole migration please")
    assert not short_greeting.matches("history")  # whole words only
    long_ = HeuristicRule(name="long", route="large", min_chars=50)
    assert long_.matches("x" * 50) and not long_.matches("x" * 49)
    ticket = HeuristicRule(name="ticket", route="small", pattern=r"\bJIRA-\d+\b")
    assert ticket.matches("status of JIRA-123?") and not ticket.matches("jira")
    code = HeuristicRule(name="code", route="large", code=True)
    assert code.matches("fix:\n```\nx = 1\n```")
    assert code.matches("def f(x):\n    return {x;\n}")
    assert not code.matches("what does a for loop do?")
    no_code = HeuristicRule(name="prose", route="small", code=False, max_words=3)
    assert no_code.matches("hello there") and not no_code.matches("```a```")
    picture = HeuristicRule(name="vision", route="large", attachments=True)
    assert picture.matches(Query("what is this?", attachments=2))
    assert not picture.matches("what is this?")


def test_bad_rules_are_refused_with_their_name() -> None:
    with pytest.raises(RouterConfigError, match=r"'empty'.*no condition"):
        HeuristicGate([{"name": "empty", "route": "small"}])
    with pytest.raises(
        RouterConfigError,
        match=r"'broken'.*pattern: pattern '\(unclosed' is not a regular expression",
    ):
        HeuristicGate([{"name": "broken", "route": "small", "pattern": "(unclosed"}])
    with pytest.raises(
        RouterConfigError, match=r"'typo': max_word: Extra inputs are not permitted"
    ):
        HeuristicGate([{"name": "typo", "route": "small", "max_word": 3}])
    with pytest.raises(RouterConfigError, match="share names"):
        HeuristicGate([{"name": "a", "route": "x", "min_chars": 1}] * 2)


def test_a_rule_for_an_unknown_route_is_refused(knn: ExemplarRouter) -> None:
    gate = HeuristicGate([{"name": "code", "route": "medium", "code": True}])
    with pytest.raises(RouterConfigError, match=r"\['medium'\]"):
        DeciderChain(knn, gate=gate)


def test_the_gate_decides_first_and_says_which_rule(knn: ExemplarRouter) -> None:
    model = ScriptedCompletionModel("router-llm", reply="small")
    gate = HeuristicGate(
        [
            {"name": "code", "route": "large", "code": True},
            {"name": "greeting", "route": "small", "keywords": ["hi"], "max_words": 3},
        ]
    )
    chain = DeciderChain(knn, gate=gate, llm=LLMRouter(model, may_choose_cheaper=True))
    decision = chain.route("hi there friend")
    assert (decision.route, decision.reason, decision.stage) == ("small", "rule", "rules")
    assert decision.stage_note == "rule 'greeting' matched"
    assert chain.route("```\nrm -rf /\n```").stage_note == "rule 'code' matched"
    assert model.calls == []  # nothing reached the LLM router


def test_when_two_rules_match_the_first_listed_decides(knn: ExemplarRouter) -> None:
    code = {"name": "code", "route": "large", "code": True}
    short = {"name": "short", "route": "small", "max_words": 10}
    query = "```\nx = 1\n```"  # short code: both rules match
    assert HeuristicRule(**code).matches(query) and HeuristicRule(**short).matches(query)
    for first, second in ((code, short), (short, code)):
        decision = DeciderChain(knn, gate=HeuristicGate([first, second])).route(query)
        assert decision.route == first["route"] != second["route"]
        assert decision.stage_note == f"rule {first['name']!r} matched"


def test_confident_knn_decides_and_the_llm_is_not_asked(knn: ExemplarRouter) -> None:
    model = ScriptedCompletionModel("router-llm", reply="small")
    chain = DeciderChain(knn, llm=LLMRouter(model, may_choose_cheaper=True))
    decision = chain.route("design a distributed compiler")
    assert (decision.route, decision.reason, decision.stage) == ("large", "vote", "knn")
    assert decision.router_calls == [] and model.calls == []


def test_an_unsure_knn_decision_goes_to_the_llm_router(knn: ExemplarRouter) -> None:
    model = ScriptedCompletionModel("router-llm", reply="Small.")
    descriptions = {"small": "chit-chat and lookups", "large": "proofs and design"}
    chain = DeciderChain(
        knn, llm=LLMRouter(model, descriptions=descriptions, examples=3, may_choose_cheaper=True)
    )
    decision = chain.route(UNSURE)
    assert (decision.route, decision.reason, decision.stage) == ("small", "llm", "llm")
    assert decision.stage_note == "LLM router chose 'small'"
    [call] = decision.router_calls
    assert call.model == "router-llm" and call.input_tokens > 50 and call.output_tokens == 1
    [prompt] = model.calls
    assert "- small: chit-chat and lookups" in prompt and "- large: proofs and design" in prompt
    assert prompt.count("\nModel: ") == 3  # the three nearest labelled exemplars
    assert f"The request to route:\n<request>\n{UNSURE}\n</request>\n" in prompt
    assert "llm" in decision.timings_ms


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        ("I think small, or maybe large", "no route"),
        (RuntimeError("503 upstream"), "LLM router failed (RuntimeError: 503 upstream)"),
    ],
)
def test_a_failing_llm_router_leaves_the_safe_knn_decision(
    knn: ExemplarRouter, reply: object, note: str
) -> None:
    model = ScriptedCompletionModel("router-llm", script=[reply])  # type: ignore[list-item]
    chain = DeciderChain(knn, llm=LLMRouter(model, may_choose_cheaper=True))
    plain = knn.route(UNSURE)
    decision = chain.route(UNSURE)
    assert (decision.route, decision.reason) == (plain.route, "out_of_distribution")
    assert decision.route == knn.fallback and decision.stage == "knn"
    assert note in (decision.stage_note or "")
    [call] = decision.router_calls  # paid for, even when useless
    assert (call.error is not None) == isinstance(reply, Exception)


def test_without_an_llm_router_unsure_queries_go_to_the_fallback(knn: ExemplarRouter) -> None:
    decision = DeciderChain(knn).route(UNSURE)
    assert (decision.route, decision.stage, decision.router_calls) == ("large", "knn", [])


def test_batches_and_async_decide_like_single_calls(knn: ExemplarRouter) -> None:
    gate = HeuristicGate([{"name": "code", "route": "large", "code": True}])
    chain = DeciderChain(
        knn,
        gate=gate,
        llm=LLMRouter(ScriptedCompletionModel("r", reply="small"), may_choose_cheaper=True),
    )
    queries = ["hi there friend", "```\nx\n```", UNSURE, "design a distributed compiler"]
    single = [(d.route, d.reason, d.stage) for d in map(chain.route, queries)]
    batch = [(d.route, d.reason, d.stage) for d in chain.route_batch(queries)]
    together = asyncio.run(chain.aroute_batch(queries))
    one_by_one = [asyncio.run(chain.aroute(q)) for q in queries]
    assert single == batch
    assert batch == [(d.route, d.reason, d.stage) for d in together]
    assert batch == [(d.route, d.reason, d.stage) for d in one_by_one]
    assert [s for _, _, s in single] == ["knn", "rules", "llm", "knn"]


class CountingModel:
    """A router model that counts how many of its calls are in flight at once."""

    name = "counting"

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

    async def acomplete(self, prompt: str) -> Completion:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return Completion(text="large", usage=None, model=self.name)


def test_a_batch_bounds_the_llm_calls_in_flight(knn: ExemplarRouter) -> None:
    model = CountingModel()
    chain = DeciderChain(knn, llm=LLMRouter(model, may_choose_cheaper=True), max_concurrent_llm=3)
    unsure = [f"{UNSURE} {word}" for word in ("alpha", "beta", "gamma", "delta", "eps", "zeta")]
    decisions = chain.route_batch(unsure)
    assert all(d.stage == "llm" for d in decisions)
    assert model.most == 3
    assert all(not d.router_calls[0].usage_reported for d in decisions)


def test_sync_route_works_inside_a_running_event_loop(knn: ExemplarRouter) -> None:
    chain = DeciderChain(
        knn, llm=LLMRouter(ScriptedCompletionModel("r", reply="small"), may_choose_cheaper=True)
    )

    async def inside() -> str:
        return chain.route(UNSURE).route  # a sync invoke in an async application

    assert asyncio.run(inside()) == "small"


def test_route_answers_are_parsed_strictly() -> None:
    routes = ["small", "medium", "large"]
    accepted = ["large", " LARGE ", "`medium`", "**small**", "large.", "Route: medium"]
    accepted += ['{"route": "large"}', '```json\n{"route": "small"}\n```', "'medium'"]
    assert [parse_route_answer(a, routes) for a in accepted] == [
        "large", "large", "medium", "small", "large", "medium", "large", "small", "medium",
    ]  # fmt: skip
    refused = ["", "huge", "small or large", "The answer is large", '{"route": 3}', "{bad"]
    assert [parse_route_answer(r, routes) for r in refused] == [None] * len(refused)


def test_code_detection() -> None:
    assert has_code("```\nprint(1)\n```")
    assert has_code("SELECT *\nFROM t;\nSELECT 1;")
    assert not has_code("Tell me about Python classes; keep it short.")


def test_router_calls_are_ledger_rows_that_count_against_savings(knn: ExemplarRouter) -> None:
    chain = DeciderChain(
        knn,
        llm=LLMRouter(
            ScriptedCompletionModel("router-llm", reply="small"), may_choose_cheaper=True
        ),
    )
    decision = chain.route(UNSURE)
    call = RoutedCall(decision=decision, baseline_route="large", baseline_model="strong")
    call.add_attempt(
        Attempt(route="small", model="cheap", usage=TokenUsage(input_tokens=900, output_tokens=90))
    )
    records = call.ledger_records(framework="test")
    assert [(r.route, r.metadata.get("role")) for r in records] == [
        ("router", "router"),
        ("small", None),
    ]
    assert {r.run_id for r in records} == {call.call_id}
    assert records[0].overhead and records[0].metadata["stage"] == "llm"
    # a handler writing attempt by attempt gets the router's call once, with the first
    assert [r.route for r in call.ledger_records(framework="t", attempt=-1)] == ["router", "small"]
    call.add_attempt(Attempt(route="large", model="strong", usage=TokenUsage(input_tokens=9)))
    assert [r.route for r in call.ledger_records(framework="t", attempt=-1)] == ["large"]

    pricer = Pricer(
        overrides={
            "cheap": ModelPrice(input_per_mtok=1, output_per_mtok=1),
            "strong": ModelPrice(input_per_mtok=10, output_per_mtok=10),
            "router-llm": ModelPrice(input_per_mtok=1, output_per_mtok=1),
        }
    )
    ledger = CostLedger(pricer=pricer)
    stored = [ledger.record(r) for r in records]
    summary = ledger.summary()
    router_cost = stored[0].cost
    assert router_cost is not None and router_cost > 0
    assert summary.savings == pytest.approx(stored[1].baseline_cost - stored[1].cost - router_cost)
    window = monitor(stored).windows[0]
    assert window.route_shares == {"small": 1.0}  # the router's call never answers


def test_a_chain_is_built_from_a_config_table(knn: ExemplarRouter) -> None:
    built: list[object] = []

    def build(spec: object) -> ScriptedCompletionModel:
        built.append(spec)
        return ScriptedCompletionModel("cfg", reply="small")

    chain = chain_from_config(
        knn,
        {
            "rules": [{"name": "code", "route": "large", "code": True}],
            "llm": {"model": "openai:gpt-4o-mini", "examples": 2, "may_choose_cheaper": True},
            "ask_llm_on": ["out_of_distribution"],
        },
        build_model=build,
    )
    assert built == ["openai:gpt-4o-mini"]
    assert chain.route(UNSURE).stage == "llm"
    assert "rules -> knn -> llm" in repr(chain)
    with pytest.raises(RouterConfigError, match="unknown chain keys"):
        chain_from_config(knn, {"rule": []})
    with pytest.raises(RouterConfigError, match="unknown decision reasons"):
        chain_from_config(knn, {"ask_llm_on": ["shaky"]})
    with pytest.raises(RouterConfigError, match="needs a model"):
        chain_from_config(knn, {"llm": {"examples": 2}}, build_model=build)


def labelled_rows() -> list[Exemplar]:
    rows = [Exemplar(text=f"{t} please", route="small") for t in EASY]
    rows += [Exemplar(text=f"{t} carefully", route="large") for t in HARD]
    rows += [Exemplar(text="```\nfix this loop\n```", route="large")]
    rows += [Exemplar(text=f"{UNSURE} {w}", route="small") for w in ("one", "two", "three")]
    return rows


def test_evaluate_chain_reports_each_stage_against_knn_alone(knn: ExemplarRouter) -> None:
    from langroute.evaluation.chains import evaluate_chain

    gate = HeuristicGate([{"name": "code", "route": "large", "code": True}])
    model = ScriptedCompletionModel("gpt-4o-mini", reply="small")
    chain = DeciderChain(knn, gate=gate, llm=LLMRouter(model, may_choose_cheaper=True))
    report = evaluate_chain(chain, labelled_rows())
    by_stage = {s.stage: s for s in report.stages}
    assert set(by_stage) == {"rules", "knn", "llm"}
    assert by_stage["rules"].n == 1 and by_stage["rules"].accuracy == 1.0
    assert by_stage["llm"].n == 3 and by_stage["llm"].accuracy == 1.0
    # alone, the kNN sends the unsure rows to the fallback (large): cost inflation
    assert report.knn_only.cost_inflation > report.chain.cost_inflation
    assert report.chain.accuracy > report.knn_only.accuracy
    assert sum(s.n for s in report.stages) == report.n == report.chain.n
    assert report.routing_calls == 3 and report.routing_failures == 0
    assert report.routing_input_tokens > 0 and report.routing_cost is not None
    assert report.routing_cost > 0


def test_eval_cli_measures_a_chain_from_a_models_file(tmp_path) -> None:
    import json

    from langroute.router.exemplars import save_exemplars

    from .test_cli import assert_clean, run_cli

    exemplars = [Exemplar(text=t, route="small") for t in EASY]
    exemplars += [Exemplar(text=t, route="large") for t in HARD]
    save_exemplars(exemplars, tmp_path / "exemplars.jsonl")
    save_exemplars(labelled_rows(), tmp_path / "eval.jsonl")
    (tmp_path / "models.toml").write_text(
        """
[routes]
small = "langroute.models.scripted:echo_model"
large = "langroute.models.scripted:echo_model"

[[chain.rules]]
name = "code"
route = "large"
code = true

[chain.llm]
may_choose_cheaper = true

[chain.llm.model]
factory = "langroute.models.scripted:ScriptedCompletionModel"
name = "tiny-router"
reply = "small"

[prices.tiny-router]
input_per_mtok = 1
output_per_mtok = 2
""",
        encoding="utf-8",
    )
    result = run_cli(
        "eval", "exemplars.jsonl", "eval.jsonl", "--embedder", "hashing", "--no-tune",
        "--chain", "models.toml", "--json", "out.json", "--plot", "eval.png", cwd=tmp_path,
    )  # fmt: skip
    out = assert_clean(result)
    assert result.returncode == 0, result.stderr.decode()
    assert "decider chain, stage by stage" in out and "knn only" in out
    assert "routing: 3 LLM router calls" in out
    figures = json.loads((tmp_path / "out.json").read_text())
    assert [s["stage"] for s in figures["chain"]["stages"]] == ["rules", "knn", "llm"]
    assert figures["chain"]["routing_cost"] > 0

    (tmp_path / "bad.toml").write_text(
        '[routes]\nsmall = "langroute.models.scripted:echo_model"\n'
        '[[chain.rules]]\nname = "typo"\nroute = "large"\nmax_word = 3\n',
        encoding="utf-8",
    )
    bad = run_cli(
        "eval", "exemplars.jsonl", "eval.jsonl", "--embedder", "hashing", "--no-tune",
        "--chain", "bad.toml", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1
    assert b"bad.toml: [chain]: heuristic rule 'typo': max_word" in bad.stderr


def test_evaluate_chain_reports_quality_on_scored_rows(knn: ExemplarRouter) -> None:
    from langroute.evaluation.chains import evaluate_chain

    rows = [Exemplar(text=f"{t} please", scores={"small": 1.0, "large": 1.0}) for t in EASY]
    rows += [Exemplar(text=f"{t} carefully", scores={"small": 0.0, "large": 1.0}) for t in HARD]
    rows += [Exemplar(text=UNSURE, scores={"small": 0.0, "large": 0.5})]
    model = ScriptedCompletionModel("gpt-4o-mini", reply="small")
    report = evaluate_chain(DeciderChain(knn, llm=LLMRouter(model, may_choose_cheaper=True)), rows)
    # the kNN alone sends the unsure row to large (0.5); the LLM router sends it to small (0)
    assert report.knn_only.quality == pytest.approx((4 * 1.0 + 4 * 1.0 + 0.5) / 9)
    assert report.chain.quality == pytest.approx((4 * 1.0 + 4 * 1.0 + 0.0) / 9)
    [llm_stage] = [s for s in report.stages if s.stage == "llm"]
    assert (llm_stage.n, llm_stage.quality, llm_stage.quality_loss) == (1, 0.0, 1.0)
