"""What the session sources share: the session frames they build, and the bookkeeping of the
sources that watch sessions another program runs (claude-code, codex, opencode via ingest).

A watching source keeps one record per session in the source state (`<prefix>.session:<id>`) and
the ids of the live ones (`<prefix>.live`), so a restarted agent knows which sessions it already
announced and neither announces them again nor forgets to end them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import psutil

from ..aio import cancel_and_wait
from ..protocol import Command, FrameError, SessionInfo, parse_command_args
from .base import CommandError, SessionSource, SourceContext


class SessionLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def cwd(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def started(self) -> float | None: ...
    @property
    def nice(self) -> int | None: ...


TITLE_CHARS = 200  # a session title, as a watched program wrote it, is cut here
# What the agent can do to the process of a watched session whose pid it knows.
PROCESS_ACTIONS = frozenset({"session.kill", "session.pause", "session.resume", "session.renice"})


def plain_text(text: str, limit: int) -> str:
    """Text from a watched program's files, fit to store and show: control characters dropped, bounded."""
    return "".join(ch for ch in text if ch.isprintable()).strip()[:limit]


def started_data(source: str, session: SessionLike, **extra: Any) -> dict[str, Any]:
    """The `session.started` event's data for a session."""
    return {
        "source": source,
        "project": session.project,
        "cwd": session.cwd,
        "pid": session.pid,
        "model": session.model,
        "title": session.title,
        **extra,
    }


def session_info(source: str, session: SessionLike, **extra: Any) -> SessionInfo:
    """A session as the `sessions` frame lists it."""
    return SessionInfo(
        id=session.id,
        source=source,
        project=session.project,
        cwd=session.cwd,
        pid=session.pid,
        model=session.model,
        title=session.title,
        state=session.state,  # type: ignore[arg-type]
        started=session.started,
        nice=session.nice,
        **extra,
    )


def act_on_process(action: str, pid: int, nice: int | None) -> dict[str, Any]:
    """Kill (SIGTERM), pause (SIGSTOP), resume (SIGCONT) or renice one process of a watched session;
    what the command's result says of it (a renice: the niceness before, what a revert sets back).
    A process the agent may not touch is refused `not_permitted`, one that has exited `not_running`."""
    try:
        if action == "session.kill":
            os.kill(pid, signal.SIGTERM)
            return {"pid": pid, "signal": "SIGTERM"}
        if action == "session.renice":
            proc = psutil.Process(pid)
            previous = proc.nice()
            proc.nice(nice)
            return {"pid": pid, "nice": nice, "previous": previous}
        os.kill(pid, signal.SIGSTOP if action == "session.pause" else signal.SIGCONT)
        return {"pid": pid}
    except (PermissionError, psutil.AccessDenied):
        raise CommandError("not_permitted", f"not permitted to {action} pid {pid}") from None
    except (ProcessLookupError, psutil.NoSuchProcess):
        raise CommandError("not_running", f"pid {pid} has exited") from None


def command_args(cmd: Command) -> Any:
    """The command's args as its action's model, or the CommandError to answer with."""
    try:
        return parse_command_args(cmd.action, cmd.args)
    except FrameError as exc:
        raise CommandError(exc.code, exc.message) from None


@dataclass
class WatchedSession:
    id: str
    cwd: str | None = None
    model: str | None = None
    title: str | None = None
    pid: int | None = None  # the session's process, once its program names it or the agent found it
    nice: int | None = None
    state: str = "running"
    started: float | None = None
    ended: bool = False
    # The managed session (managed.py) whose process runs this one: one session, so its events go
    # there, the managed source announces and ends it, and only that row is listed.
    managed_as: str | None = None
    account: str | None = None  # whose limits it draws on (SessionStartedData.account)
    plan: str | None = None

    @property
    def project(self) -> str | None:
        return os.path.basename(self.cwd.rstrip("/")) if self.cwd else None


S = TypeVar("S", bound=WatchedSession)


class WatchedSource(SessionSource, Generic[S]):
    """A source of sessions some other program runs: it announces, follows and ends them."""

    watches: ClassVar[str]  # the program, as events and messages name it
    state_prefix: ClassVar[str]  # of this source's keys in the source state
    session_type: type[S]

    def __init__(self, ctx: SourceContext) -> None:
        super().__init__(ctx)
        self._sessions: dict[str, S] = {}
        self._live: set[str] = set()
        self._changed = False  # the live list changed since the last `sessions` push
        self._task: asyncio.Task[None] | None = None
        self._limits_sent: dict[str, dict[str, Any]] = {}  # session -> the limits last sent for it

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    def _flush(self) -> None:
        if self._changed:
            self._changed = False
            self.ctx.sessions_changed()

    # --- persisted session records ----------------------------------------------------------

    def _load_live(self) -> None:
        raw = self.ctx.get_state(f"{self.state_prefix}.live")
        for sid in json.loads(raw) if raw else []:
            session = self._load(sid)
            if session is not None and not session.ended:
                self._live.add(sid)

    def _load(self, sid: str) -> S | None:
        if sid in self._sessions:
            return self._sessions[sid]
        raw = self.ctx.get_state(f"{self.state_prefix}.session:{sid}")
        if raw is None:
            return None
        try:
            session = self.session_type(**json.loads(raw))
        except (ValueError, TypeError):
            return None
        self._sessions[sid] = session
        return session

    def _save(self, session: S) -> None:
        # Session records hold plain JSON values, no nested dataclasses: vars() is what asdict() would build, far cheaper.
        self.ctx.set_state(f"{self.state_prefix}.session:{session.id}", json.dumps(vars(session)))
        if (session.id in self._live) == session.ended:
            if session.ended:
                self._live.discard(session.id)
            else:
                self._live.add(session.id)
            self.ctx.set_state(f"{self.state_prefix}.live", json.dumps(sorted(self._live)))
        self._changed = True

    def _session(self, sid: str) -> S:
        """The session's record, a new one for a session not seen before."""
        session = self._load(sid)
        if session is None:
            session = self.session_type(id=sid)
            self._sessions[sid] = session
        return session

    # --- what happens to a session ----------------------------------------------------------

    def _reopen(self, session: S) -> None:
        """An ended session is active again: a new run of the same session, announced afresh."""
        session.ended = False
        session.started = None
        session.state = "running"

    def account_of(self, session: S) -> tuple[str | None, str | None]:
        """(account, plan) of a session about to be announced, from the watched program's own config;
        never a credential. None when the program does not say."""
        return None, None

    def _started(self, session: S) -> dict[str, Any]:
        known = {key: value for key, value in (("account", session.account), ("plan", session.plan)) if value is not None}
        return started_data(self.watches, session, **known)

    def _announce(self, session: S, when: float) -> None:
        session.started = when
        if session.account is None:
            session.account, session.plan = self.account_of(session)
        if session.managed_as is None:
            self.ctx.emit("session.started", session.id, self._started(session), ts=when)
        self._save(session)

    def _reannounce(self, session: S, when: float) -> None:
        """What the session.started said changed (model, title): say it again; the console keeps the newest values."""
        if session.managed_as is None:
            self.ctx.emit("session.started", session.id, self._started(session), ts=when)
        self._save(session)

    def _set_state(self, session: S, state: str, reason: str, when: float) -> None:
        session.state = state
        self.ctx.emit("session.state", session.managed_as or session.id, {"state": state, "reason": reason}, ts=when)
        self._save(session)

    def _end(self, session: S, reason: str, when: float) -> None:
        session.ended = True
        session.state = "completed"
        if session.managed_as is None:
            self.ctx.emit("session.ended", session.id, {"exit_code": None, "reason": reason}, ts=when)
        self._save(session)

    # --- what the agent reads and asks ----------------------------------------------------------

    def sessions(self) -> list[SessionInfo]:
        return [session_info(self.name, self._sessions[sid], account=self._sessions[sid].account)
                for sid in sorted(self._live) if self._sessions[sid].managed_as is None]

    def owns(self, session_id: str) -> bool:
        session = self._sessions.get(session_id) if session_id in self._live else None
        return session is not None and session.managed_as is None

    def knows(self, session_id: str) -> bool:
        return self._load(session_id) is not None

    def person_signal(self, session_id: str, state: str, reason: str) -> bool:
        # A session a managed one runs takes the signal too: _set_state reports it under the managed id.
        session = self._sessions.get(session_id) if session_id in self._live else None
        if session is None:
            return False
        if session.state != state and session.state != "paused":  # a paused session stays paused
            with self.ctx.atomic():
                self._set_state(session, state, reason, self.ctx.clock.now())
            self._flush()
        return True

    def limits_signal(self, session_id: str, limits: dict[str, Any]) -> bool:
        # A status line runs on every redraw: only a change is news.
        session = self._sessions.get(session_id) if session_id in self._live else None
        if session is None:
            return False
        if self._limits_sent.get(session_id) != limits:
            self._limits_sent[session_id] = limits
            with self.ctx.atomic():
                self.ctx.emit("session.limits", session.managed_as or session.id, limits, ts=self.ctx.clock.now())
        return True

    def _target(self, cmd: Command) -> S:
        """The live session a session.* command names, or the unknown_session refusal."""
        session = self._sessions.get(cmd.target or "") if cmd.target in self._live else None
        if session is None or session.managed_as is not None:
            raise CommandError("unknown_session", f"no {self.watches} session {cmd.target!r} on this node")
        return session

    def _act_on_process(self, cmd: Command, session: S, pid: int, resumed: str) -> dict[str, Any]:
        """A PROCESS_ACTIONS command on the session's live process `pid`: the session turns `paused`
        on a pause and `resumed` on a resume; a renice is kept as the session's niceness."""
        args = command_args(cmd)
        nice = args.nice if cmd.action == "session.renice" else None
        detail = {"session": session.id, **act_on_process(cmd.action, pid, nice)}
        if cmd.action == "session.kill":
            return detail
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            if cmd.action == "session.renice":
                session.nice = args.nice
                self._save(session)
            elif cmd.action == "session.pause" and session.state != "paused":
                self._set_state(session, "paused", "paused by command", now)
            elif cmd.action == "session.resume" and session.state == "paused":
                self._set_state(session, resumed, "resumed by command", now)
        self._flush()
        return detail if cmd.action == "session.renice" else {**detail, "state": session.state}

    def _only_watched(self, action: str) -> CommandError:
        return CommandError("not_allowed", f"{action} needs a managed session; {self.watches} sessions are only watched")
