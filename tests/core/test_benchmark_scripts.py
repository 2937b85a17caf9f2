"""Smoke runs of ``benchmarks/core.py`` and ``benchmarks/quality.py`` on tiny inputs.

No figure is checked against a target and nothing is timed: these runs only prove the
scripts still work end to end and write the JSON their readers expect.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from langroute import load_exemplars
from langroute.router.exemplar_router import STARTER_EXEMPLARS

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "benchmarks" / "core.py"
QUALITY = REPO / "benchmarks" / "quality.py"
TUNING = REPO / "benchmarks" / "tuning.py"


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        timeout=600,
    )


def number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def share(value: object) -> bool:
    return number(value) and 0.0 <= value <= 1.0  # type: ignore[operator]


# -- benchmarks/core.py --------------------------------------------------------------------


def load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_core_benchmark_quick_run(tmp_path, monkeypatch, minilm_embedder, starter_router):
    """``core.py --quick`` end to end, with a 24-exemplar pack for the leave-one-out part.

    ``starter_router`` leaves the embedded starter pack in this session's cache, so the
    benchmark's own starter build and its cold-start subprocess load it instead of
    embedding 476 texts again; the model is the session's.
    """
    core = load_script(CORE, "langroute_core_bench")
    starter = load_exemplars(STARTER_EXEMPLARS)
    pack = [ex for ex in starter if ex.route == "small"][:12]
    pack += [ex for ex in starter if ex.route == "large"][:12]
    tiny = tmp_path / "pack.jsonl"
    tiny.write_text("".join(ex.model_dump_json() + "\n" for ex in pack), encoding="utf-8")
    monkeypatch.setattr(core, "STARTER_EXEMPLARS", tiny)
    monkeypatch.setattr(core, "SentenceTransformerEmbedder", lambda: minilm_embedder)
    out = tmp_path / "core.json"
    argv = ["core.py", "--quick", "--json", str(out), "--data", str(tmp_path / "no-data")]
    monkeypatch.setattr(sys, "argv", argv)
    core.main()
    results = json.loads(out.read_text())
    assert set(results) == {
        "machine",
        "starter_build_s",
        "warm_single_query",
        "batch_queries_per_s",
        "cold_start",
        "starter_leave_one_out",
    }  # --quick: no intent data sections
    assert set(results["machine"]) == {"python", "processor", "cpus"}
    assert set(results["warm_single_query"]) == {
        "p50_ms",
        "p99_ms",
        "embed_p50_ms",
        "search_p50_ms",
        "decide_p50_ms",
        "embed_share_p50",
    }
    assert all(number(v) for v in results["warm_single_query"].values())
    assert set(results["batch_queries_per_s"]) == {"16", "64"}  # the quick batch sizes
    assert all(number(v) for v in results["batch_queries_per_s"].values())
    assert set(results["cold_start"]) == {
        "import_s",
        "build_starter_router_s",
        "first_decision_s",
        "import_to_first_decision_s",
        "peak_rss_mb",
    }
    assert all(number(v) for v in results["cold_start"].values())
    loo = results["starter_leave_one_out"]
    assert loo["exemplars"] == 24
    rates = ("quality_loss_rate", "cost_inflation_rate", "escalation_rate", "small_share")
    assert all(share(loo[key]) for key in ("accuracy", *rates))
    # every exemplar is routed right, too cheap or too strong
    assert loo["accuracy"] + loo["quality_loss_rate"] + loo["cost_inflation_rate"] == (
        pytest.approx(1.0)
    )


# -- benchmarks/quality.py -----------------------------------------------------------------


def tiny_data(shared: Path, folder: Path) -> Path:
    """A few rows of each shared file, in their real format (48 GSM8K rows, 3-4 intents)."""
    routellm = folder / "routellm"
    intents = folder / "intents"
    routellm.mkdir(parents=True)
    intents.mkdir()
    with (shared / "routellm" / "gsm8k.dev.jsonl").open(encoding="utf-8") as source:
        head = [next(source) for _ in range(48)]
    (routellm / "gsm8k.dev.jsonl").write_text("".join(head), encoding="utf-8")
    for name, out_of_scope in (("clinc150", "oos"), ("banking77", None)):
        lines = (shared / "intents" / f"{name}.train.jsonl").read_text("utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line]
        labels = list(dict.fromkeys(r["label"] for r in rows if r["label"] != "oos"))[:3]
        if out_of_scope:
            labels.append(out_of_scope)
        kept = [row for label in labels for row in [r for r in rows if r["label"] == label][:10]]
        (intents / f"{name}.train.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8"
        )
    return folder


@pytest.mark.slow
def test_quality_benchmark_on_tiny_data(tmp_path, shared_data):
    data = tiny_data(shared_data, tmp_path / "data")
    out = tmp_path / "out" / "quality.json"
    done = run(QUALITY, str(data), "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert set(payload) == {
        "benchmark",
        "embedder",
        "seed",
        "python",
        "machine",
        "seconds",
        "results",
    }
    results = payload["results"]
    assert set(results) == {"gsm8k", "clinc150", "banking77"}  # MMLU is not in the data

    gsm8k = results["gsm8k"]
    assert set(gsm8k) >= {
        "protocol",
        "apgr",
        "cpt50",
        "cpt80",
        "routellm_11pt",
        "plain_knn",
        "random",
        "oracle",
        "published_routellm",
        "target_apgr",
        "halves",
    }
    for part in ("routellm_11pt", "plain_knn", "random", "oracle", "published_routellm"):
        assert set(gsm8k[part]) == {"apgr", "cpt50", "cpt80"}, part
    assert number(gsm8k["apgr"])
    assert len(gsm8k["halves"]) == 2
    for half in gsm8k["halves"]:
        assert set(half) >= {"exemplars", "evaluated", "settings", "tuned", "plain_knn"}
        assert set(half["tuned"]) >= {"apgr", "cpt50", "cpt80", "routellm"}
    # each row is an exemplar in one direction; contaminated rows are never evaluated
    rows = [json.loads(line) for line in (data / "routellm" / "gsm8k.dev.jsonl").open()]
    clean = sum(not row.get("contaminated") for row in rows)
    assert sum(half["exemplars"] for half in gsm8k["halves"]) == len(rows)
    assert sum(half["evaluated"] for half in gsm8k["halves"]) == clean

    banking = results["banking77"]
    assert set(banking) >= {"protocol", "accuracy", "exemplars", "evaluated", "settings"}
    assert share(banking["accuracy"])
    assert banking["exemplars"] + banking["evaluated"] == 30  # a split of the 30 rows
    clinc = results["clinc150"]
    assert set(clinc) >= {
        "accuracy",
        "in_scope_accuracy",
        "oos_recall",
        "oos_recall_all_rows",
        "out_of_scope_rows_all",
        "ood_threshold_choice",
        "settings",
    }
    assert clinc["out_of_scope_rows_all"] == 10
    assert all(share(clinc[key]) for key in ("accuracy", "in_scope_accuracy", "oos_recall"))
    assert number(clinc["settings"]["min_similarity"])
    assert (out.parent / "quality_gsm8k.png").is_file()  # the illustration is drawn


def test_quality_benchmark_without_data_says_so(tmp_path):
    out = tmp_path / "quality.json"
    done = run(QUALITY, str(tmp_path / "nothing-here"), "--json", str(out))
    assert done.returncode == 2
    assert "no data at" in done.stdout
    assert not out.exists()


# -- benchmarks/tuning.py ------------------------------------------------------------------


@pytest.mark.slow
def test_tuning_benchmark_on_tiny_data(tmp_path, shared_data):
    data = tiny_data(shared_data, tmp_path / "data")
    out = tmp_path / "out" / "tuning.json"
    done = run(TUNING, str(data), "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads(out.read_text(encoding="utf-8"))
    results = payload["results"]
    assert set(results) == {"gsm8k", "mt_bench"}  # MMLU is not in the data
    assert "skipped" in results["mt_bench"]
    gsm8k = results["gsm8k"]
    assert number(gsm8k["before_apgr"]) and number(gsm8k["after_apgr"])
    assert len(gsm8k["halves"]) == 2
    for half in gsm8k["halves"]:
        assert half["exemplars"] == 24
        # 24 exemplars: too few to tune by default, so build gives the untuned router
        assert half["chosen"] is None and half["after"] == half["before"]


# -- where results go; what --code accepts -------------------------------------------------


def test_fast_code_that_is_not_a_checkout_is_an_error(tmp_path, capsys):
    fast = load_script(REPO / "benchmarks" / "fast.py", "langroute_fast_bench_code")
    out = tmp_path / "fast.json"
    with pytest.raises(SystemExit) as stop:
        fast.main(["--code", str(tmp_path / "missing"), "--quick", "--output", str(out)])
    assert stop.value.code == 2 and not out.exists()
    assert "no langroute checkout there" in capsys.readouterr().err


def test_results_go_to_tracked_files_only_with_save(tmp_path, monkeypatch):
    results_path = load_script(REPO / "benchmarks" / "results_path.py", "langroute_results_path")
    published = REPO / "benchmarks" / "results" / "core.json"
    monkeypatch.delenv("LANGROUTE_BENCH_DIR", raising=False)
    default = results_path.output_path(None, False, "core.json")
    assert REPO not in default.parents and default.name == "core.json"
    monkeypatch.setenv("LANGROUTE_BENCH_DIR", str(tmp_path))
    assert results_path.output_path(None, False, "core.json") == tmp_path / "core.json"
    assert results_path.output_path(None, True, "core.json") == published
    named = tmp_path / "mine.json"
    assert results_path.output_path(named, True, "core.json") == named


# -- benchmarks/adaptive_dial.py -----------------------------------------------------------


def test_adaptive_dial_replay_quick_run(tmp_path):
    """The replay on the bundled starter pack (no RouteLLM data), model-free embedder."""
    out = tmp_path / "adaptive_dial.json"
    done = run(
        REPO / "benchmarks" / "adaptive_dial.py",
        str(tmp_path / "no-data"),
        "--embedder", "hashing", "--hours", "3", "--per-hour", "60", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["data"].startswith("starter pack")
    assert len(results["fixed"]["hours"]) == len(results["adaptive"]["hours"]) == 3
    assert number(results["target_per_hour"]) and share(results["floor"])
    assert all(
        change["threshold"] <= results["floor"] + 1e-9 for change in results["adaptive"]["changes"]
    )
    assert share(results["adaptive"]["quality_kept"])
    assert out.with_suffix(".png").is_file()
