"""Where a benchmark writes its results: the path you name, else outside tracked files.

``benchmarks/results/`` holds the published figures (tracked by git), so a run writes
there only with ``--save``. Without a path and without ``--save``, results go to
``$LANGROUTE_BENCH_DIR`` or, when unset, ``<temp dir>/langroute-benchmarks``.

Example::

    parser = argparse.ArgumentParser()
    add_output_options(parser, "core.json")
    args = parser.parse_args()
    out = output_path(args.json, args.save, "core.json")
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
"""The published figures (tracked): written only with ``--save``."""


def scratch_dir() -> Path:
    """Where results go when no path is named and ``--save`` is not given."""
    named = os.environ.get("LANGROUTE_BENCH_DIR")
    return Path(named) if named else Path(tempfile.gettempdir()) / "langroute-benchmarks"


def add_output_options(
    parser: argparse.ArgumentParser, name: str, flag: str = "--json", dest: str | None = None
) -> None:
    """Add ``flag`` (the results path) and ``--save`` (to ``benchmarks/results/name``)."""
    parser.add_argument(
        flag,
        type=Path,
        default=None,
        dest=dest or flag.lstrip("-").replace("-", "_"),
        help=f"where to write the results (default: {scratch_dir() / name}; "
        f"with --save: benchmarks/results/{name})",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help=f"write to benchmarks/results/{name}, the published figures tracked by git",
    )


def output_path(named: Path | None, save: bool, name: str) -> Path:
    """The path named, else ``benchmarks/results/name`` with ``save``, else the scratch dir."""
    if named is not None:
        return named
    return (RESULTS if save else scratch_dir()) / name


def write_results(path: Path, benchmark: str, results: Any) -> None:
    """Write ``results`` as JSON under a header (what was measured, Python, cores)."""
    figures = {
        "benchmark": benchmark,
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} cores",
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
