"""The offline demo behind ``langroute demo`` (issue 6): decisions, ledger, savings, plot."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from langroute.costs import CostLedger

pytest.importorskip("langchain_core")

from langchain_langroute.demo import (
    WORKLOAD,
    DemoSetupError,
    StandInChatModel,
    chat_models_for,
    run_demo,
    stand_in_models,
)

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=160, color_system=None, force_terminal=False), buffer


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, starter_router):
    console, buffer = _console()
    output = tmp_path_factory.mktemp("demo")
    result = run_demo(output=output, console=console, router=starter_router)
    return result, buffer.getvalue(), output


def test_demo_prints_every_decision_and_the_report(demo_run):
    result, text, _ = demo_run
    for request in WORKLOAD:
        assert " ".join(request.text.split())[:30] in text
    for needle in ("langroute cost report", "escalations", "savings", "saved", "gpt-4o-mini"):
        assert needle in text
    assert "low_confidence" in text or "out_of_distribution" in text
    assert str(result.ledger_path) in text
    assert str(result.plot_path) in text


def test_demo_routes_easy_to_small_and_hard_to_large(demo_run):
    result, _, _ = demo_run
    by_query = {d.query: d for d in result.decisions}
    assert len(result.decisions) == len(WORKLOAD)
    assert by_query["What's the capital of Australia?"].route == "small"
    assert by_query["What's the capital of Australia?"].model == "gpt-4o-mini"
    design = next(d for d in result.decisions if d.query.startswith("Design a multi-region"))
    assert design.route == "large"
    assert design.model == "gpt-4o"
    routes = Counter(d.route for d in result.decisions if d.kind == "route")
    assert routes["small"] >= 5
    assert routes["large"] >= 3


def test_demo_shows_escalations(demo_run):
    result, _, _ = demo_run
    cascade = [d for d in result.decisions if d.kind == "cascade"]
    assert [d.escalated for d in cascade].count(True) == 2
    assert any("refusal" in d.detail for d in cascade)
    assert any("json" in d.detail for d in cascade)
    assert all(d.route == "small" for d in cascade if not d.escalated)
    assert all(d.route == "large" for d in cascade if d.escalated)
    router_escalations = [d for d in result.decisions if d.kind == "route" and d.escalated]
    assert router_escalations, "at least one request should go to the fallback route"
    assert all(d.route == "large" for d in router_escalations)
    assert set(result.escalations) == {d for d in result.decisions if d.escalated}


def test_demo_ledger_rows_match_the_workload(demo_run):
    result, _, output = demo_run
    assert result.ledger_path == output / "ledger.db"
    records = CostLedger.open(result.ledger_path).records()
    routed = [r for r in records if r.kind == "route"]
    cascaded = [r for r in records if r.kind == "cascade"]
    n_routed = sum(r.kind == "route" for r in WORKLOAD)
    n_cascade = sum(r.kind == "cascade" for r in WORKLOAD)
    escalated_cascades = sum(d.escalated for d in result.decisions if d.kind == "cascade")
    assert len(routed) == n_routed
    assert len(cascaded) == n_cascade + escalated_cascades
    assert len({r.run_id for r in records}) == len(WORKLOAD) == result.requests
    assert len(records) == result.calls
    assert all(r.cost is not None and r.cost > 0 for r in records)
    assert {r.model for r in records} == {"gpt-4o-mini", "gpt-4o"}
    assert all(r.baseline_model == "gpt-4o" for r in records)
    rejected = [r for r in cascaded if r.accepted is False]
    assert len(rejected) == escalated_cascades


def test_demo_saves_money_and_writes_the_plot(demo_run):
    result, _, output = demo_run
    assert result.cost is not None and result.baseline_cost is not None
    assert result.savings is not None and result.savings > 0
    assert result.cost < result.baseline_cost
    assert 0 < (result.savings_pct or 0) < 100
    assert result.plot_path == output / "costs.png"
    assert result.plot_path.read_bytes()[:8] == PNG_MAGIC
    assert result.provider == "offline"
    assert result.models == {"small": "gpt-4o-mini", "large": "gpt-4o"}


def test_demo_starts_a_fresh_ledger(tmp_path, starter_router):
    console, _ = _console()
    first = run_demo(output=tmp_path, console=console, router=starter_router)
    second = run_demo(output=tmp_path, console=console, router=starter_router)
    assert len(CostLedger.open(second.ledger_path).records()) == second.calls == first.calls


def test_stand_ins_behave_like_a_cheap_and_a_strong_model():
    cheap, strong = stand_in_models()
    question = WORKLOAD[0].text
    small_answer = cheap.invoke(question)
    large_answer = strong.invoke(question)
    assert small_answer.content != large_answer.content
    assert small_answer.response_metadata["model_name"] == "gpt-4o-mini"
    assert large_answer.response_metadata["model_name"] == "gpt-4o"
    assert (
        small_answer.usage_metadata["output_tokens"] < large_answer.usage_metadata["output_tokens"]
    )
    long_prompt = "word " * 400
    assert cheap.invoke(long_prompt).usage_metadata["input_tokens"] >= 400


def test_provider_errors_are_clear(monkeypatch):
    with pytest.raises(DemoSetupError, match="choose one of"):
        chat_models_for("mistral")
    monkeypatch.setitem(sys.modules, "langchain_openai", None)
    with pytest.raises(DemoSetupError, match="pip install langchain-openai"):
        chat_models_for("openai")
    monkeypatch.setitem(sys.modules, "langchain_anthropic", types.ModuleType("fake"))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(DemoSetupError, match="ANTHROPIC_API_KEY"):
        chat_models_for("anthropic")


def test_real_provider_path_is_the_same_code(monkeypatch, tmp_path, starter_router):
    """A fake ``langchain_openai`` proves ``--openai`` runs the same demo code path."""
    fake = types.ModuleType("langchain_openai")

    def chat_openai(model: str) -> StandInChatModel:
        cheap, strong = stand_in_models()
        return (cheap if model == "gpt-4.1-mini" else strong).model_copy(update={"model": model})

    fake.ChatOpenAI = chat_openai  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langchain_openai", fake)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LANGROUTE_CHEAP_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("LANGROUTE_STRONG_MODEL", "gpt-4.1")
    console, buffer = _console()
    result = run_demo(provider="openai", output=tmp_path, console=console, router=starter_router)
    assert result.provider == "openai"
    assert result.models == {"small": "gpt-4.1-mini", "large": "gpt-4.1"}
    assert result.savings is not None and result.savings > 0
    assert "openai models" in buffer.getvalue()


def test_langroute_demo_command(tmp_path):
    """``langroute demo -o DIR`` finds the demo through the entry point and runs it."""
    from importlib.metadata import entry_points

    if not list(entry_points(group="langroute.demo")):
        pytest.skip("langchain-langroute is not installed with its langroute.demo entry point")
    output = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    env.pop("LANGROUTE_DEMO_PROVIDER", None)
    done = subprocess.run(
        [sys.executable, "-m", "langroute.cli.app", "demo", "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "langroute cost report" in text
    assert "What's the capital of Australia?" in text
    assert "saved $" in text
    assert (output / "ledger.db").is_file()
    assert (output / "costs.png").read_bytes()[:8] == PNG_MAGIC
    records = CostLedger.open(Path(output / "ledger.db")).records()
    assert len({r.run_id for r in records}) == len(WORKLOAD)


def test_three_tier_demo_runs_the_chain_the_cascade_and_the_report(tmp_path, starter_router):
    """``tiers=3``: small/medium/large through rules, kNN and an LLM router, end to end."""
    from langchain_langroute.demo import three_tier_router

    console, buffer = _console()
    result = run_demo(output=tmp_path, console=console, tiers=3)
    text = buffer.getvalue()
    assert result.models == {"small": "gpt-4o-mini", "medium": "gpt-4.1-mini", "large": "gpt-4o"}
    assert {d.route for d in result.decisions} == {"small", "medium", "large"}
    reasons = Counter(d.reason for d in result.decisions if d.kind == "route")
    assert reasons["rule"] >= 1 and reasons["llm"] >= 1 and reasons["vote"] >= 1
    cascaded = [d for d in result.decisions if d.kind == "cascade"]
    assert {d.route for d in cascaded} >= {"small"} and any(d.escalated for d in cascaded)
    records = CostLedger.open(result.ledger_path).records()
    routers = [r for r in records if r.route == "router"]
    assert len(routers) == reasons["llm"] and all(r.overhead for r in routers)
    assert len({r.run_id for r in records}) == len(WORKLOAD) == result.requests
    assert result.savings is not None and result.savings > 0
    assert "decider chain" in text and "medium" in text and "gpt-4.1-mini" in text
    split = three_tier_router().counts()
    assert split["medium"] > 0 and split["large"] > 0
    assert sum(split.values()) == len(starter_router)
    with pytest.raises(DemoSetupError, match="2 or 3 tiers"):
        run_demo(output=tmp_path, console=console, tiers=4)
