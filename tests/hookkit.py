"""Test kit for Claude Code hooks: real hook payloads, a Claude Code config dir with one live
session, and the hook command run as a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SID = "7a0f3c52-91be-4d0e-8f0a-3b6c2e9d4a10"
CWD = "/home/dev/src/billing-service"

# A Claude Code 2.x PermissionRequest, as its hook receives it on stdin.
PERMISSION_REQUEST = {
    "session_id": SID,
    "transcript_path": f"/home/dev/.claude/projects/-home-dev-src-billing-service/{SID}.jsonl",
    "cwd": CWD,
    "permission_mode": "default",
    "hook_event_name": "PermissionRequest",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build/ && make", "description": "Clean and rebuild"},
}
POST_TOOL_USE = {
    "session_id": SID,
    "transcript_path": PERMISSION_REQUEST["transcript_path"],
    "cwd": CWD,
    "permission_mode": "default",
    "hook_event_name": "PostToolUse",
    "tool_name": "Bash",
    "tool_input": PERMISSION_REQUEST["tool_input"],
    "tool_response": {"stdout": "ok\n", "stderr": "", "interrupted": False},
    "tool_use_id": "toolu_01AbCdEf",
}


def run_hook(data_dir: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """`heady-agent --data-dir DIR hook` as Claude Code runs it: JSON on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "heady_agent", "--data-dir", str(data_dir), "hook"],
        input=stdin, capture_output=True, timeout=60, env=dict(os.environ),
    )


@pytest.fixture
def claude_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Claude Code config dir with one live session: its registry entry names a running process."""
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    root = tmp_path / "claude"
    (root / "sessions").mkdir(parents=True)
    (root / "projects").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    now_ms = int(time.time() * 1000)
    (root / "sessions" / f"{proc.pid}.json").write_text(json.dumps(
        {"pid": proc.pid, "sessionId": SID, "cwd": CWD, "startedAt": now_ms - 1000, "version": "2.1.332",
         "status": "busy", "updatedAt": now_ms}))
    yield root
    proc.kill()
    proc.wait(timeout=30)
