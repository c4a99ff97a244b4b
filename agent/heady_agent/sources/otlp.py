"""Claude Code and Codex sessions from the OpenTelemetry they export (`[agent.otlp]`).

The agent's OTLP/HTTP and OTLP/gRPC receivers (otlp.py, otlp_grpc.py) hand each batch here. Claude
Code's `claude_code.*` events (keyed by `session.id`) and Codex's `codex.*` events (keyed by
`conversation.id`) become the same `llm.call` and `session.state` events the transcript sources
emit, so a host whose transcripts the agent cannot read (a container, a CI runner) is still
covered. Where the transcript sources see the same session, they own it (announce it, follow its
states, end it) and this source only adds the calls the ledger (sources/ledger.py) says no route
counted yet. Facts: docs/sources.md "otlp".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import is_loopback, parse_listen
from ..otlp import Batch, OtlpReceiver, Scalar, TelemetryRecord
from ..otlp_grpc import OtlpGrpcReceiver
from .base import SessionSource, SourceContext
from .common import WatchedSession, WatchedSource, plain_text, session_info, started_data
from .ledger import FAILED_TURN, CallLedger, anthropic_identity, openai_identity
from ..protocol import SessionInfo

CLAUDE_CODE = "claude-code"
CODEX = "codex"
SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_TOKENS = 100_000_000  # one call's token count above this is not a count
MAX_LATENCY_MS = 24 * 3600 * 1000.0
FUTURE_SLACK_S = 300.0  # a record stamped further ahead of the agent's clock is stamped on arrival
INACTIVE_AFTER_S = 600.0  # no telemetry for this long: the session has ended (as for transcripts)
SWEEP_EVERY_S = 5.0
# A Codex request failed and nothing of its session came for this long: Codex gave the turn up (its
# retries, Retry-After included, come sooner; its telemetry has no turn-failed event).
FAILED_TURN_AFTER_S = 120.0
ERROR_CHARS = 80
MODEL_CHARS = 128
COMPACT_QUERY = "compact"  # Claude Code's query_source of the requests a compaction makes
COMPLETED = "response.completed"
CUT_OFF = "stream_cut_off"  # the error of a response whose stream broke, as the transcript source names it
HOLD_S = 30.0  # a held response nothing followed for this long was complete (as the transcript source holds)
# Claude Code's metrics that hold a session's usage, and the slot of each token type.
TOKEN_USAGE = "claude_code.token.usage"
COST_USAGE = "claude_code.cost.usage"
TOKEN_SLOTS = {"input": 0, "output": 1, "cacheRead": 2, "cacheCreation": 3}
COST_SLOT = 4
MAX_COST_USD = 1_000_000.0
# A Claude Code session that sends usage metrics but no event for this long exports no events: its
# metrics are counted as calls. Events come within the log export interval (5 s by default) of their call.
METRICS_SETTLE_S = 120.0
# Events that carry a call (or a failed request): a record of these seen twice is counted once.
CALL_EVENTS = frozenset({"claude_code.api_request", "claude_code.api_error", "codex.api_request", "codex.sse_event"})


@dataclass
class TelemetrySession(WatchedSession):
    client: str = ""  # CLAUDE_CODE or CODEX
    last_ts: float = 0.0
    ended_at: float = 0.0
    # Codex: when the latest model request was sent, and a failed request no success followed yet
    # ({"error", "ts", "latency_ms"}): it is a failed call once the turn is over.
    asked_at: float | None = None
    failure: dict[str, Any] | None = None
    # Claude Code: an event of the session came (its events count its calls); until then, what its
    # token and cost metrics added up per model ([input, output, cacheRead, cacheCreation, cost])
    # since `metered_since`, and the last value of each cumulative series.
    # Claude Code: a response with at most one output token, held until the next event of the
    # session says whether its stream was cut off (Claude Code asks again in the same prompt).
    held: dict[str, Any] | None = None
    logged: bool = False
    metered: dict[str, list[float]] = field(default_factory=dict)
    metered_since: float | None = None
    totals: dict[str, float] = field(default_factory=dict)


class OtlpSource(WatchedSource[TelemetrySession]):
    name = "otlp"
    watches = "otlp"
    state_prefix = "ot"
    session_type = TelemetrySession

    def __init__(self, ctx: SourceContext) -> None:
        super().__init__(ctx)
        self.ledger = CallLedger(ctx)
        # The agent's other sources: a session one of them owns is theirs (set by the server).
        self.others: Sequence[SessionSource] = ()
        otlp = ctx.config.otlp
        # Started only where `listen` is set (a gRPC-only agent has no HTTP listener).
        host, port = parse_listen(otlp.listen or "127.0.0.1:4318")
        self.receiver = OtlpReceiver(host, port, self.receive, token=self._token(host))
        self.grpc_receiver: OtlpGrpcReceiver | None = None  # `grpc_listen`: the same batches over gRPC
        if otlp.grpc_listen is not None:
            host, port = parse_listen(otlp.grpc_listen)
            self.grpc_receiver = OtlpGrpcReceiver(host, port, self.receive, token=self._token(host))
        # The batch being received: session -> the model it names first; the sessions it touched.
        self._models: dict[str, str] = {}
        self._touched: set[str] = set()

    def _token(self, host: str) -> str | None:
        return None if is_loopback(host) else self.ctx.config.resolve_token()

    async def start(self) -> None:
        self._load_live()
        if self.ctx.config.otlp.listen is not None:
            await self.receiver.start()
        if self.grpc_receiver is not None:
            await self.grpc_receiver.start()
        self._task = asyncio.create_task(self._sweep_loop(), name="otlp-sweep")

    async def stop(self) -> None:
        await super().stop()
        await self.receiver.stop()
        if self.grpc_receiver is not None:
            await self.grpc_receiver.stop()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self.sweep()

    # --- what arrives ---------------------------------------------------------------------

    async def receive(self, batch: Batch) -> None:
        """One export request's records, committed (events and state together) before the client hears 200."""
        now = self.ctx.clock.now()
        # The model of each session as the batch first names it: a session is announced with it.
        self._models = {}
        for record in batch.records:
            sid, model = record.attributes.get("session.id") or record.attributes.get("conversation.id"), record.attributes.get("model")
            if isinstance(sid, str) and isinstance(model, str):
                self._models.setdefault(sid, _text(model, MODEL_CHARS))
        self._touched = set()
        try:
            with self.ctx.atomic():
                for record in batch.records:
                    self._record(record, now)
                for sid in sorted(self._touched):  # their latest record times, once per batch
                    self._save(self._sessions[sid])
        except Exception:
            self._forget()  # the journal rolled the batch back: so does memory
            raise
        self._flush()

    def _forget(self) -> None:
        self._sessions.clear()
        self._live.clear()
        self._load_live()

    def _record(self, record: TelemetryRecord, now: float) -> None:
        attrs = record.attributes
        if record.name.startswith("claude_code.") or record.service == CLAUDE_CODE:
            client, sid = CLAUDE_CODE, attrs.get("session.id")
        elif record.name.startswith("codex.") or record.service.startswith("codex"):
            client, sid = CODEX, attrs.get("conversation.id")
        else:
            return  # another program's telemetry
        if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
            return  # process-wide records (startup, plugins) name no session
        ts = record.ts
        when = ts if ts is not None and 0 < ts <= now + FUTURE_SLACK_S else now
        session = self._active(sid, client, _text(attrs.get("model"), MODEL_CHARS) or self._models.get(sid, ""), when)
        if record.signal == "metrics":
            if record.name in (TOKEN_USAGE, COST_USAGE):
                self._metered(session, record, when)
            return
        if client == CLAUDE_CODE and not session.logged:
            session.logged = True  # its events count its calls: what its metrics added up goes
            session.metered, session.metered_since = {}, None
            self._save(session)
        if record.name in CALL_EVENTS and self._repeated(sid, record):
            return
        if client == CLAUDE_CODE:
            self._claude_code(session, record.name, attrs, when)
        else:
            self._codex(session, record.name, attrs, when)

    def _repeated(self, sid: str, record: TelemetryRecord) -> bool:
        """The very record came before: a client sends a batch again when it missed the answer."""
        digest = hashlib.sha256(json.dumps([record.name, record.ts, sorted(record.attributes.items())]).encode()).hexdigest()
        key = f"{self.state_prefix}.record:{sid}:{digest[:32]}"
        if self.ctx.get_state(key) is not None:
            return True
        self.ctx.set_state(key, "1")
        return False

    def _active(self, sid: str, client: str, model: str, when: float) -> TelemetrySession:
        """The session a record at `when` belongs to, announced unless a transcript source owns it."""
        session = self._session(sid)
        session.client = client
        if session.ended and when > session.ended_at:
            self._reopen(session)
        session.last_ts = max(session.last_ts, when)
        self._touched.add(sid)
        renamed = bool(model) and model != session.model
        if renamed:
            session.model = model
        if session.started is None and not session.ended and not self._known_elsewhere(sid):
            self._announce(session, when)
        elif renamed and self._mine(session):
            self._reannounce(session, when)
        return session

    # --- Claude Code ------------------------------------------------------------------------

    def _claude_code(self, session: TelemetrySession, name: str, attrs: Mapping[str, Scalar], when: float) -> None:
        if name in ("claude_code.api_request", "claude_code.api_error"):
            self._claude_call(session, attrs, when, ok=name == "claude_code.api_request")
            return
        if name in ("claude_code.compaction", "claude_code.user_prompt"):
            self._release_held(session, None)  # a compaction or a new prompt: the held response was whole
        if name == "claude_code.compaction":
            trigger = _text(attrs.get("trigger"), 16)
            self._state(session, "compacted", trigger if trigger in ("auto", "manual") else "auto", when)
        elif name == "claude_code.user_prompt":
            self._state(session, "running", "prompt", when)
        elif name == "claude_code.api_retries_exhausted":
            self._state(session, "idle", f"turn failed: {_claude_error(attrs)}", when)

    def _claude_call(self, session: TelemetrySession, attrs: Mapping[str, Scalar], when: float, *, ok: bool) -> None:
        request_id = _text(attrs.get("request_id"), 128)
        if not REQUEST_ID.fullmatch(request_id):
            return  # no identity the transcript shares: counting it could count it twice
        data: dict[str, Any] = {
            "provider": "anthropic",
            "model": session.model or "",
            "input_tokens": _count(attrs.get("input_tokens")),
            "output_tokens": _count(attrs.get("output_tokens")),
            "cache_creation_tokens": _count(attrs.get("cache_creation_tokens")),
            "cache_read_tokens": _count(attrs.get("cache_read_tokens")),
            "cost_usd": None,  # priced by the console from the tokens, as transcript calls are
            "latency_ms": _latency(attrs.get("duration_ms")),
            "ok": ok,
            "error": None if ok else _claude_error(attrs),
        }
        if "cache_creation_5m_tokens" in attrs or "cache_creation_1h_tokens" in attrs:
            data["cache_creation_5m_tokens"] = _count(attrs.get("cache_creation_5m_tokens"))
            data["cache_creation_1h_tokens"] = _count(attrs.get("cache_creation_1h_tokens"))
        if attrs.get("speed") == "fast":
            data["speed"] = "fast"
        if not ok and not any(data[k] for k in ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens")):
            data["cost_usd"] = 0.0  # nothing was served
        prompt = _text(attrs.get("prompt.id"), 128)
        call = {"request_id": request_id, "prompt": prompt, "compact": attrs.get("query_source") == COMPACT_QUERY,
                "data": data, "ts": when}
        self._release_held(session, prompt)
        if ok and data["output_tokens"] <= 1:
            session.held = call  # what a stream cut off looks like: the next event of the prompt tells
            self._save(session)
        else:
            self._count_claude(session, call)

    def _release_held(self, session: TelemetrySession, next_prompt: str | None) -> None:
        """The response held as a possible cut-off stream is judged: Claude Code asking again in the
        same prompt (`next_prompt`) means its stream broke, anything else that it was complete."""
        held, session.held = session.held, None
        if held is None:
            return
        self._save(session)
        if next_prompt and held["prompt"] == next_prompt:
            held["data"].update(ok=False, error=CUT_OFF)
        self._count_claude(session, held)

    def _count_claude(self, session: TelemetrySession, call: dict[str, Any]) -> None:
        data = call["data"]
        if not self.ledger.first("telemetry", session.id, anthropic_identity(call["request_id"])):
            return
        if call["compact"] and self.ledger.covered(session.id, data["model"], data):
            return  # the transcript counted it from Claude Code's cost-state
        self._emit_call(session, data, float(call["ts"]))

    def _metered(self, session: TelemetrySession, record: TelemetryRecord, when: float) -> None:
        """A Claude Code usage metric point of a session that sent no event (yet): added up per model."""
        attrs = record.attributes
        model = _text(attrs.get("model"), MODEL_CHARS)
        slot = TOKEN_SLOTS.get(str(attrs.get("type"))) if record.name == TOKEN_USAGE else COST_SLOT
        value = record.value
        limit = MAX_TOKENS if slot != COST_SLOT else MAX_COST_USD
        if session.logged or not model or slot is None or value is None or not 0 <= value <= limit:
            return
        if record.cumulative:  # the total since the series started: the usage is what it grew by
            series = hashlib.sha256(json.dumps([record.name, sorted(attrs.items())]).encode()).hexdigest()[:32]
            last = session.totals.get(series, 0.0)
            session.totals[series] = value
            value = value - last if value >= last else value  # a total that fell was restarted
        session.metered.setdefault(model, [0.0] * (COST_SLOT + 1))[slot] += value
        if session.metered_since is None:
            session.metered_since = when
        self._save(session)

    def _settle_metered(self, session: TelemetrySession) -> None:
        """No event came for the metered usage: it is counted, one ok call per model (the number of
        requests is not in the metrics), unless a transcript source reports the session."""
        metered, since = session.metered, session.metered_since
        session.metered, session.metered_since = {}, None
        self._save(session)
        if since is None or session.logged or self._known_elsewhere(session.id):
            return
        for model, usage in sorted(metered.items()):
            tokens = [round(v) for v in usage[:COST_SLOT]]
            if not any(tokens):
                continue
            self._emit_call(session, {
                "provider": "anthropic",
                "model": model,
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cache_read_tokens": tokens[2],
                "cache_creation_tokens": tokens[3],
                "cost_usd": round(usage[COST_SLOT], 6),  # Claude Code's own figure: the metrics split no cache writes by TTL
                "latency_ms": None,
                "ok": True,
                "error": None,
            }, since)

    # --- Codex ------------------------------------------------------------------------------

    def _codex(self, session: TelemetrySession, name: str, attrs: Mapping[str, Scalar], when: float) -> None:
        if name in ("codex.conversation_starts", "codex.user_prompt"):
            self._settle_failure(session)  # a new turn: the last one is over
            self._state(session, "running", "prompt", when)
        elif name == "codex.api_request":
            status = _count(attrs.get("http.response.status_code"))
            latency = _latency(attrs.get("duration_ms"))
            if 200 <= status < 300:
                session.failure = None
                session.asked_at = when - (latency or 0.0) / 1000.0
            else:
                error = f"http_{status}" if 100 <= status <= 599 else _text(attrs.get("error.message"), ERROR_CHARS) or "request failed"
                session.failure = {"error": error, "ts": when, "latency_ms": latency}
            self._save(session)
        elif name == "codex.sse_event" and attrs.get("event.kind") == COMPLETED and "input_token_count" in attrs:
            session.failure = None
            self._codex_call(session, attrs, when)

    def _codex_call(self, session: TelemetrySession, attrs: Mapping[str, Scalar], when: float) -> None:
        given = _count(attrs.get("input_token_count"))
        cached = min(given, _count(attrs.get("cached_token_count")))
        output = _count(attrs.get("output_token_count"))
        reasoning = _count(attrs.get("reasoning_token_count"))
        asked = session.asked_at
        session.asked_at = None
        self._save(session)
        if not self.ledger.first("telemetry", session.id, openai_identity(given, cached, output, reasoning)):
            return
        self._emit_call(session, {
            "provider": "openai",
            "model": session.model or "unknown",
            "input_tokens": given - cached,
            "output_tokens": output,
            "cache_creation_tokens": 0,
            "cache_read_tokens": cached,
            "cost_usd": None,
            "latency_ms": round((when - asked) * 1000.0, 1) if asked is not None and when >= asked else None,
            "ok": True,
            "error": None,
        }, when)

    def _settle_failure(self, session: TelemetrySession) -> None:
        """A failed request no success followed before the turn ended: Codex gave the turn up, one failed call."""
        failure, session.failure = session.failure, None
        if failure is None:
            return
        self._save(session)
        when = float(failure["ts"])
        if self.ledger.first("telemetry", session.id, FAILED_TURN):
            self._emit_call(session, {"provider": "openai", "model": session.model or "unknown",
                                      "latency_ms": failure.get("latency_ms"), "ok": False, "error": str(failure["error"])}, when)
        self._state(session, "idle", f"turn failed: {failure['error']}", when)

    # --- events out -------------------------------------------------------------------------

    def _emit_call(self, session: TelemetrySession, data: dict[str, Any], when: float) -> None:
        self.ctx.emit("llm.call", session.id, data, ts=when)
        self.ledger.tally(session.id, str(data["model"]), data)
        if data["ok"] and session.state == "compacted":
            self._state(session, "running", "continued after compaction", when)

    def _state(self, session: TelemetrySession, state: str, reason: str, when: float) -> None:
        if self._mine(session) and session.state != state:
            self._set_state(session, state, reason, when)

    def _mine(self, session: TelemetrySession) -> bool:
        """Announced by this source and not (since) owned by a transcript source."""
        return session.started is not None and not session.ended and not self._owned_elsewhere(session.id)

    def _owned_elsewhere(self, sid: str) -> bool:
        return any(other.owns(sid) for other in self.others)

    def _known_elsewhere(self, sid: str) -> bool:
        """A transcript source has reported the session: it announces and ends it, not this source."""
        return any(other.knows(sid) for other in self.others)

    def _announce(self, session: TelemetrySession, when: float) -> None:
        session.started = when
        self.ctx.emit("session.started", session.id, started_data(session.client, session), ts=when)
        self._save(session)

    def _reannounce(self, session: TelemetrySession, when: float) -> None:
        self.ctx.emit("session.started", session.id, started_data(session.client, session), ts=when)
        self._save(session)

    def sweep(self) -> None:
        """Count the Claude Code usage metrics no event followed (METRICS_SETTLE_S), settle the Codex
        turns that ended in a failure (quiet for FAILED_TURN_AFTER_S), end the sessions quiet for
        INACTIVE_AFTER_S."""
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            for sid in sorted(self._live):
                session = self._sessions.get(sid)
                if session is None:
                    continue
                if session.metered_since is not None and now - session.metered_since > METRICS_SETTLE_S:
                    self._settle_metered(session)
                if session.held is not None and now - float(session.held["ts"]) >= HOLD_S:
                    self._release_held(session, None)
                if now - session.last_ts <= FAILED_TURN_AFTER_S:
                    continue
                self._settle_failure(session)
                if now - session.last_ts <= INACTIVE_AFTER_S:
                    continue
                session.ended_at = session.last_ts
                if session.started is None or self._known_elsewhere(sid):
                    session.ended, session.state = True, "completed"  # a transcript source ends it
                    self._save(session)
                else:
                    self._end(session, "inactive", session.last_ts)
        self._flush()

    def sessions(self) -> list[SessionInfo]:
        return [session_info(s.client, s) for s in (self._sessions[sid] for sid in sorted(self._live))
                if s.started is not None and not self._owned_elsewhere(s.id)]

    def owns(self, session_id: str) -> bool:
        session = self._sessions.get(session_id) if session_id in self._live else None
        return session is not None and session.started is not None and not self._owned_elsewhere(session_id)


def _text(value: Scalar | None, limit: int) -> str:
    return plain_text(value, limit) if isinstance(value, str) else ""


def _count(value: Scalar | None) -> int:
    """A token count or status code: a non-negative integer (or its decimal text) within bounds, else 0."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        return 0
    return value


def _latency(value: Scalar | None) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_LATENCY_MS:
        return None
    return float(value)


def _claude_error(attrs: Mapping[str, Scalar]) -> str:
    status = _count(attrs.get("status_code"))
    if 100 <= status <= 599:
        return f"http_{status}"
    return _text(attrs.get("error"), ERROR_CHARS) or "api_error"
