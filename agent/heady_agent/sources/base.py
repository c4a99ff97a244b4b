"""What every session source is, and what the agent gives it.

A source watches or runs LLM coding sessions and reports them as events through its context.
The agent routes each command to the source that owns the session (session.*) or to every
source that keeps a work queue (node.*, queue.*).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from ..clock import Clock
from ..config import AgentConfig
from ..journal import QueuedItem
from ..protocol import Command, SessionInfo


ECHO_CHARS = 64  # what the agent quotes back of a console's input


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """Untrusted text quoted for a message: escaped to printable ASCII, at most `limit` characters in."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


class CommandError(Exception):
    """A command the source refuses; `code` goes to the result's error ("unknown_session", ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WorkQueueStore(Protocol):
    """Queued work items kept one row each in the journal database (journal.Journal)."""

    def queue_items(self) -> list[QueuedItem]: ...

    def queue_count(self) -> int: ...

    def queue_push(self, items: list[tuple[str, list[str]]], *, front: bool = False) -> list[QueuedItem]:
        """Store (managed, args) items at the back, or the front in the given order."""
        ...

    def queue_remove(self, positions: list[int]) -> None: ...


class SourceContext(Protocol):
    config: AgentConfig
    clock: Clock
    node_id: str

    def emit(self, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> None:
        """Journal an event (next seq) and send it to subscribers once committed."""
        ...

    def notice(self, severity: str, message: str) -> None:
        """Emit an `agent.notice` event."""
        ...

    def get_state(self, key: str) -> str | None:
        """Source state persisted in the journal database (file offsets, dedup keys...)."""
        ...

    def set_state(self, key: str, value: str) -> None: ...

    def delete_state(self, key: str) -> None: ...

    @property
    def work_queue(self) -> WorkQueueStore:
        """Where a source with a work queue keeps it (one row per item)."""
        ...

    def atomic(self) -> AbstractContextManager[None]:
        """Events emitted and state set inside commit together, so a restart never re-emits or skips."""
        ...

    def sessions_changed(self) -> None:
        """Ask the server to push a fresh `sessions` frame to subscribers."""
        ...

    def go_dark(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for a while (the node-loss scenario)."""
        ...


class SessionSource:
    name: ClassVar[str]
    simulated: ClassVar[bool] = False
    # Sources that keep a work queue answer node.* and queue.* commands.
    has_queue: ClassVar[bool] = False

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        """Begin watching or running; must return promptly (spawn tasks for the work)."""

    async def stop(self) -> None:
        """Stop tasks; leave persisted state consistent."""

    def sessions(self) -> list[SessionInfo]:
        return []

    def owns(self, session_id: str) -> bool:
        return any(s.id == session_id for s in self.sessions())

    def knows(self, session_id: str) -> bool:
        """The source has reported the session, live or ended."""
        return self.owns(session_id)

    def queue_depth(self) -> int:
        return 0

    def format_radar(self) -> dict[str, int]:
        """What this source met in its client's files and did not know, by kind (sources/radar.py)."""
        return {}

    def host_metrics(self) -> dict[str, Any] | None:
        """Replacement values for host metrics fields (simulated nodes only), else None."""
        return None

    def node_info(self) -> dict[str, Any] | None:
        """Values for the hello's `node` fields: replacements (hostname, os, cpu_count, mem_total;
        simulated nodes only) or additions (`managed`: the managed source's entries), else None."""
        return None

    def process_rows(self) -> list[dict[str, Any]] | None:
        """Replacement per-process top list for `detail` frames (simulated nodes only), else None."""
        return None

    def person_signal(self, session_id: str, state: str, reason: str) -> bool:
        """A hook says the session waits for a person, or works again (hooks.py); False when the
        session is not this source's."""
        return False

    def limits_signal(self, session_id: str, limits: dict[str, Any]) -> bool:
        """A status line reports the limits of the session's account (statusline.py); False when
        the session is not this source's."""
        return False

    async def command(self, cmd: Command) -> dict[str, Any]:
        """Carry out a command; returns the result's `detail`, or raises CommandError."""
        raise CommandError("not_supported", f"{cmd.action} is not supported by the {self.name} source")
