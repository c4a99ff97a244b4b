"""Wire contract, protocol 1: the frames exchanged between heady-agent and the console.

Both sides import these models; nothing here does I/O. See docs/protocol.md for the
extensions beyond shared/DESIGN.md (journal id on every frame, `simulated`, `detail`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
DEFAULT_PORT = 7420
MAX_FRAME_BYTES = 1 << 20  # 1 MiB, both directions

EVENT_KINDS = (
    "session.started",
    "session.state",
    "llm.call",
    "session.ended",
    "session.limits",
    "agent.notice",
    "test.run",
)
EventKind = Literal["session.started", "session.state", "llm.call", "session.ended", "session.limits", "agent.notice", "test.run"]

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
    "queue.set_priority",
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
    "queue.set_priority",
]
# Reversible actions, with the action that undoes each; the rebalancer reverts these when it stops.
REVERSIBLE = {
    "node.drain": "node.undrain",
    "session.pause": "session.resume",
}

Severity = Literal["info", "warning", "critical"]

# --- what a frame may carry -----------------------------------------------------------------
# Every string and number an agent sends ends up on the operator's terminal, in SQLite and in
# reports. The rules live here, in the models both sides parse with, so the agent cleans what it
# sends and the console refuses or cleans what it receives before anything is stored: one place.

NAME_MAX = 512  # names, titles, projects, paths, models: one line each
MESSAGE_MAX = 4096  # notices, reasons, errors: may span lines
IDENT_MAX = 256  # journal, session and command ids: never altered, refused when unfit
TS_MIN = 946_684_800.0  # 2000-01-01T00:00Z: anything earlier is a broken clock or a hostile agent
TS_MAX = 4_102_444_800.0  # 2100-01-01T00:00Z
INT_MAX = 2**63 - 1  # SQLite's INTEGER

# Escape sequences (CSI, OSC up to its terminator, and two-byte ESC forms) are removed whole so
# their parameters do not remain as visible debris; then single control characters: C0, DEL, C1,
# and the Unicode bidi embeddings, overrides and isolates that reorder what the operator reads.
_ESCAPE_SEQUENCE = r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -~]?)"
_BIDI = "\u202a-\u202e\u2066-\u2069"
_UNSAFE_LINE = re.compile(f"{_ESCAPE_SEQUENCE}|[\x00-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_TEXT = re.compile(f"{_ESCAPE_SEQUENCE}|[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def clean_line(text: str, limit: int = NAME_MAX) -> str:
    """One line of agent text safe for a terminal: escapes and control characters removed, tabs
    and newlines made spaces, cut to `limit` characters with an ellipsis."""
    if _UNSAFE_LINE.search(text) is not None:
        text = _UNSAFE_LINE.sub(lambda m: " " if m.group() in ("\t", "\n") else "", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clean_text(text: str, limit: int = MESSAGE_MAX) -> str:
    """Multi-line agent text safe for a terminal: like clean_line, but tabs and newlines stay."""
    if _UNSAFE_TEXT.search(text) is not None:
        text = _UNSAFE_TEXT.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _ident(text: str) -> str:
    if _UNSAFE_LINE.search(text) is not None:
        raise ValueError("contains control characters")
    return text


def clean_tree(value: Any, depth: int = 0) -> Any:
    """Free-form JSON (a result's detail) with every string cleaned; nesting cut at 8 levels."""
    if isinstance(value, str):
        return clean_text(value)
    if depth >= 8:
        return None
    if isinstance(value, dict):
        return {clean_line(str(k), NAME_MAX): clean_tree(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Display text: cleaned and cut, never refused (a long title loses its tail, not its session).
Name = Annotated[str, AfterValidator(clean_line)]
Message = Annotated[str, AfterValidator(clean_text)]
# Identifiers are keys: altering one would merge or split streams, so an unfit one refuses the frame.
Ident = Annotated[str, Field(max_length=IDENT_MAX), AfterValidator(_ident)]
Timestamp = Annotated[float, Field(ge=TS_MIN, le=TS_MAX, allow_inf_nan=False)]
Finite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
FreeForm = Annotated[dict[str, Any], AfterValidator(clean_tree)]


class FrameError(Exception):
    """A frame that cannot be accepted. `code` is sent back in an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- agent -> console -----------------------------------------------------------------


class ManagedEntry(_Frame):
    name: Name
    project: Name | None = None


class NodeInfo(_Frame):
    id: Name
    hostname: Name
    agent_version: Name
    os: Name
    cpu_count: int = Field(ge=1, le=1_000_000)
    mem_total: Count
    labels: dict[Name, Name] = Field(default_factory=dict, max_length=256)
    # The managed entries the agent can start (name, and the project its sessions report), so a
    # console can class their sessions before any runs.
    managed: list[ManagedEntry] = Field(default_factory=list, max_length=256)


class JournalInfo(_Frame):
    id: Ident
    first_seq: Count
    last_seq: Count


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    protocol: int
    node: NodeInfo
    journal: JournalInfo
    simulated: bool = False


class Metrics(_Frame):
    type: Literal["metrics"] = "metrics"
    journal: Ident = ""
    seq: int = Field(ge=1, le=INT_MAX)
    ts: Timestamp
    cpu: Finite  # percent of all cores, 0..100
    load: list[Finite] = Field(min_length=3, max_length=3)
    mem: Finite  # percent used
    swap: Finite  # percent used
    mem_available: Count = 0  # bytes
    disk_read_bps: Finite = 0.0
    disk_write_bps: Finite = 0.0
    net_rx_bps: Finite = 0.0
    net_tx_bps: Finite = 0.0
    procs: Count = 0
    queue_depth: Count = 0
    simulated: bool = False


class Event(_Frame):
    type: Literal["event"] = "event"
    journal: Ident = ""
    seq: int = Field(ge=1, le=INT_MAX)
    ts: Timestamp
    kind: EventKind
    session: Ident | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # checked per kind by parse_event_data
    simulated: bool = False


class SessionInfo(_Frame):
    id: Ident
    source: Name
    project: Name | None = None
    cwd: Name | None = None
    pid: int | None = Field(default=None, ge=0, le=INT_MAX)
    model: Name | None = None
    title: Name | None = None
    state: SessionState = "running"
    started: Timestamp | None = None
    managed: Name | None = None  # managed name, when the agent itself started it
    nice: int | None = Field(default=None, ge=-20, le=19)
    account: Name | None = None  # whose limits the session draws on (an id, never a credential)


class Sessions(_Frame):
    type: Literal["sessions"] = "sessions"
    sessions: list[SessionInfo] = Field(default_factory=list)


class Result(_Frame):
    type: Literal["result"] = "result"
    id: Ident
    ok: bool
    error: Message | None = None
    detail: FreeForm = Field(default_factory=dict)


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: Name
    message: Message


class ProcessRow(_Frame):
    pid: int = Field(ge=0, le=INT_MAX)
    name: Name
    user: Name | None = None
    cpu: Finite = 0.0
    rss: Count = 0
    session: Ident | None = None


class Detail(_Frame):
    """Per-process top list, sent only while a console has focus on this node; not journalled."""

    type: Literal["detail"] = "detail"
    ts: Timestamp
    processes: list[ProcessRow] = Field(default_factory=list)


AgentFrame = Annotated[
    Union[Hello, Metrics, Event, Sessions, Result, ErrorFrame, Detail], Field(discriminator="type")
]

# --- console -> agent -----------------------------------------------------------------


class Subscribe(_Frame):
    type: Literal["subscribe"] = "subscribe"
    since: Count = 0
    journal: Ident | None = None


class Command(_Frame):
    type: Literal["command"] = "command"
    id: str = Field(min_length=1, max_length=128)
    action: Action
    target: Ident | None = None
    args: dict[str, Any] = Field(default_factory=dict)


class Ack(_Frame):
    type: Literal["ack"] = "ack"
    seq: Count


class Focus(_Frame):
    type: Literal["focus"] = "focus"
    detail: bool


ConsoleFrame = Annotated[Union[Subscribe, Command, Ack, Focus], Field(discriminator="type")]

# --- event payloads (the `data` of each event kind) -------------------------------------


class SessionStartedData(_Frame):
    source: Name
    project: Name | None = None
    cwd: Name | None = None
    pid: int | None = Field(default=None, ge=0, le=INT_MAX)
    model: Name | None = None
    title: Name | None = None
    managed: Name | None = None
    # The account whose limits the session draws on, as "<kind>:<id>" (claude:<email or uuid>,
    # openai:<email or account id>, opencode:<provider>); an identifier only, never a credential.
    account: Name | None = None
    plan: Name | None = None  # the account's plan when the client records it (Codex: plus, pro)


class SessionStateData(_Frame):
    state: SessionState
    reason: Message | None = None


class RateLimitWindow(_Frame):
    """One window of the account's rate limit as the client last heard it (Codex: 5 h and weekly)."""

    used_percent: float = Field(ge=0, le=100, allow_inf_nan=False)
    window_minutes: Count | None = None
    resets_at: Timestamp | None = None  # epoch seconds


class RateLimits(_Frame):
    """An account's limits as a client reported them: primary is the short (5 h) window, secondary
    the weekly one. The `data` of `session.limits` (Claude Code's status line) and part of `llm.call`."""

    primary: RateLimitWindow | None = None
    secondary: RateLimitWindow | None = None


class LlmCallData(_Frame):
    provider: Name
    model: Name
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_creation_tokens: Count = 0
    cache_read_tokens: Count = 0
    reasoning_tokens: Count = 0  # included in output_tokens (OpenAI's meaning)
    # Split of cache_creation_tokens by TTL when the source knows it (Claude Code); cost needs it.
    cache_creation_5m_tokens: Count | None = None
    cache_creation_1h_tokens: Count | None = None
    speed: Name | None = None  # "fast" when the provider's fast mode was used
    cost_usd: Finite | None = None
    latency_ms: Finite | None = None
    ok: bool = True
    error: Message | None = None
    # The account's limits reported with this response, when the client logs them (Codex).
    rate_limits: RateLimits | None = None


class SessionEndedData(_Frame):
    exit_code: int | None = Field(default=None, ge=-INT_MAX, le=INT_MAX)
    reason: Message | None = None


class AgentNoticeData(_Frame):
    severity: Severity = "info"
    message: Message


# Test runners whose runs a session's shell tool calls are reported as `test.run` (go: `go test`,
# cargo: `cargo test`, npm / pnpm / yarn: their `test` script).
TEST_RUNNERS = ("pytest", "go", "cargo", "npm", "pnpm", "yarn", "jest", "vitest")
TestRunner = Literal["pytest", "go", "cargo", "npm", "pnpm", "yarn", "jest", "vitest"]
TEST_COUNT_MAX = 10_000_000  # passed / failed tests of one run; more is a misread, refused
EXIT_CODE_MAX = 2**31 - 1


class TestRunData(_Frame):
    """A test runner the session executed through its shell tool, with how it ended."""

    __test__ = False  # a name pytest would otherwise try to collect where a test module imports it

    runner: TestRunner
    command: Name  # the command line as the session ran it, one line
    exit_code: int = Field(ge=-EXIT_CODE_MAX, le=EXIT_CODE_MAX)
    passed: int | None = Field(default=None, ge=0, le=TEST_COUNT_MAX)  # when the runner printed them
    failed: int | None = Field(default=None, ge=0, le=TEST_COUNT_MAX)


EVENT_DATA_MODELS: dict[str, type[_Frame]] = {
    "session.started": SessionStartedData,
    "session.state": SessionStateData,
    "llm.call": LlmCallData,
    "session.ended": SessionEndedData,
    "session.limits": RateLimits,
    "agent.notice": AgentNoticeData,
    "test.run": TestRunData,
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


class PriorityGateArgs(_Frame):
    """Queued items of the `high` managed names start only while fewer than `cap` high-priority
    sessions run on the node: the agent's own runs of those names plus `others` the console counts."""

    high: list[Name] = Field(default_factory=list, max_length=256)
    cap: int = Field(ge=0, le=10_000)
    others: int = Field(default=0, ge=0, le=INT_MAX)


COMMAND_ARG_MODELS: dict[str, type[_Frame]] = {
    "session.renice": ReniceArgs,
    "session.prompt": PromptArgs,
    "node.set_concurrency": ConcurrencyArgs,
    "queue.move": QueueMoveArgs,
    "queue.accept": QueueAcceptArgs,
    "queue.set_priority": PriorityGateArgs,
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
    except RecursionError:
        # json's decoder recurses per nesting level: a hostile peer's frame, not a fault of ours.
        raise FrameError("bad_json", "frame is nested too deeply") from None
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
        seq = obj.get("seq")
        which = f"{obj['type']} frame {seq}" if isinstance(seq, int) else f"{obj['type']} frame"
        raise FrameError("bad_frame", f"bad {which}: {_first_error(exc)}") from None


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
