"""The agent's OTLP/gRPC receiver: the same export requests as otlp.py, over gRPC (port 4317 by custom).

It serves `opentelemetry.proto.collector.logs.v1.LogsService/Export` and
`opentelemetry.proto.collector.metrics.v1.MetricsService/Export` with grpc.aio. The request arrives
as bytes (no deserializer is registered) and goes through the HTTP receiver's intake (`Intake`):
the same decoding in a worker thread, the same bounds, the same handler committing the batch before
the client hears OK. gRPC itself bounds the message (`grpc.max_receive_message_length`, compressed
and once gzip is undone) and the RPCs in flight (`maximum_concurrent_rpcs`). Loopback by default;
on any other address the agent's bearer token is required in the `authorization` metadata.

Status codes follow the OTLP specification: OK with an export response (its partial_success when
records were dropped); INVALID_ARGUMENT for a message that does not decode; UNAUTHENTICATED without
the token; RESOURCE_EXHAUSTED past the size or RPC bounds (from gRPC); UNAVAILABLE while too many
batches are being taken (the client retries); INTERNAL when the batch could not be stored.
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
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_BODY_BYTES),
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
        # Refused requests by reason (`otlp_grpc_<status>`); the server shares its /metrics counts here.
        self.refused: dict[str, int] = {}

    async def start(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=MAX_CONNECTIONS)
        server.add_generic_rpc_handlers(tuple(
            grpc.method_handlers_generic_handler(service, {"Export": self._exporter(signal)})
            for signal, service in SERVICES.items()
        ))
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
        async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if self.token is not None and not authorized(_metadata(context, "authorization"), self.token):
                return self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            try:
                batch = await self.intake.take(signal, body, as_json=False, gzipped=False)  # gRPC undid any gzip
            except Refused as exc:
                return self._refuse(context, GRPC_STATUS[exc.kind], str(exc))
            return success(signal, batch, False)

        return grpc.unary_unary_rpc_method_handler(export)  # bytes in, bytes out: decoded by the intake

    def _refuse(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> bytes:
        """Ends the RPC with `code` and `message`; the client reads no export response."""
        count_refusal(self.refused, f"otlp_grpc_{code.name.lower()}", message)
        context.set_code(code)
        context.set_details(message)
        return b""


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None
