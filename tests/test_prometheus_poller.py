"""The Prometheus poller against a local server speaking the Prometheus HTTP API's range-query format."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from promkit import FakePrometheus, fake_prometheus, node_answers

from heady_agent.clock import ManualClock
from heady_tui.fleet import Fleet
from heady_tui.prometheus import NodeSample, PrometheusError, PrometheusPoller, PrometheusSource, apply_sample

STEP = 15.0
POINTS = 12
T0 = 15.0 * 113_333_334  # on the step grid
HOST = "host-a:9100"


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    with fake_prometheus() as fake:
        yield fake


def poller_for(url: str, clock: ManualClock, *, selector: str = "", token: str | None = None,
               ca_file: Path | None = None, timeout_s: float = 30.0, max_answer_bytes: int = 2**26) -> PrometheusPoller:
    source = PrometheusSource(url=url, selector=selector, token=token, ca_file=ca_file)
    return PrometheusPoller(source, clock, step_s=STEP, points=POINTS, timeout_s=timeout_s,
                            max_answer_bytes=max_answer_bytes)


async def poll_once(prom: FakePrometheus, **kwargs: Any) -> list[NodeSample]:
    poller = poller_for(prom.url, ManualClock(T0), **kwargs)
    try:
        return await poller.poll()
    finally:
        await poller.aclose()


async def test_the_first_poll_backfills_a_sparklines_width_of_steps(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    samples = await poll_once(prom)
    assert [s.ts for s in samples] == [T0 - STEP * i for i in reversed(range(POINTS))]
    assert {(r.start, r.end, r.step) for r in prom.requests} == {(T0 - STEP * (POINTS - 1), T0, STEP)}


async def test_a_later_poll_reads_only_the_steps_since_the_previous_one(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    clock = ManualClock(T0)
    poller = poller_for(prom.url, clock)
    try:
        await poller.poll()
        clock.advance(STEP + 1.0)
        assert [s.ts for s in await poller.poll()] == [T0 + STEP]
    finally:
        await poller.aclose()


async def test_the_steps_of_a_failed_poll_are_read_by_the_next_one(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    clock = ManualClock(T0)
    poller = poller_for(prom.url, clock)
    try:
        await poller.poll()
        clock.advance(STEP)
        prom.raw = b"<html>proxy login</html>"
        with pytest.raises(PrometheusError):
            await poller.poll()
        prom.raw = None
        clock.advance(STEP)
        assert [s.ts for s in await poller.poll()] == [T0 + STEP, T0 + 2 * STEP]
    finally:
        await poller.aclose()


async def test_a_node_exporter_instance_becomes_samples_with_cpu_memory_and_load(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    sample = (await poll_once(prom))[-1]
    assert (sample.instance, sample.cores, sample.cpu, sample.mem) == (HOST, 4, 25.0, 62.5)
    assert sample.load == (2.0, 1.0, 0.5)


async def test_the_selector_narrows_every_query(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    await poll_once(prom, selector='job="node"')
    assert len(prom.requests) == 7 and all('job="node"' in r.query for r in prom.requests)


def test_a_selector_that_is_not_label_matchers_is_refused() -> None:
    with pytest.raises(ValueError, match="not a list of label matchers"):
        PrometheusSource(url="http://x", selector='job="node"} or vector(1) {')


async def test_the_bearer_token_is_sent(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    await poll_once(prom, token="s3cret")
    assert {r.auth for r in prom.requests} == {"Bearer s3cret"}


@pytest.mark.parametrize("bad", [{"load1": float("nan")}, {"idle": 3.0}, {"cores": 0}, {"avail": 9e9}])
async def test_an_instance_with_an_out_of_range_value_is_left_out(prom: FakePrometheus, bad: dict[str, float]) -> None:
    prom.nodes[HOST] = node_answers(**bad)
    assert await poll_once(prom) == []


async def test_an_instance_missing_a_series_is_left_out(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    del prom.nodes[HOST]["node_load15"]
    assert await poll_once(prom) == []


async def test_points_off_the_asked_grid_are_left_out(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    prom.extra_points = [(HOST, T0 + 7.5, 1.0), (HOST, T0 + 10 * STEP, 1.0), (HOST, T0 - 0.5, 1.0)]
    assert len(await poll_once(prom)) == POINTS


async def test_an_answer_that_is_not_the_api_format_is_a_clear_error(prom: FakePrometheus) -> None:
    prom.raw = b"<html>proxy login</html>"
    with pytest.raises(PrometheusError, match=r"prometheus http://127.0.0.1:\d+: HTTP 200, answer is not the Prometheus API's JSON"):
        await poll_once(prom)


async def test_a_failed_query_reports_the_server_error(prom: FakePrometheus) -> None:
    prom.raw = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
    with pytest.raises(PrometheusError, match="query failed: parse error"):
        await poll_once(prom)


async def test_an_instant_vector_answer_is_refused(prom: FakePrometheus) -> None:
    prom.raw = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
    with pytest.raises(PrometheusError, match="not a range vector"):
        await poll_once(prom)


async def test_an_answer_over_the_size_bound_is_refused(prom: FakePrometheus) -> None:
    prom.nodes = {f"host-{i}:9100": node_answers() for i in range(50)}
    with pytest.raises(PrometheusError, match="answer larger than 4096 bytes"):
        await poll_once(prom, max_answer_bytes=4096)


async def test_a_server_that_does_not_answer_within_the_deadline_is_an_error(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    prom.release.clear()
    with pytest.raises(PrometheusError, match="no answer within 0.2 s"):
        await poll_once(prom, timeout_s=0.2)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


async def test_https_is_verified_against_the_entrys_ca_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with fake_prometheus(tls=(cert, key)) as prom:
        prom.nodes[HOST] = node_answers()
        assert len(await poll_once(prom, ca_file=cert)) == POINTS


async def test_https_with_a_certificate_no_ca_vouches_for_is_an_error(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with fake_prometheus(tls=(cert, key)) as prom:
        prom.nodes[HOST] = node_answers()
        with pytest.raises(PrometheusError, match="CERTIFICATE_VERIFY_FAILED"):
            await poll_once(prom)


def test_an_unreadable_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load ca_file"):
        poller_for("https://127.0.0.1:1", ManualClock(T0), ca_file=tmp_path / "missing.pem")


async def test_samples_make_an_online_metrics_only_node_with_load_per_core(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    fleet = Fleet()
    fleet.track(HOST, T0, timeout_s=3 * STEP)
    for sample in await poll_once(prom):
        apply_sample(fleet, sample, STEP)
    node = fleet.nodes[HOST]
    assert (node.source, node.status, node.cpu_count, node.utilisation) == ("prometheus", "online", 4, 0.5)
    assert (len(node.cpu), node.sample_interval_s) == (POINTS, STEP)


async def test_a_node_whose_series_stopped_is_offline_and_stale_from_its_last_point(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    prom.stopped_at[HOST] = T0 - 5 * STEP
    fleet = Fleet()
    fleet.track(HOST, T0, timeout_s=3 * STEP)
    for sample in await poll_once(prom):
        apply_sample(fleet, sample, STEP)
    assert [n.id for n in fleet.update_liveness(T0)] == [HOST]
    node = fleet.nodes[HOST]
    assert (node.status, node.stale, node.last_frame_at) == ("offline", True, T0 - 5 * STEP)


async def test_a_node_whose_series_goes_on_stays_online_across_polls(prom: FakePrometheus) -> None:
    prom.nodes[HOST] = node_answers()
    clock = ManualClock(T0)
    poller = poller_for(prom.url, clock)
    fleet = Fleet()
    fleet.track(HOST, T0, timeout_s=3 * STEP)
    try:
        for _ in range(5):
            for sample in await poller.poll():
                apply_sample(fleet, sample, STEP)
            clock.advance(STEP)
            assert fleet.update_liveness(clock.now()) == [] and fleet.nodes[HOST].status == "online"
    finally:
        await poller.aclose()


async def test_the_next_poll_is_due_at_the_next_step_of_the_grid() -> None:
    poller = poller_for("http://127.0.0.1:1", ManualClock(T0 + 4.0))
    try:
        assert poller.until_next_step() == STEP - 4.0
    finally:
        await poller.aclose()
