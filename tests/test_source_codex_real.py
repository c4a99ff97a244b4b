"""Real Codex CLI output (tests/fixtures/real/codex-*/, recorded by scripts/record/codex.sh against
tests/fake_openai.py) read by the real codex source and checked against the server's log of what it
answered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, CodexConfig
from heady_agent.protocol import LlmCallData
from heady_agent.sources.codex import CodexSource
from heady_tui.config import CostConfig
from heady_tui.engine.cost import PER_TOKEN, PricingTable
from sourcekit import Emitted, SqliteSourceContext

FIXTURE = Path(__file__).parent / "fixtures" / "real" / "codex-0.171.0"
ROLLOUTS = sorted((FIXTURE / "codex-home" / "sessions").rglob("rollout-*.jsonl"))
ROLLOUT_IDS = {r.name[-len(".jsonl") - 36 : -len(".jsonl")] for r in ROLLOUTS}
# Every answer, in the order they completed; those to a thread with a rollout are the ones Codex
# logs (the TUI's thread-title request runs in a thread that writes none).
ALL_ANSWERS = [json.loads(line) for line in (FIXTURE / "server.jsonl").read_text().splitlines()]
ANSWERS = [a for a in ALL_ANSWERS if a["client"]["x-client-request-id"] in ROLLOUT_IDS]
OK_ANSWERS = [a for a in ANSWERS if a["ok"]]


def failed_runs() -> list[list[dict]]:
    """Runs of failed answers to one client (Codex names its session) that no answer made good.

    A run the client's next answer completes was retried to success; in these recordings a turn
    that failed is the session's last, so every other run was given up.
    """
    runs: dict[str, list[dict]] = {}
    for answer in ANSWERS:
        client = answer["client"]["x-client-request-id"]
        if answer["ok"]:
            runs.pop(client, None)
        else:
            runs.setdefault(client, []).append(answer)
    return sorted(runs.values(), key=lambda run: run[0]["n"])


@dataclass
class Replay:
    home: Path
    ctx: SqliteSourceContext
    clock: ManualClock
    source: CodexSource

    def scan(self) -> None:
        self.source.scan()

    async def restart(self) -> None:
        """A new agent run on the same journal: the source starts (reading what is new) and stops."""
        self.source = CodexSource(self.ctx)
        await self.source.start()
        await self.source.stop()

    def calls(self, ok: bool | None = None) -> list[Emitted]:
        found = sorted(self.ctx.events("llm.call"), key=lambda e: e.ts)
        return [e for e in found if ok is None or e.data["ok"] is ok]


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replay]:
    home = tmp_path / "codex-home"
    clock = ManualClock(ALL_ANSWERS[-1]["received_at"] + 5)
    config = AgentConfig(sources=["codex"], codex=CodexConfig(roots=[str(home)], poll_interval_s=3600.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, clock)
    yield Replay(home, ctx, clock, CodexSource(ctx))
    ctx.close()


def copy_rollouts(home: Path) -> list[Path]:
    shutil.copytree(FIXTURE / "codex-home", home, dirs_exist_ok=True)
    return sorted((home / "sessions").rglob("rollout-*.jsonl"))


def token_tuple(call: dict) -> tuple[int, int, int]:
    return call["input_tokens"], call["cache_read_tokens"], call["output_tokens"]


def answer_tuple(answer: dict) -> tuple[int, int, int]:
    usage = answer["usage"]
    return usage["input_tokens"] - usage["cached_tokens"], usage["cached_tokens"], usage["output_tokens"]


def test_every_successful_response_is_one_ok_call_with_its_model_and_tokens(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    calls = replay.calls(ok=True)
    assert [token_tuple(c.data) for c in calls] == [answer_tuple(a) for a in OK_ANSWERS]
    assert [c.data["model"] for c in calls] == [a["model"] for a in OK_ANSWERS]


def test_every_request_that_never_succeeded_is_one_failed_call_with_its_status(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    runs = failed_runs()
    failed = replay.calls(ok=False)
    assert len(failed) == len(runs) == 3
    assert [c.data["error"] for c in failed] == [
        "http_429 response_too_many_failed_attempts",
        "internal_server_error",
        "internal_server_error",
    ]
    assert [r[-1]["status"] for r in runs] == [429, 500, 500]


@pytest.mark.parametrize("fault", ["broken", "429"])
def test_a_request_retried_to_success_is_one_ok_call(replay: Replay, fault: str) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    failed = next(a for a in ANSWERS if a["fault"] == fault)
    session = failed["client"]["x-client-request-id"]
    assert [a["ok"] for a in ANSWERS if a["client"]["x-client-request-id"] == session] == [False, True]
    calls = [c for c in replay.calls() if c.session == session]
    assert [c.data["ok"] for c in calls] == [True]


def test_latency_is_never_shorter_than_the_server_took(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    for call, answer in zip(replay.calls(ok=True), OK_ANSWERS, strict=True):
        assert call.data["latency_ms"] >= answer["server_ms"], answer["response_id"]
    for call, run in zip(replay.calls(ok=False), failed_runs(), strict=True):
        assert call.data["latency_ms"] >= sum(a["server_ms"] for a in run)


def test_cost_equals_the_server_answers_priced_with_our_table_to_the_cent(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    table = PricingTable.load(CostConfig())
    counted = sum(table.cost(LlmCallData.model_validate(c.data))[0] for c in replay.calls())
    expected = 0.0
    for answer in OK_ANSWERS:
        price = table.match(answer["model"]).price
        assert price is not None
        uncached, cached, output = answer_tuple(answer)
        expected += (uncached * price.input + cached * price.cache_read + output * price.output) * PER_TOKEN
    assert round(counted, 2) == round(expected, 2)
    assert counted == pytest.approx(expected, abs=1e-9)


def test_each_call_carries_the_rate_limits_its_response_reported(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    for call, answer in zip(replay.calls(ok=True), OK_ANSWERS, strict=True):
        limits = call.data["rate_limits"]
        assert limits["primary"]["used_percent"] == pytest.approx(1.5 * answer["n"])
        assert limits["primary"]["window_minutes"] == 300
        assert limits["secondary"]["used_percent"] == pytest.approx(0.25 * answer["n"])
        assert limits["secondary"]["window_minutes"] == 10080
        assert limits["secondary"]["resets_at"] > call.ts


def test_sessions_are_announced_with_their_model(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    first: dict[str, Emitted] = {}
    for event in replay.ctx.events("session.started"):
        first.setdefault(event.session or "", event)
    assert len(first) == len(ROLLOUTS)
    assert {e.data["model"] for e in first.values()} == {"gpt-5-codex"}


def test_a_model_named_after_the_announcement_is_announced_again(replay: Replay) -> None:
    rollout = copy_rollouts(replay.home)[0]
    lines = rollout.read_text().splitlines(keepends=True)
    context_at = next(i for i, line in enumerate(lines) if '"type":"turn_context"' in line.replace(" ", ""))
    rollout.write_text("".join(lines[:context_at]))
    session = rollout.name[-len(".jsonl") - 36 : -len(".jsonl")]
    source = replay.source
    source.scan()
    assert [s.model for s in source.sessions() if s.id == session] == [None]
    with open(rollout, "a") as fh:
        fh.write("".join(lines[context_at:]))
    source.scan()
    assert [s.model for s in source.sessions() if s.id == session] == ["gpt-5-codex"]
    announced = [e.data["model"] for e in replay.ctx.events("session.started") if e.session == session]
    assert announced == [None, "gpt-5-codex"]


def test_states_of_a_compacting_session_come_in_order(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    # the resumed session whose every turn compacts (the last one codex exec ran)
    session = [a for a in ANSWERS if a["client"]["user-agent"].startswith("codex_exec")][-1]["client"]["x-client-request-id"]
    replay.clock.advance(601)
    replay.scan()
    states = [(e.data["state"], e.data["reason"]) for e in replay.ctx.events("session.state") if e.session == session]
    assert states == [
        ("compacted", "auto"), ("running", "model call"), ("idle", "task complete"),  # compacted mid-turn
        ("running", "task started"), ("compacted", "auto"), ("running", "model call"), ("idle", "task complete"),
        ("running", "task started"), ("compacted", "auto"), ("idle", "turn failed: internal_server_error"),
    ]
    ended = [e for e in replay.ctx.events("session.ended") if e.session == session]
    assert [e.data["reason"] for e in ended] == ["inactive"]


async def test_what_was_written_while_the_agent_was_stopped_is_read_once_on_start(replay: Replay) -> None:
    rollouts = copy_rollouts(replay.home)
    rest = {}
    for rollout in rollouts:
        lines = rollout.read_text().splitlines(keepends=True)
        rollout.write_text("".join(lines[: len(lines) // 2]))
        rest[rollout] = "".join(lines[len(lines) // 2 :])
    await replay.restart()  # the agent reads the first half, then stops
    for rollout, text in rest.items():
        with open(rollout, "a") as fh:
            fh.write(text)
    await replay.restart()
    await replay.restart()
    assert [token_tuple(c.data) for c in replay.calls(ok=True)] == [answer_tuple(a) for a in OK_ANSWERS]
    assert len(replay.calls(ok=False)) == 3
    latest = {e.session: e.data for e in replay.ctx.events("session.started")}
    assert len(latest) == len(ROLLOUTS)
    assert {d["model"] for d in latest.values()} == {"gpt-5-codex"}


def test_a_rollout_archived_and_compressed_is_not_counted_again(replay: Replay) -> None:
    rollouts = copy_rollouts(replay.home)
    replay.scan()
    seq = replay.ctx.last_seq()
    archive = replay.home / "archived_sessions"
    archive.mkdir()
    for rollout in rollouts:
        (archive / (rollout.name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(rollout.read_bytes()))
        rollout.unlink()
    replay.scan()
    replay.scan()
    assert replay.ctx.events(since_seq=seq) == []


def test_compressed_archived_rollouts_are_read_on_a_cold_start(replay: Replay) -> None:
    archive = replay.home / "archived_sessions"
    archive.mkdir(parents=True)
    for rollout in ROLLOUTS:
        (archive / (rollout.name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(rollout.read_bytes()))
    replay.scan()
    replay.scan()
    assert [token_tuple(c.data) for c in replay.calls(ok=True)] == [answer_tuple(a) for a in OK_ANSWERS]
    assert len(replay.calls(ok=False)) == 3


def test_a_rollout_moved_to_the_archive_while_both_copies_exist_is_read_once(replay: Replay) -> None:
    rollouts = copy_rollouts(replay.home)
    archive = replay.home / "archived_sessions"
    archive.mkdir()
    for rollout in rollouts:
        shutil.copy(rollout, archive / rollout.name)
        (archive / (rollout.name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(rollout.read_bytes()))
    replay.scan()
    seq = replay.ctx.last_seq()
    for rollout in rollouts:
        rollout.unlink()
    replay.scan()
    assert len(replay.calls(ok=True)) == len(OK_ANSWERS)
    assert replay.ctx.events(since_seq=seq) == []


def test_rollouts_tailed_one_line_at_a_time_give_the_same_calls(replay: Replay) -> None:
    rollouts = copy_rollouts(replay.home)
    texts = {rollout: rollout.read_text().splitlines(keepends=True) for rollout in rollouts}
    for rollout in rollouts:
        rollout.write_text("")
    for rollout, lines in texts.items():
        for line in lines:
            with open(rollout, "a") as fh:
                fh.write(line)
            replay.scan()
    calls = replay.calls(ok=True)
    assert [token_tuple(c.data) for c in calls] == [answer_tuple(a) for a in OK_ANSWERS]
    assert {c.data["model"] for c in replay.calls()} == {"gpt-5-codex"}
    assert len(replay.calls(ok=False)) == 3
    for call, answer in zip(calls, OK_ANSWERS, strict=True):
        assert call.data["latency_ms"] >= answer["server_ms"]
        assert call.data["rate_limits"]["primary"]["used_percent"] == pytest.approx(1.5 * answer["n"])


def test_a_response_whose_token_count_never_came_is_counted_when_the_session_ends(replay: Replay) -> None:
    tool_call = next(a for a in ANSWERS if a["tool_call"])
    rollout = next(r for r in copy_rollouts(replay.home) if tool_call["client"]["x-client-request-id"] in r.name)
    lines = rollout.read_text().splitlines(keepends=True)
    response_at = next(i for i, line in enumerate(lines) if tool_call["response_id"] in line)
    rollout.write_text("".join(lines[: response_at + 1]))  # Codex killed while the tool ran
    for other in (replay.home / "sessions").rglob("rollout-*.jsonl"):
        if other != rollout:
            other.unlink()
    replay.scan()
    assert replay.calls() == []
    replay.clock.advance(601)
    replay.scan()
    [call] = replay.calls()
    assert token_tuple(call.data) == answer_tuple(tool_call)
    assert call.data["rate_limits"] is None
    assert call.data["latency_ms"] >= tool_call["server_ms"]


def test_only_the_tui_title_request_is_in_no_rollout() -> None:
    unlogged = [a for a in ALL_ANSWERS if a not in ANSWERS]
    assert [(a["ok"], a["client"]["user-agent"].split("/")[0]) for a in unlogged] == [(True, "codex-tui")]


def test_tui_turns_a_manual_compact_and_an_interrupted_tool_come_in_order(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    tui = next(a for a in ANSWERS if a["client"]["user-agent"].startswith("codex-tui"))["client"]["x-client-request-id"]
    states = [(e.data["state"], e.data["reason"]) for e in replay.ctx.events("session.state") if e.session == tui]
    assert states == [
        ("idle", "task complete"),
        ("running", "task started"), ("compacted", "manual"), ("idle", "task complete"),
        ("running", "task started"), ("idle", "task complete"),
        ("running", "task started"), ("idle", "turn aborted: interrupted"),  # Esc while `sleep` ran
    ]
    # The interrupted turn's one response (the tool call) is one ok call.
    interrupted = [a for a in OK_ANSWERS if a["client"]["x-client-request-id"] == tui][-1]
    assert interrupted["tool_call"] == "exec_command"
    assert token_tuple([c for c in replay.calls() if c.session == tui][-1].data) == answer_tuple(interrupted)


def test_each_session_sub_agents_included_has_the_calls_answered_to_it(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    sessions = {a["client"]["x-client-request-id"] for a in ANSWERS}
    assert len(sessions) == len(ROLLOUTS)  # the sub-agent answered under its own thread id
    for session in sessions:
        calls = [c for c in replay.calls(ok=True) if c.session == session]
        answers = [a for a in OK_ANSWERS if a["client"]["x-client-request-id"] == session]
        assert [token_tuple(c.data) for c in calls] == [answer_tuple(a) for a in answers], session


def test_the_thread_name_in_codex_session_index_is_the_session_title(replay: Replay) -> None:
    copy_rollouts(replay.home)
    replay.scan()
    [entry] = [json.loads(line) for line in (FIXTURE / "codex-home" / "session_index.jsonl").read_text().splitlines()]
    titles = {s.id: s.title for s in replay.source.sessions()}
    assert titles[entry["id"]] == entry["thread_name"] == "Say hello."
    assert {t for sid, t in titles.items() if sid != entry["id"]} == {None}  # no git branch, no name
