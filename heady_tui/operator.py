"""The one command layer for operator actions, from the console's UI or from the CLI.

Every call is written to the audit chain as `operator.<action>` with who (user@host), where from
(`ui` or `cli`), the target, the arguments and the result (`ok` or `error` with the error), after the
action ran, whether it succeeded or not. The domain entries an action also writes (`consent.grant`,
`task.dispatch`, ...) stay: they record what changed, this one records who asked for it.

`ConsoleOperator` acts on a running console (its supervisor's links and brain); `RecordsOperator`
acts on the records alone, for CLI commands that run while a console may or may not be running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Literal, TypeVar

from heady_agent.clock import Clock
from heady_agent.protocol import ACTIONS, Result
from heady_tui.brain import Brain
from heady_tui.config import PRIORITY_CLASSES, Config
from heady_tui.engine.consent import ConsentRequest, Denial, Grant, grantor, new_denial, new_grant
from heady_tui.engine.healing import HealingError, Task, check_awaiting_approval
from heady_tui.fleet import SessionRecord
from heady_tui.prometheus import SOURCE as PROMETHEUS_SOURCE
from heady_tui.records import Records
from heady_tui.supervisor import Supervisor

Origin = Literal["ui", "cli", "attach"]  # attach: a console attached to a headless one (docs/attach.md)
T = TypeVar("T")

# Queue moves and accepts belong to the rebalancer; an operator sends the others.
AGENT_ACTIONS = tuple(a for a in ACTIONS if not a.startswith("queue."))
NO_PLAN = "no-plan"  # fingerprint of a denial made with no console request pending


class OperatorError(ValueError):
    """The action cannot be taken now (the console is still starting, or the action is unknown)."""


class OperatorAudit:
    """Writes one `operator.<action>` entry per operator call."""

    def __init__(self, records: Records, clock: Clock, origin: Origin, actor: str | None = None) -> None:
        self.records = records
        self.clock = clock
        self.origin = origin
        self.actor = actor or grantor()

    async def record(self, action: str, target: str | None, args: Mapping[str, object], error: str | None) -> None:
        await self.records.audit(self.clock.now(), self.actor, f"operator.{action}", {
            "origin": self.origin,
            "target": target,
            "args": dict(args),
            "result": "ok" if error is None else "error",
            "error": error,
        }, fenced=False)  # a person's action: recorded whichever console's brain holds the lease

    async def run(self, action: str, target: str | None, args: Mapping[str, object], call: Awaitable[T]) -> T:
        """Await `call` and audit it; an exception is audited as the error, then raised again."""
        try:
            value = await call
        except Exception as exc:
            await self.record(action, target, args, f"{type(exc).__name__}: {exc}")
            raise
        await self.record(action, target, args, None)
        return value


def session_target(node: str, session: str | None) -> str:
    return f"{node}/{session}" if session else node


class ConsoleOperator:
    """Operator actions on a running console: agent commands through the supervisor, the rest
    through its brain."""

    def __init__(self, supervisor: Supervisor, origin: Origin = "ui", actor: str | None = None) -> None:
        self.supervisor = supervisor
        self.origin = origin
        self.actor = actor or grantor()

    def _brain(self) -> Brain:
        brain = self.supervisor.brain
        if brain is None or brain.records is None:
            raise OperatorError("the console is still starting; try again in a moment")
        return brain

    def _audit(self) -> OperatorAudit:
        records = self._brain().records
        assert records is not None
        return OperatorAudit(records, self.supervisor.clock, self.origin, self.actor)

    async def command(self, node: str, action: str, target: str | None = None,
                      args: Mapping[str, object] | None = None) -> Result:
        """An agent command (session.kill|pause|resume|restart|prompt|renice, node.drain|undrain|set_concurrency)."""
        if action not in AGENT_ACTIONS:
            raise OperatorError(f"unknown operator action {action!r} (known: {', '.join(AGENT_ACTIONS)})")
        state = self.supervisor.fleet.nodes.get(node)
        if state is not None and state.source == PROMETHEUS_SOURCE:
            raise OperatorError(f"{node} is a metrics-only node read from Prometheus; it takes no commands")
        audit = self._audit()
        body = dict(args or {})
        result = await self.supervisor.command(node, action, target, body)
        await audit.record(action, session_target(node, target), body, None if result.ok else (result.error or "failed"))
        return result

    async def set_priority(self, node: str, session: str, priority: str) -> SessionRecord:
        """A session's priority class, kept over the rules' from now on (audited as `operator.session.priority`)."""
        audit = self._audit()

        async def chosen() -> SessionRecord:
            if priority not in PRIORITY_CLASSES:
                raise OperatorError(f"unknown priority class {priority!r} (known: {', '.join(PRIORITY_CLASSES)})")
            rec = await self.supervisor.set_priority(node, session, priority)
            if rec is None:
                raise OperatorError(f"no session {session} on {node}")
            return rec

        return await audit.run("session.priority", session_target(node, session), {"priority": priority}, chosen())

    async def approve_task(self, task_id: str) -> Task:
        brain = self._brain()
        return await self._audit().run("task.approve", task_id, {}, brain.approve_task(task_id))

    async def reject_task(self, task_id: str) -> Task:
        brain = self._brain()
        return await self._audit().run("task.reject", task_id, {}, brain.reject_task(task_id))

    async def reset_policy(self, node: str, session: str, policy: str) -> bool:
        """OperatorError (audited as the error) when the policy was not holding the session."""
        brain = self._brain()
        audit = self._audit()
        target, args = session_target(node, session), {"policy": policy}
        held = _checked(brain.reset_policy(node, session, policy), f"{policy} is not holding {target}")
        return await audit.run("policy.reset", target, args, held)

    async def decide_consent(self, request_id: str, decision: str) -> Grant | None:
        brain = self._brain()
        return await self._audit().run("consent.decide", request_id, {"decision": decision},
                                       brain.decide_consent(request_id, decision, self.actor))

    async def grant(self, scope: str, reason: str) -> Grant:
        brain = self._brain()
        return await self._audit().run("grant", None, {"scope": scope, "reason": reason}, brain.grant(scope, reason))

    async def revoke_grant(self, grant_id: str) -> Grant:
        brain = self._brain()
        return await self._audit().run("revoke", grant_id, {}, brain.revoke_grant(grant_id))

    async def notify_deploy(self, node: str | None = None) -> None:
        brain = self._brain()
        await self._audit().run("notify_deploy", node, {}, brain.notify_deploy(node))


async def _checked(call: Awaitable[bool], failure: str) -> bool:
    if not await call:
        raise OperatorError(failure)
    return True


class RecordsOperator:
    """Operator actions on the records alone (the CLI): a running console picks them up at its next tick."""

    def __init__(self, records: Records, config: Config, clock: Clock, origin: Origin = "cli", actor: str | None = None) -> None:
        self.records = records
        self.config = config
        self.clock = clock
        self.audit = OperatorAudit(records, clock, origin, actor)

    async def grant(self, scope: str, reason: str) -> Grant:
        async def made() -> Grant:
            now = self.clock.now()
            g = new_grant(scope, now=now, config=self.config.consent, reason=reason, by=self.audit.actor)
            await self.records.add_grant(g, actor=g.grantor, now=now)
            return g

        return await self.audit.run("grant", None, {"scope": scope, "reason": reason}, made())

    async def revoke_grant(self, grant_id: str) -> Grant:
        revoked = self.records.revoke_grant(grant_id, actor=self.audit.actor, now=self.clock.now())
        return await self.audit.run("revoke", grant_id, {}, revoked)

    async def notify_deploy(self, node: str | None = None) -> None:
        noted = self.records.notify_deploy(self.clock.now(), node, "cli", self.audit.actor)
        await self.audit.run("notify_deploy", node, {}, noted)

    async def approve_task(self, task_id: str) -> None:
        """Queue the approval for the acting brain, which dispatches the task at its next tick."""
        await self.audit.run("task.approve", task_id, {}, self._decide(task_id, "approve"))

    async def reject_task(self, task_id: str) -> None:
        await self.audit.run("task.reject", task_id, {}, self._decide(task_id, "reject"))

    async def _decide(self, task_id: str, decision: str) -> None:
        """HealingError for an unknown task, one not waiting for approval, or one already decided."""
        stored = next((t for t in await self.records.tasks() if t["id"] == task_id), None)
        if stored is None:
            raise HealingError(f"no task with id {task_id!r}")
        check_awaiting_approval(task_id, stored["state"])
        if not await self.records.undecided(task_id):
            raise HealingError(f"task {task_id} already has a decision waiting for the console")
        await self.records.decide_task(self.clock.now(), task_id, decision, self.audit.actor)

    async def decide_consent(self, request: ConsentRequest | None, decision: str, reason: str,
                             caps: Mapping[str, object]) -> Grant | Denial:
        """Store an answer exactly as the console's dialog would; with no request pending, a grant
        covers whatever plan comes next and a denial is only recorded."""

        async def decided() -> Grant | Denial:
            now, by = self.clock.now(), self.audit.actor
            if decision == "deny":
                denial = new_denial(request.fingerprint if request else NO_PLAN, now=now, config=self.config.consent,
                                    reason=reason, by=by)
                await self.records.add_denial(denial, request.id if request else None)
                return denial
            g = new_grant(decision, now=now, config=self.config.consent, reason=reason, caps=dict(caps), by=by,
                          fingerprint=request.fingerprint if request else None)
            await self.records.add_grant(g, actor=by, now=now)
            if request is not None:
                request.state, request.decided_at, request.decision, request.grant_id = "granted", now, decision, g.id
                await self.records.save_request(request)
            return g

        return await self.audit.run("consent.decide", request.id if request else None,
                                    {"decision": decision, "reason": reason}, decided())
