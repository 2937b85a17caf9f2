"""The integration README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no python example"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "gpt-4o-mini answers: what is the capital of france"
    assert out[1] == "routed to large"
    assert out[2].startswith("small 1 $") and out[3].startswith("large 1 $")
    assert out[4].startswith("saved $")
    assert out[5].startswith("gpt-4o answered; rejected:")
