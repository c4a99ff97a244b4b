"""The agent's OTLP/HTTP receiver: OpenTelemetry logs and metrics that coding clients export.

`POST /v1/logs` and `POST /v1/metrics`, protobuf (`application/x-protobuf`) or JSON
(`application/json`), plain or gzip, as the OTLP/HTTP specification describes. What arrives is
untrusted: bodies are bounded before and after decompression, decoding runs in a worker thread
(the agent's loop never waits on it), only scalar attributes are kept and each is cut to a bound,
and a batch is handed on as plain records (`TelemetryRecord`) to a handler that commits them before
the client hears 200. Loopback by default; on any other address the agent's bearer token is required.

Answers follow the specification: 200 with an empty (or partial-success) export response in the
request's encoding; 400 for a body that does not decode; 401 without the token; 404 / 405 for
other paths and methods; 413 for a body over the limits; 415 for other media types or encodings;
503 with Retry-After while too many batches are being taken (decoded or stored); 500 when the batch
could not be stored (nothing of it was). A connection past MAX_CONNECTIONS open ones is closed at
once, counted as `otlp_capacity`. Everything after the transport (`Intake`) is shared with the
OTLP/gRPC receiver (otlp_grpc.py).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import math
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import h11
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

log = logging.getLogger("heady_agent.otlp")

MAX_BODY_BYTES = 4 * 1024 * 1024  # as sent (compressed or not)
MAX_DECODED_BYTES = 16 * 1024 * 1024  # after gzip
MAX_HEADER_BYTES = 16 * 1024
MAX_RECORDS = 20_000  # log records plus metric points per request
MAX_ATTRIBUTES = 64  # per record; the clients send about 30
NAME_CHARS = 128  # an attribute key, an event or metric name
VALUE_CHARS = 256  # a string attribute value
MAX_CONNECTIONS = 64
MAX_DECODING = 2  # batches decoded or being stored at once, per listener; more are refused (503) for the client to retry
RETRY_AFTER_S = 2
LINGER_S = 2.0  # after refusing a body unread, how long the rest of it is read and dropped
LINGER_BYTES = 2 * MAX_BODY_BYTES
READ_TIMEOUT_S = 30.0  # a request must arrive whole within this (a slow client holds no slot for long)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# OTLP/JSON writes trace and span ids as hex, which the protobuf JSON mapping would read as base64.
HEX_ID_FIELDS = ("traceId", "spanId")

Signal = Literal["logs", "metrics"]
Scalar = str | int | float | bool
SIGNALS: dict[str, Signal] = {"/v1/logs": "logs", "/v1/metrics": "metrics"}


@dataclass(frozen=True)
class TelemetryRecord:
    """One log record (an event) or one metric data point, as the handler sees it."""

    signal: Signal
    service: str  # the resource's service.name ("claude-code", "codex_exec", ...)
    name: str  # the event's name (`claude_code.api_request`, `codex.sse_event`) or the metric's
    ts: float | None  # seconds since the epoch, when the record says (the handler judges it)
    attributes: Mapping[str, Scalar]
    value: float | None = None  # a metric point's value
    cumulative: bool = False  # a sum point holding the total since its start, not the interval's delta


@dataclass(frozen=True)
class Batch:
    records: list[TelemetryRecord]
    rejected: int  # records dropped (too many, or not what a record must be)


class BadRequest(Exception):
    """A body that does not decode; the message is one line for the client and the log."""


class TooLarge(Exception):
    """A body over the limits once decompressed."""


Handler = Callable[[Batch], Awaitable[None]]
# Why an export request was not taken, whatever carried it; each transport answers with its status.
RefusalKind = Literal["undecodable", "too_large", "busy", "unstored"]
HTTP_STATUS: dict[RefusalKind, int] = {"undecodable": 400, "too_large": 413, "busy": 503, "unstored": 500}


class Refused(Exception):
    """An export request not taken: `kind` says why, the message (one line) says it to the client."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Intake:
    """What every transport does once an export request's bytes have arrived: decode them in a worker
    thread and hand the batch to the handler, which commits it before the client hears OK. At most
    MAX_DECODING batches are decoded or stored at once; more are refused as busy (the client retries)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._taking = 0

    async def take(self, signal: Signal, body: bytes, *, as_json: bool, gzipped: bool) -> Batch:
        if self._taking >= MAX_DECODING:
            raise Refused("busy", "busy; retry later")
        self._taking += 1
        try:
            try:
                batch = await asyncio.to_thread(decode, signal, body, as_json, gzipped)
            except BadRequest as exc:
                raise Refused("undecodable", str(exc)) from None
            except TooLarge as exc:
                raise Refused("too_large", str(exc)) from None
            try:
                await self.handler(batch)
            except Exception:  # a fault of ours, not of the batch: the client is told, the agent goes on
                log.exception("an OTLP %s batch could not be stored", signal)
                raise Refused("unstored", "the agent could not store this batch") from None
            return batch
        finally:
            self._taking -= 1


class OtlpReceiver:
    def __init__(self, host: str, port: int, handler: Handler, *, token: str | None) -> None:
        self.host = host
        self._port = port
        self.intake = Intake(handler)
        self.token = token  # None: no Authorization asked (loopback)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # Refused requests by reason (`otlp_<status>`); the server shares its /metrics counts here.
        self.refused: dict[str, int] = {}

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= MAX_CONNECTIONS:
            count_refusal(self.refused, "otlp_capacity", f"{MAX_CONNECTIONS} connections are open already")
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.TimeoutError, h11.ProtocolError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            event = await asyncio.wait_for(_next_event(conn, reader), READ_TIMEOUT_S)
            if not isinstance(event, h11.Request):
                return
            status, content_type, body = await asyncio.wait_for(self._answer(conn, reader, event), READ_TIMEOUT_S)
            if status != 200:
                self._refused(status, body)
            headers = [("content-type", content_type), ("content-length", str(len(body)))]
            if status == 503:
                headers.append(("retry-after", str(RETRY_AFTER_S)))
            if conn.their_state is not h11.DONE:
                headers.append(("connection", "close"))  # the rest of the body is not read
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            if conn.their_state is not h11.DONE:
                await _linger(reader)
                return
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    def _refused(self, status: int, body: bytes) -> None:
        count_refusal(self.refused, f"otlp_{status}", body.decode("utf-8", "replace"))

    async def _answer(self, conn: h11.Connection, reader: asyncio.StreamReader, request: h11.Request) -> tuple[int, str, bytes]:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
        path = request.target.decode("latin-1").split("?", 1)[0]
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = headers.get("content-encoding", "identity").strip().lower()
        json_body = content_type == JSON

        def error(status: int, message: str) -> tuple[int, str, bytes]:
            if json_body:  # a google.rpc.Status, as the specification asks
                return status, JSON, json.dumps({"code": status, "message": message}).encode()
            return status, "text/plain; charset=utf-8", (message + "\n").encode()

        signal = SIGNALS.get(path)
        if signal is None:
            return error(404, f"no such path; POST to {' or '.join(SIGNALS)}")
        if request.method != b"POST":
            return error(405, "only POST")
        if self.token is not None and not authorized(headers.get("authorization"), self.token):
            return error(401, "missing or wrong bearer token")
        if content_type not in (PROTOBUF, JSON):
            return error(415, f"content-type must be {PROTOBUF} or {JSON}")
        if encoding not in ("identity", "gzip"):
            return error(415, "content-encoding must be gzip or none")
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return error(413, f"body over {MAX_BODY_BYTES} bytes")
        body = await _read_body(conn, reader)
        if body is None:
            return error(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            batch = await self.intake.take(signal, body, as_json=json_body, gzipped=encoding == "gzip")
        except Refused as exc:
            return error(HTTP_STATUS[exc.kind], str(exc))
        return 200, (JSON if json_body else PROTOBUF), success(signal, batch, json_body)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(65536))


async def _linger(reader: asyncio.StreamReader) -> None:
    """Read and drop what the client still sends of a refused body for a while, so it reads the
    answer instead of a connection reset."""
    dropped = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while dropped <= LINGER_BYTES:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                dropped += len(chunk)
    except TimeoutError:
        pass


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes | None:
    """The whole body, or None once it passes MAX_BODY_BYTES (the connection is then closed)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("request ended before its body")


def authorized(given: str | None, token: str) -> bool:
    """`given` is `Bearer <token>` (an HTTP header or gRPC metadata), compared in constant time."""
    scheme, _, value = (given or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def count_refusal(refused: dict[str, int], reason: str, message: str) -> None:
    if reason not in refused:  # the first of each kind is logged, the rest counted
        log.warning("refused an OTLP request (%s): %s", reason, _one_line(message))
    refused[reason] = refused.get(reason, 0) + 1


def success(signal: Signal, batch: Batch, as_json: bool) -> bytes:
    response: Message
    if signal == "logs":
        logs = ExportLogsServiceResponse()
        if batch.rejected:
            logs.partial_success.rejected_log_records = batch.rejected
            logs.partial_success.error_message = f"{batch.rejected} log records were not usable"
        response = logs
    else:
        metrics = ExportMetricsServiceResponse()
        if batch.rejected:
            metrics.partial_success.rejected_data_points = batch.rejected
            metrics.partial_success.error_message = f"{batch.rejected} data points were not usable"
        response = metrics
    if as_json:
        return json.dumps(json_format.MessageToDict(response)).encode()
    return response.SerializeToString()


# --- decoding (runs in a worker thread) ---------------------------------------------------


def decode(signal: Signal, body: bytes, as_json: bool, gzipped: bool) -> Batch:
    """The records of one export request; BadRequest / TooLarge for a body that cannot be used."""
    raw = _gunzip(body) if gzipped else body
    message: ExportLogsServiceRequest | ExportMetricsServiceRequest = (
        ExportLogsServiceRequest() if signal == "logs" else ExportMetricsServiceRequest()
    )
    try:
        if as_json:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise BadRequest("the JSON body is not an object")
            json_format.ParseDict(_without_hex_ids(document), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(raw)
    except (ValueError, DecodeError, json_format.ParseError, RecursionError) as exc:
        kind = "JSON" if as_json else "protobuf"
        raise BadRequest(f"not an OTLP {signal} export request ({kind}): {_one_line(str(exc))}") from None
    if isinstance(message, ExportLogsServiceRequest):
        return _log_records(message)
    return _metric_points(message)


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
    try:
        out = inflater.decompress(body, MAX_DECODED_BYTES + 1)
    except zlib.error as exc:
        raise BadRequest(f"not gzip: {exc}") from None
    if len(out) > MAX_DECODED_BYTES:
        raise TooLarge(f"body over {MAX_DECODED_BYTES} bytes once decompressed")
    if not inflater.eof:
        raise BadRequest("gzip body is cut short")
    return out


def _without_hex_ids(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_hex_ids(v) for k, v in value.items() if k not in HEX_ID_FIELDS}
    if isinstance(value, list):
        return [_without_hex_ids(v) for v in value]
    return value


def _log_records(message: ExportLogsServiceRequest) -> Batch:
    records: list[TelemetryRecord] = []
    rejected = 0
    for resource_logs in message.resource_logs:
        service = _service(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if len(records) >= MAX_RECORDS:
                    rejected += 1
                    continue
                attributes = _scalars(record.attributes)
                body = record.body.string_value if record.body.HasField("string_value") else ""
                name = _event_name(attributes.get("event.name"), body)
                if not name:
                    rejected += 1
                    continue
                ts = _nanos(record.time_unix_nano) or _iso(attributes.get("event.timestamp")) or _nanos(record.observed_time_unix_nano)
                records.append(TelemetryRecord("logs", service, name, ts, attributes))
    return Batch(records, rejected)


def _metric_points(message: ExportMetricsServiceRequest) -> Batch:
    records: list[TelemetryRecord] = []
    rejected = 0
    for resource_metrics in message.resource_metrics:
        service = _service(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                name = _cut(metric.name, NAME_CHARS)
                kind = metric.WhichOneof("data")
                points = metric.sum.data_points if kind == "sum" else metric.gauge.data_points if kind == "gauge" else []
                cumulative = kind == "sum" and metric.sum.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
                for point in points:
                    if len(records) >= MAX_RECORDS:
                        rejected += 1
                        continue
                    value = point.as_double if point.HasField("as_double") else float(point.as_int)
                    if not name or not math.isfinite(value):
                        rejected += 1
                        continue
                    records.append(TelemetryRecord("metrics", service, name, _nanos(point.time_unix_nano),
                                                   _scalars(point.attributes), value, cumulative))
    return Batch(records, rejected)


def _service(attributes: Iterable[KeyValue]) -> str:
    for kv in attributes:
        if kv.key == "service.name" and kv.value.HasField("string_value"):
            return _cut(kv.value.string_value, NAME_CHARS)
    return ""


def _scalars(attributes: Iterable[KeyValue]) -> dict[str, Scalar]:
    """The first MAX_ATTRIBUTES scalar attributes, keys and strings cut to their bounds, numbers finite."""
    out: dict[str, Scalar] = {}
    for kv in itertools.islice(attributes, MAX_ATTRIBUTES):
        value = _scalar(kv.value)
        if value is not None and kv.key:
            out[_cut(kv.key, NAME_CHARS)] = value
    return out


def _scalar(value: AnyValue) -> Scalar | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _cut(value.string_value, VALUE_CHARS)
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value if math.isfinite(value.double_value) else None
    return None  # arrays, maps and bytes: nothing the sources read


def _event_name(attribute: Scalar | None, body: str) -> str:
    """Codex names its events in `event.name` (`codex.api_request`); Claude Code puts the full name
    in the body (`claude_code.api_request`) and the short one in `event.name`."""
    if isinstance(attribute, str) and "." in attribute:
        return _cut(attribute, NAME_CHARS)
    if body:
        return _cut(body, NAME_CHARS)
    return _cut(attribute, NAME_CHARS) if isinstance(attribute, str) else ""


def _nanos(value: int) -> float | None:
    return value / 1e9 if value > 0 else None


def _iso(value: Scalar | None) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _cut(text: str, limit: int) -> str:
    """Printable characters only, at most `limit` of them."""
    return "".join(ch for ch in text[: limit * 2] if ch.isprintable())[:limit]


def _one_line(text: str) -> str:
    return _cut(" ".join(text.split()), 200)

