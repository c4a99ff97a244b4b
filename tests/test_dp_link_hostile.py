"""The console link against agents that misbehave: each gets a recorded error, good data is kept,
other nodes carry on, the console never crashes. The bad agents are real WebSocket servers on
loopback speaking (or failing to speak) the wire protocol; the console side is the real Supervisor
with its real store."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agentkit import free_port, running_agent, wait_until
from dpkit import supervisor_on
from heady_tui.config import NodeConfig
from heady_tui.link import Backoff, NodeLink
from heady_tui.supervisor import Supervisor

TOKEN = "hostile-token"
FAST = {"hello_timeout_s": 1.0}

Handler = Callable[[ServerConnection], Awaitable[None]]


def hello_frame(journal: str = "j1", protocol: int = 1, last_seq: int = 0) -> str:
    return json.dumps({
        "type": "hello", "protocol": protocol,
        "node": {"id": "bad", "hostname": "bad-host", "agent_version": "0", "os": "Linux", "cpu_count": 2, "mem_total": 1},
        "journal": {"id": journal, "first_seq": 1, "last_seq": last_seq},
    })  # fmt: skip


def metrics_frame(seq: int, journal: str = "j1") -> str:
    return json.dumps({"type": "metrics", "seq": seq, "ts": 1_800_000_000.0 + seq, "cpu": 5, "load": [0.1, 0.1, 0.1],
                       "mem": 10, "swap": 0, "journal": journal})  # fmt: skip


class Agentish:
    """What a hostile server saw: console frames per connection."""

    def __init__(self) -> None:
        self.connections: list[list[dict]] = []

    async def read_subscribe(self, ws: ServerConnection) -> dict:
        frames: list[dict] = []
        self.connections.append(frames)
        frame = json.loads(await ws.recv())
        frames.append(frame)
        return frame

    async def drain(self, ws: ServerConnection) -> None:
        """Record console frames until it goes away."""
        async for text in ws:
            self.connections[-1].append(json.loads(text))

    def sent(self, kind: str) -> list[dict]:
        return [f for conn in self.connections for f in conn if f["type"] == kind]


@asynccontextmanager
async def hostile(handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    def check_token(connection, request):
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=check_token, max_size=None, ssl=ssl_context) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"{'wss' if ssl_context else 'ws'}://127.0.0.1:{port}/ws"


def console(tmp_path: Path, nodes: list[NodeConfig], **link_options):
    return supervisor_on(tmp_path, nodes, {**FAST, **link_options})


def node(url: str, name: str = "bad", token: str = TOKEN, **extra) -> NodeConfig:
    return NodeConfig(name=name, url=url, token=token, **extra)


def error_of(sup: Supervisor, name: str = "bad") -> str:
    return sup.fleet.nodes[name].last_error or ""


async def codes(sup: Supervisor, name: str = "bad") -> list[str]:
    return [e["code"] for e in await sup.store.ingest_errors(node=name)]


async def test_garbage_frames_are_recorded_and_the_good_ones_kept(tmp_path):
    seen = Agentish()

    async def handler(ws):
        await ws.send(hello_frame())
        await seen.read_subscribe(ws)
        for text in (metrics_frame(1), "not json {", b"\x00\x01binary", json.dumps([1, 2]), metrics_frame(2)):
            await ws.send(text)
        await seen.drain(ws)

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: sup.fleet.nodes["bad"].last_seq == 2, what="good frames stored")
        await wait_until(lambda: len(seen.sent("ack")) >= 1, what="ack")
        assert await sup.store.stored_seqs("bad", "j1") == [1, 2]
        assert sup.fleet.nodes["bad"].status == "online"
        assert {"bad_json", "bad_frame"} <= set(await codes(sup))
        assert seen.sent("ack")[-1]["seq"] == 2


async def test_frames_that_cannot_be_stored_are_skipped_not_retried_forever(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())
        await ws.recv()
        await ws.send(metrics_frame(1))
        await ws.send(json.dumps({**json.loads(metrics_frame(2)), "disk_read_bps": float("nan")}))  # Python JSON extension
        await ws.send(json.dumps({**json.loads(metrics_frame(3)), "procs": 2**70}))
        await ws.send(metrics_frame(4))
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: sup.fleet.nodes["bad"].last_seq == 4, what="frame after the bad ones stored")
        assert await sup.store.stored_seqs("bad", "j1") == [1, 4]
        messages = [e["message"] for e in await sup.store.ingest_errors(node="bad")]
        assert any("bad metrics frame 2: metrics.disk_read_bps: Input should be a finite number" in m for m in messages)
        assert any("bad metrics frame 3: metrics.procs: Input should be less than or equal to" in m for m in messages)
        assert sup.links["bad"].connects == 1


async def test_an_oversized_frame_ends_the_connection_with_an_error_and_keeps_earlier_data(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())
        await ws.recv()
        await ws.send(metrics_frame(1))
        await ws.send("x" * (2 << 20))
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: "larger than" in error_of(sup), what="oversized frame error")
        assert sup.fleet.nodes["bad"].status == "error"
        assert await sup.store.stored_seqs("bad", "j1") == [1]
        assert "too_large" in await codes(sup)


async def test_seq_going_backwards_is_an_error_and_the_resubscribe_starts_after_stored_data(tmp_path):
    seen = Agentish()

    async def handler(ws):
        await ws.send(hello_frame())
        sub = await seen.read_subscribe(ws)
        if sub["since"] == 0:
            await ws.send(metrics_frame(5))
            await ws.send(metrics_frame(3))
        await seen.drain(ws)

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: len(seen.connections) >= 2, what="reconnect")
        assert seen.connections[1][0] == {"type": "subscribe", "since": 5, "journal": "j1"}
        assert await sup.store.stored_seqs("bad", "j1") == [5]
        assert "seq went backwards (3 after 5)" in "".join(e["message"] for e in await sup.store.ingest_errors(node="bad"))


async def test_a_wrong_protocol_version_is_a_node_error(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame(protocol=2))
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: "protocol mismatch" in error_of(sup), what="protocol error")
        assert sup.fleet.nodes["bad"].status == "error"


async def test_a_silent_agent_times_out_waiting_for_hello(tmp_path):
    async def handler(ws):
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)], hello_timeout_s=0.3) as sup:
        await wait_until(lambda: "no hello within" in error_of(sup), what="silence detected")


async def test_the_same_failure_on_every_retry_is_recorded_once(tmp_path):
    attempts = 0

    async def handler(ws):
        nonlocal attempts
        attempts += 1
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)], hello_timeout_s=0.2) as sup:
        await wait_until(lambda: attempts >= 3, what="three attempts")
        await wait_until(lambda: sup.fleet.nodes["bad"].status == "error", what="error status")
        assert (await codes(sup)).count("silent") == 1


async def test_an_agent_that_goes_quiet_after_hello_is_detected(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())
        await ws.recv()
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)], idle_timeout_s=0.5) as sup:
        await wait_until(lambda: "no data for" in error_of(sup), what="idle timeout")


async def test_a_refused_token_reads_401_unauthorized(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())

    async with hostile(handler) as url, console(tmp_path, [node(url, token="wrong")]) as sup:
        await wait_until(lambda: error_of(sup).startswith("401 unauthorized"), what="401")
        assert "wrong" not in error_of(sup)
        assert sup.fleet.nodes["bad"].status == "error"


async def test_an_agent_answering_503_is_offline_not_in_error(tmp_path):
    def unavailable(connection, request):
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "agent unavailable, retry later\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=unavailable) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
        async with console(tmp_path, [node(url)]) as sup:
            await wait_until(lambda: error_of(sup).startswith("HTTP 503"), what="503")
            assert sup.fleet.nodes["bad"].status != "error"


async def test_an_unreachable_node_is_an_error_and_publishes_node_offline(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}/ws"
    async with console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: error_of(sup) == "unreachable: connection refused", what="refused")
        offline = [e for e in sup.test_events if e.name == "node.offline"]
        assert offline and offline[0].details["node"] == "bad"


def expired_certificate(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography", reason="cryptography is needed to make a test certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


async def test_an_expired_certificate_is_refused_with_the_reason(tmp_path):
    cert, key = expired_certificate(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def handler(ws):
        await ws.send(hello_frame())
        await ws.wait_closed()

    async with hostile(handler, ssl_context=server_tls) as url, console(tmp_path, [node(url, ca_file=str(cert))]) as sup:
        await wait_until(lambda: "certificate has expired" in error_of(sup), what="TLS error")
        assert error_of(sup).startswith("TLS:")
        assert await sup.store.stored_seqs("bad", "j1") == []


async def test_insecure_skip_verify_connects_and_warns_every_time(tmp_path, caplog):
    cert, key = expired_certificate(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def handler(ws):
        await ws.send(hello_frame())
        await ws.recv()
        await ws.send(metrics_frame(1))
        await ws.wait_closed()

    async with hostile(handler, ssl_context=server_tls) as url:
        async with console(tmp_path, [node(url, insecure_skip_verify=True)]) as sup:
            await wait_until(lambda: sup.fleet.nodes["bad"].last_seq == 1, what="stored over unverified TLS")
    assert any("verification is OFF" in r.message for r in caplog.records)


async def test_a_bad_node_does_not_disturb_a_good_one(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())
        await ws.recv()
        while True:
            await ws.send("{garbage")
            await asyncio.sleep(0.01)

    async with running_agent(tmp_path, speed=20, name="good") as agent, hostile(handler) as url:
        nodes = [node(url), NodeConfig(name="good", url=agent.url, token=agent.token)]
        async with console(tmp_path, nodes) as sup:
            await wait_until(lambda: sup.fleet.nodes["good"].last_seq >= 20, what="good node streaming")
            assert sup.fleet.nodes["good"].status == "online" and sup.fleet.nodes["good"].last_error is None
            assert "bad_json" in await codes(sup)


async def test_a_new_journal_is_published_as_a_journal_reset(tmp_path):
    journals = iter(["j1", "j2", "j2", "j2"])

    async def handler(ws):
        journal = next(journals)
        await ws.send(hello_frame(journal))
        await ws.recv()
        await ws.send(metrics_frame(1, journal))
        if journal == "j1":
            await asyncio.sleep(0.2)
            return  # drops the connection; the next one comes back with a new journal
        await ws.wait_closed()

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: any(e.name == "node.journal_reset" for e in sup.test_events), what="journal reset")
        reset = next(e for e in sup.test_events if e.name == "node.journal_reset")
        assert reset.details == {"node": "bad", "old_journal": "j1", "new_journal": "j2"}
        assert sup.fleet.nodes["bad"].journal_reset
        await wait_until(lambda: sup.fleet.nodes["bad"].journal == "j2", what="switched to j2")
        assert await sup.store.stored_seqs("bad", "j2") == [1]


async def test_a_command_without_an_answer_times_out(tmp_path):
    async def handler(ws):
        await ws.send(hello_frame())
        async for _ in ws:
            pass  # reads commands, never answers

    async with hostile(handler) as url, console(tmp_path, [node(url)]) as sup:
        await wait_until(lambda: sup.fleet.nodes["bad"].status == "online", what="online")
        result = await sup.command("bad", "node.drain", timeout=0.3)
        assert (result.ok, result.error) == (False, "timeout")


async def test_commands_to_unknown_nodes_or_actions_are_refused(tmp_path):
    async with console(tmp_path, []) as sup:
        assert (await sup.command("nope", "node.drain")).error == "unknown_node"
    url = f"ws://127.0.0.1:{free_port()}/ws"
    async with console(tmp_path, [node(url)]) as sup:
        assert (await sup.command("bad", "rm -rf /")).error == "unknown_action"
        assert (await sup.command("bad", "node.drain")).error == "offline"


def test_backoff_doubles_from_half_a_second_to_thirty():
    backoff = Backoff(rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_stays_within_half_to_full_delay():
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 0.999)
    for _ in range(8):
        lo, hi = low.next_delay(), high.next_delay()
        assert lo <= hi <= lo * 2


def test_backoff_reset_starts_again_at_half_a_second():
    backoff = Backoff(rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


class RecordingSink:
    """The smallest sink a NodeLink needs, recording status changes."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str | None]] = []

    async def link_cursor(self, node):
        return None

    async def link_hello(self, node, hello, previous):
        pass

    async def link_frames(self, node, journal, frames):
        return max(f.seq for f in frames)

    async def link_sessions(self, node, sessions):
        pass

    def link_detail(self, node, detail):
        pass

    def link_status(self, node, status, error):
        self.statuses.append((status, error))

    async def link_error(self, node, code, message):
        pass


async def test_reconnects_follow_the_backoff_schedule_and_reset_after_a_healthy_connection():
    delays: list[float] = []
    attempts = 0

    async def handler(ws):
        nonlocal attempts
        attempts += 1
        if attempts == 4:  # one healthy connection: stores a frame, then drops
            await ws.send(hello_frame())
            await ws.recv()
            await ws.send(metrics_frame(1))
            await asyncio.sleep(0.2)
            return
        await ws.close(code=1011)

    done = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= 6:
            done.set()
            await asyncio.Event().wait()

    async with hostile(handler) as url:
        link = NodeLink(node(url), RecordingSink(), rng=lambda: 1.0, sleep=fake_sleep)
        link.start()
        await asyncio.wait_for(done.wait(), 30)
        await link.stop()
    assert delays == [0.5, 1, 2, 0.5, 1, 2]
