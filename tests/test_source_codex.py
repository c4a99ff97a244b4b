"""Codex CLI rollouts, as SOURCES.md describes them, read by the real source."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import zstandard

from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, CodexConfig
from heady_agent.protocol import Command
from heady_agent.sources.base import CommandError
from heady_agent.sources.codex import CodexSource, resolve_roots
from sourcekit import SqliteSourceContext

T0 = 1_790_000_000.0
SID = "0199a213-81c0-7800-8aa1-bbab2a035a53"
CWD = "/home/dev/src/search-indexer"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rec(t: float, kind: str, **payload) -> dict:
    return {"timestamp": iso(t), "type": kind, "payload": payload}


def meta(t: float) -> dict:
    return rec(t, "session_meta", id=SID, timestamp=iso(t), cwd=CWD, originator="codex_cli_rs", cli_version="0.46.0",
               git={"branch": "feat/bulk-reindex", "commit_hash": "1a2b3c"})


def context(t: float, model: str = "gpt-5-codex") -> dict:
    return rec(t, "turn_context", cwd=CWD, approval_policy="on-request", model=model, effort="medium")


def event(t: float, kind: str, **fields) -> dict:
    return rec(t, "event_msg", type=kind, **fields)


def usage(inp: int, cached: int, out: int, reasoning: int) -> dict:
    return {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
            "reasoning_output_tokens": reasoning, "total_tokens": inp + out}


def tokens(t: float, last: dict, total: dict) -> dict:
    return event(t, "token_count", info={"last_token_usage": last, "total_token_usage": total,
                                         "model_context_window": 272000}, rate_limits=None)


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


class CodexHome:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "codex"
        day = self.root / "sessions" / "2026" / "09" / "21"
        day.mkdir(parents=True)
        self.rollout = day / f"rollout-2026-09-21T10-00-00-{SID}.jsonl"
        self.clock = ManualClock(T0 + 60)
        config = AgentConfig(sources=["codex"], codex=CodexConfig(roots=[str(self.root)], poll_interval_s=0.05))
        self.ctx = SqliteSourceContext(tmp_path / "journal.db", config, self.clock)

    def source(self) -> CodexSource:
        return CodexSource(self.ctx)

    def append(self, text: str, path: Path | None = None) -> None:
        with open(path or self.rollout, "a", encoding="utf-8") as fh:
            fh.write(text)

    def calls(self) -> list[dict]:
        return [e.data for e in self.ctx.events("llm.call")]

    def states(self) -> list[tuple[str, str]]:
        return [(e.data["state"], e.data["reason"]) for e in self.ctx.events("session.state")]


@pytest.fixture
def home(tmp_path) -> CodexHome:
    return CodexHome(tmp_path)


FIRST = usage(12000, 9000, 800, 300)
SECOND = usage(15000, 14000, 400, 100)
TOTAL_1 = FIRST
TOTAL_2 = usage(27000, 23000, 1200, 400)


def a_turn() -> str:
    return lines(
        meta(T0), context(T0 + 0.1),
        event(T0 + 1, "task_started", model_context_window=272000),
        event(T0 + 1, "user_message", message="reindex everything"),
        tokens(T0 + 4, FIRST, TOTAL_1),
        tokens(T0 + 4.1, FIRST, TOTAL_1),
        rec(T0 + 5, "response_item", type="function_call_output", call_id="c1", output="ok"),
        tokens(T0 + 7, SECOND, TOTAL_2),
        event(T0 + 8, "task_complete", last_agent_message="done"),
    )


def test_each_new_token_count_is_one_call_mapped_to_uncached_cached_and_output(home):
    home.append(a_turn())
    home.source().scan()
    first, second = home.calls()
    assert (first["provider"], first["model"]) == ("openai", "gpt-5-codex")
    assert (first["input_tokens"], first["cache_read_tokens"], first["output_tokens"]) == (3000, 9000, 800)
    assert first["cache_creation_tokens"] == 0 and first["cost_usd"] is None
    assert (second["input_tokens"], second["cache_read_tokens"], second["output_tokens"]) == (1000, 14000, 400)
    assert first["latency_ms"] == pytest.approx(3000.0) and second["latency_ms"] == pytest.approx(2000.0)


def test_the_session_starts_with_cwd_project_model_and_branch(home):
    home.append(a_turn())
    source = home.source()
    source.scan()
    [started] = home.ctx.events("session.started")
    assert started.session == SID
    assert started.data == {"source": "codex", "project": "search-indexer", "cwd": CWD, "pid": None,
                            "model": "gpt-5-codex", "title": "feat/bulk-reindex"}
    assert [s.id for s in source.sessions()] == [SID]


def test_task_boundaries_set_running_and_idle(home):
    home.append(a_turn())
    home.source().scan()
    assert home.states() == [("idle", "task complete")]
    home.append(lines(event(T0 + 20, "task_started"), event(T0 + 21, "turn_aborted", reason="interrupted")))
    home.source().scan()
    assert home.states()[1:] == [("running", "task started"), ("idle", "turn aborted: interrupted")]


def test_compaction_is_a_compacted_state(home):
    home.append(a_turn() + lines(rec(T0 + 30, "compacted", message="summary of the work so far")))
    home.source().scan()
    assert home.states()[-1] == ("compacted", "auto")


def test_a_model_change_applies_to_later_calls(home):
    home.append(a_turn() + lines(context(T0 + 30, "gpt-5"), event(T0 + 31, "task_started"),
                                 tokens(T0 + 33, FIRST, usage(39000, 32000, 2000, 700))))
    home.source().scan()
    assert [c["model"] for c in home.calls()] == ["gpt-5-codex", "gpt-5-codex", "gpt-5"]


def test_token_counts_without_usage_are_ignored(home):
    home.append(lines(meta(T0), context(T0), event(T0 + 1, "token_count", info=None, rate_limits={"primary": {}})))
    home.source().scan()
    assert home.calls() == []


def test_garbage_is_skipped_and_a_partial_last_line_waits(home):
    *body, last = a_turn().splitlines(keepends=True)
    home.append("".join(body) + "not json at all\n" + last[:-10])
    source = home.source()
    source.scan()
    assert len(home.calls()) == 2 and source.skipped_lines == 1
    assert home.states() == []
    home.append(last[-10:])
    source.scan()
    assert home.states() == [("idle", "task complete")]
    assert source.skipped_lines == 1 and len(home.ctx.events("agent.notice")) == 1


def test_a_restarted_source_neither_repeats_nor_skips_a_call(home):
    text = a_turn()
    cut = text.index('"token_count"', text.index('"function_call_output"'))
    cut = text.rindex("\n", 0, cut) + 1
    home.append(text[:cut])
    home.source().scan()
    assert len(home.calls()) == 1
    home.append(text[cut:])
    home.source().scan()
    calls = home.calls()
    assert len(calls) == 2 and calls[1]["latency_ms"] == pytest.approx(2000.0)


def test_an_archived_rollout_is_not_counted_again(home):
    home.append(a_turn())
    home.source().scan()
    archive = home.root / "archived_sessions"
    archive.mkdir()
    home.rollout.rename(archive / home.rollout.name)
    home.source().scan()
    assert len(home.calls()) == 2 and len(home.ctx.events("session.started")) == 1


def test_a_quiet_session_ends(home):
    home.append(a_turn())
    source = home.source()
    source.scan()
    home.clock.advance(600)
    source.scan()
    [ended] = home.ctx.events("session.ended")
    assert ended.data == {"exit_code": None, "reason": "inactive"}
    assert source.sessions() == []


def test_codex_home_replaces_the_configured_roots(tmp_path):
    assert resolve_roots([str(tmp_path / "x")], {"CODEX_HOME": str(tmp_path)}) == [tmp_path]
    assert resolve_roots([str(tmp_path / "x")], {}) == [tmp_path / "x"]


@pytest.mark.parametrize("action,args", [("session.restart", {}), ("session.prompt", {"text": "continue"})])
async def test_restart_and_prompt_are_not_allowed_on_watched_codex_sessions(home, action, args):
    home.append(a_turn())
    source = home.source()
    source.scan()
    with pytest.raises(CommandError) as err:
        await source.command(Command(id="c", action=action, target=SID, args=args))
    assert err.value.code == "not_allowed"
    with pytest.raises(CommandError) as err:
        await source.command(Command(id="c", action=action, target="nope", args=args))
    assert err.value.code == "unknown_session"


async def test_lines_appended_while_the_source_runs_are_picked_up(home):
    source = home.source()
    await source.start()
    try:
        home.append(a_turn())
        for _ in range(600):
            if len(home.calls()) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(home.calls()) == 2
    finally:
        await source.stop()


def test_an_unknown_record_type_is_counted_and_noticed_once(home):
    home.append(a_turn() + lines(rec(T0 + 9, "turn_summary\x1b[31m", text="new in a later Codex")))
    source = home.source()
    source.scan()
    home.append(lines(rec(T0 + 10, "turn_summary\x1b[31m", text="again")))
    source.scan()
    assert source.format_radar()["unknown_record_type"] == 2
    [notice] = [e.data["message"] for e in home.ctx.events("agent.notice")]
    assert notice.startswith("codex: new record type 'turn_summary") and "\x1b" not in notice


def test_an_unknown_usage_field_is_counted(home):
    usage_fields = {**FIRST, "cache_write_input_tokens": 0, "audio_input_tokens": 5}
    home.append(lines(meta(T0), context(T0 + 0.1), event(T0 + 1, "task_started"),
                      rec(T0 + 2, "token_usage_record", response_id="resp_1", usage=usage_fields)))
    source = home.source()
    source.scan()
    assert source.format_radar()["unknown_field"] == 1
    assert [e.data["message"] for e in home.ctx.events("agent.notice")] == [
        f"codex: new field 'usage.audio_input_tokens' ({home.rollout.name}); its data may be missed"
    ]


def test_a_compressed_rollout_that_is_not_zstd_is_counted_once_and_skipped(home):
    archive = home.root / "archived_sessions"
    archive.mkdir()
    (archive / (home.rollout.name + ".zst")).write_bytes(b"not zstd at all\n")
    source = home.source()
    source.scan()
    source.scan()
    assert source.format_radar()["unreadable_file"] == 1
    [notice] = [e.data["message"] for e in home.ctx.events("agent.notice")]
    assert notice.startswith(f"codex: cannot read '{home.rollout.name}.zst' (zstd: ")
    assert home.ctx.events("session.started") == []


def test_a_read_position_kept_by_path_is_taken_over_by_the_rollout_id(home):
    home.append(a_turn())
    position = {"offset": home.rollout.stat().st_size, "inode": home.rollout.stat().st_ino,
                "recent": [], "noticed": False, "extra": {"session": SID}}
    home.ctx.set_state(f"cx.file:{home.rollout}", json.dumps(position))  # what an earlier agent kept
    home.source().scan()
    assert home.ctx.events() == []


def test_rate_limits_of_an_older_codex_are_carried_with_reset_times_and_bad_windows_dropped(home):
    limits = {"primary": {"used_percent": 42.0, "window_minutes": 300, "resets_in_seconds": 600},
              "secondary": {"used_percent": 250.0, "window_minutes": 10080, "resets_in_seconds": 9000}}
    count = event(T0 + 4, "token_count", info={"last_token_usage": FIRST, "total_token_usage": TOTAL_1},
                  rate_limits=limits)
    home.append(lines(meta(T0), context(T0 + 0.1), event(T0 + 1, "task_started"), count))
    home.source().scan()
    [call] = home.calls()
    assert call["rate_limits"] == {"primary": {"used_percent": 42.0, "window_minutes": 300, "resets_at": T0 + 604}}


def test_a_compressed_rollout_already_read_is_not_decompressed_again_while_unchanged(home):
    archive = home.root / "archived_sessions"
    archive.mkdir()
    packed = archive / (home.rollout.name + ".zst")
    packed.write_bytes(zstandard.ZstdCompressor().compress(a_turn().encode()))
    source = home.source()
    source.scan()
    with open(packed, "r+b") as fh:  # same inode and size, no longer zstd: only a decompression would see it
        fh.write(b"\0" * packed.stat().st_size)
    source.scan()
    assert len(home.calls()) == 2
    assert source.format_radar()["unreadable_file"] == 0


def failed_turn(t: float, info) -> str:
    return lines(meta(T0), context(T0 + 0.1), event(T0 + 1, "task_started", turn_id="turn-1"),
                 event(T0 + 1, "user_message", message="go"),
                 event(t, "task_complete", turn_id="turn-1", last_agent_message=None,
                       error={"message": "it failed", "codex_error_info": info}))


def test_a_turn_whose_model_request_failed_is_one_failed_call_and_an_idle_session(home):
    home.append(failed_turn(T0 + 3, {"response_stream_disconnected": {"http_status_code": 502}}))
    home.source().scan()
    [call] = home.calls()
    assert (call["ok"], call["error"], call["model"]) == (False, "http_502 response_stream_disconnected", "gpt-5-codex")
    assert call["latency_ms"] == pytest.approx(2000.0)
    assert home.states() == [("idle", "turn failed: http_502 response_stream_disconnected")]


def test_a_turn_that_failed_without_a_model_request_is_no_call(home):
    home.append(failed_turn(T0 + 3, "sandbox_error"))
    home.source().scan()
    assert home.calls() == []
    assert home.states() == [("idle", "turn failed: sandbox_error")]


def test_an_unknown_turn_error_kind_is_a_failed_call_and_on_the_radar(home):
    home.append(failed_turn(T0 + 3, "quota_melted"))
    source = home.source()
    source.scan()
    assert [c["error"] for c in home.calls()] == ["quota_melted"]
    assert source.format_radar()["unknown_record_type"] == 1


def test_a_thread_name_is_the_title_cleaned_and_bounded(home):
    home.append(a_turn())
    source = home.source()
    source.scan()
    name = "\x1b[2Jfix the\tindexer " + "x" * 300
    (home.root / "session_index.jsonl").write_text(json.dumps({"id": SID, "thread_name": name}) + "\n")
    source.scan()
    [session] = source.sessions()
    assert session.title == ("[2Jfix theindexer " + "x" * 300)[:200]


def test_a_compressed_rollout_read_in_a_poll_that_failed_is_read_again(home, monkeypatch):
    archive = home.root / "archived_sessions"
    archive.mkdir()
    (archive / (home.rollout.name + ".zst")).write_bytes(zstandard.ZstdCompressor().compress(a_turn().encode()))
    source = home.source()

    def fail(*args, **kwargs):
        raise RuntimeError("the disk went away mid-poll")

    monkeypatch.setattr(source, "_end_inactive", fail)  # the poll fails after reading the rollout
    with pytest.raises(RuntimeError):
        source.scan()
    assert home.calls() == []  # rolled back
    monkeypatch.undo()
    source.scan()
    assert len(home.calls()) == 2
