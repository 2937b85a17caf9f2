"""One deadline for model calls: async and sync, with one wording."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from langroute.deadlines import call_within, within

REQUEST = contextvars.ContextVar("request", default="none")


def test_a_sync_call_past_its_deadline_is_left_behind_and_blocks_no_later_call():
    release = threading.Event()
    with pytest.raises(TimeoutError, match=r"no answer within 0\.05 s"):
        call_within(release.wait, 30, timeout=0.05)
    assert call_within(lambda: "next", timeout=5) == "next"  # not queued behind the hung one
    release.set()


def test_a_sync_call_sees_the_callers_context_and_its_errors_reach_the_caller():
    REQUEST.set("r-1")
    assert call_within(REQUEST.get, timeout=5) == "r-1"
    with pytest.raises(ZeroDivisionError):
        call_within(lambda: 1 / 0, timeout=5)


async def test_an_awaitable_past_its_deadline_is_cancelled():
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match="no answer within"):
        await within(hangs(), 0.05)
    assert cancelled.is_set()
    assert await within(asyncio.sleep(0, result=7), None) == 7
