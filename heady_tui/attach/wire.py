"""The attach protocol (docs/attach.md): line-delimited JSON over a Unix socket, bounded both ways.

The service sends `hello`, one `snapshot` of what its query layer shows, then `delta`s, `event`s,
`reply`s and `error`s. A client sends `hello`, then `act` (an operator action), `hold`/`release` (a
consent dialog opened or closed), `focus` and `query` (a read the service answers from its records).

What is shown is a set of keyed sections (`SECTIONS`): each maps a key to a JSON value, and a delta
carries the entries that changed and the keys that went. Node metric rings travel as samples: all of
them in the snapshot, the new ones in each delta.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from heady_agent.protocol import Detail
from heady_tui.brain.lease import LeaseView
from heady_tui.engine.consent import ConsentRequest, Grant
from heady_tui.accounts import AccountWindow
from heady_tui.engine.cost import BurnNotice, CostSummary
from heady_tui.engine.detector import EquilibriumReading
from heady_tui.engine.healing import HealingCycle, Task, WeakPoint
from heady_tui.engine.policies import NeedsAttention
from heady_tui.engine.rebalance import RebalanceStatus
from heady_tui.events import finite_json
from heady_tui.fleet import NodeState, Ring
from heady_tui.ledger import SessionRecord

PROTOCOL_VERSION = 1
SOCKET_DIR = "attach"  # under the data dir, 0700
SOCKET_NAME = "console.sock"  # 0600

# A client's messages are small (an action and its arguments); the service's snapshot carries the
# whole fleet (thousands of sessions, 600-sample rings per node), so the client reads longer lines.
MAX_CLIENT_LINE = 64 * 1024
MAX_SERVICE_LINE = 256 * 1024 * 1024
MAX_CLIENT_DEPTH = 6
MAX_SERVICE_DEPTH = 32
MAX_ID = 200  # characters of an id, node or session name in a client message
MAX_TEXT = 2000  # characters of a reason or a free-text argument

SECTIONS = ("console", "nodes", "sessions", "details", "brain")
CLIENT_TYPES = ("hello", "act", "hold", "release", "focus", "query")

Json = object  # a value json.loads returned: dict, list, str, int, float, bool or None
Section = dict[str, Json]
Sample = tuple[float, float, float, float, float]  # ts, cpu, mem, load per core, queue depth


class AttachError(OSError):
    """A socket that cannot be served or attached to (one line)."""


class WireError(ValueError):
    """A line that is not a valid message; its text is the one-line error sent back."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_DIR / SOCKET_NAME


# --- framing ------------------------------------------------------------------------------


def _no_constant(name: str) -> object:
    raise WireError(f"not JSON: {name} is not a number JSON allows")


def _depth(value: object) -> int:
    """Nesting depth of a parsed value, iteratively (a deep value must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def decode(line: bytes, *, max_depth: int) -> dict[str, Json]:
    """One line -> a message with a string `type`. WireError (one line) for anything else."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("not UTF-8") from None
    if not text.strip():
        raise WireError("empty line")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise WireError(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise WireError("a message is a JSON object")
    if _depth(value) > max_depth:
        raise WireError(f"nested deeper than {max_depth} levels")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise WireError("a message needs a string \"type\"")
    return value


def encode(message: Mapping[str, object]) -> bytes:
    """Strict JSON on one line; a non-finite number (not JSON) is sent as null."""
    try:
        text = json.dumps(message, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(finite_json(message), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def error_line(text: str) -> bytes:
    return encode({"type": "error", "error": text.splitlines()[0] if text else "error"})


def one_line(exc: ValidationError) -> str:
    """The first problem pydantic found, as `field: message`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


# --- client messages ----------------------------------------------------------------------



def _id() -> Any:
    """An id, node or session name: 1 to MAX_ID characters."""
    return Field(min_length=1, max_length=MAX_ID)


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: str


class ClientHello(ClientMessage):
    version: int


class Act(ClientMessage):
    """An operator action; `id` is echoed in the reply."""

    id: str = _id()
    action: str = Field(max_length=MAX_ID)
    args: dict[str, object] = Field(default_factory=dict)


class Hold(ClientMessage):
    request: str = _id()


class Focus(ClientMessage):
    node: str = _id()
    on: bool


class Query(ClientMessage):
    id: str = _id()
    what: str = Field(max_length=MAX_ID)
    args: dict[str, object] = Field(default_factory=dict)


CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {
    "hello": ClientHello, "act": Act, "hold": Hold, "release": Hold, "focus": Focus, "query": Query,
}


def client_message(message: dict[str, Json]) -> ClientMessage:
    """A decoded line as its message; WireError for an unknown type or bad fields."""
    kind = str(message["type"])
    model = CLIENT_MESSAGES.get(kind)
    if model is None:
        raise WireError(f"unknown message type {kind[:MAX_ID]!r} (known: {', '.join(CLIENT_TYPES)})")
    try:
        return model.model_validate(message)
    except ValidationError as exc:
        raise WireError(f"{kind}: {one_line(exc)}") from None


# --- operator actions: their arguments and what they return -------------------------------


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CommandArgs(Arguments):
    node: str = _id()
    action: str = Field(max_length=MAX_ID)
    target: str | None = Field(default=None, max_length=MAX_ID)
    args: dict[str, object] = Field(default_factory=dict)


class TaskArgs(Arguments):
    task: str = _id()


class PolicyArgs(Arguments):
    node: str = _id()
    session: str = _id()
    policy: str = Field(max_length=MAX_ID)


class PriorityArgs(Arguments):
    node: str = _id()
    session: str = _id()
    priority: str = Field(max_length=MAX_ID)


class DecideArgs(Arguments):
    request: str = _id()
    decision: str = Field(max_length=MAX_ID)


class GrantArgs(Arguments):
    scope: str = Field(max_length=MAX_ID)
    reason: str = Field(max_length=MAX_TEXT)


class RevokeArgs(Arguments):
    grant: str = _id()


class DeployArgs(Arguments):
    node: str | None = Field(default=None, max_length=MAX_ID)


ACTIONS: dict[str, type[Arguments]] = {
    "command": CommandArgs,
    "task.approve": TaskArgs,
    "task.reject": TaskArgs,
    "policy.reset": PolicyArgs,
    "session.priority": PriorityArgs,
    "consent.decide": DecideArgs,
    "grant": GrantArgs,
    "revoke": RevokeArgs,
    "notify_deploy": DeployArgs,
}


class AuditArgs(Arguments):
    limit: int = Field(default=50, ge=1, le=5000)


class KpiArgs(Arguments):
    since: float = Field(allow_inf_nan=False)
    until: float = Field(allow_inf_nan=False)


class TimelineArgs(Arguments):
    node: str = _id()
    session: str = _id()
    newest: int = Field(ge=1, le=5000)


class NoArgs(Arguments):
    pass


QUERIES: dict[str, type[Arguments]] = {"audit_entries": AuditArgs, "verify_audit": NoArgs, "rebalance_kpis": KpiArgs,
                                       "session_timeline": TimelineArgs}


def parsed_args(table: Mapping[str, type[Arguments]], what: str, kind: str, args: Mapping[str, object]) -> Arguments:
    model = table.get(what)
    if model is None:
        raise WireError(f"unknown {kind} {what[:MAX_ID]!r} (known: {', '.join(table)})")
    try:
        return model.model_validate(dict(args))
    except ValidationError as exc:
        raise WireError(f"{what}: {one_line(exc)}") from None


# --- the shown state ----------------------------------------------------------------------


@dataclass
class ConsoleShown:
    """What the service says about itself."""

    simulated: bool = False
    insecure_links: list[str] = field(default_factory=list)  # nodes whose link is not verified TLS


@dataclass
class BrainShown:
    """The brain's read API as the UI reads it (docs/internals.md), one field per read."""

    view_only: bool
    equilibrium: EquilibriumReading | None
    lease: LeaseView | None
    rebalance: RebalanceStatus | None
    costs_today: dict[str, float]
    burn_alerts: list[BurnNotice]
    cost_summary: CostSummary
    pending_consent: list[ConsentRequest]
    grants: list[Grant]  # inactive ones included; a reader filters by status
    tasks: list[Task]
    weak_points: list[WeakPoint]
    healing_cycles: list[HealingCycle]
    needs_attention: list[NeedsAttention]
    accounts: list[AccountWindow] = field(default_factory=list)


CONSOLE_ADAPTER = TypeAdapter(ConsoleShown)
BRAIN_ADAPTER = TypeAdapter(BrainShown)
SESSION_ADAPTER = TypeAdapter(SessionRecord)
SAMPLES_ADAPTER = TypeAdapter(list[tuple[float, float, float, float, float]])

_NODE_HINTS = get_type_hints(NodeState)
RING_FIELDS = tuple(name for name, hint in _NODE_HINTS.items() if hint is Ring)
NODE_FIELDS = tuple(f.name for f in dataclasses.fields(NodeState) if f.name not in RING_FIELDS)
# NodeState without its rings, validated field by field with NodeState's own types.
NodeWire = create_model(  # type: ignore[call-overload]
    "NodeWire", __config__=ConfigDict(extra="forbid"), **{name: (_NODE_HINTS[name], ...) for name in NODE_FIELDS}
)


def session_key(rec: SessionRecord) -> str:
    return _key(rec.node, rec.id)


@functools.lru_cache(maxsize=1 << 16)  # computed once per session, not once per publication
def _key(node: str, session: str) -> str:
    return json.dumps([node, session])


def dump_session(rec: SessionRecord) -> dict[str, Json]:
    """The ledger row's fields (all of them plain JSON values), copied: cheap enough to redo for
    thousands of sessions at every publication and compare with the last one sent."""
    return dict(vars(rec))


def dump_node(node: NodeState) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for name in NODE_FIELDS:
        value = getattr(node, name)
        out[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
    return json.loads(json.dumps(out))  # tuples as lists: what the other side reads back


def load_node(data: Json) -> NodeState:
    try:
        wire = NodeWire.model_validate(data)
    except ValidationError as exc:
        raise WireError(f"node: {one_line(exc)}") from None
    return NodeState(**{name: getattr(wire, name) for name in NODE_FIELDS})


def node_samples(node: NodeState, after: float | None) -> list[list[float]]:
    """The node's ring samples newer than `after` (all of them for None), oldest first. Only the
    new tail of each ring is read, so a delta costs what it carries."""
    times = node.sample_ts.values()
    start = 0 if after is None else bisect.bisect_right(times, after)
    count = len(times) - start
    if count <= 0:
        return []
    rings = [times[start:], node.cpu.values(count), node.mem.values(count), node.load.values(count), node.queue.values(count)]
    return [list(sample) for sample in zip(*rings, strict=True)]


def push_samples(node: NodeState, data: Json) -> None:
    """Append samples newer than the node's last one (a delta may repeat what a snapshot had)."""
    try:
        samples = SAMPLES_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise WireError(f"samples: {one_line(exc)}") from None
    last = node.sample_ts.last()
    for ts, cpu, mem, load, queue in samples:
        if last is not None and ts <= last:
            continue
        node.sample_ts.push(ts)
        node.cpu.push(cpu)
        node.mem.push(mem)
        node.load.push(load)
        node.queue.push(queue)
        last = ts


def dump_detail(detail: Detail) -> Json:
    return detail.model_dump(mode="json")


def load_detail(data: Json) -> Detail:
    try:
        return Detail.model_validate(data)
    except ValidationError as exc:
        raise WireError(f"detail: {one_line(exc)}") from None
