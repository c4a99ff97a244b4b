"""`heady healing status|tasks|approve|reject` and `heady notify-deploy --node`, as child processes on the
data dir of a running brain (the fixed fleet: real store and records, ManualClock; edge-1 is offline)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from heady_tui.audit import AuditEntry
from test_healing_brain import fixed_brain, ticks, upgrade


async def heady(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("HEADY_CONFIG", None)
    argv = [sys.executable, "-m", "heady_tui", *args, "--data-dir", str(tmp_path / "console")]
    return await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)


def actions(entries: list[AuditEntry], action: str) -> list[AuditEntry]:
    return [e for e in entries if e.action == action]


async def test_an_approval_from_the_cli_is_dispatched_by_the_running_console_as_its_operator(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await ticks(sup, clock, 3)
        assert sup.brain is not None
        [task] = sup.brain.awaiting_approval()
        out = await heady(tmp_path, "healing", "approve", task.id)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"approval of task {task.id} recorded; the console of ") and "next tick" in out.stdout
        assert task.state == "pending-approval"  # until the console's next tick
        await ticks(sup, clock, 1)
        assert task.state == "dispatched"
        entries = await sup.brain.audit_entries(1000)
        [asked] = actions(entries, "operator.task.approve")
        [dispatched] = [e for e in actions(entries, "task.dispatch") if e.details["id"] == task.id]
        assert asked.details["origin"] == "cli" and asked.details["target"] == task.id and asked.details["result"] == "ok"
        assert dispatched.actor == asked.actor and asked.seq < dispatched.seq
        assert [e.name for e in events if e.details.get("task") == task.id][-1] == "task.dispatched"


async def test_a_rejection_from_the_cli_fails_the_task_as_rejected(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await ticks(sup, clock, 3)
        assert sup.brain is not None
        [task] = sup.brain.awaiting_approval()
        assert (await heady(tmp_path, "healing", "reject", task.id)).returncode == 0
        await ticks(sup, clock, 1)
        assert (task.state, task.result) == ("failed", "rejected by the operator")


async def test_approving_an_unknown_task_is_a_one_line_error_and_is_audited(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await ticks(sup, clock, 3)
        out = await heady(tmp_path, "healing", "approve", "t-nope")
        assert out.returncode == 1 and out.stderr == "heady: error: no task with id 't-nope'\n" and out.stdout == ""
        assert sup.brain is not None
        [asked] = actions(await sup.brain.audit_entries(1000), "operator.task.approve")
        assert asked.details["result"] == "error" and "no task with id 't-nope'" in asked.details["error"]


async def test_approving_a_task_that_is_not_waiting_for_approval_is_refused(tmp_path):
    async with fixed_brain(tmp_path) as (sup, clock, events):
        await ticks(sup, clock, 3)
        assert sup.brain is not None
        [task] = [t for t in sup.brain.tasks() if t.subject == "edge-1"]  # revive_agent is dispatched by itself
        out = await heady(tmp_path, "healing", "approve", task.id)
        assert out.returncode == 1 and out.stderr == f"heady: error: task {task.id} is dispatched, not waiting for approval\n"


async def test_a_second_decision_before_the_console_took_the_first_is_refused(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await ticks(sup, clock, 3)
        assert sup.brain is not None
        [task] = sup.brain.awaiting_approval()
        assert (await heady(tmp_path, "healing", "approve", task.id)).returncode == 0
        out = await heady(tmp_path, "healing", "reject", task.id)
        assert out.returncode == 1 and "already has a decision waiting for the console" in out.stderr
        await ticks(sup, clock, 1)
        assert task.state == "dispatched"


async def test_status_as_json_shows_cycles_weak_points_critical_first_and_queued_tasks_by_priority(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 4)
        out = await heady(tmp_path, "healing", "status", "--json")
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        assert status["console"]["holder"] and status["cycles"] and status["cycles"][-1]["kind"]
        assert [(wp["subject"], wp["severity"]) for wp in status["weak_points"]] == [("edge-1", "critical"), ("gpu-1", "warning")]
        assert [(t["subject"], t["priority"], t["state"]) for t in status["queued_tasks"]] == [
            ("edge-1", "critical", "pending-approval"), ("gpu-1", "low", "pending-approval")]


async def test_status_as_text_lists_the_critical_weak_point_before_the_warning(tmp_path):
    async with fixed_brain(tmp_path, auto_dispatch=[]) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 4)
        lines = (await heady(tmp_path, "healing", "status")).stdout.splitlines()
        weak = lines[lines.index("open weak points (2):") + 1:][:2]
        assert weak[0].split()[:3] == ["critical", "revive_agent", "edge-1"]
        assert weak[1].split()[:3] == ["warning", "environment_sync", "gpu-1"]
        assert "queued tasks (2):" in lines


async def test_tasks_filtered_by_state(tmp_path):
    async with fixed_brain(tmp_path) as (sup, clock, events):
        await upgrade(sup, "gpu-1", "0.0.9")
        await ticks(sup, clock, 4)
        failed = json.loads((await heady(tmp_path, "healing", "tasks", "--state", "failed", "--json")).stdout)
        assert [(t["strategy"], t["subject"]) for t in failed] == [("environment_sync", "gpu-1")]
        none = await heady(tmp_path, "healing", "tasks", "--state", "expired")
        assert none.returncode == 0 and none.stdout == "no expired tasks\n"


async def test_notify_deploy_refuses_a_node_it_does_not_know_listing_the_stored_ones(tmp_path):
    async with fixed_brain(tmp_path) as (sup, clock, events):
        out = await heady(tmp_path, "notify-deploy", "--node", "nope")
        assert out.returncode == 1
        assert out.stderr == "heady: error: no node named 'nope' (known: build-1, build-2, edge-1, gpu-1)\n"
        assert (await heady(tmp_path, "notify-deploy", "--node", "gpu-1")).returncode == 0


async def test_notify_deploy_with_no_known_node_says_so(tmp_path):
    out = await heady(tmp_path, "notify-deploy", "--node", "build-1")
    assert out.returncode == 1 and "known: none: no [[nodes]] in the config and none stored" in out.stderr


async def test_an_unknown_task_state_is_a_one_line_usage_error(tmp_path):
    out = await heady(tmp_path, "healing", "tasks", "--state", "finished")
    assert out.returncode == 2 and "invalid choice: 'finished'" in out.stderr and len(out.stderr.strip().splitlines()) == 1


async def test_approve_without_a_task_id_is_a_one_line_usage_error(tmp_path):
    out = await heady(tmp_path, "healing", "approve")
    assert out.returncode == 2 and "task" in out.stderr and len(out.stderr.strip().splitlines()) == 1
