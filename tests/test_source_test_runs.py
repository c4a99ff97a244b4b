"""Test runs a session executed: real Claude Code and Codex sessions that ran pytest (recorded by
scripts/record/test_runs.sh against the fake servers) read by the real sources, and the runner and
count reading they share."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig, CodexConfig
from heady_agent.protocol import TEST_COUNT_MAX, FrameError, parse_event_data
from heady_agent.sources.claude_code import ClaudeCodeSource
from heady_agent.sources.codex import CodexSource
from heady_agent.sources.jsonl import parse_ts
from heady_agent.sources.runners import counts_of, run_event_data, runner_of
from agentkit import running_agent
from dpkit import supervisor_on
from heady_tui.config import NodeConfig
from sourcekit import SqliteSourceContext
from test_replay_claude_code import unpack

RECORDED = Path(__file__).parent / "fixtures" / "real" / "test-runs"
CLAUDE = RECORDED / "claude-code-2.1.332"
CODEX = RECORDED / "codex-0.171.0"


def _clock_after(lines: list[str]) -> ManualClock:
    newest = max(json.loads(line).get("timestamp", "") for line in lines if line.strip())
    return ManualClock((parse_ts(newest) or 0.0) + 3600.0)


def test_claude_code_reports_each_pytest_run_with_its_exit_code_and_counts(tmp_path):
    root = tmp_path / "claude"
    transcripts = unpack(CLAUDE, root)
    clock = _clock_after([line for p in transcripts for line in p.read_text().splitlines()])
    config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(root)], poll_interval_s=1.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, clock)
    ClaudeCodeSource(ctx).scan()
    sessions = json.loads((CLAUDE / "sessions.json").read_text())
    runs = {e.session: e.data for e in ctx.events("test.run")}
    assert runs == {
        sessions["passing"]: {"runner": "pytest", "command": "pytest -q tests/test_ok.py", "exit_code": 0, "passed": 2, "failed": 0},
        sessions["failing"]: {"runner": "pytest", "command": "pytest -q tests/test_bad.py", "exit_code": 1, "passed": 1, "failed": 1},
    }
    ctx.close()


def test_claude_code_reports_a_test_run_once_across_a_restart(tmp_path):
    root = tmp_path / "claude"
    transcripts = unpack(CLAUDE, root)
    clock = _clock_after([line for p in transcripts for line in p.read_text().splitlines()])
    config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(root)], poll_interval_s=1.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, clock)
    ClaudeCodeSource(ctx).scan()
    ClaudeCodeSource(ctx).scan()
    assert len(ctx.events("test.run")) == 2
    ctx.close()


def test_codex_reports_each_pytest_run_with_its_exit_code_and_counts(tmp_path):
    home = tmp_path / "codex-home"
    rollouts = sorted((CODEX / "codex-home" / "sessions").rglob("rollout-*.jsonl"))
    for rollout in rollouts:
        target = home / rollout.relative_to(CODEX / "codex-home")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rollout.read_bytes())
    clock = _clock_after([line for p in rollouts for line in p.read_text().splitlines()])
    config = AgentConfig(sources=["codex"], codex=CodexConfig(roots=[str(home)], poll_interval_s=1.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, clock)
    CodexSource(ctx).scan()
    got = sorted((e.data["command"], e.data["exit_code"], e.data["passed"], e.data["failed"], e.data["runner"])
                 for e in ctx.events("test.run"))
    assert got == [(".venv/bin/pytest -q tests/test_bad.py", 1, 1, 1, "pytest"),
                   (".venv/bin/pytest -q tests/test_ok.py", 0, 2, 0, "pytest")]
    assert {e.session for e in ctx.events("test.run")} == {r.name[-len(".jsonl") - 36: -len(".jsonl")] for r in rollouts}
    ctx.close()


@pytest.mark.parametrize(("command", "runner"), [
    ("pytest -q tests", "pytest"),
    (".venv/bin/pytest -x", "pytest"),
    ("python3 -m pytest tests/test_a.py", "pytest"),
    ("uv run pytest", "pytest"),
    ("cd api && PYTHONPATH=. timeout 60 pytest -q", "pytest"),
    ("go test ./...", "go"),
    ("cargo test --workspace", "cargo"),
    ("npm test", "npm"),
    ("npm run test -- --watch=false", "npm"),
    ("pnpm test", "pnpm"),
    ("yarn test", "yarn"),
    ("npx jest src", "jest"),
    ("npx vitest run", "vitest"),
    ("pnpm exec vitest run", "vitest"),
    ("make build | tee log; jest", "jest"),
])
def test_a_test_runner_is_recognised_in_a_shell_command(command, runner):
    assert runner_of(command) == runner


@pytest.mark.parametrize("command", [
    "echo pytest", "ls tests", "go build ./...", "cargo build", "npm install", "npm run build", "git commit -m 'pytest'",
    "cat 'unterminated", "",
])
def test_commands_that_run_no_test_runner_are_not_test_runs(command):
    assert runner_of(command) is None


@pytest.mark.parametrize(("output", "counts"), [
    ("..F\n=== 1 failed, 2 passed in 0.12s ===\n", (2, 1)),
    ("3 passed, 1 skipped in 0.40s\n", (3, 0)),
    ("1 passed, 2 errors in 1.02s\n", (1, 2)),
    ("Tests:       1 failed, 4 passed, 5 total\nTime: 1 s\n", (4, 1)),
    (" Test Files  1 failed (1)\n      Tests  2 failed | 7 passed (9)\n", (7, 2)),
    ("test result: FAILED. 3 passed; 1 failed; 0 ignored\ntest result: ok. 2 passed; 0 failed; 0 ignored\n", (5, 1)),
    ("=== RUN   TestA\n--- PASS: TestA (0.00s)\n--- FAIL: TestB (0.00s)\nFAIL\n", (1, 1)),
    ("compiling...\nerror: could not compile\n", (None, None)),
])
def test_passed_and_failed_counts_are_read_from_each_runners_summary(output, counts):
    assert counts_of(output) == counts


def test_counts_past_the_bound_are_dropped_not_trusted():
    huge = TEST_COUNT_MAX + 1
    assert counts_of(f"{huge} failed, 1 passed in 1.00s\n") == (1, None)
    assert counts_of("100000000001 failed, 1 passed in 1.00s\n") == (None, None)  # no summary is better than a wrong one


def test_the_command_is_sent_as_one_clean_line():
    data = run_event_data("pytest -q\n\x1b[31m[red]boom[/red]", "pytest", 1, "")
    parsed = parse_event_data("test.run", data)
    assert data["command"] == parsed.command == "pytest -q [red]boom[/red]"


@pytest.mark.parametrize("data", [
    {"runner": "make", "command": "make test", "exit_code": 0},
    {"runner": "pytest", "command": "pytest", "exit_code": 0, "failed": -1},
    {"runner": "pytest", "command": "pytest", "exit_code": 0, "passed": TEST_COUNT_MAX + 1},
    {"runner": "pytest", "command": "pytest"},
])
def test_a_malformed_test_run_is_refused_with_one_line(data):
    with pytest.raises(FrameError) as err:
        parse_event_data("test.run", data)
    assert "\n" not in str(err.value) and str(err.value).startswith("bad test.run data")


async def test_recorded_claude_code_test_runs_reach_the_consoles_store(tmp_path, monkeypatch):
    """End to end: the real agent tails the recorded transcripts, the console's link takes the frames
    over a real WebSocket and the store keeps the runs with their verdicts. (They are older than the
    healing window, so the brain keeps none of them: history does not fire a trigger.)"""
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    root = tmp_path / "claude"
    unpack(CLAUDE, root)
    extra = {"claude_code": {"roots": [str(root)], "poll_interval_s": 0.2}}
    async with running_agent(tmp_path, sources=("claude-code",), extra=extra, name="n1") as agent:
        async with supervisor_on(tmp_path, [NodeConfig(name="n1", url=agent.url, token=agent.token)]) as sup:
            store = sup.store
            assert store is not None
            runs: list = []

            async def stored() -> bool:
                runs[:] = await store.test_runs()
                return len(runs) == 2

            deadline = asyncio.get_running_loop().time() + 60
            while not await stored():
                assert asyncio.get_running_loop().time() < deadline, "two stored test runs within 60 s"
                await asyncio.sleep(0.1)
            sessions = json.loads((CLAUDE / "sessions.json").read_text())
            assert {(r.session, r.ok, r.passed, r.failed) for r in runs} == {
                (sessions["passing"], True, 2, 0), (sessions["failing"], False, 1, 1)}
            assert sup.brain.ledger.session_tests.summary(("n1", sessions["failing"]), sup.clock.now()).runs == 0
