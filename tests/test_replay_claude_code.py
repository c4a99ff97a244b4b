"""Real Claude Code output, replayed through the real source and checked against what the server answered.

The fixtures under tests/fixtures/real/claude-code-<version>/ were written by real Claude Code runs
against tests/fake_anthropic.py (scripts/record/claude.sh): the transcripts it wrote, the server's
log of every answer (answers.jsonl) and which session exercised what (sessions.json).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig
from heady_agent.protocol import LlmCallData
from heady_agent.sources.claude_code import SYNTHETIC_MODEL, ClaudeCodeSource
from heady_agent.sources.jsonl import parse_ts
from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable
from sourcekit import Emitted, SqliteSourceContext

FIXTURES = Path(__file__).parent / "fixtures" / "real"
VERSIONS = sorted(p.name for p in FIXTURES.glob("claude-code-*"))
TABLE = PricingTable.load(CostConfig())
# Claude Code writes no response record for the summaries compaction asks for; the sessions that
# compacted are the only place a successful answer is counted from `cost-state` (docs/sources.md).
UNWRITTEN_OK = {"compact"}
# Sessions whose request never succeeded: one failed call each, however often it was retried.
NEVER_ANSWERED = {"always_500", "broken_stream"}


@dataclass
class Replay:
    ctx: SqliteSourceContext
    root: Path
    answers: list[dict[str, Any]]
    sessions: dict[str, str]  # case -> session id
    transcripts: list[Path]

    def source(self) -> ClaudeCodeSource:
        return ClaudeCodeSource(self.ctx)

    def calls(self, case: str | None = None) -> list[Emitted]:
        sid = self.sessions[case] if case else None
        return [e for e in self.ctx.events("llm.call") if sid is None or e.session == sid]

    def answered(self, case: str, ok: bool) -> list[dict[str, Any]]:
        return [a for a in self.answers if a["client"]["session"] == self.sessions[case] and a["ok"] is ok]


def unpack(fixture: Path, dest: Path) -> list[Path]:
    written = []
    for packed in sorted(fixture.glob("claude/**/*.gz")):
        target = dest / packed.relative_to(fixture / "claude").with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(packed.read_bytes()))
        written.append(target)
    return written


def make_replay(fixture: Path, tmp: Path) -> Replay:
    root = tmp / "claude"
    transcripts = [p for p in unpack(fixture, root) if p.suffix == ".jsonl"]
    answers = [json.loads(line) for line in (fixture / "answers.jsonl").read_text().splitlines()]
    sessions = json.loads((fixture / "sessions.json").read_text())
    # The clock stands an hour after the recording: everything in the files is history to backfill.
    newest = max(json.loads(line).get("timestamp", "") for p in transcripts for line in p.read_text().splitlines())
    clock = ManualClock((parse_ts(newest) or 0.0) + 3600.0)
    config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(root)], poll_interval_s=1.0))
    return Replay(SqliteSourceContext(tmp / "journal.db", config, clock), root, answers, sessions, transcripts)


@pytest.fixture(params=VERSIONS)
def replay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replay]:
    rep = make_replay(FIXTURES / request.param, tmp_path)
    rep.source().scan()
    yield rep
    rep.ctx.close()


def tokens(usage: dict[str, Any]) -> tuple[int, ...]:
    split = usage.get("cache_creation") or {}
    return (usage["input_tokens"], usage["output_tokens"], usage["cache_creation_input_tokens"],
            usage["cache_read_input_tokens"], split.get("ephemeral_5m_input_tokens", 0), split.get("ephemeral_1h_input_tokens", 0))


def call_tokens(data: dict[str, Any]) -> tuple[int, ...]:
    return (data["input_tokens"], data["output_tokens"], data["cache_creation_tokens"], data["cache_read_tokens"],
            data.get("cache_creation_5m_tokens") or 0, data.get("cache_creation_1h_tokens") or 0)


def server_call(answer: dict[str, Any]) -> LlmCallData:
    usage = answer["usage"]
    split = usage.get("cache_creation") or {}
    return LlmCallData(provider="anthropic", model=answer["model"], input_tokens=usage["input_tokens"],
                       output_tokens=usage["output_tokens"], cache_creation_tokens=usage["cache_creation_input_tokens"],
                       cache_read_tokens=usage["cache_read_input_tokens"],
                       cache_creation_5m_tokens=split.get("ephemeral_5m_input_tokens"),
                       cache_creation_1h_tokens=split.get("ephemeral_1h_input_tokens"))


def test_every_successful_answer_is_one_ok_call_with_its_model_and_every_token_kind(replay):
    for case in replay.sessions:
        got = Counter((e.data["model"], call_tokens(e.data)) for e in replay.calls(case) if e.data["ok"])
        want = Counter((a["model"], tokens(a["usage"])) for a in replay.answered(case, ok=True))
        if case in UNWRITTEN_OK:
            # The summaries compaction asked for have no response record: one call from cost-state sums them.
            extra, missing = got - want, want - got
            assert len(extra) <= 1 and summed(extra) == summed(missing), case
        else:
            assert got == want, case


def summed(calls: Counter[tuple[str, tuple[int, ...]]]) -> tuple[int, ...]:
    total = [0] * 6
    for (_, counts), n in calls.items():
        total = [t + c * n for t, c in zip(total, counts)]
    return tuple(total)


def test_the_requests_compaction_made_are_counted_from_claude_codes_cost_state(replay):
    sid = replay.sessions["compact"]
    unwritten = [a for a in replay.answered("compact", ok=True)
                 if tokens(a["usage"]) not in {call_tokens(e.data) for e in replay.calls("compact")}]
    has_cost_state = any('"cost-state"' in p.read_text() for p in replay.transcripts if sid in p.name)
    found = [e for e in replay.calls("compact") if e.data["latency_ms"] is None]
    if not has_cost_state:
        assert unwritten == [] and found == []  # 2.1.197: nothing to compact, nothing unwritten
        return
    [call] = found
    assert len(unwritten) == 2 and call.data["ok"]
    assert call_tokens(call.data) == tuple(map(sum, zip(*(tokens(a["usage"]) for a in unwritten))))


def test_a_request_that_never_succeeded_is_exactly_one_failed_call(replay):
    failed = Counter(e.session for e in replay.calls() if not e.data["ok"])
    assert failed == Counter({replay.sessions[case]: 1 for case in NEVER_ANSWERED})


def test_retries_that_ended_in_an_answer_are_not_failed_calls(replay):
    for case in ("retry_429", "error_event"):
        assert replay.answered(case, ok=False), f"the server failed {case} at least once"
        assert all(e.data["ok"] for e in replay.calls(case)), case


def test_a_broken_stream_is_one_failed_call_not_also_a_priced_success(replay):
    [broken] = replay.answered("broken_stream", ok=False)[:1]
    calls = replay.calls("broken_stream")
    assert [e.data["error"] for e in calls if not e.data["ok"]] == ["stream_cut_off"]
    assert tokens(broken["usage"]) not in {call_tokens(e.data) for e in calls if e.data["ok"]}


def test_no_call_is_counted_for_claude_codes_own_placeholder_messages(replay):
    placeholders = 0
    for path in replay.transcripts:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            message = record.get("message") if isinstance(record.get("message"), dict) else {}
            placeholders += message.get("model") == SYNTHETIC_MODEL and not record.get("isApiErrorMessage")
    ok_answers = sum(a["ok"] for a in replay.answers)
    assert sum(e.data["ok"] for e in replay.calls()) <= ok_answers
    assert all(e.data["model"] != SYNTHETIC_MODEL for e in replay.calls())
    if placeholders:  # 2.1.197 writes "No response requested." after /compact
        compact_ok = [e for e in replay.calls("compact") if e.data["ok"]]
        assert len(compact_ok) == len([a for a in replay.answered("compact", ok=True) if a["client"]["has_tools"]])


def test_a_failed_call_names_a_real_model_or_none(replay):
    [failed] = [e for e in replay.calls("always_500") if not e.data["ok"]]
    requested = {a["model"] for a in replay.answered("always_500", ok=False)}
    assert failed.data["model"] in requested | {""}
    assert failed.data["error"] == "server_error"


def test_latency_is_never_shorter_than_the_servers_time(replay):
    server_ms = {tokens(a["usage"]): a["server_ms"] for a in replay.answers if a["ok"]}
    for e in replay.calls():
        if e.data["ok"] and call_tokens(e.data) in server_ms:  # not the sum cost-state stands for: no record, no time
            assert e.data["latency_ms"] is not None and e.data["latency_ms"] >= server_ms[call_tokens(e.data)]


def test_cost_equals_the_servers_answers_priced_with_our_table_to_the_cent(replay):
    ok_calls = [e for e in replay.calls() if e.data["ok"]]
    ours = sum(TABLE.cost(LlmCallData(**e.data))[0] for e in ok_calls)
    theirs = sum(TABLE.cost(server_call(a))[0] for a in replay.answers if a["ok"])
    assert all(TABLE.cost(LlmCallData(**e.data))[1] for e in ok_calls), "every recorded model has a price"
    assert round(ours, 2) == round(theirs, 2) and ours > 0


def test_compaction_runs_compacted_then_running_then_completed(replay):
    sid = replay.sessions["compact"]
    states = [e.data["state"] if e.kind == "session.state" else e.kind for e in replay.ctx.events() if e.session == sid
              and e.kind in ("session.started", "session.state", "session.ended")]
    compacted = any(a["client"]["prompt"].endswith("after the compaction") for a in replay.answers) and states.count("compacted")
    expected = ["session.started", "compacted", "running", "session.ended"] if compacted else ["session.started", "session.ended"]
    assert states == expected


def test_titles_come_from_the_branch_and_never_read_head(replay):
    titles = {e.session: e.data["title"] for e in replay.ctx.events("session.started")}
    assert titles[replay.sessions["clean"]] == "feature/replay"
    assert "HEAD" not in titles.values()


def test_a_restarted_agent_neither_repeats_nor_loses_what_it_had_read(replay):
    before = len(replay.ctx.events())
    replay.source().scan()
    assert len(replay.ctx.events()) == before


def test_a_transcript_read_half_before_a_restart_and_half_after_counts_each_call_once(tmp_path):
    fixture = FIXTURES / VERSIONS[-1]
    whole = make_replay(fixture, tmp_path / "whole")
    whole.source().scan()
    want = sorted(call_tokens(e.data) + (e.data["ok"],) for e in whole.calls())
    halves = make_replay(fixture, tmp_path / "halves")
    texts = {p: p.read_text() for p in halves.transcripts}
    for path, text in texts.items():
        lines = text.splitlines(keepends=True)
        path.write_text("".join(lines[: len(lines) // 2]))
    halves.source().scan()
    for path, text in texts.items():
        path.write_text(text)
    halves.source().scan()  # a new source on the same journal: the agent restarted
    assert sorted(call_tokens(e.data) + (e.data["ok"],) for e in halves.calls()) == want


@pytest.mark.parametrize("version", VERSIONS)
def test_the_recorded_formats_hold_nothing_the_radar_does_not_know(version: str, tmp_path: Path) -> None:
    rep = make_replay(FIXTURES / version, tmp_path)
    source = rep.source()
    source.scan()
    assert source.format_radar() == {"unknown_record_type": 0, "unknown_field": 0, "skipped_line": 0, "unreadable_file": 0}
    assert rep.ctx.events("agent.notice") == []
    rep.ctx.close()


@pytest.fixture
def stand_in() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand in for the recorded client, whose pid is long gone."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait(timeout=30)


REGISTRY_VERSIONS = [v for v in VERSIONS if (FIXTURES / v / "registry.jsonl").exists()]


@pytest.mark.parametrize("version", REGISTRY_VERSIONS)
def test_the_recorded_registry_drives_running_idle_and_waiting_then_the_session_ends(
        version: str, tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    rep = make_replay(FIXTURES / version, tmp_path)
    sid = rep.sessions["interactive"]
    entries = [json.loads(line)["entry"] for line in (FIXTURES / version / "registry.jsonl").read_text().splitlines()]
    folder = rep.root / "sessions"
    folder.mkdir()
    path = folder / f"{stand_in.pid}.json"
    started_ms = int(psutil.Process(stand_in.pid).create_time() * 1000)
    source = rep.source()
    for entry in entries:
        path.write_text(json.dumps({**entry, "pid": stand_in.pid, "startedAt": started_ms}))
        source.scan()
    path.unlink()
    source.scan()
    mapped = {"busy": "running", "idle": "idle", "waiting": "waiting"}
    expected: list[str] = []
    for entry in entries:
        state = mapped.get(entry.get("status", ""))
        if state is not None and (not expected or expected[-1] != state):
            expected.append(state)
    states = [e.data["state"] for e in rep.ctx.events("session.state") if e.session == sid]
    assert "waiting" in expected and states == expected
    assert [e.data["reason"] for e in rep.ctx.events("session.ended") if e.session == sid] == ["exited"]
    rep.ctx.close()


@pytest.mark.parametrize("version", REGISTRY_VERSIONS)
def test_a_renamed_session_is_announced_again_with_its_new_title(version: str, tmp_path: Path) -> None:
    rep = make_replay(FIXTURES / version, tmp_path)
    rep.source().scan()
    sid = rep.sessions["interactive"]
    announced = [e.data for e in rep.ctx.events("session.started") if e.session == sid]
    assert announced[-1]["title"] == "billing retries" and announced[-1]["model"] == "claude-sonnet-4-5-20250929"
    rep.ctx.close()
