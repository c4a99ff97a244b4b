"""Real Claude Code and Codex telemetry, replayed through the OTLP source beside the transcripts
the same sessions wrote (tests/fixtures/real/otlp-*, recorded by scripts/record/otlp.sh).

The telemetry alone gives the calls the transcripts give; both together count each call once,
whichever arrives first.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig, CodexConfig
from heady_agent.otlp import Batch, TelemetryRecord
from heady_agent.sources.base import SessionSource
from heady_agent.sources.claude_code import ClaudeCodeSource
from heady_agent.sources.codex import CodexSource
from heady_agent.sources.jsonl import JsonlSource
from heady_agent.sources.otlp import FAILED_TURN_AFTER_S, INACTIVE_AFTER_S, METRICS_SETTLE_S, OtlpSource
from otlpkit import FIXTURES, sent_requests
from sourcekit import Emitted, SqliteSourceContext

CLAUDE = FIXTURES / "otlp-claude-code-2.1.332"
CODEX = FIXTURES / "otlp-codex-0.171.0"
RECORDED_AT = 1_796_469_900.0  # after both recordings (2026-12-05 11:25 UTC)


@dataclass
class Node:
    """One agent's sources on one journal: a transcript source, the OTLP source, or both."""

    ctx: SqliteSourceContext
    clock: ManualClock
    transcripts: JsonlSource[Any] | None
    telemetry: OtlpSource | None

    def read_transcripts(self) -> None:
        assert self.transcripts is not None
        self.transcripts.scan()

    def receive_telemetry(self, fixture: Path, paths: tuple[str, ...] = ("/v1/logs", "/v1/metrics")) -> None:
        assert self.telemetry is not None
        for request in sent_requests(fixture):
            if request.path in paths:
                asyncio.run(self.telemetry.receive(request.decoded()))

    def quiet(self) -> None:
        """Time passes until every session is over (a Codex turn that failed last is settled then)."""
        self.clock.advance(INACTIVE_AFTER_S + 1)
        if self.telemetry is not None:
            self.telemetry.sweep()

    def calls(self) -> list[Emitted]:
        return self.ctx.events("llm.call")


def make_node(tmp: Path, fixture: Path, *, transcripts: bool, telemetry: bool) -> Node:
    clock = ManualClock(RECORDED_AT)
    if fixture == CLAUDE:
        root = tmp / "claude"
        for packed in sorted(fixture.glob("claude/**/*.gz")):
            target = root / packed.relative_to(fixture / "claude").with_suffix("")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(packed.read_bytes()))
        config = AgentConfig(claude_code=ClaudeCodeConfig(roots=[str(root)]), otlp={"listen": "127.0.0.1:0"})
    else:
        root = tmp / "codex"
        shutil.copytree(fixture / "codex-home", root)
        config = AgentConfig(codex=CodexConfig(roots=[str(root)]), otlp={"listen": "127.0.0.1:0"})
    ctx = SqliteSourceContext(tmp / "journal.db", config, clock)
    transcript_source: JsonlSource[Any] | None = None
    if transcripts:
        transcript_source = ClaudeCodeSource(ctx) if fixture == CLAUDE else CodexSource(ctx)
    telemetry_source = OtlpSource(ctx) if telemetry else None
    if telemetry_source is not None and transcript_source is not None:
        telemetry_source.others = [transcript_source]
    return Node(ctx, clock, transcript_source, telemetry_source)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    made: list[Node] = []

    def node(fixture: Path, **routes: bool) -> Node:
        made.append(make_node(tmp_path / str(len(made)), fixture, **routes))
        return made[-1]

    yield node
    for n in made:
        n.ctx.close()


def tokens(data: dict[str, Any]) -> tuple[int, int, int, int]:
    return (data.get("input_tokens", 0), data.get("output_tokens", 0), data.get("cache_creation_tokens", 0),
            data.get("cache_read_tokens", 0))


def by_session(calls: list[Emitted]) -> dict[str, Counter[tuple[Any, ...]]]:
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    for call in calls:
        found.setdefault(call.session or "", Counter())[(call.data["ok"], call.data["model"], tokens(call.data))] += 1
    return found


def summed(calls: list[Emitted], session: str) -> tuple[int, ...]:
    total = [0, 0, 0, 0]
    for call in calls:
        if call.session == session:
            total = [t + c for t, c in zip(total, tokens(call.data))]
    return tuple(total)


CLAUDE_SESSIONS = json.loads((CLAUDE / "sessions.json").read_text())
# Claude Code writes no response record for the requests a compaction makes: its transcript's
# cost-state sums them into one call, its telemetry reports each (docs/sources.md "otlp").
SUMMED_IN_TRANSCRIPT = {CLAUDE_SESSIONS["compact"]}
# Its usage metrics hold Claude Code's own tally of a cut-off stream, as its cost-state does.
CUT_OFF = {CLAUDE_SESSIONS["broken_stream"]}


def test_claude_code_telemetry_alone_gives_the_calls_its_transcripts_give(nodes: Any) -> None:
    transcript = nodes(CLAUDE, transcripts=True, telemetry=False)
    transcript.read_transcripts()
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    telemetry.quiet()
    want, got = by_session(transcript.calls()), by_session(telemetry.calls())
    assert set(got) == set(want) == set(CLAUDE_SESSIONS.values())
    for session in want:
        if session in SUMMED_IN_TRANSCRIPT:
            assert summed(telemetry.calls(), session) == summed(transcript.calls(), session)
        else:
            assert got[session] == want[session], session


def test_a_response_whose_stream_was_cut_off_is_a_failed_call_with_its_partial_tokens(nodes: Any) -> None:
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    cut, retried = [c.data for c in telemetry.calls() if c.session == CLAUDE_SESSIONS["broken_stream"]]
    assert (cut["ok"], cut["error"], cut["output_tokens"]) == (False, "stream_cut_off", 1)
    assert retried["ok"]


def test_claude_code_compaction_requests_come_one_call_each_from_telemetry(nodes: Any) -> None:
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    answers = [json.loads(line) for line in (CLAUDE / "answers.jsonl").read_text().splitlines()]
    compact = CLAUDE_SESSIONS["compact"]
    answered = [a for a in answers if a["client"]["session"] == compact and a["ok"]]
    assert len([c for c in telemetry.calls() if c.session == compact]) == len(answered)


@pytest.mark.parametrize("first", ["transcripts", "telemetry"])
def test_claude_code_transcripts_and_telemetry_together_count_each_call_once(nodes: Any, first: str) -> None:
    alone = nodes(CLAUDE, transcripts=True, telemetry=False)
    alone.read_transcripts()
    both = nodes(CLAUDE, transcripts=True, telemetry=True)
    if first == "transcripts":
        both.read_transcripts()
        both.receive_telemetry(CLAUDE)
    else:
        both.receive_telemetry(CLAUDE)
        both.read_transcripts()
    for session in CLAUDE_SESSIONS.values():
        assert summed(both.calls(), session) == summed(alone.calls(), session), session
    assert Counter(c.session for c in both.calls() if c.session not in SUMMED_IN_TRANSCRIPT) == Counter(
        c.session for c in alone.calls() if c.session not in SUMMED_IN_TRANSCRIPT)


def test_a_session_both_routes_see_is_listed_once(nodes: Any) -> None:
    both = nodes(CLAUDE, transcripts=True, telemetry=True)
    both.receive_telemetry(CLAUDE)
    both.read_transcripts()
    sources: list[SessionSource] = [both.transcripts, both.telemetry]  # type: ignore[list-item]
    listed = [info.id for source in sources for info in source.sessions()]
    assert len(listed) == len(set(listed))


def test_claude_code_telemetry_sessions_are_announced_as_claude_code_with_their_model(nodes: Any) -> None:
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    started = {e.session: e.data for e in telemetry.ctx.events("session.started")}
    assert set(started) == set(CLAUDE_SESSIONS.values())
    assert {d["source"] for d in started.values()} == {"claude-code"}
    assert started[CLAUDE_SESSIONS["clean_json"]]["model"] == "claude-sonnet-4-5-20250929"


def test_claude_code_telemetry_compaction_is_a_compacted_state_then_running(nodes: Any) -> None:
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    compact = CLAUDE_SESSIONS["compact"]
    states = [(e.data["state"], e.data["reason"]) for e in telemetry.ctx.events("session.state") if e.session == compact]
    assert ("compacted", "manual") in states
    assert states[states.index(("compacted", "manual")) + 1][0] == "running"


def test_claude_code_requests_that_never_succeeded_are_one_failed_call(nodes: Any) -> None:
    telemetry = nodes(CLAUDE, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CLAUDE)
    [failed] = [c for c in telemetry.calls() if c.session == CLAUDE_SESSIONS["always_500"]]
    assert (failed.data["ok"], failed.data["error"], failed.data["cost_usd"]) == (False, "http_500", 0.0)


CODEX_ANSWERS = [json.loads(line) for line in (CODEX / "server.jsonl").read_text().splitlines()]


def test_codex_telemetry_alone_gives_the_calls_its_rollouts_give(nodes: Any) -> None:
    rollouts = nodes(CODEX, transcripts=True, telemetry=False)
    rollouts.read_transcripts()
    telemetry = nodes(CODEX, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CODEX)
    telemetry.quiet()
    assert by_session(telemetry.calls()) == by_session(rollouts.calls())
    assert len([c for c in telemetry.calls() if c.data["ok"]]) == len([a for a in CODEX_ANSWERS if a["ok"]])


def test_a_codex_turn_that_failed_last_is_one_failed_call_once_the_session_is_quiet(nodes: Any) -> None:
    telemetry = nodes(CODEX, transcripts=False, telemetry=True)
    telemetry.receive_telemetry(CODEX)
    failing = [r for request in sent_requests(CODEX) for r in request.decoded().records
               if r.name == "codex.api_request" and r.attributes.get("http.response.status_code") == 500]
    session = failing[0].attributes["conversation.id"]
    last = max(r.ts or 0.0 for request in sent_requests(CODEX) for r in request.decoded().records
               if r.attributes.get("conversation.id") == session)
    telemetry.clock.advance(last + FAILED_TURN_AFTER_S - 1 - telemetry.clock.now())
    telemetry.telemetry.sweep()
    assert [c for c in telemetry.calls() if not c.data["ok"]] == []
    telemetry.clock.advance(2)
    telemetry.telemetry.sweep()
    [failed] = [c for c in telemetry.calls() if not c.data["ok"]]
    assert (failed.session, failed.data["error"]) == (session, "http_500")
    states = [e.data for e in telemetry.ctx.events("session.state") if e.session == session]
    assert states[-1] == {"state": "idle", "reason": "turn failed: http_500"}


@pytest.mark.parametrize("first", ["transcripts", "telemetry"])
def test_codex_rollouts_and_telemetry_together_count_each_call_once(nodes: Any, first: str) -> None:
    alone = nodes(CODEX, transcripts=True, telemetry=False)
    alone.read_transcripts()
    both = nodes(CODEX, transcripts=True, telemetry=True)
    if first == "transcripts":
        both.read_transcripts()
        both.receive_telemetry(CODEX)
    else:
        both.receive_telemetry(CODEX)
        both.read_transcripts()
    both.quiet()
    assert by_session(both.calls()) == by_session(alone.calls())


def test_telemetry_arriving_after_the_transcripts_announces_and_ends_no_session_again(nodes: Any) -> None:
    alone = nodes(CLAUDE, transcripts=True, telemetry=False)
    alone.read_transcripts()
    both = nodes(CLAUDE, transcripts=True, telemetry=True)
    both.read_transcripts()
    both.receive_telemetry(CLAUDE)
    both.quiet()
    for kind in ("session.started", "session.ended"):
        assert len(both.ctx.events(kind)) == len(alone.ctx.events(kind)), kind


@pytest.mark.parametrize("fixture", [CLAUDE, CODEX], ids=["claude-code", "codex"])
def test_telemetry_sent_again_counts_each_call_once(nodes: Any, fixture: Path) -> None:
    once = nodes(fixture, transcripts=False, telemetry=True)
    once.receive_telemetry(fixture)
    once.quiet()
    twice = nodes(fixture, transcripts=False, telemetry=True)
    twice.receive_telemetry(fixture)
    twice.receive_telemetry(fixture)  # a client that missed the answers sends every batch again
    twice.quiet()
    assert by_session(twice.calls()) == by_session(once.calls())


def test_a_restarted_agent_counts_telemetry_it_had_received_once(nodes: Any) -> None:
    node = nodes(CODEX, transcripts=True, telemetry=True)
    node.receive_telemetry(CODEX)
    restarted = OtlpSource(node.ctx)
    restarted.others = [CodexSource(node.ctx)]
    for request in sent_requests(CODEX):
        asyncio.run(restarted.receive(request.decoded()))
    node.telemetry = restarted
    node.transcripts = restarted.others[0]  # type: ignore[assignment]
    node.read_transcripts()
    node.quiet()
    alone = nodes(CODEX, transcripts=True, telemetry=False)
    alone.read_transcripts()
    assert by_session(node.calls()) == by_session(alone.calls())


def test_claude_code_exporting_only_metrics_is_counted_from_its_token_usage(nodes: Any) -> None:
    transcript = nodes(CLAUDE, transcripts=True, telemetry=False)
    transcript.read_transcripts()
    metrics = nodes(CLAUDE, transcripts=False, telemetry=True)
    metrics.receive_telemetry(CLAUDE, paths=("/v1/metrics",))
    assert metrics.calls() == []  # events may still come
    metrics.quiet()
    for session in CLAUDE_SESSIONS.values():
        if session in CUT_OFF:  # the metrics hold Claude Code's tally of the cut-off stream, as its cost-state does
            continue
        assert summed(metrics.calls(), session) == summed(transcript.calls(), session), session
    assert all(c.data["cost_usd"] > 0 for c in metrics.calls())


def test_usage_metrics_of_a_session_that_sends_events_are_not_counted(nodes: Any) -> None:
    events = nodes(CLAUDE, transcripts=False, telemetry=True)
    events.receive_telemetry(CLAUDE, paths=("/v1/logs",))
    events.quiet()
    both = nodes(CLAUDE, transcripts=False, telemetry=True)
    both.receive_telemetry(CLAUDE, paths=("/v1/metrics",))  # the metrics first, the events within METRICS_SETTLE_S
    both.receive_telemetry(CLAUDE, paths=("/v1/logs",))
    both.quiet()
    assert by_session(both.calls()) == by_session(events.calls())


def test_usage_metrics_of_a_session_a_transcript_reports_are_not_counted(nodes: Any) -> None:
    alone = nodes(CLAUDE, transcripts=True, telemetry=False)
    alone.read_transcripts()
    both = nodes(CLAUDE, transcripts=True, telemetry=True)
    both.receive_telemetry(CLAUDE, paths=("/v1/metrics",))
    both.read_transcripts()
    both.clock.advance(METRICS_SETTLE_S + 1)
    both.quiet()
    assert by_session(both.calls()) == by_session(alone.calls())


def test_cumulative_usage_metrics_count_what_each_total_grew_by(nodes: Any) -> None:
    node = nodes(CLAUDE, transcripts=False, telemetry=True)
    assert node.telemetry is not None

    def total(value: float) -> Batch:
        attrs = {"session.id": "cumulative-1", "model": "claude-sonnet-4-5", "type": "input"}
        return Batch([TelemetryRecord("metrics", "claude-code", "claude_code.token.usage", RECORDED_AT, attrs, value, True)], 0)

    for value in (100.0, 150.0, 150.0):
        asyncio.run(node.telemetry.receive(total(value)))
    node.quiet()
    [call] = node.calls()
    assert call.data["input_tokens"] == 150
