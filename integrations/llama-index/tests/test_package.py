"""Package layout: a namespace package like LlamaIndex's own integrations, a curated API."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import llama_index.llms.langroute as package

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]

BASE = "llama_index.llms.langroute"
EXPECTED = {  # public name -> the module that defines it
    "CASCADE_KEY": "langroute.dispatch.cascade",
    "ROUTE_KEY": "langroute.dispatch.routed_call",
    "CascadeAttempt": "langroute.dispatch.cascade",
    "CascadeLLM": f"{BASE}.cascade",
    "CascadeResult": f"{BASE}.cascade",
    "CascadeTierEvent": f"{BASE}.events",
    "CostCallbackHandler": f"{BASE}.costs",
    "QueryEngineRoute": f"{BASE}.route_targets",
    "QueryExtractor": f"{BASE}.query",
    "QueryExtractorProtocol": f"{BASE}.query",
    "RouteAttemptFailedEvent": f"{BASE}.events",
    "RouteCompletedEvent": f"{BASE}.events",
    "RouteMetadata": "langroute.dispatch.routed_call",
    "RouteSelectedEvent": f"{BASE}.events",
    "RoutingLLM": f"{BASE}.base",
    "TokenUsage": "langroute.dispatch.routed_call",
    "extract_usage": f"{BASE}.usage",
    "merge_usage": f"{BASE}.usage",
    "track_costs": f"{BASE}.costs",
}


def test_all_is_curated_and_importable():
    assert set(package.__all__) == set(EXPECTED)
    assert len(package.__all__) == len(EXPECTED)  # no name listed twice
    for name, module_name in EXPECTED.items():
        value = getattr(package, name)
        # the package re-exports the defining module's object, not a copy or a stand-in
        assert value is getattr(importlib.import_module(module_name), name), name
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__module__, value.__name__) == (module_name, name)
    # the metadata keys are the ones the core and the LangChain integration use
    assert (package.ROUTE_KEY, package.CASCADE_KEY) == ("langroute", "langroute_cascade")


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
