"""Routes `command` frames to the source that can carry them out.

The set of actions is fixed by the protocol; sources act only on processes they started or watch,
and only with argv from the agent's own config. Nothing here runs a shell.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .protocol import Command, FrameError, QueueAcceptArgs, Result, parse_command_args
from .sources.base import CommandError, SessionSource, echo

log = logging.getLogger("heady_agent.actions")


def _fail(cmd: Command, code: str, message: str) -> Result:
    return Result(id=cmd.id, ok=False, error=f"{code}: {message}")


async def run_command(cmd: Command, sources: Sequence[SessionSource]) -> Result:
    """Carry out one command; every outcome, including a refusal, is a Result with the command's id."""
    try:
        parse_command_args(cmd.action, cmd.args)
    except FrameError as exc:
        return _fail(cmd, exc.code, exc.message)
    try:
        if cmd.action.startswith("session."):
            return await _session_command(cmd, sources)
        return await _node_command(cmd, sources)
    except CommandError as exc:
        return _fail(cmd, exc.code, exc.message)
    except Exception as exc:  # a source's bug must not take the connection down
        log.exception("command %s failed", cmd.action)
        return _fail(cmd, "failed", f"{type(exc).__name__}: {exc}")


async def _session_command(cmd: Command, sources: Sequence[SessionSource]) -> Result:
    if not cmd.target:
        return _fail(cmd, "bad_args", f"{cmd.action} needs a target session")
    for source in sources:
        if source.owns(cmd.target):
            detail = await source.command(cmd)
            return Result(id=cmd.id, ok=True, detail=detail)
    return _fail(cmd, "unknown_session", f"no session {echo(cmd.target)} on this node")


async def _node_command(cmd: Command, sources: Sequence[SessionSource]) -> Result:
    queued = [s for s in sources if s.has_queue]
    if not queued:
        return _fail(cmd, "not_supported", f"{cmd.action}: no source on this node keeps a work queue")
    if cmd.action == "queue.accept":
        return await _accept(cmd, queued)
    if cmd.action == "queue.move":
        return await _move(cmd, queued)
    merged: dict[str, Any] = {}
    answered = 0
    refusals: list[CommandError] = []
    for source in queued:
        try:
            merged.update(await source.command(cmd))
            answered += 1
        except CommandError as exc:
            refusals.append(exc)
    if not answered:
        first = refusals[0]
        return _fail(cmd, first.code, first.message)
    return Result(id=cmd.id, ok=True, detail=merged)


async def _move(cmd: Command, sources: Sequence[SessionSource]) -> Result:
    """Take up to `count` items across the queueing sources, in source order."""
    wanted = int(cmd.args["count"])
    items: list[dict[str, Any]] = []
    for source in sources:
        if len(items) >= wanted:
            break
        part = cmd.model_copy(update={"args": {**cmd.args, "count": wanted - len(items)}})
        try:
            detail = await source.command(part)
        except CommandError as exc:
            if exc.code in ("unknown_managed", "not_supported"):
                continue
            raise
        items.extend(detail.get("items", []))
    return Result(id=cmd.id, ok=True, detail={"items": items})


async def _accept(cmd: Command, sources: Sequence[SessionSource]) -> Result:
    """Offer the items to each queueing source in turn; whatever none takes comes back as rejected."""
    remaining = [item.model_dump() for item in QueueAcceptArgs.model_validate(cmd.args).items]
    accepted = 0
    reasons: list[str] = []
    for source in sources:
        if not remaining:
            break
        part = cmd.model_copy(update={"args": {"items": remaining}})
        detail = await source.command(part)
        rejected = detail.get("rejected", [])
        accepted += len(remaining) - len(rejected)
        remaining = rejected
        reasons = detail.get("reasons", [])
    return Result(id=cmd.id, ok=True, detail={"accepted": accepted, "rejected": remaining, "reasons": reasons})
