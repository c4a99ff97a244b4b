"""What real Claude Code handed its status line command, replayed through `heady-agent statusline`.

tests/fixtures/real/claude-code-<version>/statusline.jsonl holds every JSON object real Claude Code
wrote on the status line command's stdin during two recorded interactive sessions
(scripts/record/claude.sh): `interactive` signed in with an API key, `subscriber` signed in with a
made-up claude.ai OAuth token while the fake server answered with the subscription's
`anthropic-ratelimit-unified-*` headers. Their transcripts are in the same fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentkit import AgentProcess, recv_until, ws_connect
from fake_anthropic import Schedule
from heady_agent.statusline import handed, rate_limits
from test_replay_claude_code import unpack

FIXTURES = Path(__file__).parent / "fixtures" / "real"
VERSIONS = sorted(p.parent.name for p in FIXTURES.glob("claude-code-*/statusline.jsonl"))
RECORDED_HOME = "/rec/cfg"  # the recording's CLAUDE_CONFIG_DIR, as its paths were rewritten


def recorded(version: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    fixture = FIXTURES / version
    inputs = [json.loads(line) for line in (fixture / "statusline.jsonl").read_text().splitlines()]
    return inputs, json.loads((fixture / "sessions.json").read_text())


def of_case(version: str, case: str) -> list[dict[str, Any]]:
    inputs, sessions = recorded(version)
    return [i for i in inputs if i["session_id"] == sessions[case]]


def run_statusline(data_dir: Path, payload: dict[str, Any]) -> str:
    """The real entry, as Claude Code runs it: the recorded object on stdin, one line out."""
    ran = subprocess.run([sys.executable, "-m", "heady_agent", "--data-dir", str(data_dir), "statusline"],
                         input=json.dumps(payload).encode(), capture_output=True, timeout=60, env=dict(os.environ))
    assert (ran.returncode, ran.stderr) == (0, b"")
    return ran.stdout.decode().rstrip("\n")


def hh_mm(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


@pytest.mark.parametrize("version", VERSIONS)
def test_every_input_names_a_recorded_session_and_its_transcript(version: str, tmp_path: Path) -> None:
    inputs, sessions = recorded(version)
    assert {i["session_id"] for i in inputs} == {sessions["interactive"], sessions["subscriber"]}
    unpack(FIXTURES / version, tmp_path)
    for payload in inputs:
        transcript = tmp_path / Path(payload["transcript_path"]).relative_to(RECORDED_HOME)
        records = [json.loads(line) for line in transcript.read_text().splitlines()]
        assert transcript.stem == payload["session_id"]
        assert {r["sessionId"] for r in records if "sessionId" in r} == {payload["session_id"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_an_api_key_session_hands_nothing_and_shows_model_and_cost(version: str, tmp_path: Path) -> None:
    inputs = of_case(version, "interactive")
    assert inputs and all("rate_limits" not in i for i in inputs)
    for payload in inputs:
        assert handed(payload) is None
        usd = payload["cost"]["total_cost_usd"]
        assert run_statusline(tmp_path, payload) == f"{payload['model']['display_name']} · ${usd:.2f} · heady: no agent"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_subscriber_gets_its_windows_only_after_the_first_answer(version: str) -> None:
    inputs = of_case(version, "subscriber")
    before = [i for i in inputs if i["cost"]["total_cost_usd"] == 0]
    after = [i for i in inputs if i["cost"]["total_cost_usd"] > 0]
    assert before and after and len(before) + len(after) == len(inputs)
    assert all("rate_limits" not in i and handed(i) is None for i in before)
    assert all(set(i["rate_limits"]) == {"five_hour", "seven_day"} for i in after)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_subscribers_windows_are_handed_over_as_recorded(version: str) -> None:
    _, sessions = recorded(version)
    for payload in of_case(version, "subscriber"):
        if "rate_limits" not in payload:
            continue
        five, week = payload["rate_limits"]["five_hour"], payload["rate_limits"]["seven_day"]
        assert handed(payload) == {"kind": "statusline", "session_id": sessions["subscriber"], "rate_limits": {
            "five_hour": {"used_percentage": five["used_percentage"], "resets_at": five["resets_at"]},
            "seven_day": {"used_percentage": week["used_percentage"], "resets_at": week["resets_at"]}}}
        assert rate_limits(payload) == {
            "primary": {"used_percent": five["used_percentage"], "window_minutes": 300, "resets_at": five["resets_at"]},
            "secondary": {"used_percent": week["used_percentage"], "window_minutes": 10080, "resets_at": week["resets_at"]},
        }


@pytest.mark.parametrize("version", VERSIONS)
def test_the_windows_are_those_the_servers_answers_to_the_subscriber_carried(version: str) -> None:
    fixture = FIXTURES / version
    _, sessions = recorded(version)
    answers = [json.loads(line) for line in (fixture / "answers.jsonl").read_text().splitlines()]
    schedule = Schedule.load(fixture / "schedule.json")
    reported = set()
    for answer in answers:
        if answer["client"]["session"] == sessions["subscriber"]:
            headers = dict(schedule.limit_headers(answer["n"]))
            # Claude Code shows the spent fraction as a percentage to one decimal.
            reported.add((round(float(headers["anthropic-ratelimit-unified-5h-utilization"]) * 1000) / 10,
                          round(float(headers["anthropic-ratelimit-unified-7d-utilization"]) * 1000) / 10))
    shown = {(i["rate_limits"]["five_hour"]["used_percentage"], i["rate_limits"]["seven_day"]["used_percentage"])
             for i in of_case(version, "subscriber") if "rate_limits" in i}
    assert shown and shown <= reported


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_running_agent_sends_the_recorded_subscribers_limits_once_per_change(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    inputs, sessions = recorded(version)
    sid = sessions["subscriber"]
    root = tmp_path / "claude"
    unpack(FIXTURES / version, root)
    # The recorded session, live again: a registry entry naming a running process.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    now_ms = int(time.time() * 1000)
    (root / "sessions").mkdir(exist_ok=True)
    (root / "sessions" / f"{sleeper.pid}.json").write_text(json.dumps(
        {"pid": sleeper.pid, "sessionId": sid, "cwd": inputs[0]["cwd"], "startedAt": now_ms - 1000,
         "version": version.removeprefix("claude-code-"), "status": "idle", "updatedAt": now_ms}))
    changes: list[dict[str, Any]] = []
    for payload in inputs:
        limits = rate_limits(payload) if payload["session_id"] == sid else None
        if limits is not None and (not changes or changes[-1] != limits):
            changes.append(limits)
    assert len(changes) >= 2
    try:
        extra = {"claude_code": {"roots": [str(root)], "poll_interval_s": 0.2}}
        async with AgentProcess(tmp_path, "a", sources=("claude-code",), extra=extra) as agent:
            async with ws_connect(agent.url, agent.token) as ws:
                await ws.send(json.dumps({"type": "subscribe", "since": 0}))
                await recv_until(ws, lambda f: f.get("kind") == "session.started" and f.get("session") == sid)
                printed = [run_statusline(agent.dir, payload) for payload in inputs]
                # Then the first windows again: a change, so one more frame, and none before it
                # for the recorded redraws that changed nothing.
                first = next(i for i in inputs if i["session_id"] == sid and rate_limits(i) == changes[0])
                run_statusline(agent.dir, first)
                sent = []
                while len(sent) < len(changes) + 1:
                    frame, _ = await recv_until(ws, lambda f: f.get("kind") == "session.limits")
                    sent.append((frame["session"], frame["data"]))
                assert sent == [(sid, limits) for limits in [*changes, changes[0]]]
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    for payload, line in zip(inputs, printed):
        windows = payload.get("rate_limits")
        shown = "".join(f" · {label} {windows[name]['used_percentage']:.0f}% (resets {hh_mm(windows[name]['resets_at'])})"
                        for name, label in (("five_hour", "5h"), ("seven_day", "7d"))) if windows else ""
        # The subscriber's lines reach the agent; the API-key session's hand nothing, and the agent listens.
        assert line == f"{payload['model']['display_name']}{shown} · ${payload['cost']['total_cost_usd']:.2f} · heady"
