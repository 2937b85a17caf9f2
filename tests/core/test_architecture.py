"""The core's architecture, checked: layers, exports, one exception module, one version."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import langroute
from langroute import errors

REPO = Path(__file__).resolve().parents[2]


def _core_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(langroute.__path__, prefix="langroute.")
        if not info.name.startswith("langroute.data")
    ]


def test_the_import_contracts_hold():
    """The layers in pyproject.toml ([tool.importlinter]): lint-imports keeps every contract."""
    command = shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is missing: install the test extra (import-linter)")
    result = subprocess.run(
        [command, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " BROKEN" not in result.stdout
    assert "Contracts: 8 kept, 0 broken." in result.stdout


def test_every_top_level_export_imports():
    for name in langroute.__all__:
        assert getattr(langroute, name) is not None, name


def test_every_error_and_warning_lives_in_errors_and_is_exported():
    defined = []
    for module_name in _core_modules():
        if module_name.startswith("langroute.cli"):
            continue
        module = importlib.import_module(module_name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ != module_name:
                continue  # imported here, defined elsewhere
            if issubclass(value, (errors.LangrouteError, Warning)):
                defined.append(f"{module_name}.{value.__name__}")
    assert [name for name in defined if not name.startswith("langroute.errors.")] == []
    own = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, (Exception, Warning))
        and value.__module__ == "langroute.errors"
    }
    assert own == set(errors.__all__)
    assert own <= set(langroute.__all__)


def test_the_version_is_the_installed_distributions():
    assert langroute.__version__ == importlib.metadata.version("langroute")


def _loaded_after(statement: str, modules: set[str]) -> list[str]:
    code = f"import sys; {statement}; print(sorted({sorted(modules)!r} & sys.modules.keys()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return eval(out.stdout)  # a list of module names printed by the child


def test_import_langroute_loads_no_heavy_module():
    heavy = {"numpy", "faiss", "torch", "sentence_transformers", "onnxruntime", "langroute.cli"}
    assert _loaded_after("import langroute, langroute.errors", heavy) == []


def test_the_dispatcher_loads_no_model_or_index():
    heavy = {"faiss", "torch", "sentence_transformers", "onnxruntime", "langroute.cli"}
    assert _loaded_after("import langroute.dispatch.dispatcher", heavy) == []
