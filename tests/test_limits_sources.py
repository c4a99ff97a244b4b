"""Each session attributed to its account from the client's own config, never with a credential:
Codex (auth.json's id token claims, on the real Codex rollouts), Claude Code (.claude.json's
oauthAccount), opencode (the provider of its real stream); validated and bounded on the wire."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from heady_agent.accounts import claude_account, codex_account, jwt_claims
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig, CodexConfig
from heady_agent.protocol import NAME_MAX, SessionInfo, SessionStartedData
from heady_agent.sources.claude_code import ClaudeCodeSource
from heady_agent.sources.codex import CodexSource
from heady_agent.sources.opencode import OpencodeSource
from hookkit import SID, claude_home  # noqa: F401 (claude_home: a fixture)
from sourcekit import SqliteSourceContext
from test_source_codex_real import ALL_ANSWERS, ROLLOUT_IDS, copy_rollouts
from test_source_opencode import source_config
from test_source_opencode_real import RECORDED_AT, replay_stream

ACCESS_TOKEN = "secret-access-token-never-to-leave"
REFRESH_TOKEN = "secret-refresh-token-never-to-leave"
API_KEY = "sk-ant-secret-api-key-never-to-leave"


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


CODEX_AUTH = {
    "OPENAI_API_KEY": None,
    "tokens": {
        "id_token": jwt({"email": "ana@example.com", "https://api.openai.com/auth": {
            "chatgpt_plan_type": "pro", "chatgpt_account_id": "acct-1234"}}),
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "account_id": "acct-1234",
    },
    "last_refresh": "2026-12-05T09:00:00Z",
}


def journal_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))


def codex_replay(tmp_path: Path, auth: dict) -> SqliteSourceContext:
    home = tmp_path / "codex-home"
    copy_rollouts(home)
    (home / "auth.json").write_text(json.dumps(auth))
    config = AgentConfig(sources=["codex"], codex=CodexConfig(roots=[str(home)], poll_interval_s=3600.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, ManualClock(ALL_ANSWERS[-1]["received_at"] + 5))
    CodexSource(ctx).scan()
    return ctx


def test_every_codex_session_names_its_chatgpt_account_and_plan_from_the_id_token(tmp_path):
    ctx = codex_replay(tmp_path, CODEX_AUTH)
    started = ctx.events("session.started")
    assert {e.session for e in started} == ROLLOUT_IDS
    assert {(e.data["account"], e.data["plan"]) for e in started} == {("openai:ana@example.com", "pro")}
    ctx.close()


def test_no_codex_token_reaches_the_journal(tmp_path):
    ctx = codex_replay(tmp_path, CODEX_AUTH)
    ctx.close()
    stored = journal_bytes(tmp_path)
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CODEX_AUTH["tokens"]["id_token"]):  # type: ignore[index]
        assert secret.encode() not in stored


def test_a_codex_signed_in_with_an_api_key_has_no_account(tmp_path):
    ctx = codex_replay(tmp_path, {"OPENAI_API_KEY": API_KEY, "tokens": None})
    started = ctx.events("session.started")
    assert started and all("account" not in e.data for e in started)
    ctx.close()
    assert API_KEY.encode() not in journal_bytes(tmp_path)


def test_a_malformed_id_token_falls_back_to_the_account_id():
    assert jwt_claims("not-a-jwt") == {} and jwt_claims("a.!!!.c") == {}
    assert codex_account({"tokens": {"id_token": "a.b", "account_id": "acct-9"}}) == ("openai:acct-9", None)


def test_the_claude_account_is_the_oauth_email_else_its_uuid_and_nothing_when_signed_out():
    assert claude_account({"oauthAccount": {"emailAddress": "ana@example.com", "accountUuid": "u-1"}}) == ("claude:ana@example.com", None)
    assert claude_account({"oauthAccount": {"accountUuid": "u-1"}}) == ("claude:u-1", None)
    assert claude_account({"primaryApiKey": API_KEY}) == (None, None)


def test_a_claude_code_session_names_the_signed_in_account_and_never_the_api_key(tmp_path, claude_home):  # noqa: F811
    (claude_home / ".claude.json").write_text(json.dumps({
        "numStartups": 12, "primaryApiKey": API_KEY,
        "oauthAccount": {"accountUuid": "9d3c-uuid", "emailAddress": "ana@example.com", "organizationUuid": "org-1"},
        "projects": {"/home/dev/src/billing-service": {"allowedTools": []}},
    }))
    config = AgentConfig(sources=["claude-code"], claude_code=ClaudeCodeConfig(roots=[str(claude_home)], poll_interval_s=3600.0))
    ctx = SqliteSourceContext(tmp_path / "journal.db", config, ManualClock())
    source = ClaudeCodeSource(ctx)
    source.scan()
    [started] = ctx.events("session.started")
    assert (started.session, started.data["account"]) == (SID, "claude:ana@example.com")
    assert [s.account for s in source.sessions()] == ["claude:ana@example.com"]
    ctx.close()
    assert API_KEY.encode() not in journal_bytes(tmp_path)


def test_an_opencode_session_draws_on_its_providers_account(tmp_path):
    ctx = SqliteSourceContext(tmp_path / "journal.db", source_config(tmp_path, "http://127.0.0.1:9"), ManualClock(start=RECORDED_AT))
    replay_stream(OpencodeSource(ctx))
    accounts = {}
    for e in ctx.events("session.started"):
        if "account" in e.data:
            accounts[e.session] = e.data["account"]
    providers = {e.session: e.data["provider"] for e in ctx.events("llm.call")}
    assert providers and {sid: f"opencode:{p}" for sid, p in providers.items()} == {sid: accounts[sid] for sid in providers}
    ctx.close()


@pytest.mark.parametrize("model", [SessionStartedData, SessionInfo])
def test_an_account_on_the_wire_is_one_bounded_line(model):
    base = {"source": "x"} if model is SessionStartedData else {"id": "s", "source": "x"}
    parsed = model.model_validate({**base, "account": "claude:\x1b[31mana\x1b[0m\n@example.com" + "x" * 2000})
    assert parsed.account is not None
    assert parsed.account.startswith("claude:ana @example.com") and len(parsed.account) == NAME_MAX
