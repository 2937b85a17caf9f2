"""LangChain chat models in langroute's models files and labelling runs (issue 13)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from langroute.labels import LabelQuery, alabel
from langroute.models import config as models_config
from langroute.models.config import load_models_config
from langroute.router.exemplars import load_exemplars

from langchain_langroute import completion_models
from langchain_langroute.completion_models import ChatCompletionModel
from langchain_langroute.testing import ScriptedChatModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_registers_the_spec_adapter():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entry = data["project"]["entry-points"][models_config.MODEL_SPECS_ENTRY_POINT]["langchain"]
    assert entry == "langchain_langroute.completion_models"


@pytest.fixture
def adapter_installed(monkeypatch):
    """The entry point as an installed langchain-langroute registers it."""
    monkeypatch.setattr(models_config, "_adapters", lambda: [completion_models])


async def test_chat_model_answers_with_usage_and_served_name():
    model = ChatCompletionModel(ScriptedChatModel(model="gpt-4o-mini", responses=["Paris."]))
    completion = await model.acomplete("What is the capital of France?")
    assert model.name == "gpt-4o-mini"
    assert completion.text == "Paris."
    assert completion.model == "gpt-4o-mini"
    assert completion.usage is not None and completion.usage.input_tokens == 6


async def test_init_chat_model_spec_through_a_real_client_retries_a_429(
    tmp_path, provider, adapter_installed
):
    models = tmp_path / "models.toml"
    client = f'base_url = "{provider.openai_url}", api_key = "x", max_retries = 0'
    models.write_text(
        "[routes]\n"
        f'small = {{ model = "openai:gpt-4o-mini", {client} }}\n'
        f'large = {{ model = "openai:gpt-4o", {client} }}\n',
        encoding="utf-8",
    )
    provider.script("gpt-4o-mini", "429", "ok")
    config = load_models_config(models)
    report = await alabel(
        [LabelQuery(id="q1", text="Say OK", reference="ok")],
        config,
        tmp_path / "scored.jsonl",
        grader="contains",
        retry_delay=0.0,
    )
    assert report.labelled == 1 and report.retries == 1
    assert provider.count("gpt-4o-mini") == 2 and provider.count("gpt-4o") == 1
    [scored] = load_exemplars(tmp_path / "scored.jsonl")
    assert set(scored.scores) == {"small", "large"}
    ledger = (tmp_path / "scored.ledger.jsonl").read_text(encoding="utf-8")
    # the served (dated) name is priced; the refused request is recorded with its error
    assert "gpt-4o-mini-2024-07-18" in ledger and "RateLimitError" in ledger
    assert ledger.count('"purpose":"labelling"') + ledger.count('"purpose": "labelling"') == 3


async def test_a_factory_may_return_a_chat_model(tmp_path, adapter_installed):
    (tmp_path / "my_chat_models.py").write_text(
        "from langchain_langroute.testing import ScriptedChatModel\n"
        "def make(name):\n"
        "    return ScriptedChatModel(model=name, responses=['4'])\n",
        encoding="utf-8",
    )
    models = tmp_path / "models.toml"
    models.write_text(
        '[routes]\nsmall = { factory = "my_chat_models:make", name = "gpt-4o-mini" }\n',
        encoding="utf-8",
    )
    model = load_models_config(models).build("small")
    assert isinstance(model, ChatCompletionModel) and model.name == "gpt-4o-mini"
    assert (await model.acomplete("2 + 2?")).text == "4"


def test_a_spec_without_an_adapter_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(models_config, "_adapters", lambda: [])
    models = tmp_path / "models.toml"
    models.write_text('[routes]\nsmall = "openai:gpt-4o-mini"\n', encoding="utf-8")
    with pytest.raises(models_config.ModelsConfigError, match="pip install langchain-langroute"):
        load_models_config(models).build("small")
