"""Every code block of README.md and docs/*.md runs as written, offline, in document order.

Each document gets one working folder (a reader following it works in one folder; it
holds a link to the clone's ``cookbook/``, as the README's commands run from a clone),
and each section one Python namespace: a section's Python must define or import what it
uses. Blocks run in order within a document; asking for one section runs the sections
before it first.

* ``python``: statement by statement. Comment lines right after a statement that prints
  are its expected output (``...`` matches anything); an expression statement followed by
  a Python literal as its comment (``x, y  # ('large', 'vote')``) must equal it.
* ``bash``: each command (``\\`` continuations joined, comments dropped) runs in the
  document's folder and must exit 0, or N where its comment says ``exits N``:
  ``langroute ...`` in-process through the CLI, ``cp`` as itself; the commands in
  :data:`SKIPPED_COMMANDS` are not run, for the reason given there.
* ``toml``, ``jsonl``, ``csv`` with ``file=NAME`` in the fence's info string are written
  to that file; an output listing (a fence with no language, or ``text``) is not code.

Real providers are the fake OpenAI/Anthropic server (``tests/provider_server.py``):
``OPENAI_BASE_URL`` (``OPENAI_API_BASE``) and ``ANTHROPIC_BASE_URL`` point at it, so ``ChatOpenAI``,
``init_chat_model`` specs and the ``openai`` SDK run as written. A block that talks to
``langroute serve`` gets a server started here from the section's models file
(:data:`SERVER_SUBSTITUTIONS` names what is replaced in its text). Blocks that cannot
run are in :data:`SKIPPED_BLOCKS`, each with its reason; a skip that names no block
fails, so the list stays true.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_CODE = {"", "text"}
"""Fence languages of output listings: shown to the reader, not run."""
DATA_LANGUAGES = {"toml", "json", "jsonl", "csv"}

SKIPPED_BLOCKS: dict[tuple[str, str, int], str] = {
    ("README.md", "Quick start", 0): "installs packages and runs the whole test suite "
    "(what CI does); tests/cookbook/test_demo.py runs `langroute demo`",
    ("README.md", "Watch it in production", 0): "needs a ledger of production traffic; "
    "cookbook/09_monitor_drift.py replays one and tests/cookbook runs it",
    ("README.md", "Scale out with Postgres", 0): "needs the Postgres server it names; "
    "tests/core/test_postgres.py runs publish, report and monitor on a throwaway one",
    ("README.md", "Scale out with Postgres", 1): "needs the Postgres server it names; "
    "tests/core/test_postgres.py runs load_shared_router and CostLedger on a throwaway one",
    ("docs/serving.md", "Serving: `langroute serve`, an OpenAI-compatible endpoint", 1): (
        "its models file comes in the next section; README 'Serve' runs the same client "
        "call against a live server"
    ),
    ("docs/serving.md", "Feedback", 0): "curl needs a running server and the id of one of "
    "its answers; integrations/langchain/tests/test_serve.py posts feedback the same way",
}
"""Blocks that are not run: (document, section, index within the section) -> why."""

SKIPPED_COMMANDS: dict[str, str] = {
    "pip install": "installs packages into the test environment",
    "python -m pytest": "the test suite itself",
    "ruff ": "linting, a CI step of its own",
    "python benchmarks/": "benchmarks run for minutes; tests/core/test_benchmark_scripts.py "
    "and test_perf_smoke.py smoke-run them",
    "langroute serve ": "runs until stopped; the block that calls it gets a server started "
    "by this test from the same models file",
    "langroute dashboard ": "serves until stopped; tests/core/test_dashboard.py starts the "
    "command and reads its page's API, test_dashboard_browser.py the page",
}
"""Shell commands (by prefix) that are not run, and why."""

SERVER_SUBSTITUTIONS = {
    "http://127.0.0.1:8000": "the test server's URL",
    '"lr-..."': "the key `langroute serve-key add` printed in the section (or any text "
    "when the server has no keys file)",
}
"""What a block calling ``langroute serve`` has replaced before it runs."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    doc: str
    section: str
    index: int
    lang: str
    attrs: dict[str, str]
    code: str
    line: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.doc, self.section, self.index)

    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.section!r} block {self.index})"


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the heading each one is under."""
    doc = path.relative_to(REPO).as_posix()
    blocks: list[Block] = []
    section = ""
    counts: dict[str, int] = {}
    opened: tuple[int, str, dict[str, str]] | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if opened is None:
            heading = re.match(r"^#{1,6} (.+)$", line)
            if heading:
                section = heading.group(1).strip()
            fence = re.match(r"^```(\S*)(.*)$", line)
            if fence:
                attrs = dict(re.findall(r"(\w+)=(\S+)", fence.group(2)))
                opened, body = (number + 1, fence.group(1), attrs), []
            continue
        if line.startswith("```"):
            start, lang, attrs = opened
            index = counts.get(section, 0)
            counts[section] = index + 1
            code = "\n".join(body) + "\n"
            blocks.append(Block(doc, section, index, lang, attrs, code, start))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"{doc}: a code fence opened on line {opened[0] - 1} never closes"
    return blocks


ALL_BLOCKS = [block for path in DOCS for block in read_blocks(path)]
SECTIONS = list(dict.fromkeys((block.doc, block.section) for block in ALL_BLOCKS))


# -- running the blocks --------------------------------------------------------------------


@dataclass
class Workspace:
    """One document's folder, the sections run so far and what their commands printed."""

    folder: Path
    done: set[str] = field(default_factory=set)
    printed: list[str] = field(default_factory=list)


def run_python(block: Block, code: str, namespace: dict[str, Any]) -> None:
    """Run a Python block statement by statement, checking the outputs it shows."""
    tree = ast.parse(code, filename=block.where())
    lines = code.splitlines()
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for position, statement in enumerate(tree.body):
        end = statement.end_lineno or statement.lineno
        following = tree.body[position + 1].lineno - 1 if position + 1 < len(tree.body) else None
        comments = []
        for text in lines[end:following]:
            if not text.strip().startswith("#"):
                break
            comments.append(text.strip()[1:].strip())
        where = f"{block.where()}, line {block.line + statement.lineno - 1}"
        module = ast.Module(body=[statement], type_ignores=[])
        out = io.StringIO()
        if isinstance(statement, ast.Expr):
            expression = compile(ast.Expression(statement.value), where, "eval")
            with contextlib.redirect_stdout(out):
                value = eval(expression, namespace)
        else:
            with contextlib.redirect_stdout(out):
                exec(compile(module, where, "exec"), namespace)
            value = None
        prints = any(
            isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
            for node in ast.walk(statement)
        )
        if prints and comments:
            expected = "\n".join(comments) + "\n"
            assert checker.check_output(expected, out.getvalue(), flags), (
                f"{where}: the block shows\n{expected}but it printed\n{out.getvalue()}"
            )
        trailing = lines[end - 1].split("  # ", 1)
        if isinstance(statement, ast.Expr) and not prints and len(trailing) == 2:
            try:
                shown = ast.literal_eval(trailing[1].strip())
            except (ValueError, SyntaxError):
                continue  # a remark, not a value
            assert value == shown, f"{where}: the block shows {shown!r}, the value is {value!r}"


def shell_commands(code: str) -> Iterator[str]:
    """The commands of a shell block: continuations joined, comment lines dropped."""
    for command in code.replace("\\\n", " ").splitlines():
        command = command.strip()
        if command and not command.startswith("#"):
            yield command


def run_shell(block: Block, workspace: Workspace) -> None:
    """Run a shell block's commands in the document's folder (see the module docstring)."""
    from typer.testing import CliRunner

    from langroute.cli.app import app

    for command in shell_commands(block.code):
        if any(command.startswith(prefix) for prefix in SKIPPED_COMMANDS):
            continue
        words = shlex.split(command, comments=True)
        status = re.search(r"#.*\bexits (\d+)", command)
        expected = int(status.group(1)) if status else 0
        if words[0] == "langroute":
            result = CliRunner().invoke(app, words[1:])
            output = result.output
            assert result.exit_code == expected, (
                f"{block.where()}: `{command}` exited {result.exit_code}:\n{output}"
                f"{result.exception!r}"
            )
        elif words[0] == "cp":
            done = subprocess.run(words, cwd=workspace.folder, capture_output=True, text=True)
            assert done.returncode == 0, f"{block.where()}: `{command}`: {done.stderr}"
            output = done.stdout
        else:
            raise AssertionError(
                f"{block.where()}: `{command}` is neither run here nor in SKIPPED_COMMANDS"
            )
        workspace.printed.append(output)


@contextlib.contextmanager
def serve_for(block: Block, workspace: Workspace) -> Iterator[str]:
    """A live server of the section's ``models.toml``; yields the block's text to run."""
    from langchain_langroute.server import Gateway, create_app, serve_in_thread
    from langroute.models.config import load_models_config

    gateway = Gateway(load_models_config(workspace.folder / "models.toml"))
    keys = re.findall(r"\blr-[A-Za-z0-9_-]{16,}", "\n".join(workspace.printed))
    try:
        with serve_in_thread(create_app(gateway)) as url:
            code = block.code.replace("http://127.0.0.1:8000", url)
            yield code.replace('"lr-..."', repr(keys[-1] if keys else "no-keys-file"))
    finally:
        gateway.close()


def run_block(block: Block, workspace: Workspace, namespace: dict[str, Any]) -> None:
    if block.lang in NOT_CODE:
        return
    if block.lang in DATA_LANGUAGES:
        assert "file" in block.attrs, (
            f"{block.where()}: a {block.lang} block needs file=NAME in its fence (the file "
            "it is), or an entry in SKIPPED_BLOCKS"
        )
        (workspace.folder / block.attrs["file"]).write_text(block.code, encoding="utf-8")
    elif block.lang == "bash":
        run_shell(block, workspace)
    elif block.lang == "python":
        if "http://127.0.0.1:8000" in block.code:
            with serve_for(block, workspace) as code:
                run_python(block, code, namespace)
        else:
            run_python(block, block.code, namespace)
    else:
        raise AssertionError(f"{block.where()}: no runner for {block.lang!r} blocks")


def run_section(doc: str, section: str, workspace: Workspace) -> None:
    namespace: dict[str, Any] = {"__name__": "__doc_block__"}
    workspace.done.add(section)  # a failure is reported once, by the section's own test
    for block in ALL_BLOCKS:
        if (block.doc, block.section) == (doc, section) and block.key not in SKIPPED_BLOCKS:
            run_block(block, workspace, namespace)


# -- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Workspace]:
    folders: dict[str, Workspace] = {}
    for path in DOCS:
        doc = path.relative_to(REPO).as_posix()
        folder = tmp_path_factory.mktemp(path.stem)
        (folder / "cookbook").symlink_to(REPO / "cookbook", target_is_directory=True)
        folders[doc] = Workspace(folder)
    return folders


@pytest.fixture
def offline_providers(provider: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Real provider clients talk to the local fake server."""
    monkeypatch.setenv("OPENAI_BASE_URL", provider.openai_url)
    monkeypatch.setenv("OPENAI_API_BASE", provider.openai_url)  # llama-index's OpenAI reads it
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", provider.anthropic_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    return provider


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "section"), SECTIONS, ids=[f"{d}:{s}" for d, s in SECTIONS])
def test_doc_section_runs_as_written(
    doc: str,
    section: str,
    workspaces: dict[str, Workspace],
    offline_providers: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace = workspaces[doc]
    monkeypatch.chdir(workspace.folder)
    for earlier_doc, earlier in SECTIONS[: SECTIONS.index((doc, section))]:
        if earlier_doc == doc and earlier not in workspace.done:
            run_section(doc, earlier, workspace)
    run_section(doc, section, workspace)


def test_every_skip_names_a_block_and_every_block_has_a_runner() -> None:
    keys = {block.key for block in ALL_BLOCKS}
    assert not set(SKIPPED_BLOCKS) - keys, "SKIPPED_BLOCKS names blocks that are gone"
    runnable = {"bash", "python"} | DATA_LANGUAGES | NOT_CODE
    odd = [b.where() for b in ALL_BLOCKS if b.lang not in runnable and b.key not in SKIPPED_BLOCKS]
    assert not odd, f"blocks in a language this test cannot run: {odd}"
    data = [
        b.where()
        for b in ALL_BLOCKS
        if b.lang in DATA_LANGUAGES and "file" not in b.attrs and b.key not in SKIPPED_BLOCKS
    ]
    assert not data, f"data blocks that name no file: {data}"


def test_blocks_are_found_in_every_document() -> None:
    """The extractor sees the README's and each page's blocks, under their headings."""
    docs = {block.doc for block in ALL_BLOCKS}
    assert {"README.md", "docs/serving.md"} <= docs
    route = [b for b in ALL_BLOCKS if b.key == ("README.md", "Route a query", 0)]
    assert route and route[0].lang == "python" and "ExemplarRouter" in route[0].code
