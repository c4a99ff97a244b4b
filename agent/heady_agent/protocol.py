"""Wire contract, protocol 1: the frames exchanged between heady-agent and the console.

Both sides import these models; nothing here does I/O. See docs/protocol.md for the
extensions beyond shared/DESIGN.md (journal id on every frame, `simulated`, `detail`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
DEFAULT_PORT = 7420
MAX_FRAME_BYTES = 1 << 20  # 1 MiB, both directions

EVENT_KINDS = (
    "session.started",
    "session.state",
    "llm.call",
    "session.ended",
    "agent.notice",
)
EventKind = Literal["session.started", "session.state", "llm.call", "session.ended", "agent.notice"]

SESSION_STATES = ("running", "idle", "compacted", "paused", "error", "completed")
SessionState = Literal["running", "idle", "waiting", "compacted", "paused", "error", "completed"]

ACTIONS = (
    "session.kill",
    "session.pause",
    "session.resume",
    "session.restart",
    "session.prompt",
    "session.renice",
    "node.drain",
    "node.undrain",
    "node.set_concurrency",
    "queue.move",
    "queue.accept",
)
Action = Literal[
    "session.kill",
    "session.pause",
    "session.resume",
    "session.restart",
    "session.prompt",
    "session.renice",
    "node.drain",
    "node.undrain",
    "node.set_concurrency",
    "queue.move",
    "queue.accept",
]
# Reversible actions, with the action that undoes each; the rebalancer reverts these when it stops.
REVERSIBLE = {
    "node.drain": "node.undrain",
    "session.pause": "session.resume",
}

Severity = Literal["info", "warning", "critical"]


class FrameError(Exception):
    """A frame that cannot be accepted. `code` is sent back in an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- agent -> console -----------------------------------------------------------------


class NodeInfo(_Frame):
    id: str
    hostname: str
    agent_version: str
    os: str
    cpu_count: int = Field(ge=1)
    mem_total: int = Field(ge=0)
    labels: dict[str, str] = Field(default_factory=dict)


class JournalInfo(_Frame):
    id: str
    first_seq: int = Field(ge=0)
    last_seq: int = Field(ge=0)


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    protocol: int
    node: NodeInfo
    journal: JournalInfo
    simulated: bool = False


class Metrics(_Frame):
    type: Literal["metrics"] = "metrics"
    journal: str = ""
    seq: int = Field(ge=1)
    ts: float
    cpu: float = Field(ge=0)  # percent of all cores, 0..100
    load: list[float] = Field(min_length=3, max_length=3)
    mem: float = Field(ge=0)  # percent used
    swap: float = Field(ge=0)  # percent used
    mem_available: int = Field(default=0, ge=0)  # bytes
    disk_read_bps: float = 0.0
    disk_write_bps: float = 0.0
    net_rx_bps: float = 0.0
    net_tx_bps: float = 0.0
    procs: int = 0
    queue_depth: int = Field(default=0, ge=0)
    simulated: bool = False


class Event(_Frame):
    type: Literal["event"] = "event"
    journal: str = ""
    seq: int = Field(ge=1)
    ts: float
    kind: EventKind
    session: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    simulated: bool = False


class SessionInfo(_Frame):
    id: str
    source: str
    project: str | None = None
    cwd: str | None = None
    pid: int | None = None
    model: str | None = None
    title: str | None = None
    state: SessionState = "running"
    started: float | None = None
    managed: str | None = None  # managed name, when the agent itself started it
    nice: int | None = None


class Sessions(_Frame):
    type: Literal["sessions"] = "sessions"
    sessions: list[SessionInfo] = Field(default_factory=list)


class Result(_Frame):
    type: Literal["result"] = "result"
    id: str
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str
    message: str


class ProcessRow(_Frame):
    pid: int
    name: str
    user: str | None = None
    cpu: float = 0.0
    rss: int = 0
    session: str | None = None


class Detail(_Frame):
    """Per-process top list, sent only while a console has focus on this node; not journalled."""

    type: Literal["detail"] = "detail"
    ts: float
    processes: list[ProcessRow] = Field(default_factory=list)


AgentFrame = Annotated[
    Union[Hello, Metrics, Event, Sessions, Result, ErrorFrame, Detail], Field(discriminator="type")
]

# --- console -> agent -----------------------------------------------------------------


class Subscribe(_Frame):
    type: Literal["subscribe"] = "subscribe"
    since: int = Field(default=0, ge=0)
    journal: str | None = None


class Command(_Frame):
    type: Literal["command"] = "command"
    id: str = Field(min_length=1, max_length=128)
    action: Action
    target: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)


class Ack(_Frame):
    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0)


class Focus(_Frame):
    type: Literal["focus"] = "focus"
    detail: bool


ConsoleFrame = Annotated[Union[Subscribe, Command, Ack, Focus], Field(discriminator="type")]

# --- event payloads (the `data` of each event kind) -------------------------------------


class SessionStartedData(_Frame):
    source: str
    project: str | None = None
    cwd: str | None = None
    pid: int | None = None
    model: str | None = None
    title: str | None = None
    managed: str | None = None


class SessionStateData(_Frame):
    state: SessionState
    reason: str | None = None


class RateLimitWindow(_Frame):
    """One window of the account's rate limit as the client last heard it (Codex: 5 h and weekly)."""

    used_percent: float = Field(ge=0, le=100)
    window_minutes: int | None = Field(default=None, ge=0)
    resets_at: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # epoch seconds


class RateLimits(_Frame):
    primary: RateLimitWindow | None = None
    secondary: RateLimitWindow | None = None


class LlmCallData(_Frame):
    provider: str
    model: str
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_creation_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)  # included in output_tokens (OpenAI's meaning)
    # Split of cache_creation_tokens by TTL when the source knows it (Claude Code); cost needs it.
    cache_creation_5m_tokens: int | None = None
    cache_creation_1h_tokens: int | None = None
    speed: str | None = None  # "fast" when the provider's fast mode was used
    cost_usd: float | None = None
    latency_ms: float | None = None
    ok: bool = True
    error: str | None = None
    # The account's limits reported with this response, when the client logs them (Codex).
    rate_limits: RateLimits | None = None


class SessionEndedData(_Frame):
    exit_code: int | None = None
    reason: str | None = None


class AgentNoticeData(_Frame):
    severity: Severity = "info"
    message: str


EVENT_DATA_MODELS: dict[str, type[_Frame]] = {
    "session.started": SessionStartedData,
    "session.state": SessionStateData,
    "llm.call": LlmCallData,
    "session.ended": SessionEndedData,
    "agent.notice": AgentNoticeData,
}

# --- command arguments ------------------------------------------------------------------


class QueueItem(_Frame):
    managed: str
    args: list[str] = Field(default_factory=list)


class ReniceArgs(_Frame):
    nice: int = Field(ge=-20, le=19)


class PromptArgs(_Frame):
    text: str = Field(min_length=1, max_length=100_000)


class ConcurrencyArgs(_Frame):
    value: int = Field(ge=0, le=10_000)
    managed: str | None = None  # None: every managed name on the node


class QueueMoveArgs(_Frame):
    count: int = Field(ge=1, le=100_000)
    managed: str | None = None


class QueueAcceptArgs(_Frame):
    items: list[QueueItem]


COMMAND_ARG_MODELS: dict[str, type[_Frame]] = {
    "session.renice": ReniceArgs,
    "session.prompt": PromptArgs,
    "node.set_concurrency": ConcurrencyArgs,
    "queue.move": QueueMoveArgs,
    "queue.accept": QueueAcceptArgs,
}

# --- parsing ----------------------------------------------------------------------------

_agent_adapter: TypeAdapter[Any] = TypeAdapter(AgentFrame)
_console_adapter: TypeAdapter[Any] = TypeAdapter(ConsoleFrame)


def _load(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frame of {len(text)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("bad_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError("bad_frame", "frame must be a JSON object")
    if "type" not in obj:
        raise FrameError("bad_frame", "frame has no 'type'")
    return obj


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def parse_agent_frame(text: str | bytes) -> Hello | Metrics | Event | Sessions | Result | ErrorFrame | Detail:
    obj = _load(text)
    if obj["type"] not in ("hello", "metrics", "event", "sessions", "result", "error", "detail"):
        raise FrameError("unknown_type", f"unknown frame type {obj['type']!r}")
    try:
        return _agent_adapter.validate_python(obj)
    except ValidationError as exc:
        raise FrameError("bad_frame", f"bad {obj['type']} frame: {_first_error(exc)}") from None


def parse_console_frame(text: str | bytes) -> Subscribe | Command | Ack | Focus:
    obj = _load(text)
    if obj["type"] not in ("subscribe", "command", "ack", "focus"):
        raise FrameError("unknown_type", f"unknown frame type {obj['type']!r}")
    try:
        return _console_adapter.validate_python(obj)
    except ValidationError as exc:
        raise FrameError("bad_frame", f"bad {obj['type']} frame: {_first_error(exc)}") from None


def parse_event_data(kind: str, data: dict[str, Any]) -> _Frame:
    """Validate an event's `data` against its kind's model; raises FrameError."""
    model = EVENT_DATA_MODELS.get(kind)
    if model is None:
        raise FrameError("bad_frame", f"unknown event kind {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FrameError("bad_frame", f"bad {kind} data: {_first_error(exc)}") from None


def parse_command_args(action: str, args: dict[str, Any]) -> _Frame | None:
    """Validate a command's `args`; None for actions that take none. Raises FrameError."""
    model = COMMAND_ARG_MODELS.get(action)
    if model is None:
        return None
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise FrameError("bad_args", f"bad args for {action}: {_first_error(exc)}") from None


def dump(frame: BaseModel) -> str:
    """Compact JSON text of a frame, as sent on the wire."""
    return frame.model_dump_json(exclude_none=False)
