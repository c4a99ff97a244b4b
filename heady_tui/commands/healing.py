"""`heady healing status [--json]`, `heady healing tasks [--state S] [--json]`, `heady healing approve|reject TASK`.

Read from the records a console writes; approve and reject go through the operator layer (audited as
`operator.task.approve|reject`, origin cli) and wait there for the console that holds the brain's
lease, which carries them out at its next tick exactly as its own approvals queue would.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from heady_agent.clock import Clock
from heady_agent.protocol import clean_line
from heady_tui.commands._engine_store import RecordsBody, StoreError, with_records
from heady_tui.config import Config, Paths
from heady_tui.engine.healing import OPEN_TASK_STATES, HealingError, Task, WeakPoint, by_priority, by_severity
from heady_tui.operator import RecordsOperator
from heady_tui.records import LeaseRow, Records

STATUS_CYCLES = 10
DECISION_NOUN = {"approve": "approval", "reject": "rejection"}


def run(args: argparse.Namespace) -> int:
    verbs = {"status": _status, "tasks": _tasks, "approve": _decide, "reject": _decide}
    try:
        return with_records(args, verbs[args.verb](args))
    except (StoreError, HealingError) as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _stored_tasks(rows: list[dict[str, Any]]) -> list[Task]:
    tasks = []
    for body in rows:
        try:
            tasks.append(Task(**body))
        except TypeError:
            continue  # a row written by an incompatible version, as the brain skips it
    return tasks


def _stored_weak_points(cycle: dict[str, Any] | None) -> list[WeakPoint]:
    """The weak points open at the newest cycle (each cycle records every open one)."""
    points = []
    for body in (cycle or {}).get("weak_points", []):
        try:
            points.append(WeakPoint(**body))
        except TypeError:
            continue
    return by_severity(points)


def _console(lease: LeaseRow | None, now: float) -> dict[str, Any] | None:
    """The console whose brain acts now (holds an unexpired lease), if any."""
    if lease is None or lease.expires <= now:
        return None
    return {"holder": lease.holder, "expires": lease.expires}


def _task_line(t: Task) -> str:
    result = f"  {clean_line(t.result, 120)}" if t.result else ""
    return (f"{t.id:<11} {t.priority:<8} {t.state:<16} {t.strategy:<17} {clean_line(t.subject, 60):<30} "
            f"{_when(t.created)}{result}")


def _status(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        now = clock.now()
        cycles = await records.healing_cycles(limit=STATUS_CYCLES)
        weak = _stored_weak_points(cycles[-1] if cycles else None)
        queued = by_priority([t for t in _stored_tasks(await records.tasks()) if t.state in OPEN_TASK_STATES])
        console = _console(await records.lease(), now)
        if args.json:
            print(json.dumps({
                "console": console,
                "cycles": [{k: c.get(k) for k in ("id", "at", "kind", "summary")} for c in cycles],
                "weak_points": [asdict(wp) for wp in weak],
                "queued_tasks": [t.to_dict() for t in queued],
            }, sort_keys=True, default=str))
            return 0
        print(f"console: {console['holder']} acts on the fleet" if console else "console: none running (decisions wait for one)")
        print(f"last {len(cycles)} cycle(s):" if cycles else "no healing cycle recorded yet")
        for c in reversed(cycles):
            print(f"  {_when(c['at'])}  {clean_line(str(c.get('summary', '')), 160)}")
        print(f"open weak points ({len(weak)}):" if weak else "no open weak points")
        for wp in weak:
            print(f"  {wp.severity:<8} {wp.strategy:<17} {clean_line(wp.subject, 60):<30} open since {_when(wp.opened)}  "
                  f"{clean_line('; '.join(wp.issues), 120)}")
        print(f"queued tasks ({len(queued)}):" if queued else "no queued tasks")
        for t in queued:
            print(f"  {_task_line(t)}")
        return 0

    return body


def _tasks(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        tasks = [t for t in _stored_tasks(await records.tasks()) if args.state is None or t.state == args.state]
        if args.json:
            print(json.dumps([t.to_dict() for t in tasks], sort_keys=True, default=str))
            return 0
        if not tasks:
            print(f"no {args.state} tasks" if args.state else "no tasks")
        for t in tasks:
            print(_task_line(t))
        return 0

    return body


def _decide(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        operator = RecordsOperator(records, config, clock)
        if args.verb == "approve":
            await operator.approve_task(args.task)
        else:
            await operator.reject_task(args.task)
        console = _console(await records.lease(), clock.now())
        when = (f"the console of {console['holder']} carries it out at its next tick" if console
                else "no console is running: the next one to start carries it out")
        print(f"{DECISION_NOUN[args.verb]} of task {args.task} recorded; {when}")
        return 0

    return body
