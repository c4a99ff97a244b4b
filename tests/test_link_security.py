"""Links an operator must know are insecure: TLS verification off, or ws:// to a host that is not
loopback. Shown in the header and as a `security.warning` event, not only in heady.log."""

from __future__ import annotations

import pytest

from dpkit import supervisor_on
from heady_tui.config import Config, NodeConfig, Paths
from heady_tui.link import is_loopback_host, security_warnings
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.widgets.panels import StatusBar
from uikit import FAST_DETECTOR, wait_until


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_loopback(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["127.evil.example", "127.0.0.1.nip.io", "10.0.0.1", "::ffff:8.8.8.8", "example.com", None])
def test_names_that_only_look_like_loopback_are_not(host):
    assert not is_loopback_host(host)


def test_ws_to_a_remote_host_with_a_token_warns_that_the_token_travels_in_clear():
    [warning] = security_warnings(NodeConfig(name="n", url="ws://10.1.2.3:7420/ws", token="t" * 32))
    assert "ws://" in warning and "token" in warning and "in clear" in warning


def test_tls_verification_off_warns():
    [warning] = security_warnings(NodeConfig(name="n", url="wss://build-1:7420/ws", insecure_skip_verify=True))
    assert "verification is off" in warning


def test_verified_wss_and_loopback_ws_do_not_warn():
    assert security_warnings(NodeConfig(name="a", url="wss://build-1:7420/ws")) == []
    assert security_warnings(NodeConfig(name="b", url="ws://127.0.0.1:7420/ws", token="t" * 32)) == []


async def test_the_supervisor_publishes_a_security_warning_event(tmp_path):
    node = NodeConfig(name="remote", url="ws://192.0.2.1:9/ws", token="t" * 32)
    async with supervisor_on(tmp_path, [node]) as sup:
        warnings = [e for e in sup.test_events if e.name == "security.warning"]
        assert [(e.details["node"], "in clear" in e.details["message"]) for e in warnings] == [("remote", True)]


async def test_the_header_names_the_insecure_node(tmp_path):
    config = Config.model_validate({
        "nodes": [{"name": "remote", "url": "ws://192.0.2.1:9/ws", "token": "t" * 32}], "detector": FAST_DETECTOR,
    })  # fmt: skip
    app = HeadyApp(Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console")), config)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: "INSECURE LINK: remote" in str(app.screen.query_one(StatusBar).content), "the header warning")
