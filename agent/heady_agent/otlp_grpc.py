"""The agent's OTLP/gRPC receiver: the same export requests as otlp.py, over gRPC (port 4317 by custom).

It serves `opentelemetry.proto.collector.logs.v1.LogsService/Export` and
`opentelemetry.proto.collector.metrics.v1.MetricsService/Export` with grpc.aio. The request arrives
as bytes (no deserializer is registered) and goes through the HTTP receiver's intake (`Intake`):
the same decoding in a worker thread, the same bounds, the same handler committing the batch before
the client hears OK. Loopback by default; on any other address the agent's bearer token is required
in the `authorization` metadata.

Every refusal is decided here, so each is counted in /metrics
(`heady_agent_connections_refused_total{reason="otlp_grpc_<status>"}`, or NO_MESSAGE) and the first
of each reason logged. For that the methods are registered as stream-unary: the handler runs from
the call's start, before its message has arrived, and reads the one message itself. So it bounds the
calls in flight, messages still arriving included (MAX_RPCS_IN_FLIGHT, as `maximum_concurrent_rpcs`
did), and refuses the next at once, unread; and it sees a call whose message never came. Size: the
agent refuses a message over MAX_BODY_BYTES as gRPC hands it over, i.e. once gzip is undone (gRPC
does not say how large it was on the wire). gRPC keeps a hard cap a little above it,
GRPC_MAX_MESSAGE_BYTES, checked on the declared length before the message is buffered and again
while inflating; so gRPC holds at most MAX_RPCS_IN_FLIGHT x GRPC_MAX_MESSAGE_BYTES (320 MiB).

Status codes follow the OTLP specification: OK with an export response (its partial_success when
records were dropped); INVALID_ARGUMENT for a message that does not decode or a call without one;
UNAUTHENTICATED without the token; RESOURCE_EXHAUSTED for a message over MAX_BODY_BYTES (not
retried: the same message would be refused again); UNAVAILABLE past the calls in flight or while
too many batches are being taken (the client retries); INTERNAL when the batch could not be stored;
UNIMPLEMENTED for any other method.
"""

from __future__ import annotations

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from .otlp import MAX_BODY_BYTES, MAX_CONNECTIONS, Handler, Intake, RefusalKind, Refused, Signal, authorized, count_refusal, success

SERVICES: dict[Signal, str] = {
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}
GRPC_STATUS: dict[RefusalKind, grpc.StatusCode] = {
    "undecodable": grpc.StatusCode.INVALID_ARGUMENT,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "busy": grpc.StatusCode.UNAVAILABLE,
    "unstored": grpc.StatusCode.INTERNAL,
}
MAX_RPCS_IN_FLIGHT = MAX_CONNECTIONS  # from a call's start to its answer; more are refused UNAVAILABLE
# gRPC's own cap, a little over MAX_BODY_BYTES so that the usual oversize message reaches the handler
# and is refused (and counted) there; past it gRPC refuses the message before it is buffered whole.
GRPC_MAX_MESSAGE_BYTES = MAX_BODY_BYTES + 1024 * 1024
# A call that ended without its message: gRPC refused one over GRPC_MAX_MESSAGE_BYTES
# (RESOURCE_EXHAUSTED), or the client gave up or sent none; the handler cannot tell which.
NO_MESSAGE = "otlp_grpc_no_message"
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
    # Linux lets a second process bind a port already bound with SO_REUSEPORT; a second agent must fail.
    ("grpc.so_reuseport", 0),
)


class OtlpGrpcReceiver:
    def __init__(self, host: str, port: int, handler: Handler, *, token: str | None) -> None:
        self.host = host
        self.port = port  # the bound port once started (0 asks for any)
        self.intake = Intake(handler)
        self.token = token  # None: no authorization asked (loopback)
        self._server: grpc.aio.Server | None = None
        self._in_flight = 0
        # Refused requests by reason (`otlp_grpc_<status>`, NO_MESSAGE); the server shares its /metrics counts here.
        self.refused: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        """Export calls started and not yet answered."""
        return self._in_flight

    async def start(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((
            *(grpc.method_handlers_generic_handler(service, {"Export": self._exporter(signal)})
              for signal, service in SERVICES.items()),
            _EveryMethod(grpc.stream_unary_rpc_method_handler(self._unimplemented)),  # consulted last
        ))  # fmt: skip
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:  # grpc says only that it failed to bind
            raise OSError(f"cannot listen for OTLP/gRPC on {host}:{self.port}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {host}:{self.port}")
        await server.start()
        self.port = bound
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    def _exporter(self, signal: Signal) -> grpc.RpcMethodHandler:
        async def export(_: object, context: grpc.aio.ServicerContext) -> bytes:
            if self.token is not None and not authorized(_metadata(context, "authorization"), self.token):
                return self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            if self._in_flight >= MAX_RPCS_IN_FLIGHT:
                return self._refuse(context, grpc.StatusCode.UNAVAILABLE, f"{MAX_RPCS_IN_FLIGHT} calls in flight; retry later")
            self._in_flight += 1
            try:
                return await self._take(signal, context)
            finally:
                self._in_flight -= 1

        # Stream-unary so that `export` runs before the message arrives (a unary client sends one).
        return grpc.stream_unary_rpc_method_handler(export)

    async def _take(self, signal: Signal, context: grpc.aio.ServicerContext) -> bytes:
        body = await context.read()
        if not isinstance(body, bytes):  # grpc.aio.EOF
            count_refusal(self.refused, NO_MESSAGE, "a call ended without its message (over the size cap, or given up)")
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("the call carried no export request")
            return b""
        if len(body) > MAX_BODY_BYTES:
            return self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"message over {MAX_BODY_BYTES} bytes")
        try:
            batch = await self.intake.take(signal, body, as_json=False, gzipped=False)  # gRPC undid any gzip
        except Refused as exc:
            return self._refuse(context, GRPC_STATUS[exc.kind], str(exc))
        return success(signal, batch, False)

    async def _unimplemented(self, _: object, context: grpc.aio.ServicerContext) -> bytes:
        """Any method but the two exports, refused without reading its message."""
        return self._refuse(context, grpc.StatusCode.UNIMPLEMENTED, "no such method; OTLP logs and metrics Export only")

    def _refuse(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> bytes:
        """Ends the RPC with `code` and `message`; the client reads no export response."""
        count_refusal(self.refused, f"otlp_grpc_{code.name.lower()}", message)
        context.set_code(code)
        context.set_details(message)
        return b""


class _EveryMethod(grpc.GenericRpcHandler):
    """Serves every method with one handler."""

    def __init__(self, handler: grpc.RpcMethodHandler) -> None:
        self.handler = handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return self.handler


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None
