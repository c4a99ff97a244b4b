"""The attach socket on a real supervisor and a real agent on loopback, spoken to line by line:
owner-only permissions, the hello, the snapshot, and bounded, validated input where every bad line
gets a one-line error and loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from agentkit import running_agent, wait_until

from heady_tui.attach import wire
from heady_tui.attach.client import answers
from heady_tui.attach.service import MAX_CONNECTIONS, MAX_PENDING_CALLS, AttachService, peer_uid
from heady_tui.attach.wire import AttachError, socket_path
from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor

READ_S = 30.0


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, Path]]:
    async with running_agent(tmp_path, name="n0") as agent:
        config = Config.model_validate({"nodes": [{"name": "n0", "url": agent.url, "token": agent.token}]})
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await sup.start()
        service = AttachService(sup, socket_path(sup.paths.data_dir))
        try:
            await service.start()
            await wait_until(lambda: sup.fleet.nodes["n0"].status == "online", 30, "the node online")
            yield sup, service.path
        finally:
            await service.stop()
            await sup.stop()


class Line:
    """A raw client: what it sends is exactly what is on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def read(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), READ_S)
        assert line, "the service closed the connection"
        return json.loads(line)

    async def read_until(self, kind: str) -> dict[str, Any]:
        while (message := await self.read())["type"] != kind:
            pass
        return message


@asynccontextmanager
async def client(path: Path, *, hello: bool = True) -> AsyncIterator[Line]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=wire.MAX_SERVICE_LINE)
    line = Line(reader, writer)
    try:
        assert (await line.read())["type"] == "hello"
        if hello:
            await line.send(b'{"type":"hello","version":1}\n')
            assert (await line.read())["type"] == "snapshot"
        yield line
    finally:
        writer.close()


async def test_the_socket_is_owner_only_in_an_owner_only_directory(tmp_path):
    async with serving(tmp_path) as (_, path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(path.stat().st_mode)


async def test_the_peer_uid_is_read_from_the_kernel(tmp_path):
    async with serving(tmp_path) as (_, path):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            assert peer_uid(sock) == os.getuid()


NOBODY = 65534
PEER_SCRIPT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.makefile().readline(), end='')"


@pytest.mark.skipif(os.getuid() != 0, reason="connecting as another user needs root")
async def test_another_user_is_refused_even_when_the_permissions_let_it_in(tmp_path):
    async with serving(tmp_path) as (sup, _):
        shared = Path(tempfile.mkdtemp(prefix="heady-attach-"))
        try:
            os.chmod(shared, 0o755)
            service = AttachService(sup, shared / "attach" / "console.sock")
            await service.start()
            try:
                os.chmod(service.path.parent, 0o755)
                os.chmod(service.path, 0o666)  # only SO_PEERCRED stands in the way now
                child = await asyncio.create_subprocess_exec(
                    "/usr/bin/python3", "-c", PEER_SCRIPT, str(service.path), user=NOBODY,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await asyncio.wait_for(child.communicate(), READ_S)
            finally:
                await service.stop()
        finally:
            shutil.rmtree(shared)
        assert json.loads(out) == {"type": "error", "error": f"refused: uid {NOBODY} does not own this console"}, err


async def test_hello_names_the_protocol_version_and_the_attached_user(tmp_path):
    async with serving(tmp_path) as (_, path):
        reader, writer = await asyncio.open_unix_connection(str(path))
        hello = json.loads(await asyncio.wait_for(reader.readline(), READ_S))
        writer.close()
        assert hello["version"] == wire.PROTOCOL_VERSION
        assert hello["actor"].split("@")[0] == wire_user()


def wire_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


async def test_the_snapshot_holds_the_fleet_the_query_layer_shows(tmp_path):
    async with serving(tmp_path) as (sup, path):
        await wait_until(lambda: len(sup.fleet.nodes["n0"].cpu) > 0 and sup.fleet.sessions, 30, "samples and sessions")
        reader, writer = await asyncio.open_unix_connection(str(path), limit=wire.MAX_SERVICE_LINE)
        await reader.readline()
        writer.write(b'{"type":"hello","version":1}\n')
        snapshot = json.loads(await asyncio.wait_for(reader.readline(), READ_S))
        writer.close()
        state = snapshot["state"]
        assert state["nodes"]["n0"]["status"] == "online"
        assert {tuple(json.loads(key)) for key in state["sessions"]} <= set(sup.fleet.sessions)
        assert state["brain"]["equilibrium"] is None or state["brain"]["equilibrium"]["level"]
        assert snapshot["samples"]["n0"] and all(len(sample) == 5 for sample in snapshot["samples"]["n0"])


async def test_deltas_follow_the_snapshot(tmp_path):
    async with serving(tmp_path) as (_, path):
        async with client(path) as line:
            delta = await line.read_until("delta")
            assert set(delta) == {"type", "seq", "changed", "removed", "samples"}


async def test_a_client_speaking_another_version_is_told_and_closed(tmp_path):
    async with serving(tmp_path) as (_, path):
        async with client(path, hello=False) as line:
            await line.send(b'{"type":"hello","version":99}\n')
            error = await line.read()
            assert error == {"type": "error", "error": "protocol version 99 is not served (this console speaks 1)"}
            assert await asyncio.wait_for(line.reader.read(), READ_S) == b""


async def test_the_first_message_must_be_hello(tmp_path):
    async with serving(tmp_path) as (_, path):
        async with client(path, hello=False) as line:
            await line.send(b'{"type":"focus","node":"n0","on":true}\n')
            assert await line.read() == {"type": "error", "error": "the first message must be hello"}


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"type":"shout"}\n', "unknown message type 'shout' (known: hello, act, hold, release, focus, query)"),
    (b'not json\n', "not JSON: Expecting value at column 1"),
    (b'{"type":"focus","node":"n0","on":NaN}\n', "not JSON: NaN is not a number JSON allows"),
    (b'[1,2]\n', "a message is a JSON object"),
    (b'{"kind":"act"}\n', 'a message needs a string "type"'),
    (b'{"type":"focus","node":"n0","on":true,"x":1}\n', "focus: x: Extra inputs are not permitted"),
    (b'{"type":"focus","node":"nowhere","on":true}\n', "focus: no node named 'nowhere'"),
    (b'{"type":"hold","request":""}\n', "hold: request: String should have at least 1 character"),
    (b'{"type":"hold","request":"r-none"}\n', "hold: no open consent request 'r-none'"),
    (b'{"type":"hello","version":1}\n', "hello was said already"),
    (b'{"type":"act","id":"1","args":' + b'{"a":' * 10 + b"1" + b"}" * 10 + b"}\n", "nested deeper than 6 levels"),
    (b'\xff\xfe\n', "not UTF-8"),
])
async def test_a_bad_line_gets_a_one_line_error_and_the_connection_goes_on(tmp_path, raw, error):
    async with serving(tmp_path) as (_, path):
        async with client(path) as line:
            await line.send(raw)
            assert await line.read_until("error") == {"type": "error", "error": error}
            await line.send(b'{"type":"query","id":"q","what":"verify_audit"}\n')
            reply = await line.read_until("reply")
            assert reply["id"] == "q" and reply["ok"] is True


async def test_a_line_over_the_limit_is_refused_and_the_connection_closed(tmp_path):
    async with serving(tmp_path) as (_, path):
        async with client(path) as line:
            await line.send(b'{"type":"focus","node":"' + b"x" * wire.MAX_CLIENT_LINE + b'","on":true}\n')
            error = await line.read_until("error")
            assert error["error"] == f"line longer than {wire.MAX_CLIENT_LINE} bytes; closing"
            assert await asyncio.wait_for(line.reader.read(), READ_S) == b""


@pytest.mark.parametrize(("act", "error"), [
    ({"action": "shell", "args": {}}, "unknown action 'shell' (known: command, task.approve, task.reject, policy.reset, session.priority, "
                                      "consent.decide, grant, revoke, notify_deploy)"),
    ({"action": "grant", "args": {"scope": "forever", "reason": "r"}}, "unknown scope 'forever' (known: single, session, persistent)"),
    ({"action": "grant", "args": {"scope": "single"}}, "grant: reason: Field required"),
    ({"action": "command", "args": {"node": "n0", "action": "exec", "args": {}}},
     "unknown operator action 'exec' (known: session.kill, session.pause, session.resume, session.restart, "
     "session.prompt, session.renice, node.drain, node.undrain, node.set_concurrency)"),
    ({"action": "consent.decide", "args": {"request": "r-x", "decision": "single"}}, "no open consent request 'r-x'"),
])
async def test_a_refused_action_is_answered_under_its_id_with_one_line(tmp_path, act, error):
    async with serving(tmp_path) as (_, path):
        async with client(path) as line:
            await line.send(json.dumps({"type": "act", "id": "a1", **act}).encode() + b"\n")
            assert await line.read_until("reply") == {"type": "reply", "id": "a1", "ok": False, "error": error}


async def test_an_action_runs_as_the_attached_user_and_is_audited_so(tmp_path):
    async with serving(tmp_path) as (sup, path):
        async with client(path) as line:
            await line.send(b'{"type":"act","id":"g","action":"grant","args":{"scope":"session","reason":"night shift"}}\n')
            reply = await line.read_until("reply")
        assert reply["ok"] is True and reply["value"]["scope"] == "session"
        assert sup.brain is not None
        (entry,) = [e for e in await sup.brain.audit_entries(500) if e.action == "operator.grant"]
        assert entry.actor.split("@")[0] == wire_user() and entry.details["origin"] == "attach"


async def test_a_second_service_on_a_served_socket_refuses_to_start(tmp_path):
    async with serving(tmp_path) as (sup, path):
        second = AttachService(sup, path)
        with pytest.raises(AttachError, match="another console already serves"):
            await second.start()
        assert await answers(path)


async def test_a_socket_left_by_a_dead_console_is_replaced(tmp_path):
    path = socket_path(tmp_path / "data")
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed console leaves
    assert not await answers(path)
    async with running_agent(tmp_path, name="n0") as agent:
        config = Config.model_validate({"nodes": [{"name": "n0", "url": agent.url, "token": agent.token}]})
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await sup.start()
        service = AttachService(sup, path)
        try:
            await service.start()
            assert await answers(path)
        finally:
            await service.stop()
            await sup.stop()


def test_attach_with_no_headless_console_says_so_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "heady_tui", "attach", "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    expected = f"heady: error: no headless console answers on {socket_path(tmp_path / 'data')} (start one with `heady run --headless`)"
    assert done.stderr.strip() == expected


async def test_connections_past_the_bound_are_refused_in_one_line(tmp_path):
    async with serving(tmp_path) as (_, path):
        held = [await asyncio.open_unix_connection(str(path)) for _ in range(MAX_CONNECTIONS)]
        try:
            for reader, _ in held:
                assert json.loads(await asyncio.wait_for(reader.readline(), READ_S))["type"] == "hello"
            reader, writer = await asyncio.open_unix_connection(str(path))
            refusal = json.loads(await asyncio.wait_for(reader.readline(), READ_S))
            writer.close()
        finally:
            for _, held_writer in held:
                held_writer.close()
        assert refusal == {"type": "error", "error": f"refused: {MAX_CONNECTIONS} consoles are attached already"}


async def test_calls_past_the_bound_waiting_for_answers_are_refused_under_their_id(tmp_path):
    async with serving(tmp_path) as (_, path):
        async with client(path) as line:
            kill = {"type": "act", "action": "command", "args": {"node": "n0", "action": "session.kill", "target": "none"}}
            burst = b"".join(json.dumps({**kill, "id": str(i)}).encode() + b"\n" for i in range(MAX_PENDING_CALLS + 1))
            await line.send(burst)  # read in one go: none of them has been answered when the last arrives
            replies = {}
            while len(replies) <= MAX_PENDING_CALLS:
                reply = await line.read_until("reply")
                replies[reply["id"]] = reply
        assert replies[str(MAX_PENDING_CALLS)] == {
            "type": "reply", "id": str(MAX_PENDING_CALLS), "ok": False,
            "error": f"{MAX_PENDING_CALLS} calls are waiting for an answer already"}
        assert all(replies[str(i)]["ok"] for i in range(MAX_PENDING_CALLS))
