"""The console's WebSocket link to one node's agent.

Connect (bearer token, verified TLS), read hello, subscribe from the stored cursor, hand frames to
the sink in batches, ack what the sink stored, reconnect with jittered exponential back-off.
Anything a node does wrong (garbage, oversized frames, seq going backwards, silence, a refused
token, a bad certificate) becomes that node's recorded error; good data already received is kept,
other nodes never notice, and the link never raises out of its task.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import ssl
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from heady_agent.aio import cancel_and_wait
from heady_agent.clock import Clock, SystemClock
from heady_agent.config import ConfigError
from heady_agent.protocol import (
    MAX_FRAME_BYTES,
    AgentFrame,
    PROTOCOL_VERSION,
    Ack,
    Command,
    Detail,
    ErrorFrame,
    Event,
    Focus,
    FrameError,
    Hello,
    Metrics,
    Result,
    Sessions,
    Subscribe,
    dump,
    parse_agent_frame,
    parse_event_data,
)

from .config import NodeConfig

log = logging.getLogger("heady.link")

BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 30.0
# A refused connection means the host answered and nothing listens on the port yet: the agent is
# restarting. Retrying it often is cheap for the node and brings a restarted agent back promptly.
REFUSED_BACKOFF_CAP_S = 2.0
# Failures that mean "cannot reach the agent": the node shows offline, not error, and a retry that
# fails the same way is not recorded again.
UNREACHABLE_CODES = ("closed", "unreachable", "refused")
ERRORS_PER_WINDOW = 20  # per node: recorded one by one; past this they are counted
ERROR_WINDOW_S = 60.0

# Validates JSON text straight into frames (one pass in pydantic-core, no json.loads first).
_agent_frames: TypeAdapter[Any] = TypeAdapter(AgentFrame)


class LinkSink(Protocol):
    """Where a link delivers what it receives (the supervisor; a benchmark's recorder)."""

    async def link_cursor(self, node: str) -> tuple[str, int] | None: ...

    async def link_hello(self, node: str, hello: Hello, previous_journal: str | None) -> None: ...

    async def link_frames(self, node: str, journal: str, frames: list[Metrics | Event]) -> int:
        """Store the frames; return the highest seq now stored (what the link acks)."""
        ...

    async def link_sessions(self, node: str, sessions: Sessions) -> None: ...

    def link_detail(self, node: str, detail: Detail) -> None: ...

    def link_status(self, node: str, status: str, error: str | None) -> None: ...

    async def link_error(self, node: str, code: str, message: str) -> None:
        """A recorded per-node problem that did not (necessarily) end the connection."""
        ...


class Backoff:
    """Jittered exponential back-off: 0.5 s doubling to 30 s, each delay drawn in [base/2, base]."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL_S,
        cap: float = BACKOFF_CAP_S,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.rng = rng
        self.attempt = 0

    def next_delay(self, cap: float | None = None) -> float:
        base = min(self.cap if cap is None else min(cap, self.cap), self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return base / 2 + self.rng() * base / 2

    def reset(self) -> None:
        self.attempt = 0


class ErrorBudget:
    """The first `burst` errors of each window are recorded; the rest are only counted, and the count
    is recorded once the window is over: 50,000 bad frames write a few rows, not 50,000."""

    def __init__(self, burst: int = ERRORS_PER_WINDOW, window_s: float = ERROR_WINDOW_S) -> None:
        self.burst = burst
        self.window_s = window_s
        self._window_start: float | None = None
        self._used = 0
        self.suppressed = 0
        self.last_suppressed = ""

    def admit(self, now: float, message: str) -> tuple[bool, str | None]:
        """(record this error?, the summary of the window that just closed, if it dropped any)."""
        summary = None
        if self._window_start is None or now - self._window_start >= self.window_s:
            summary = self.close()
            self._window_start = now
            self._used = 0
        if self._used < self.burst:
            self._used += 1
            return True, summary
        self.suppressed += 1
        self.last_suppressed = message
        return False, summary

    def close(self) -> str | None:
        """The summary of errors counted but not recorded so far, or None; the count restarts."""
        if not self.suppressed:
            return None
        summary = (
            f"{self.suppressed} more error{'s' if self.suppressed != 1 else ''} not recorded one by one "
            f"(over {self.burst} in {self.window_s:g} s); the last: {self.last_suppressed}"
        )
        self.suppressed = 0
        return summary


class LinkFailure(Exception):
    """Ends one connection attempt; `status` is what the node shows (error or offline)."""

    def __init__(self, message: str, *, status: str = "error", code: str = "link") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.healthy = False  # the connection stored data before it ended: the back-off resets


@dataclass
class _Stop:
    failure: LinkFailure | None


class _Inbox:
    """Frames between the reader and the storer: a deque with a bound (back-pressure on the socket).

    Cheaper per frame than asyncio.Queue, which matters at tens of thousands of frames a second.
    The bound weighs a sessions frame by the sessions it lists: one frame may carry thousands,
    and storing each costs like storing a frame.
    """

    def __init__(self, limit: int) -> None:
        self.items: deque[tuple[Any, int]] = deque()
        self.limit = limit
        self.weight = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, item: Any, weight: int = 1) -> None:
        self.items.append((item, weight))
        self.weight += weight
        self._ready.set()
        if self.weight >= self.limit:
            self._room.clear()
            await self._room.wait()

    async def take(self, most: int) -> list[Any]:
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        items = self.items
        batch = []
        for _ in range(min(most, len(items))):
            item, weight = items.popleft()
            self.weight -= weight
            batch.append(item)
        if self.weight < self.limit:
            self._room.set()
        return batch


def tls_context(node: NodeConfig) -> ssl.SSLContext | None:
    """Verified TLS for wss:// (system CAs plus the node's ca_file); None for ws://."""
    if not node.url.startswith("wss://"):
        return None
    context = ssl.create_default_context()
    if node.ca_file:
        try:
            context.load_verify_locations(cafile=node.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"nodes.{node.name}.ca_file: cannot load {node.ca_file}: {exc}") from None
    if node.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or `localhost`, by parsing the address: `127.evil.example` is not loopback."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def security_warnings(node: NodeConfig) -> list[str]:
    """What about a node's link an operator must see on screen, not only in heady.log."""
    warnings = []
    url = urlsplit(node.url)
    if url.scheme == "wss" and node.insecure_skip_verify:
        warnings.append("TLS certificate verification is off (insecure_skip_verify): anyone on the path can pose as the agent")
    if url.scheme == "ws" and not is_loopback_host(url.hostname):
        clear = "the token and all data travel in clear" if node.token or node.token_env or node.token_file else "all data travels in clear"
        warnings.append(f"unencrypted ws:// to {url.hostname}, not loopback: {clear}; use wss://")
    return warnings


def describe_connect_error(exc: BaseException) -> str:
    """One line for why a connection attempt failed; never includes the token."""
    if isinstance(exc, InvalidStatus):
        code = exc.response.status_code
        if code == 401:
            return "401 unauthorized: the agent refused the token"
        return f"HTTP {code} {exc.response.reason_phrase}".strip()
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or exc.reason} (certificate verification failed)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "unreachable: connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable: connection refused"
    if isinstance(exc, OSError):
        return f"unreachable: {exc.strerror or exc}"
    if isinstance(exc, InvalidURI):
        return f"bad url: {exc}"
    if isinstance(exc, InvalidHandshake):
        return f"handshake failed: {exc}"
    return f"{type(exc).__name__}: {exc}"


TEMPORARY_HTTP_STATUSES = frozenset({502, 503, 504})


def connect_failure(exc: BaseException) -> LinkFailure:
    """Why a connection attempt failed: unreachable or unavailable for now (offline), or refused by
    the agent (error: a token, TLS or address the operator must fix)."""
    message = describe_connect_error(exc)
    if isinstance(exc, ConnectionRefusedError):
        return LinkFailure(message, status="offline", code="refused")
    if message.startswith("unreachable"):
        return LinkFailure(message, status="offline", code="unreachable")
    if isinstance(exc, InvalidStatus) and exc.response.status_code in TEMPORARY_HTTP_STATUSES:
        # The agent (or a proxy before it) is there but cannot take the link now: the node is down
        # for the moment, not misconfigured.
        return LinkFailure(message, status="offline", code="unavailable")
    return LinkFailure(message, code="connect")


def retry_cap_s(failure: LinkFailure) -> float | None:
    """The most to wait before retrying after this failure (None: the back-off's own cap)."""
    return REFUSED_BACKOFF_CAP_S if failure.code == "refused" else None


class NodeLink:
    def __init__(
        self,
        node: NodeConfig,
        sink: LinkSink,
        *,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        hello_timeout_s: float = 10.0,
        idle_timeout_s: float = 120.0,
        open_timeout_s: float = 10.0,
        ping_interval_s: float = 10.0,
        command_timeout_s: float = 15.0,
        batch_max: int = 2000,
    ) -> None:
        self.node = node
        self.name = node.name
        self.sink = sink
        self.clock = clock or SystemClock()
        self.backoff = Backoff(rng=rng)
        self._sleep = sleep
        self.hello_timeout_s = hello_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.command_timeout_s = command_timeout_s
        self.batch_max = batch_max
        self.status = "connecting"
        self.since = self.clock.now()
        self.last_error: str | None = None
        self.journal: str | None = None
        self.journal_reset = False
        self.connects = 0
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[Result]] = {}
        self._focus = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_rx = 0.0
        self._idle = False
        self._errors = ErrorBudget()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"link:{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        await cancel_and_wait([task])
        self._fail_pending("link stopped")
        summary = self._errors.close()
        if summary is not None:
            await self._write_error("suppressed", summary)

    async def run(self) -> None:
        """Connect, stream, and reconnect until stopped. Never raises (except cancellation)."""
        while not self._stopping:
            try:
                await self._connect_once()
                failure = LinkFailure("connection ended", status="offline", code="closed")
            except LinkFailure as exc:
                failure = exc
            except asyncio.CancelledError:
                raise
            except ConfigError as exc:
                failure = LinkFailure(str(exc), code="config")
            except Exception as exc:  # one node's surprise must never take the console down
                log.exception("node %s: unexpected link failure", self.name)
                failure = LinkFailure(f"internal error: {type(exc).__name__}: {exc}", code="internal")
            finally:
                self._ws = None
                self._fail_pending("disconnected")
            summary = self._errors.close()
            if summary is not None:
                await self._write_error("suppressed", summary)
            if self._stopping:
                return
            if failure.healthy:
                self.backoff.reset()
            repeated = failure.message == self.last_error
            self._set_status(failure.status, failure.message)
            # A node retrying every 30 s with the same refusal is recorded once, not 2,880 times a day.
            if failure.code not in UNREACHABLE_CODES and not repeated:
                await self._record(failure.code, failure.message)
            delay = self.backoff.next_delay(retry_cap_s(failure))
            log.info("node %s: %s; reconnecting in %.1f s", self.name, failure.message, delay)
            await self._sleep(delay)

    # --- one connection -----------------------------------------------------------------

    async def _connect_once(self) -> None:
        """One connection's life; always ends in a LinkFailure saying why."""
        headers = {}
        token = self.node.resolve_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        context = tls_context(self.node)
        if context is not None and self.node.insecure_skip_verify:
            log.warning("node %s: TLS certificate verification is OFF (insecure_skip_verify)", self.name)
        try:
            ws = await connect(
                self.node.url,
                additional_headers=headers,
                ssl=context,
                max_size=MAX_FRAME_BYTES,
                open_timeout=self.open_timeout_s,
                ping_interval=self.ping_interval_s,
                ping_timeout=self.ping_interval_s * 2,
                close_timeout=2,
                compression=None,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise connect_failure(exc) from None
        self._ws = ws
        self.connects += 1
        try:
            await self._session(ws)
        finally:
            await ws.close()

    async def _session(self, ws: ClientConnection) -> None:
        hello = await self._read_hello(ws)
        previous = await self.sink.link_cursor(self.name)
        prev_journal, prev_seq = previous if previous else (None, 0)
        self.journal = hello.journal.id
        await self.sink.link_hello(self.name, hello, prev_journal)
        if prev_journal is not None and prev_journal != hello.journal.id:
            self.journal_reset = True
        elif prev_journal == hello.journal.id and hello.journal.first_seq > prev_seq + 1:
            await self._record(
                "gap",
                f"the agent's journal starts at seq {hello.journal.first_seq}; seqs {prev_seq + 1}.."
                f"{hello.journal.first_seq - 1} were pruned before this console stored them",
            )
        await ws.send(dump(Subscribe(since=prev_seq, journal=prev_journal)))
        if self._focus:
            await ws.send(dump(Focus(detail=True)))
        self._set_status("online", None)

        queue = _Inbox(self.batch_max * 4)
        reader = asyncio.create_task(self._read_loop(ws, hello.journal.id, queue), name=f"link-read:{self.name}")
        writer = asyncio.create_task(self._write_loop(ws, hello.journal.id, queue), name=f"link-store:{self.name}")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done():
                # Storing failed; the reader may be blocked on a full queue, so it is stopped.
                reader.cancel()
                stored, failure = writer.result()
            else:
                failure = reader.result()
                await queue.put(_Stop(failure))
                stored, store_failure = await writer
                failure = store_failure or failure
        finally:
            await cancel_and_wait([reader, writer])
        failure = failure or LinkFailure("connection ended", status="offline", code="closed")
        # A node that breaks the protocol after storing a frame must not earn a fast reconnect:
        # otherwise one bad frame per connection turns the back-off into two reconnects a second.
        failure.healthy = stored and failure.code != "protocol"
        raise failure

    async def _read_hello(self, ws: ClientConnection) -> Hello:
        try:
            async with asyncio.timeout(self.hello_timeout_s):
                text = await ws.recv()
        except TimeoutError:
            raise LinkFailure(f"no hello within {self.hello_timeout_s:g} s (silent agent)", code="silent") from None
        except ConnectionClosed as exc:
            raise LinkFailure(_closed_reason(exc), status="offline", code="closed") from None
        if isinstance(text, bytes):
            raise LinkFailure("protocol: binary frame where hello was expected", code="protocol")
        try:
            frame = parse_agent_frame(text)
        except FrameError as exc:
            raise LinkFailure(f"protocol: bad hello: {exc.message}", code="protocol") from None
        if not isinstance(frame, Hello):
            raise LinkFailure(f"protocol: expected hello, got {frame.type}", code="protocol")
        if frame.protocol != PROTOCOL_VERSION:
            raise LinkFailure(
                f"protocol mismatch: the agent speaks protocol {frame.protocol}, this console {PROTOCOL_VERSION}",
                code="protocol",
            )
        return frame

    async def _read_loop(self, ws: ClientConnection, journal: str, queue: _Inbox) -> LinkFailure | None:
        """Read until the connection ends; return why it ended (None: cancelled cleanly)."""
        last_seq = 0
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        self._idle = False
        # One watchdog per connection rather than a timer per frame: at thousands of frames a
        # second, arming a timeout around every recv costs more than parsing the frame.
        watchdog = asyncio.create_task(self._watch_idle(ws), name=f"link-idle:{self.name}")
        try:
            while True:
                try:
                    text = await ws.recv()
                except ConnectionClosed as exc:
                    if self._idle:
                        return LinkFailure(f"no data for {self.idle_timeout_s:g} s (silent agent)", code="silent")
                    return _closed_failure(exc)
                self._last_rx = loop.time()
                failure = await self._accept(text, journal, queue, last_seq)
                if isinstance(failure, LinkFailure):
                    return failure
                last_seq = failure
        finally:
            watchdog.cancel()

    async def _watch_idle(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle_timeout_s / 4)
            if loop.time() - self._last_rx > self.idle_timeout_s:
                self._idle = True
                await ws.close(code=1001, reason="no data")
                return

    async def _accept(self, text: str | bytes, journal: str, queue: _Inbox, last_seq: int) -> int | LinkFailure:
        """Route one received frame; returns the stream's last seq, or the failure that ends the connection."""
        if isinstance(text, bytes):
            await self._record("bad_frame", "binary frame ignored (the protocol is JSON text)")
            return last_seq
        try:
            frame = _agent_frames.validate_json(text)
        except ValueError:
            # Slow path only for bad frames: the protocol parser says precisely what is wrong.
            try:
                frame = parse_agent_frame(text)
            except FrameError as exc:
                await self._record(exc.code, f"frame ignored: {exc.message}")
                return last_seq
        if isinstance(frame, (Metrics, Event)):
            if isinstance(frame, Event):
                # The payload is checked and cleaned here, before it is stored, like the frame itself.
                try:
                    frame.data = parse_event_data(frame.kind, frame.data).model_dump(exclude_unset=True)
                except FrameError as exc:
                    # Skipped rather than retried: the same frame would fail again on every reconnect.
                    await self._record("bad_frame", f"frame {frame.seq} ignored: {exc.message}")
                    return last_seq
            if frame.journal and frame.journal != journal:
                return LinkFailure(
                    f"protocol: frame of journal {frame.journal} on a connection to journal {journal}",
                    code="protocol",
                )
            if frame.seq <= last_seq:
                return LinkFailure(f"protocol: seq went backwards ({frame.seq} after {last_seq})", code="protocol")
            await queue.put(frame)
            return frame.seq
        if isinstance(frame, Sessions):
            await queue.put(frame, max(1, len(frame.sessions)))
        elif isinstance(frame, Result):
            future = self._pending.pop(frame.id, None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif isinstance(frame, Detail):
            self.sink.link_detail(self.name, frame)
        elif isinstance(frame, ErrorFrame):
            await self._record(f"agent:{frame.code}", f"the agent reported: {frame.message}")
        else:
            await self._record("protocol", "unexpected second hello ignored")
        return last_seq

    async def _write_loop(
        self, ws: ClientConnection, journal: str, queue: _Inbox
    ) -> tuple[bool, LinkFailure | None]:
        """Store batches in arrival order, ack each; returns (stored anything, store failure).

        When storing fails nothing more is acked: the agent keeps the frames for the next subscribe.
        """
        stored_any = False
        acked = 0
        try:
            while True:
                items = await queue.take(self.batch_max)
                frames: list[Metrics | Event] = []
                for item in items:
                    if isinstance(item, (Metrics, Event)):
                        frames.append(item)
                        continue
                    stored, acked = await self._store(ws, journal, frames, acked)
                    stored_any = stored_any or stored
                    frames = []
                    if isinstance(item, _Stop):
                        return stored_any, None
                    await self.sink.link_sessions(self.name, item)
                stored, acked = await self._store(ws, journal, frames, acked)
                stored_any = stored_any or stored
        except LinkFailure as exc:
            return stored_any, exc

    async def _store(self, ws: ClientConnection, journal: str, frames: list[Metrics | Event], acked: int) -> tuple[bool, int]:
        if not frames:
            return False, acked
        try:
            top = await self.sink.link_frames(self.name, journal, frames)
        except Exception as exc:
            message = f"store: {exc}"
            log.error("node %s: %s", self.name, message)
            await ws.close()
            raise LinkFailure(message, code="store") from None
        if top > acked:
            try:
                await ws.send(dump(Ack(seq=top)))
            except ConnectionClosed:
                pass  # stored anyway; the next subscribe starts after it
            acked = top
        return True, acked

    # --- commands and focus -------------------------------------------------------------

    async def send_command(
        self, action: str, target: str | None = None, args: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Result:
        command_id = uuid.uuid4().hex
        ws = self._ws
        if ws is None or self.status != "online":
            return Result(id=command_id, ok=False, error="offline", detail={"message": f"node {self.name} is {self.status}"})
        try:
            frame = Command.model_validate({"id": command_id, "action": action, "target": target, "args": args or {}})
        except ValueError as exc:
            return Result(id=command_id, ok=False, error="bad_command", detail={"message": str(exc).splitlines()[0]})
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            await ws.send(dump(frame))
            async with asyncio.timeout(timeout if timeout is not None else self.command_timeout_s):
                return await future
        except TimeoutError:
            return Result(id=command_id, ok=False, error="timeout", detail={"message": f"no result from {self.name}"})
        except ConnectionClosed:
            return Result(id=command_id, ok=False, error="disconnected", detail={"message": f"{self.name} disconnected"})
        finally:
            self._pending.pop(command_id, None)

    async def focus(self, on: bool) -> None:
        self._focus = on
        ws = self._ws
        if ws is not None and self.status == "online":
            try:
                await ws.send(dump(Focus(detail=on)))
            except ConnectionClosed:
                pass  # resent on reconnect

    def _fail_pending(self, reason: str) -> None:
        for command_id, future in list(self._pending.items()):
            if not future.done():
                future.set_result(Result(id=command_id, ok=False, error="disconnected", detail={"message": reason}))
        self._pending.clear()

    # --- status -------------------------------------------------------------------------

    def _set_status(self, status: str, error: str | None) -> None:
        if status == self.status and error == self.last_error:
            return
        self.status = status
        self.since = self.clock.now()
        self.last_error = error
        self.sink.link_status(self.name, status, error)

    async def _record(self, code: str, message: str) -> None:
        admitted, summary = self._errors.admit(self.clock.monotonic(), message)
        if summary is not None:
            await self._write_error("suppressed", summary)
        if admitted:
            await self._write_error(code, message)

    async def _write_error(self, code: str, message: str) -> None:
        log.warning("node %s: %s", self.name, message)
        try:
            await self.sink.link_error(self.name, code, message)
        except Exception:  # recording an error must not become a second one
            log.exception("node %s: could not record an error", self.name)


def _closed_reason(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is not None:
        return f"connection closed by the agent (code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''})"
    sent = exc.sent
    if sent is not None and sent.code == 1009:
        return f"frame larger than {MAX_FRAME_BYTES} bytes; connection closed"
    return "connection lost"


def _closed_failure(exc: ConnectionClosed) -> LinkFailure:
    reason = _closed_reason(exc)
    sent = exc.sent
    if sent is not None and sent.code == 1009:
        return LinkFailure(reason, code="too_large")
    if sent is not None and sent.code == 1011 and "ping" in (sent.reason or ""):
        return LinkFailure("no answer to pings (silent agent)", code="silent")
    return LinkFailure(reason, status="offline", code="closed")
