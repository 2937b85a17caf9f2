"""The ``[serve]`` table of the models file, the API keys file and the serve commands."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langroute.cli.app import app
from langroute.errors import ApiKeysFileError, ModelsConfigError
from langroute.models.config import load_models_config
from langroute.serving.keys import add_api_key, hash_secret, load_api_keys, remove_api_key

ROUTES = '[routes]\nsmall = "openai:gpt-4o-mini"\nlarge = "openai:gpt-4o"\n'


def config(tmp_path: Path, serve: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(ROUTES + "\n[serve]\n" + serve, encoding="utf-8")
    return path


def test_serve_defaults_and_paths_beside_the_file(tmp_path):
    assert load_models_config(config(tmp_path, "")).serve.aliases == ["auto"]
    serve = load_models_config(
        config(tmp_path, 'router = "r"\nledger = "costs.db"\nkeys = "k.jsonl"\nlearn = true\n')
    ).serve
    assert (serve.router, serve.keys) == (tmp_path / "r", tmp_path / "k.jsonl")
    assert serve.ledger == str(tmp_path / "costs.db") and serve.stores_queries
    url = "postgresql://langroute@db/costs"
    assert load_models_config(config(tmp_path, f'ledger = "{url}"\n')).serve.ledger == url


@pytest.mark.parametrize(
    ("serve", "line", "expected"),
    [
        ('ledger = "c.db"\nover_budget = "refuse"\n', 7, "over_budget: Input should be"),
        ("port = 70000\n", 6, "port: Input should be less than or equal to 65535"),
        ("colour = 1\n", 6, "colour: unknown key"),
        ('aliases = ["small"]\n', 6, "alias 'small' is also a route name"),
    ],
)
def test_a_bad_serve_key_is_named_with_file_and_line(tmp_path, serve, line, expected):
    path = config(tmp_path, serve)
    with pytest.raises(ModelsConfigError) as caught:
        load_models_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: [serve] ")
    assert expected in str(caught.value)


def test_keys_file_stores_hashes_and_names_bad_lines(tmp_path):
    path = tmp_path / "keys.jsonl"
    secret, key = add_api_key(path, "team-a", budget=5, period="week")
    assert secret not in path.read_text() and hash_secret(secret) in path.read_text()
    assert load_api_keys(path).find(secret) == key and load_api_keys(path).find("lr-x") is None
    with pytest.raises(ApiKeysFileError, match="a key named 'team-a' exists already"):
        add_api_key(path, "team-a")
    with pytest.raises(ApiKeysFileError, match="budget"):
        add_api_key(path, "team-b", budget=-1)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"name": "broken"}\n')
    with pytest.raises(
        ApiKeysFileError, match=rf"^{path}:2: not an API key: sha256: Field required"
    ):
        load_api_keys(path)
    path.write_text(path.read_text().splitlines()[0] + "\n")
    assert remove_api_key(path, "team-a").name == "team-a" and load_api_keys(path).keys == []


def test_serve_key_add_prints_the_secret_once(tmp_path):
    path = config(tmp_path, 'keys = "keys.jsonl"\n')
    result = CliRunner().invoke(
        app, ["serve-key", "add", str(path), "--name", "team-a", "--budget", "2"]
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert load_api_keys(tmp_path / "keys.jsonl").find(secret).budget == 2
    bad = CliRunner().invoke(app, ["serve-key", "add", str(config(tmp_path, "")), "--name", "x"])
    assert bad.exit_code == 1 and "names no keys file" in " ".join(bad.output.split())


def test_serve_without_the_langchain_integration_says_what_to_install(tmp_path, monkeypatch):
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        return [] if kwargs.get("group") == "langroute.serve" else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    result = CliRunner().invoke(app, ["serve", str(config(tmp_path, ""))])
    assert result.exit_code == 1
    assert "pip install 'langchain-langroute[serve]'" in " ".join(result.output.split())
