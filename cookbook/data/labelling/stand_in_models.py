"""Stand-in models for recipe 9: canned answers, as a cheap and a strong model gave them.

``models.toml`` names :func:`stand_in` as a ``package.module:factory``; swap those lines
for ``"openai:gpt-4o-mini"`` and ``"openai:gpt-4o"`` to label with real models.
"""

from __future__ import annotations

import json
from pathlib import Path

from langroute.models.scripted import ScriptedCompletionModel

ANSWERS = json.loads((Path(__file__).parent / "stand_in_answers.json").read_text("utf-8"))


def stand_in(size: str, name: str, latency: float = 0.0) -> ScriptedCompletionModel:
    """A model answering each known question as the ``size`` model did ("small"/"large")."""

    def reply(prompt: str) -> str:
        return ANSWERS.get(prompt, {}).get(size, "I don't know.")

    return ScriptedCompletionModel(name, reply=reply, latency=latency)
