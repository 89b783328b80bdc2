"""The caller context: scopes by glob, and the identity seen by code deep inside a request."""

from __future__ import annotations

import asyncio

import pytest

from gleitzeit_core import Caller, PermissionDenied, acting_as, current_caller
from gleitzeit_core._gateway import status_for


def test_scopes_match_globs_and_name_the_missing_scope() -> None:
    """A key scoped to ``llm/*`` may chat but not run code; the refusal names the scope."""
    caller = Caller(name="team-a", methods=["llm/*"], models="llama*")
    caller.check_method("llm/chat")
    caller.check_model("llama3.2")
    with pytest.raises(PermissionDenied, match="methods") as denied:
        caller.check_method("python/execute")
    assert denied.value.scope == "methods"
    assert "team-a" in str(denied.value)
    with pytest.raises(PermissionDenied, match="models"):
        caller.check_model("mistral")
    with pytest.raises(PermissionError):  # callers that know nothing of us can catch it
        caller.check_admin("drain")
    assert status_for(PermissionDenied("k", "admin", "x")) == 403


async def test_the_caller_reaches_tasks_started_inside_and_is_reset_after() -> None:
    """Code awaited or spawned inside ``acting_as`` sees the caller; outside it sees none."""
    seen: list[str | None] = []

    async def deep() -> None:
        caller = current_caller()
        seen.append(caller.name if caller else None)

    with acting_as(Caller(name="k1")):
        await deep()
        await asyncio.create_task(deep())
    await deep()
    assert seen == ["k1", "k1", None]
