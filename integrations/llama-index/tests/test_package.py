"""Package layout: a namespace package like LlamaIndex's own integrations, a curated API."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import llama_index.llms.langroute as package

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "CASCADE_KEY",
    "ROUTE_KEY",
    "CascadeAttempt",
    "CascadeLLM",
    "CascadeResult",
    "CascadeTierEvent",
    "CostCallbackHandler",
    "QueryExtractor",
    "QueryExtractorProtocol",
    "RouteAttemptFailedEvent",
    "RouteCompletedEvent",
    "RouteMetadata",
    "RouteSelectedEvent",
    "RoutingLLM",
    "TokenUsage",
    "extract_usage",
    "merge_usage",
    "track_costs",
}


def test_all_is_curated_and_importable():
    assert set(package.__all__) == EXPECTED
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_namespace_layout_leaves_llama_index_core_importable():
    assert not (ROOT / "llama_index" / "__init__.py").exists()
    assert not (ROOT / "llama_index" / "llms" / "__init__.py").exists()
    assert (ROOT / "llama_index" / "llms" / "langroute" / "__init__.py").exists()
    core = importlib.import_module("llama_index.core.llms")
    assert Path(core.__file__).parts[-3:] == ("core", "llms", "__init__.py")
    assert Path(package.__file__).parts[-4:] == ("llama_index", "llms", "langroute", "__init__.py")


def test_pyproject_declares_the_distribution():
    if tomllib is None:  # pragma: no cover
        return
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["name"] == "llama-index-llms-langroute"
    assert sorted(data["project"]["dependencies"]) == ["langroute", "llama-index-core>=0.14"]
    assert data["tool"]["llamahub"]["import_path"] == "llama_index.llms.langroute"
    assert data["tool"]["hatch"]["build"]["targets"]["wheel"]["include"] == ["llama_index/"]


def test_routing_llm_is_a_function_calling_llm():
    from llama_index.core.llms.function_calling import FunctionCallingLLM

    assert issubclass(package.RoutingLLM, FunctionCallingLLM)
    assert package.RoutingLLM.class_name() == "RoutingLLM"
