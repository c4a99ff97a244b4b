"""Sessions the agent starts itself, from `[[agent.managed]]` entries, with a work queue.

Work enters as queue items `{managed, args}`: `instances` items (no args) on the first start, and
items handed over by `queue.accept` (up to the node's `max_queue`). An item runs as the configured
argv plus its args, as a real child process in its own process group, never through a shell, with an
explicit environment (config.BASE_ENV, the entry's `env_pass` names and its `env`). Up to the name's
concurrency run at once; the rest wait in the queue (queue_depth), one journal row per item, so a
restart loses none and a change writes one row. A console's priority gate (`queue.set_priority`)
holds queued items of its high-priority names while the node runs its cap of high sessions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil

from ..config import ManagedConfig, session_environment
from ..journal import QueuedItem
from ..protocol import MAX_FRAME_BYTES, Command, SessionInfo
from .base import CommandError, SessionSource, SourceContext, echo

log = logging.getLogger("heady_agent.managed")

KILL_GRACE_S = 5.0
PROMPT_TIMEOUT_S = 120.0
PROMPT_OUTPUT_BYTES = 4096
MAX_ITEM_ARGS = 64
# An item's args travel back to a console in queue.move results, whose text the console cleans
# (control characters out, 4096 characters at most): an arg that would not survive that unchanged is
# refused here rather than altered in transit. Terminal escapes have no place in argv either.
MAX_ARG_CHARS = 4096
_UNSAFE_ARG = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
MAX_REASONS = 20  # distinct refusal reasons returned by queue.accept
MOVE_RESULT_BYTES = MAX_FRAME_BYTES // 2  # items one queue.move hands over (one item always goes)
MANAGED_SESSION_ENV = "HEADY_MANAGED_SESSION"  # the managed session id, in its process's environment
_LEGACY_QUEUE_KEY = "managed.queue"  # the whole queue as one JSON value (agents before row storage)
_SEEDED_KEY = "managed.seeded"  # `instances` were queued once for this journal
_COUNTER_KEY = "managed.counter"
_GATE_KEY = "managed.priority_gate"  # the console's last priority gate: held across agent restarts
# One pass over the template: text put in for one placeholder is never searched for the other.
_PLACEHOLDER = re.compile(r"\{(prompt|session)\}")


def item_problem(args: list[str]) -> str | None:
    """Why a queue item's args cannot be appended to a configured argv, or None when they can.

    Args are positional only: an option ("-x", "--flag") could change what the configured
    command does (e.g. widen its permissions), which only the agent's config may decide.
    """
    if len(args) > MAX_ITEM_ARGS:
        return f"more than {MAX_ITEM_ARGS} args"
    for arg in args:
        if not isinstance(arg, str):
            return "args must be strings"
        if arg.startswith("-"):
            return "option-like arg refused (args are positional only)"
        if len(arg) > MAX_ARG_CHARS:
            return f"arg longer than {MAX_ARG_CHARS} characters"
        if _UNSAFE_ARG.search(arg):
            return "arg with control characters"
    return None


@dataclass(eq=False)
class _Run:
    session_id: str
    name: str
    args: list[str]
    proc: asyncio.subprocess.Process
    started: float
    cwd: str | None
    state: str = "running"
    stopping: str | None = None  # why we are ending it: killed | restart | agent_stop
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)


class ManagedSource(SessionSource):
    name: ClassVar[str] = "managed"
    has_queue: ClassVar[bool] = True

    def __init__(self, ctx: SourceContext) -> None:
        super().__init__(ctx)
        self._runs: dict[str, _Run] = {}
        self._queues: dict[str, deque[QueuedItem]] = {}
        self._concurrency: dict[str, int] = {}
        self._drained = False
        self._fill_lock = asyncio.Lock()
        # The console's priority gate: until it sends one, nothing is held for priority.
        self._high: frozenset[str] = frozenset()
        self._high_cap = 0
        self._high_others = 0

    @property
    def _defs(self) -> dict[str, ManagedConfig]:
        return {m.name: m for m in self.ctx.config.managed}

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        defs = self._defs
        self._concurrency = {name: d.max_concurrent for name, d in defs.items()}
        self._queues = {name: deque() for name in defs}
        store = self.ctx.work_queue
        with self.ctx.atomic():
            legacy = self.ctx.get_state(_LEGACY_QUEUE_KEY)
            if legacy is not None:
                saved: dict[str, list[list[str]]] = json.loads(legacy)
                store.queue_push([(name, args) for name, items in saved.items() for args in items])
                self.ctx.delete_state(_LEGACY_QUEUE_KEY)
                self.ctx.set_state(_SEEDED_KEY, "1")
            elif self.ctx.get_state(_SEEDED_KEY) is None:
                store.queue_push([(name, []) for name, d in defs.items() for _ in range(d.instances)])
                self.ctx.set_state(_SEEDED_KEY, "1")
            dropped: dict[str, list[int]] = {}
            for item in store.queue_items():
                if item.managed in self._queues:
                    self._queues[item.managed].append(item)
                else:
                    dropped.setdefault(item.managed, []).append(item.pos)
            for name, positions in dropped.items():
                store.queue_remove(positions)
                self.ctx.notice("warning", f"managed {name!r} is no longer configured; dropped its {len(positions)} queued items")
            gate = self.ctx.get_state(_GATE_KEY)
        if gate is not None:  # before anything starts: the instances of a high name wait like any item
            self._gate(json.loads(gate))
        await self._fill()

    async def stop(self) -> None:
        runs = list(self._runs.values())
        # Interrupted items go back to the front of their queue and start again on the next run.
        requeued = self.ctx.work_queue.queue_push([(run.name, run.args) for run in runs], front=True)
        for item in reversed(requeued):
            self._queues.setdefault(item.managed, deque()).appendleft(item)
        await asyncio.gather(*(self._end(run, "agent_stop") for run in runs))

    # --- what the agent asks ------------------------------------------------------------

    def sessions(self) -> list[SessionInfo]:
        defs = self._defs
        out = []
        for run in self._runs.values():
            d = defs.get(run.name)
            out.append(
                SessionInfo(
                    id=run.session_id,
                    source=self.name,
                    project=Path(run.cwd).name if run.cwd else None,
                    cwd=run.cwd,
                    pid=run.proc.pid,
                    model=d.model if d else None,
                    title=" ".join((d.command if d else []) + run.args)[:200],
                    state=run.state,  # type: ignore[arg-type]
                    started=run.started,
                    managed=run.name,
                    nice=_nice(run.proc.pid),
                )
            )
        return out

    def owns(self, session_id: str) -> bool:
        return session_id in self._runs

    def node_info(self) -> dict[str, Any] | None:
        """The managed names this node can start, with the project their sessions will report."""
        return {"managed": [{"name": name, "project": Path(d.cwd).expanduser().name if d.cwd else None}
                            for name, d in self._defs.items()]}

    def queue_depth(self) -> int:
        return sum(len(q) for q in self._queues.values())

    # --- queue and processes ------------------------------------------------------------

    def _next_session_id(self, name: str) -> str:
        number = int(self.ctx.get_state(_COUNTER_KEY) or 0) + 1
        self.ctx.set_state(_COUNTER_KEY, str(number))
        return f"managed:{name}:{number}"

    async def _fill(self) -> None:
        """Start queued items while their name has room, unless the node is drained."""
        async with self._fill_lock:
            if self._drained:
                return
            for name, queue in self._queues.items():
                while queue and self._running_count(name) < self._concurrency.get(name, 0) and not self._held(name):
                    item = queue.popleft()
                    await self._spawn(name, item.args, item=item)

    def _running_count(self, name: str) -> int:
        return sum(1 for run in self._runs.values() if run.name == name)

    def _high_running(self) -> int:
        return sum(1 for run in self._runs.values() if run.name in self._high)

    def _held(self, name: str) -> bool:
        """A high-priority name waits while the node runs its cap of high sessions."""
        return name in self._high and self._high_running() + self._high_others >= self._high_cap

    async def _spawn(
        self, name: str, args: list[str], session_id: str | None = None, item: QueuedItem | None = None
    ) -> bool:
        """Start `args` of `name`; a queued `item` leaves the stored queue whether or not it starts."""
        d = self._defs[name]
        argv = [*d.command, *args]
        cwd = str(Path(d.cwd).expanduser()) if d.cwd else None
        sid = session_id or self._next_session_id(name)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                # The session id lets watching sources find their session.
                env={**session_environment(d.env_pass, d.env), MANAGED_SESSION_ENV: sid},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group: signals reach its children too
            )
        except OSError as exc:
            with self.ctx.atomic():
                if item is not None:
                    self.ctx.work_queue.queue_remove([item.pos])
                self.ctx.notice("warning", f"managed {name}: cannot start {argv[0]!r}: {exc.strerror or exc}")
            return False
        with self.ctx.atomic():
            run = _Run(sid, name, list(args), proc, self.ctx.clock.now(), cwd)
            self._runs[sid] = run
            if item is not None:
                self.ctx.work_queue.queue_remove([item.pos])
            self.ctx.emit(
                "session.started",
                sid,
                {
                    "source": self.name,
                    "managed": name,
                    "project": Path(cwd).name if cwd else None,
                    "cwd": cwd,
                    "pid": proc.pid,
                    "model": d.model,
                    "title": " ".join(argv)[:200],
                },
            )
            self.ctx.emit("session.state", sid, {"state": "running", "reason": "started"})
        run.waiter = asyncio.create_task(self._watch(run))
        self.ctx.sessions_changed()
        return True

    async def _watch(self, run: _Run) -> None:
        code = await run.proc.wait()
        if self._runs.get(run.session_id) is run:
            del self._runs[run.session_id]
        reason = run.stopping or ("exited" if code == 0 else "failed")
        self.ctx.emit("session.ended", run.session_id, {"exit_code": code, "reason": reason})
        self.ctx.sessions_changed()
        if run.stopping not in ("restart", "agent_stop"):
            await self._fill()

    def _signal(self, run: _Run, sig: int) -> None:
        try:
            os.killpg(run.proc.pid, sig)
        except ProcessLookupError:
            pass

    async def _end(self, run: _Run, why: str) -> int | None:
        """SIGTERM the group, SIGKILL it after a grace, and wait until the session has ended."""
        run.stopping = why
        self._signal(run, signal.SIGTERM)
        self._signal(run, signal.SIGCONT)  # a paused group must run to handle SIGTERM
        try:
            await asyncio.wait_for(asyncio.shield(run.proc.wait()), KILL_GRACE_S)
        except asyncio.TimeoutError:
            self._signal(run, signal.SIGKILL)
        if run.waiter is not None:
            await run.waiter
        return run.proc.returncode

    def _set_state(self, run: _Run, state: str, reason: str) -> None:
        run.state = state
        self.ctx.emit("session.state", run.session_id, {"state": state, "reason": reason})
        self.ctx.sessions_changed()

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        if cmd.action.startswith("session."):
            run = self._runs.get(cmd.target or "")
            if run is None:
                raise CommandError("unknown_session", f"no managed session {echo(cmd.target or '')}")
            return await self._session_command(cmd, run)
        handler = {
            "node.drain": self._drain,
            "node.undrain": self._undrain,
            "node.set_concurrency": self._set_concurrency,
            "queue.move": self._move,
            "queue.accept": self._accept,
            "queue.set_priority": self._set_priority,
        }.get(cmd.action)
        if handler is None:
            raise CommandError("not_supported", f"{cmd.action} is not supported by the managed source")
        return await handler(cmd.args)

    async def _session_command(self, cmd: Command, run: _Run) -> dict[str, Any]:
        pid = run.proc.pid
        if cmd.action == "session.kill":
            code = await self._end(run, "killed")
            return {"pid": pid, "exit_code": code}
        if cmd.action == "session.pause":
            self._signal(run, signal.SIGSTOP)
            self._set_state(run, "paused", "paused by console")
            return {"pid": pid, "state": "paused"}
        if cmd.action == "session.resume":
            self._signal(run, signal.SIGCONT)
            self._set_state(run, "running", "resumed by console")
            return {"pid": pid, "state": "running"}
        if cmd.action == "session.renice":
            return self._renice(run, int(cmd.args["nice"]))
        if cmd.action == "session.restart":
            await self._end(run, "restart")
            if not await self._spawn(run.name, run.args, session_id=run.session_id):
                raise CommandError("failed", f"{run.session_id} ended but could not start again")
            return {"old_pid": pid, "pid": self._runs[run.session_id].proc.pid}
        if cmd.action == "session.prompt":
            return await self._prompt(run, str(cmd.args["text"]))
        raise CommandError("not_supported", f"{cmd.action} is not supported by the managed source")

    def _renice(self, run: _Run, nice: int) -> dict[str, Any]:
        try:
            leader = psutil.Process(run.proc.pid)
            previous = leader.nice()  # what a revert sets back
            for proc in [leader, *leader.children(recursive=True)]:
                proc.nice(nice)
        except psutil.NoSuchProcess:
            raise CommandError("unknown_session", f"{run.session_id} has already exited") from None
        except psutil.AccessDenied:
            raise CommandError("not_permitted", f"the agent may not set nice {nice} (lowering needs privileges)") from None
        self.ctx.sessions_changed()
        return {"pid": run.proc.pid, "nice": nice, "previous": previous}

    async def _prompt(self, run: _Run, text: str) -> dict[str, Any]:
        d = self._defs.get(run.name)
        if d is None or not d.prompt_command:
            raise CommandError("not_allowed", f"managed {run.name!r} has no prompt_command in the agent's config")
        if "\x00" in text:
            raise CommandError("bad_args", "prompt text contains a NUL character")
        # Substitution inside argv elements: the text is one argument, never parsed by a shell, and
        # the config only lets it stand where it cannot be an option (config.prompt_template_problem).
        values = {"prompt": text, "session": run.session_id}
        argv = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in d.prompt_command]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=run.cwd,
                env=session_environment(d.env_pass, d.env),
                stdin=asyncio.subprocess.PIPE if d.prompt_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError("failed", f"cannot run prompt_command {argv[0]!r}: {exc.strerror or exc}") from None
        try:
            given = text.encode() if d.prompt_stdin else None
            output, _ = await asyncio.wait_for(proc.communicate(given), PROMPT_TIMEOUT_S)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise CommandError("timeout", f"prompt_command ran longer than {PROMPT_TIMEOUT_S:.0f} s") from None
        return {"exit_code": proc.returncode, "output": output[-PROMPT_OUTPUT_BYTES:].decode(errors="replace")}

    async def _drain(self, args: dict[str, Any]) -> dict[str, Any]:
        self._drained = True
        return {"drained": True, "running": len(self._runs), "queued": self.queue_depth()}

    async def _undrain(self, args: dict[str, Any]) -> dict[str, Any]:
        self._drained = False
        await self._fill()
        return {"drained": False, "running": len(self._runs), "queued": self.queue_depth()}

    def _names(self, managed: str | None) -> list[str]:
        if managed is None:
            return list(self._queues)
        if managed not in self._queues:
            raise CommandError("unknown_managed", f"no managed entry {echo(managed)} on this node")
        return [managed]

    async def _set_concurrency(self, args: dict[str, Any]) -> dict[str, Any]:
        # Lowering it lets running sessions finish; only new starts wait.
        for name in self._names(args.get("managed")):
            self._concurrency[name] = int(args["value"])
        await self._fill()
        return {"concurrency": dict(self._concurrency)}

    def _gate(self, args: dict[str, Any]) -> None:
        # Names this node does not define are ignored: the console's rules may name entries of other nodes.
        self._high = frozenset(name for name in args.get("high", []) if name in self._queues)
        self._high_cap, self._high_others = int(args["cap"]), int(args.get("others", 0))

    async def _set_priority(self, args: dict[str, Any]) -> dict[str, Any]:
        self._gate(args)
        gate = {"high": sorted(self._high), "cap": self._high_cap, "others": self._high_others}
        with self.ctx.atomic():
            self.ctx.set_state(_GATE_KEY, json.dumps(gate))
        await self._fill()
        held = sum(len(self._queues[name]) for name in self._high if self._held(name))
        return {"high": sorted(self._high), "cap": self._high_cap, "others": self._high_others,
                "high_running": self._high_running(), "high_held": held}

    async def _move(self, args: dict[str, Any]) -> dict[str, Any]:
        """Remove up to count items, newest first (the oldest keep their place here), no more than
        fit in half a frame: items taken here exist only in the result until the console places them."""
        wanted = int(args["count"])
        taken: list[QueuedItem] = []
        room = MOVE_RESULT_BYTES
        for name in self._names(args.get("managed")):
            queue = self._queues[name]
            while queue and len(taken) < wanted:
                size = len(json.dumps({"managed": name, "args": queue[-1].args}))
                if taken and size > room:
                    break
                room -= size
                taken.append(queue.pop())
        self.ctx.work_queue.queue_remove([item.pos for item in taken])
        return {"items": [{"managed": item.managed, "args": item.args} for item in taken]}

    async def _accept(self, args: dict[str, Any]) -> dict[str, Any]:
        """Queue what fits; the rest comes back in `rejected`, with the distinct `reasons`."""
        rejected: list[dict[str, Any]] = []
        reasons: list[str] = []
        taken: list[tuple[str, list[str]]] = []
        room = self.ctx.config.max_queue - self.queue_depth()
        for item in args["items"]:
            name, item_args = item["managed"], list(item.get("args", []))
            problem = None if name in self._queues else f"no managed entry {echo(name)}"
            problem = problem or item_problem(item_args)
            if problem is None and len(taken) >= room:
                problem = f"the queue is full (max_queue {self.ctx.config.max_queue})"
            if problem:
                rejected.append({"managed": name, "args": item_args})
                if problem not in reasons and len(reasons) < MAX_REASONS:
                    reasons.append(problem)
                continue
            taken.append((name, item_args))
        for item in self.ctx.work_queue.queue_push(taken):
            self._queues[item.managed].append(item)
        await self._fill()
        return {"accepted": len(taken), "rejected": rejected, "reasons": reasons}


def _nice(pid: int) -> int | None:
    try:
        return psutil.Process(pid).nice()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
