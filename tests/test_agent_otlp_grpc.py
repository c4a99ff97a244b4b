"""The agent's OTLP/gRPC receiver on loopback, spoken to by grpcio's client with the generated stubs.

The export requests are the ones Claude Code and Codex sent (tests/fixtures/real/otlp-*): over gRPC
they must give exactly the events they give over OTLP/HTTP. Both clients exporting over gRPC
themselves (otlp-grpc-*) give the calls their transcripts / rollouts give; Codex's beside its
rollouts counts each call once. Hostile calls are built here; each refusal is the status the OTLP
specification names, and loses nothing that came before.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from agentkit import RunningAgent, running_agent, wait_until
from heady_agent.clock import ManualClock
from heady_agent.config import AgentConfig, ClaudeCodeConfig, CodexConfig
from heady_agent.otlp import MAX_BODY_BYTES, MAX_DECODING, Batch
from heady_agent.otlp_grpc import GRPC_MAX_MESSAGE_BYTES, MAX_RPCS_IN_FLIGHT, OtlpGrpcReceiver
from heady_agent.server import AgentServer, StartError
from heady_agent.sources.base import SourceContext
from heady_agent.sources.claude_code import ClaudeCodeSource
from heady_agent.sources.codex import CodexSource
from heady_agent.sources.jsonl import JsonlSource
from heady_agent.sources.otlp import INACTIVE_AFTER_S, OtlpSource
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from otlpkit import FIXTURES, SentRequest, sent_requests
from sourcekit import SqliteSourceContext

CLAUDE = FIXTURES / "otlp-claude-code-2.1.332"
CODEX = FIXTURES / "otlp-codex-0.171.0"
# The clients exporting over gRPC themselves (scripts/record/otlp.sh claude-grpc, codex-grpc), with
# the transcripts / rollouts the same sessions wrote.
CLAUDE_OVER_GRPC = FIXTURES / "otlp-grpc-claude-code-2.1.332"
CODEX_OVER_GRPC = FIXTURES / "otlp-grpc-codex-0.171.0"
RECORDED_AT = 1_796_469_900.0  # after both recordings (as in test_otlp_real.py)
RECORDED_OVER_GRPC_AT = 1_796_523_000.0  # after both gRPC recordings (2026-12-06 02:10 UTC)
GRPC_ONLY = {"grpc_listen": "127.0.0.1:0"}
TIMEOUT_S = 30.0
TOKEN = "s" * 32
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
SESSION_EVENTS = ("llm.call", "session.started", "session.state", "session.ended")


def export_request(request: SentRequest) -> Message:
    """The export request a recorded body holds, as a gRPC client sends it (always protobuf)."""
    raw = gzip.decompress(request.body) if request.content_encoding == "gzip" else request.body
    message: Message = ExportLogsServiceRequest() if request.path == "/v1/logs" else ExportMetricsServiceRequest()
    if "json" in request.content_type:
        json_format.Parse(raw, message, ignore_unknown_fields=True)
    else:
        message.ParseFromString(raw)
    return message


def api_request(session: str = "0b0e0f00-1111-4222-8333-944445555666") -> ExportLogsServiceRequest:
    """One claude_code.api_request event."""
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="claude-code")))
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = int(RECORDED_AT) * 10**9
    record.body.string_value = "claude_code.api_request"
    for key, value in (("session.id", session), ("request_id", "req_grpc1"), ("model", "claude-sonnet-4-5")):
        record.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    for key, count in (("input_tokens", 10), ("output_tokens", 5)):
        record.attributes.append(KeyValue(key=key, value=AnyValue(int_value=count)))
    return message


def session_events(server: AgentServer) -> list[dict[str, Any]]:
    frames = [json.loads(text) for _, text in server.journal.read_after(0)]
    # The sequence number and the journal's id are the agent's own, not the event's.
    return [{k: v for k, v in f.items() if k not in ("seq", "journal")} for f in frames if f.get("kind") in SESSION_EVENTS]


def session_events_of(running: RunningAgent, kind: str) -> list[dict[str, Any]]:
    return [e for e in session_events(running.server) if e["kind"] == kind]


def the_source(running: RunningAgent) -> OtlpSource:
    [source] = [s for s in running.server.sources if isinstance(s, OtlpSource)]
    return source


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[RunningAgent, str]]:
    async with running_agent(tmp_path, sources=(), extra={"otlp": GRPC_ONLY}) as running:
        receiver = the_source(running).grpc_receiver
        assert receiver is not None
        yield running, f"127.0.0.1:{receiver.port}"


async def received(handler: Callable[[Batch], Awaitable[None]], *, token: str | None = None) -> OtlpGrpcReceiver:
    receiver = OtlpGrpcReceiver("127.0.0.1", 0, handler, token=token)
    await receiver.start()
    return receiver


async def send_logs(target: str, message: ExportLogsServiceRequest, **call: Any) -> Any:
    async with grpc.aio.insecure_channel(target) as channel:
        return await LogsServiceStub(channel).Export(message, timeout=TIMEOUT_S, **call)


async def send_bytes(target: str, body: bytes, **call: Any) -> bytes:
    """A logs export call whose message is `body` as given, whatever it holds."""
    async with grpc.aio.insecure_channel(target) as channel:
        answer: bytes = await channel.unary_unary(LOGS_EXPORT)(body, timeout=TIMEOUT_S, **call)
        return answer


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value


def the_receiver(running: RunningAgent) -> OtlpGrpcReceiver:
    receiver = the_source(running).grpc_receiver
    assert receiver is not None
    return receiver


async def refused_in_metrics(running: RunningAgent) -> dict[str, float]:
    """heady_agent_connections_refused_total by reason, as the agent's /metrics endpoint serves it."""
    base = running.url.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        response = await client.get(base + "/metrics", headers={"Authorization": f"Bearer {running.token}"})
    response.raise_for_status()
    prefix = 'heady_agent_connections_refused_total{reason="'
    return {
        line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines() if line.startswith(prefix)
    }  # fmt: skip


class SlowCalls:
    """Logs export calls from clients that have started them and not yet sent their message (as a slow
    upload would): each sends it when its gate opens."""

    def __init__(self, channel: grpc.aio.Channel, count: int) -> None:
        self.gates = [asyncio.Event() for _ in range(count)]
        self.calls = [channel.stream_unary(LOGS_EXPORT)(self._message(gate), timeout=TIMEOUT_S) for gate in self.gates]

    @staticmethod
    async def _message(gate: asyncio.Event) -> AsyncIterator[bytes]:
        await gate.wait()
        yield api_request().SerializeToString()

    async def finish_one_by_one(self) -> list[bytes]:
        """Each sends its message in turn and is answered before the next does."""
        answers = []
        for gate, call in zip(self.gates, self.calls):
            gate.set()
            answers.append(await call)
        return answers


@asynccontextmanager
async def calls_in_flight(receiver: OtlpGrpcReceiver, count: int) -> AsyncIterator[SlowCalls]:
    """`count` slow calls, yielded once the receiver holds every one of them in flight."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        slow = SlowCalls(channel, count)
        try:
            await wait_until(lambda: receiver.in_flight == count, TIMEOUT_S, f"{count} calls in flight")
            yield slow
        finally:
            for call in slow.calls:
                call.cancel()


@pytest.mark.parametrize("fixture", [CLAUDE, CODEX], ids=["claude-code", "codex"])
async def test_the_requests_the_clients_sent_give_over_grpc_the_events_they_give_over_http(tmp_path: Path, fixture: Path) -> None:
    requests = sent_requests(fixture)
    otlp = {"listen": "127.0.0.1:0"}
    async with running_agent(tmp_path, sources=(), name="http", clock=ManualClock(RECORDED_AT), extra={"otlp": otlp}) as http:
        base = f"http://127.0.0.1:{the_source(http).receiver.port}"
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            for request in requests:
                headers = {"content-type": request.content_type}
                if request.content_encoding:
                    headers["content-encoding"] = request.content_encoding
                assert (await client.post(base + request.path, content=request.body, headers=headers)).status_code == 200
        over_http = session_events(http.server)
    async with running_agent(tmp_path, sources=(), name="grpc", clock=ManualClock(RECORDED_AT), extra={"otlp": GRPC_ONLY}) as rpc:
        answers = await export_over_grpc(rpc, fixture)
        over_grpc = session_events(rpc.server)
    assert not any(answer.HasField("partial_success") for answer in answers)
    assert [e for e in over_http if e["kind"] == "llm.call"]
    assert over_grpc == over_http


async def export_over_grpc(running: RunningAgent, fixture: Path) -> list[Message]:
    """Every request the fixture recorded, in order, to the agent's gRPC receiver with grpcio's stubs
    (gzip where the client sent it gzipped); the export responses."""
    answers = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{the_receiver(running).port}") as channel:
        logs, metrics = LogsServiceStub(channel), MetricsServiceStub(channel)
        for request in sent_requests(fixture):
            stub = logs if request.path == "/v1/logs" else metrics
            compression = grpc.Compression.Gzip if request.content_encoding == "gzip" else grpc.Compression.NoCompression
            answers.append(await stub.Export(export_request(request), timeout=TIMEOUT_S, compression=compression))
    return answers


def call_counts(calls: list[tuple[str | None, dict[str, Any]]]) -> Counter[tuple[Any, ...]]:
    """Each call as its session, outcome, model and token counts."""
    return Counter((session, data["ok"], data["model"], data.get("input_tokens", 0), data.get("output_tokens", 0),
                    data.get("cache_creation_tokens", 0), data.get("cache_read_tokens", 0)) for session, data in calls)


def calls_in_journal(running: RunningAgent) -> Counter[tuple[Any, ...]]:
    return call_counts([(e["session"], e["data"]) for e in session_events_of(running, "llm.call")])


def calls_read_alone(tmp_path: Path, config: AgentConfig, source: Callable[[SourceContext], JsonlSource[Any]]) -> Counter[tuple[Any, ...]]:
    """The calls a transcript source reads, on a journal of its own, from the files `config` names."""
    ctx = SqliteSourceContext(tmp_path / "transcripts.db", config, ManualClock(RECORDED_OVER_GRPC_AT))
    try:
        source(ctx).scan()
        return call_counts([(c.session, c.data) for c in ctx.events("llm.call")])
    finally:
        ctx.close()


def recorded_sessions(fixture: Path) -> set[str]:
    return set(json.loads((fixture / "sessions.json").read_text()).values())


def settle(running: RunningAgent, clock: ManualClock) -> None:
    """Time passes until every session is over: a Codex turn that failed last is reported then."""
    clock.advance(INACTIVE_AFTER_S + 1)
    the_source(running).sweep()


async def test_claude_code_exporting_over_grpc_gives_the_calls_its_transcripts_give(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    for packed in sorted(CLAUDE_OVER_GRPC.glob("claude/**/*.gz")):
        target = root / packed.relative_to(CLAUDE_OVER_GRPC / "claude").with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(packed.read_bytes()))
    from_transcripts = calls_read_alone(tmp_path, AgentConfig(claude_code=ClaudeCodeConfig(roots=[str(root)])), ClaudeCodeSource)
    async with running_agent(tmp_path, sources=(), clock=ManualClock(RECORDED_OVER_GRPC_AT), extra={"otlp": GRPC_ONLY}) as rpc:
        await export_over_grpc(rpc, CLAUDE_OVER_GRPC)
        from_telemetry = calls_in_journal(rpc)
    assert {key[0] for key in from_telemetry} == recorded_sessions(CLAUDE_OVER_GRPC)
    assert from_telemetry == from_transcripts


def codex_rollouts(root: Path) -> Path:
    """The rollouts the Codex sessions recorded over gRPC wrote, copied under `root`."""
    shutil.copytree(CODEX_OVER_GRPC / "codex-home", root)
    return root


async def test_codex_exporting_over_grpc_gives_the_calls_its_rollouts_give(tmp_path: Path) -> None:
    config = AgentConfig(codex=CodexConfig(roots=[str(codex_rollouts(tmp_path / "codex"))]))
    from_rollouts = calls_read_alone(tmp_path, config, CodexSource)
    clock = ManualClock(RECORDED_OVER_GRPC_AT)
    async with running_agent(tmp_path, sources=(), clock=clock, extra={"otlp": GRPC_ONLY}) as rpc:
        await export_over_grpc(rpc, CODEX_OVER_GRPC)
        settle(rpc, clock)
        from_telemetry = calls_in_journal(rpc)
    assert {key[0] for key in from_telemetry} == recorded_sessions(CODEX_OVER_GRPC)
    assert from_telemetry == from_rollouts
    answers = [json.loads(line) for line in (CODEX_OVER_GRPC / "server.jsonl").read_text().splitlines()]
    assert sum(n for key, n in from_telemetry.items() if key[1]) == len([a for a in answers if a["ok"]])


@pytest.mark.parametrize("first", ["rollouts", "telemetry"])
async def test_codex_rollouts_and_its_telemetry_over_grpc_together_count_each_call_once(tmp_path: Path, first: str) -> None:
    alone = calls_read_alone(tmp_path, AgentConfig(codex=CodexConfig(roots=[str(codex_rollouts(tmp_path / "alone"))])), CodexSource)
    root = tmp_path / "codex"
    if first == "rollouts":
        codex_rollouts(root)  # read as the agent starts
    clock = ManualClock(RECORDED_OVER_GRPC_AT)
    extra = {"otlp": GRPC_ONLY, "codex": {"roots": [str(root)]}}
    async with running_agent(tmp_path, sources=("codex",), clock=clock, extra=extra) as both:
        await export_over_grpc(both, CODEX_OVER_GRPC)
        if first == "telemetry":
            codex_rollouts(root)
            [rollouts] = [s for s in both.server.sources if isinstance(s, CodexSource)]
            rollouts.scan()
        settle(both, clock)
        together = calls_in_journal(both)
    assert {key[0] for key in alone} == recorded_sessions(CODEX_OVER_GRPC)
    assert together == alone


async def test_an_agent_receiving_only_grpc_listens_on_no_otlp_http_port(agent: Any) -> None:
    running, target = agent
    listening = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    assert listening == {running.server.port, int(target.rsplit(":", 1)[1])}


async def test_records_without_a_name_are_reported_as_a_partial_success(agent: Any) -> None:
    running, target = agent
    message = api_request()
    message.resource_logs[0].scope_logs[0].log_records.append(LogRecord())
    answer = await send_logs(target, message)
    assert answer.partial_success.rejected_log_records == 1
    assert len(session_events_of(running, "llm.call")) == 1


async def test_a_message_that_is_not_otlp_is_invalid_argument_and_keeps_what_came_before(agent: Any) -> None:
    running, target = agent
    await send_logs(target, api_request())
    refused = await refusal(send_bytes(target, b"\x0a\xff\xff\xff\xff\x0f"))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP logs export request" in (refused.details() or "")
    assert len(session_events_of(running, "llm.call")) == 1


async def test_refused_calls_are_counted_by_status_in_the_agents_metrics(agent: Any) -> None:
    running, target = agent
    for _ in range(2):
        await refusal(send_bytes(target, b"\x0a\xff\xff\xff\xff\x0f"))
    assert running.server.counts.refused["otlp_grpc_invalid_argument"] == 2


async def test_a_gzip_compressed_call_is_taken(agent: Any) -> None:
    running, target = agent
    await send_logs(target, api_request(), compression=grpc.Compression.Gzip)
    assert len(session_events_of(running, "llm.call")) == 1


async def test_a_message_over_the_limit_is_resource_exhausted(agent: Any) -> None:
    running, target = agent
    refused = await refusal(send_bytes(target, b" " * (MAX_BODY_BYTES + 1)))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert session_events(running.server) == []


async def test_a_gzip_message_that_inflates_past_the_limit_is_resource_exhausted(agent: Any) -> None:
    _, target = agent
    bomb = b" " * (MAX_BODY_BYTES + 1)  # a few kilobytes once gzipped
    refused = await refusal(send_bytes(target, bomb, compression=grpc.Compression.Gzip))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_messages_over_the_limit_are_counted_in_the_agents_metrics(agent: Any) -> None:
    running, target = agent
    await refusal(send_bytes(target, b" " * (MAX_BODY_BYTES + 1)))
    await refusal(send_bytes(target, b" " * (MAX_BODY_BYTES + 1), compression=grpc.Compression.Gzip))
    assert (await refused_in_metrics(running))["otlp_grpc_resource_exhausted"] == 2


async def test_a_message_over_grpcs_own_cap_is_counted_as_a_call_without_its_message(agent: Any) -> None:
    running, target = agent
    refused = await refusal(send_bytes(target, b" " * (GRPC_MAX_MESSAGE_BYTES + 1)))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's answer, before the message is whole
    counts = running.server.counts.refused  # the handler counts once gRPC has ended the call under it
    await wait_until(lambda: "otlp_grpc_no_message" in counts, TIMEOUT_S, "the refused call counted")
    assert await refused_in_metrics(running) == {"otlp_grpc_no_message": 1}


async def test_a_call_whose_client_gives_up_before_its_message_is_counted_without_one(agent: Any) -> None:
    running, _ = agent
    receiver = the_receiver(running)
    async with calls_in_flight(receiver, 1):
        pass  # the client cancels its call
    await wait_until(lambda: receiver.in_flight == 0, TIMEOUT_S, "the cancelled call ended")
    assert receiver.refused == {"otlp_grpc_no_message": 1}


async def test_calls_past_the_calls_in_flight_are_unavailable_and_counted_while_they_last(agent: Any) -> None:
    running, target = agent
    async with calls_in_flight(the_receiver(running), MAX_RPCS_IN_FLIGHT):
        for _ in range(2):
            refused = await refusal(send_logs(target, api_request()))
            assert refused.code() == grpc.StatusCode.UNAVAILABLE  # OTLP exporters retry it
        assert await refused_in_metrics(running) == {"otlp_grpc_unavailable": 2}


async def test_calls_in_flight_all_finish_and_then_new_calls_are_taken(agent: Any) -> None:
    running, target = agent
    receiver = the_receiver(running)
    async with calls_in_flight(receiver, MAX_RPCS_IN_FLIGHT) as slow:
        answers = await slow.finish_one_by_one()
    assert [ExportLogsServiceResponse.FromString(a) for a in answers] == [ExportLogsServiceResponse()] * MAX_RPCS_IN_FLIGHT
    assert receiver.in_flight == 0
    await send_logs(target, api_request())
    assert receiver.refused == {}


async def test_a_call_to_another_method_is_unimplemented_and_counted(agent: Any) -> None:
    running, target = agent
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(b"", timeout=TIMEOUT_S)
        refused = await refusal(call)
    assert refused.code() == grpc.StatusCode.UNIMPLEMENTED
    assert running.server.counts.refused == {"otlp_grpc_unimplemented": 1}


async def test_a_receiver_with_a_token_refuses_calls_without_it() -> None:
    got: list[Batch] = []

    async def handler(batch: Batch) -> None:
        got.append(batch)

    receiver = await received(handler, token=TOKEN)
    target = f"127.0.0.1:{receiver.port}"
    try:
        for metadata in [(), (("authorization", "Bearer " + "x" * 32),), (("authorization", TOKEN),)]:
            refused = await refusal(send_logs(target, api_request(), metadata=metadata))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        await send_logs(target, api_request(), metadata=(("authorization", "Bearer " + TOKEN),))
    finally:
        await receiver.stop()
    assert len(got) == 1 and receiver.refused == {"otlp_grpc_unauthenticated": 3}


async def test_calls_past_the_batches_being_taken_are_unavailable_for_the_client_to_retry() -> None:
    release, all_held = asyncio.Event(), asyncio.Event()
    holding: list[Batch] = []

    async def handler(batch: Batch) -> None:
        holding.append(batch)
        if len(holding) == MAX_DECODING:
            all_held.set()
        await release.wait()

    receiver = await received(handler)
    target = f"127.0.0.1:{receiver.port}"
    try:
        held = [asyncio.create_task(send_logs(target, api_request())) for _ in range(MAX_DECODING)]
        await asyncio.wait_for(all_held.wait(), TIMEOUT_S)
        refused = await refusal(send_logs(target, api_request()))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await asyncio.gather(*held)
        await send_logs(target, api_request())
    finally:
        await receiver.stop()
    assert len(holding) == MAX_DECODING + 1


async def test_a_batch_that_cannot_be_stored_is_internal_and_the_next_one_is_taken() -> None:
    attempts: list[Batch] = []

    async def handler(batch: Batch) -> None:
        attempts.append(batch)
        if len(attempts) == 1:
            raise OSError("disk full")

    receiver = await received(handler)
    target = f"127.0.0.1:{receiver.port}"
    try:
        refused = await refusal(send_logs(target, api_request()))
        assert refused.code() == grpc.StatusCode.INTERNAL
        await send_logs(target, api_request())
    finally:
        await receiver.stop()
    assert len(attempts) == 2 and receiver.refused == {"otlp_grpc_internal": 1}


async def test_a_port_another_receiver_holds_is_not_shared() -> None:
    async def handler(batch: Batch) -> None:
        pass

    first = await received(handler)
    second = OtlpGrpcReceiver("127.0.0.1", first.port, handler, token=None)
    try:
        with pytest.raises(OSError, match="cannot listen for OTLP/gRPC"):
            await second.start()
    finally:
        await first.stop()


@pytest.mark.parametrize("token", [None, "short"])
def test_an_agent_refuses_to_receive_otlp_over_grpc_off_loopback_without_a_good_token(tmp_path: Path, token: str | None) -> None:
    config = AgentConfig(sources=[], token=token, token_env=None, otlp={"grpc_listen": "0.0.0.0:4317"})
    with pytest.raises(StartError, match="agent.otlp.grpc_listen"):
        AgentServer(config, journal_path=tmp_path / "j.db")


def test_a_grpc_listen_address_that_is_not_host_port_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        AgentConfig(otlp={"grpc_listen": "4317"})
