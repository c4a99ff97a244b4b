"""The opencode source on real opencode 1.18.33 output (scripts/record/opencode.sh), checked against
the fake model server's log of every answer it gave (tests/fake_openai.py).

The fixture holds one `opencode serve` run: its `/global/event` stream until the server was killed,
its REST answers after a restart, opencode.db with every session (also a standalone `opencode run`),
and the server log. Title requests (model gpt-5-mini) are not recorded anywhere by opencode, so
they are not calls heady can see; every other answer is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from collections import Counter
from pathlib import Path

import pytest

from heady_agent.clock import ManualClock
from heady_agent.protocol import LlmCallData
from heady_agent.sources.opencode import OpencodeSource, parse_sse, read_db
from heady_tui.config import CostConfig
from heady_tui.engine.cost import PricingTable
from sourcekit import SqliteSourceContext
from test_source_opencode import FakeOpencode, source_config, until

FIXTURE = Path(__file__).parent / "fixtures" / "real" / "opencode-1.18.33"
META = json.loads((FIXTURE / "meta.json").read_text())
TITLE_MODEL = "gpt-5-mini"  # the recording's small_model: opencode's title requests


@dataclass(frozen=True)
class Answer:
    """One answer of a fake server, in opencode's token split."""

    model: str
    ok: bool
    server_ms: float
    key: tuple[int, int, int]  # (uncached input, cache read, output with reasoning)
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    def price(self, table: PricingTable) -> float:
        return table.cost(LlmCallData(
            provider="fake", model=self.model, input_tokens=self.key[0], cache_read_tokens=self.key[1],
            output_tokens=self.key[2], cache_creation_tokens=self.cache_write_5m + self.cache_write_1h,
            cache_creation_5m_tokens=self.cache_write_5m, cache_creation_1h_tokens=self.cache_write_1h))[0]


def openai_answer(a: dict) -> Answer:
    u = a["usage"] or {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}
    return Answer(a["model"], a["ok"], a["server_ms"],
                  (u["input_tokens"] - u["cached_tokens"], u["cached_tokens"], u["output_tokens"]))


def anthropic_answer(a: dict) -> Answer:
    u = a["usage"]
    split = u["cache_creation"]
    return Answer(a["model"], a["ok"], a["server_ms"],
                  (u["input_tokens"], u["cache_read_input_tokens"], u["output_tokens"]),
                  split["ephemeral_5m_input_tokens"], split["ephemeral_1h_input_tokens"])


def log(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines()]


OPENAI_LOG = log("server-log.jsonl")
SESSION_ANSWERS = [openai_answer(a) for a in OPENAI_LOG if a["model"] != TITLE_MODEL]
ANTHROPIC_ANSWERS = [anthropic_answer(a) for a in log("anthropic-server-log.jsonl")]
OK_ANSWERS = {a.key: a for a in SESSION_ANSWERS + ANTHROPIC_ANSWERS if a.ok}
CUT_OFF = [a for a in SESSION_ANSWERS if a.ok][-1]  # the last answer: its tool was running when the server died


def call_key(call: dict) -> tuple[int, int, int]:
    return call["input_tokens"], call["cache_read_tokens"], call["output_tokens"]


def replay_stream(source: OpencodeSource) -> None:
    buffer: list[str] = []
    for line in (FIXTURE / "global-event.sse").read_text().splitlines():
        data = parse_sse(buffer, line)
        if data is not None:
            source.handle_text(data)


def replay_db(source: OpencodeSource, tmp_path: Path, since: float = 0.0) -> None:
    db = tmp_path / "opencode.db"
    if not db.exists():
        shutil.copy(FIXTURE / "opencode.db", db)
    rows = read_db(db, since)
    assert rows is not None
    source.apply_db(rows)


RECORDED_AT = OPENAI_LOG[-1]["received_at"]  # the clock reads the recording's time: nothing is old yet


@pytest.fixture
def ctx(tmp_path: Path) -> SqliteSourceContext:
    return SqliteSourceContext(tmp_path / "journal.db", source_config(tmp_path, "http://127.0.0.1:9"),
                               ManualClock(start=RECORDED_AT))


@pytest.fixture
def source(ctx: SqliteSourceContext) -> OpencodeSource:
    return OpencodeSource(ctx)


def calls(ctx: SqliteSourceContext, session: str | None = None) -> list[dict]:
    return [e.data for e in ctx.events("llm.call") if session is None or e.session == session]


def test_the_stream_counts_each_successful_answer_once_with_its_model_and_every_token_kind(source, ctx):
    replay_stream(source)
    ok = [c for c in calls(ctx) if c["ok"]]
    matched = Counter(call_key(c) for c in ok)
    assert all(n == 1 for n in matched.values())
    for call in ok:
        answer = OK_ANSWERS[call_key(call)]
        assert call["model"] == answer.model
        assert call["cache_creation_tokens"] == answer.cache_write_5m + answer.cache_write_1h
    # Not in this server's stream: the standalone `opencode run` (its own server) and the answer
    # whose tool was running when the server was killed (opencode never completed that message).
    assert len(OK_ANSWERS) - len(ok) == 2


def test_each_request_that_never_succeeded_is_one_failed_call_and_a_retried_429_is_none(source, ctx):
    replay_stream(source)
    failed = {e.session: e.data["error"] for e in ctx.events("llm.call") if not e.data["ok"]}
    assert failed == {
        META["bad_request"]: "APIError 400",
        META["fail_500"]: "gave up after 4 failed attempts: injected 500",
        META["broken"]: "stream ended before the response completed",
    }
    assert [c["ok"] for c in calls(ctx, META["retry_429"])] == [True, True]


def test_latency_is_never_shorter_than_the_servers_time_and_leaves_out_tool_time(source, ctx):
    replay_stream(source)
    for call in calls(ctx):
        if call["ok"]:
            assert call["latency_ms"] >= OK_ANSWERS[call_key(call)].server_ms
    rows = read_db(FIXTURE / "opencode.db", 0.0)
    assert rows is not None
    [(message, parts)] = [(m, p) for m, p in rows.messages if m.get("finish") == "tool-calls"]
    [tool] = [part["state"]["time"] for part, _ in parts if part["type"] == "tool"]
    [call] = [c for c in calls(ctx, META["tool"]) if c["output_tokens"] == message["tokens"]["output"] + message["tokens"]["reasoning"]]
    span = message["time"]["completed"] - message["time"]["created"]
    assert call["latency_ms"] <= span - (tool["end"] - tool["start"])


def test_a_manual_compaction_is_reported_manual_in_order(source, ctx):
    replay_stream(source)
    states = [(e.data["state"], e.data["reason"]) for e in ctx.events("session.state") if e.session == META["clean"]]
    assert states == [("running", "opencode busy"), ("idle", "opencode idle"), ("running", "opencode busy"),
                      ("compacted", "manual"), ("running", "opencode busy"), ("idle", "opencode idle")]


def test_an_unprompted_session_is_idle_and_no_session_starts_with_the_placeholder_title(source, ctx):
    replay_stream(source)
    assert {s.id: s.state for s in source.sessions()}[META["unprompted"]] == "idle"
    assert all(not (e.data["title"] or "").startswith("New session") for e in ctx.events("session.started"))
    started = [e.data for e in ctx.events("session.started") if e.session == META["clean"]]
    # Announced untitled, then again with the real title and the model once opencode has them.
    assert (started[0]["title"], started[-1]["title"], started[-1]["model"]) == (None, "Answer 1.", "gpt-5")


def test_the_db_after_the_stream_adds_only_what_the_stream_could_not_see(source, ctx, tmp_path):
    replay_stream(source)
    seen = len(calls(ctx))
    replay_db(source, tmp_path)
    added = ctx.events("llm.call")[seen:]
    assert [(e.session, e.data["ok"]) for e in added] == [(META["standalone_run"], True)]
    replay_db(source, tmp_path)
    assert len(calls(ctx)) == seen + 1


def test_a_restarted_agent_reading_the_db_again_counts_nothing_twice(source, ctx, tmp_path):
    replay_stream(source)
    replay_db(source, tmp_path)
    counted = len(calls(ctx))
    restarted = OpencodeSource(ctx)  # the same journal: the counted message ids are persisted
    replay_db(restarted, tmp_path)
    assert len(calls(ctx)) == counted


def test_the_db_alone_on_a_cold_start_counts_every_recorded_answer_once(source, ctx, tmp_path):
    replay_db(source, tmp_path)
    ok = [c for c in calls(ctx) if c["ok"]]
    assert sorted(call_key(c) for c in ok) == sorted(k for k in OK_ANSWERS if k != CUT_OFF.key)
    for call in ok:
        assert call["latency_ms"] >= OK_ANSWERS[call_key(call)].server_ms
    failed = sorted(e.data["error"] for e in ctx.events("llm.call") if not e.data["ok"])
    # Without the live stream's retry statuses, the 5xx opencode was stopped retrying looks like a
    # turn the user stopped: not counted (see docs/sources.md).
    assert failed == ["APIError 400", "stream ended before the response completed"]


def test_a_cold_start_long_after_the_sessions_counts_their_calls_and_lists_none_as_live(ctx, tmp_path):
    ctx.clock = ManualClock(start=RECORDED_AT + 3600)
    source = OpencodeSource(ctx)
    replay_db(source, tmp_path)
    assert len([c for c in calls(ctx) if c["ok"]]) == len(OK_ANSWERS) - 1
    assert source.sessions() == []
    assert {e.data["reason"] for e in ctx.events("session.ended")} == {"inactive"}


def test_the_cost_is_opencodes_and_equals_the_servers_answers_priced_with_our_table_to_the_cent(source, ctx, tmp_path):
    replay_stream(source)
    replay_db(source, tmp_path)
    table = PricingTable.load(CostConfig())
    ok = [c for c in calls(ctx) if c["ok"] and c["provider"] == "fake"]
    reported = sum(c["cost_usd"] for c in ok)
    priced = sum(table.cost(LlmCallData(**{**c, "cost_usd": None}))[0] for c in ok)
    served = sum(OK_ANSWERS[call_key(c)].price(table) for c in ok)
    assert round(reported, 2) == round(priced, 2) == round(served, 2)


def test_opencode_prices_one_hour_cache_writes_at_the_five_minute_rate_and_keeps_no_split(source, ctx, tmp_path):
    replay_db(source, tmp_path)
    table = PricingTable.load(CostConfig())
    anthropic = calls(ctx, META["anthropic"])
    assert len(anthropic) == len(ANTHROPIC_ANSWERS) and all(c["provider"] == "anthropic" for c in anthropic)
    for call in anthropic:
        answer = OK_ANSWERS[call_key(call)]
        # opencode records the cache-write total only: no split is sent, and the table prices it
        # all at the 5-minute rate, as opencode does.
        assert (call.get("cache_creation_5m_tokens"), call.get("cache_creation_1h_tokens")) == (None, None)
        assert round(call["cost_usd"], 6) == round(table.cost(LlmCallData(**{**call, "cost_usd": None}))[0], 6)
        price = table.match(answer.model).price
        assert price is not None
        missing = answer.cache_write_1h * (price.cache_write_1h - price.cache_write_5m) / 1e6
        assert round(answer.price(table) - call["cost_usd"], 6) == round(missing, 6)
    assert any(OK_ANSWERS[call_key(c)].cache_write_1h for c in anthropic)  # the recording has 1-hour writes


async def test_after_the_server_restarts_the_cut_off_session_is_idle_and_the_backfill_adds_nothing(
        ctx, tmp_path, monkeypatch):
    sessions = json.loads((FIXTURE / "sessions.json").read_text())
    server = FakeOpencode(password="recorded")
    server.sessions = sessions
    server.messages = {s["id"]: json.loads((FIXTURE / "messages" / f"{s['id']}.json").read_text()) for s in sessions}
    await server.start()
    monkeypatch.setenv("HEADY_TEST_OPENCODE_PASSWORD", "recorded")
    ctx.config = source_config(tmp_path, server.url, password_env="HEADY_TEST_OPENCODE_PASSWORD")
    source = OpencodeSource(ctx)
    replay_stream(source)
    assert {s.id: s.state for s in source.sessions()}[META["cut_off"]] == "running"
    seen = len(calls(ctx))
    await source.start()
    try:
        await until(lambda: source.connected, "connected to the restarted server")
        assert {s.id: s.state for s in source.sessions()}[META["cut_off"]] == "idle"
        added = ctx.events("llm.call")[seen:]
        assert [(e.session, e.data["ok"]) for e in added] == [(META["standalone_run"], True)]
    finally:
        await source.stop()
        await server.stop()
