"""`heady-agent statusline`: Claude Code's status line command prints one line and hands the
session's rate limits to the running agent, which sends them as `session.limits`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from agentkit import AgentProcess, recv_until, ws_connect
from heady_agent.statusline import handed, rate_limits, status_text
from hookkit import CWD, SID, claude_home  # noqa: F401 (claude_home: a fixture)

FIVE_HOUR_RESET = 1_796_479_709
WEEK_RESET = 1_797_066_509
# A subscriber's status line input, shaped as real Claude Code 2.1.332 hands it (the recorded inputs
# are replayed in tests/test_statusline_real.py; this one is edited for each case below).
STATUS = {
    "session_id": SID,
    "transcript_path": f"/home/dev/.claude/projects/-home-dev-src-billing-service/{SID}.jsonl",
    "cwd": CWD,
    "model": {"id": "claude-opus-4-6", "display_name": "Opus 4.6"},
    "workspace": {"current_dir": CWD, "project_dir": CWD, "added_dirs": []},
    "version": "2.1.332",
    "output_style": {"name": "default"},
    "cost": {"total_cost_usd": 1.374, "total_duration_ms": 600000, "total_api_duration_ms": 120000,
             "total_lines_added": 0, "total_lines_removed": 0},
    "rate_limits": {
        "five_hour": {"used_percentage": 39, "resets_at": FIVE_HOUR_RESET},
        "seven_day": {"used_percentage": 15.5, "resets_at": WEEK_RESET},
    },
}


def run_statusline(data_dir: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "heady_agent", "--data-dir", str(data_dir), "statusline"],
                          input=stdin, capture_output=True, timeout=60, env=dict(os.environ))


def hh_mm(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


def test_the_limits_become_the_protocols_5_hour_and_weekly_windows():
    assert rate_limits(STATUS) == {
        "primary": {"used_percent": 39.0, "window_minutes": 300, "resets_at": float(FIVE_HOUR_RESET)},
        "secondary": {"used_percent": 15.5, "window_minutes": 10080, "resets_at": float(WEEK_RESET)},
    }


def test_only_the_session_and_its_limits_are_handed_to_the_agent():
    fields = handed(STATUS)
    assert fields == {"kind": "statusline", "session_id": SID, "rate_limits": STATUS["rate_limits"]}


def test_a_window_out_of_range_is_left_out_and_no_limits_hand_nothing():
    bad = {**STATUS, "rate_limits": {"five_hour": {"used_percentage": 140.0}, "seven_day": {"used_percentage": float("nan")}}}
    assert rate_limits(bad) is None
    assert handed({**STATUS, "rate_limits": None}) is None


def test_the_line_shows_model_each_window_with_its_reset_and_the_cost():
    line = status_text(STATUS, connected=True)
    assert line == f"Opus 4.6 · 5h 39% (resets {hh_mm(FIVE_HOUR_RESET)}) · 7d 16% (resets {hh_mm(WEEK_RESET)}) · $1.37 · heady"


async def test_the_agent_sends_the_sessions_limits_once_per_change(tmp_path, claude_home):  # noqa: F811
    extra = {"claude_code": {"roots": [str(claude_home)], "poll_interval_s": 0.2}}
    async with AgentProcess(tmp_path, "a", sources=("claude-code",), extra=extra) as agent:
        async with ws_connect(agent.url, agent.token) as ws:
            await ws.send(json.dumps({"type": "subscribe", "since": 0}))
            await recv_until(ws, lambda f: f.get("kind") == "session.started" and f.get("session") == SID)
            ran = run_statusline(agent.dir, json.dumps(STATUS).encode())
            assert ran.returncode == 0 and ran.stderr == b""
            assert ran.stdout.decode().rstrip("\n").endswith(" · heady")
            limits, _ = await recv_until(ws, lambda f: f.get("kind") == "session.limits")
            assert (limits["session"], limits["data"]) == (SID, rate_limits(STATUS))

            run_statusline(agent.dir, json.dumps(STATUS).encode())  # a redraw: nothing new
            changed = {**STATUS, "rate_limits": {**STATUS["rate_limits"], "five_hour": {"used_percentage": 41.0,
                                                                                       "resets_at": FIVE_HOUR_RESET}}}
            run_statusline(agent.dir, json.dumps(changed).encode())
            again, between = await recv_until(ws, lambda f: f.get("kind") == "session.limits")
            assert again["data"]["primary"]["used_percent"] == 41.0
            assert not [f for f in between if f.get("kind") == "session.limits"]


def test_without_an_agent_the_line_is_still_printed_and_says_so(tmp_path):
    ran = run_statusline(tmp_path, json.dumps(STATUS).encode())
    assert (ran.returncode, ran.stderr) == (0, b"")
    assert ran.stdout.decode().rstrip("\n").endswith(" · heady: no agent")


def test_input_that_is_not_json_prints_a_line_and_succeeds(tmp_path):
    ran = run_statusline(tmp_path, b"\xff not json")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, b"heady: no status\n", b"")


def test_check_says_whether_claude_code_runs_the_status_line(tmp_path):
    settings = tmp_path / "claude" / "settings.json"
    settings.parent.mkdir()
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nsources = ["claude-code"]\n')
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(settings.parent), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("HEADY_CONFIG", None)

    def check() -> str:
        done = subprocess.run([sys.executable, "-m", "heady_agent", "--config", str(config), "--check"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"claude-code status line: not set in {settings}" in check()
    settings.write_text(json.dumps({"statusLine": {"type": "command", "command": "/usr/bin/heady-agent statusline"}}))
    assert f"claude-code status line: heady-agent statusline, set in {settings}" in check()


def test_only_numbers_and_short_times_of_a_window_are_handed_over():
    odd = {**STATUS, "rate_limits": {"five_hour": {"used_percentage": "x" * 10_000, "resets_at": "2026-12-05T14:20:00Z",
                                                   "extra": "y" * 10_000}}}
    assert handed(odd) == {"kind": "statusline", "session_id": SID,
                           "rate_limits": {"five_hour": {"used_percentage": None, "resets_at": "2026-12-05T14:20:00Z"}}}
