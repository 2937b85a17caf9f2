"""How a stream that broke after output is continued on another model (framework-free).

The continuation request is the original conversation, then the text delivered so far
as the assistant's turn, then a user turn asking to continue exactly where it stopped.
Each integration (and an HTTP fast path) turns these turns into its own messages.
Providers differ in how well they continue: the seam is seamless when the new model
picks up mid-word or mid-sentence without repeating, which the benchmark
``benchmarks/resilience.py`` measures on a fake provider.

Example:
    >>> turns = continuation_turns("The capital of France is")
    >>> turns[0], turns[1][1].startswith("Your previous reply was cut off")
    (('assistant', 'The capital of France is'), True)
"""

from __future__ import annotations

__all__ = ["CONTINUE_INSTRUCTION", "continuation_turns"]

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stopped: do not repeat "
    "any of it, do not comment, start with the next character."
)
"""The user turn that asks a model to continue a reply that was cut off."""


def continuation_turns(text_so_far: str) -> list[tuple[str, str]]:
    """``(role, content)`` turns to append to a conversation to continue ``text_so_far``.

    Example:
        >>> [role for role, _ in continuation_turns("Hello")]
        ['assistant', 'user']
    """
    return [("assistant", text_so_far), ("user", CONTINUE_INSTRUCTION)]
