"""The examples in the integration's docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = ["query", "usage", "events", "testing", "costs", "base", "cascade", "route_targets"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"llama_index.llms.langroute.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no example that runs"
    assert result.failed == 0


def test_readme_offline_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Run it offline", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "Answer from gpt-4o-mini.",
        "Answer from gpt-4o.",
        "$0.003021 instead of $0.005700",
    ]
