"""The Prometheus poller against a local server speaking the Prometheus HTTP API JSON format."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from heady_agent.clock import ManualClock
from heady_tui.fleet import Fleet
from heady_tui.prometheus import NodeSample, PrometheusError, PrometheusPoller, PrometheusSource, apply_sample

TS = 1_700_000_000.0


def vector(values: dict[str, float | str]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": inst}, "value": [TS, str(v)]} for inst, v in values.items()]}}


def node_answers(inst: str, *, idle: float = 0.75, cores: float = 4, load1: float = 2.0,
                 avail: float = 3e9, total: float = 8e9) -> dict[str, dict[str, float | str]]:
    # node_load15 before node_load1: the fake answers the first name the query contains
    return {"count by": {inst: cores}, "avg by": {inst: idle}, "node_load15": {inst: 0.5},
            "node_load1": {inst: load1}, "node_load5": {inst: 1.0},
            "MemAvailable": {inst: avail}, "MemTotal": {inst: total}}


class FakePrometheus:
    def __init__(self) -> None:
        self.answers: dict[str, dict[str, float | str]] = {}
        self.queries: list[str] = []
        self.auth: list[str | None] = []
        self.raw: bytes | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                query = parse_qs(url.query)["query"][0]
                fake.queries.append(query)
                fake.auth.append(self.headers.get("Authorization"))
                if fake.raw is not None:
                    body = fake.raw
                else:
                    values = next((v for k, v in fake.answers.items() if k in query), {})
                    body = json.dumps(vector(values)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


async def poll(prom: FakePrometheus, selector: str = "", token: str | None = None,
               clock: ManualClock | None = None) -> list[NodeSample]:
    source = PrometheusSource(url=prom.url, selector=selector, token=token)
    poller = PrometheusPoller(source, clock or ManualClock(0.0), timeout_s=30)
    try:
        return await poller.poll()
    finally:
        await poller.aclose()


async def test_a_node_exporter_instance_becomes_a_sample_with_cpu_memory_and_load(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    [sample] = await poll(prom)
    assert (sample.instance, sample.cores, sample.cpu, sample.mem) == ("host-a:9100", 4, 25.0, 62.5)
    assert sample.load == (2.0, 1.0, 0.5)


async def test_the_selector_narrows_every_query(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    await poll(prom, selector='job="node"')
    assert prom.queries and all('job="node"' in q for q in prom.queries)


def test_a_selector_that_is_not_label_matchers_is_refused() -> None:
    with pytest.raises(ValueError, match="not a list of label matchers"):
        PrometheusSource(url="http://x", selector='job="node"} or vector(1) {')


async def test_the_bearer_token_is_sent(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    await poll(prom, token="s3cret")
    assert set(prom.auth) == {"Bearer s3cret"}


@pytest.mark.parametrize("bad", [{"load1": float("nan")}, {"idle": 3.0}, {"cores": 0}, {"avail": 9e9}])
async def test_an_instance_with_an_out_of_range_value_is_left_out(prom: FakePrometheus, bad: dict[str, float]) -> None:
    prom.answers = node_answers("host-a:9100", **bad)
    assert await poll(prom) == []


async def test_an_instance_missing_a_series_is_left_out(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    prom.answers["node_load15"] = {}
    assert await poll(prom) == []


async def test_an_answer_that_is_not_the_api_format_is_a_clear_error(prom: FakePrometheus) -> None:
    prom.raw = b"<html>proxy login</html>"
    with pytest.raises(PrometheusError, match="prometheus http://127.0.0.1"):
        await poll(prom)


async def test_a_failed_query_reports_the_server_error(prom: FakePrometheus) -> None:
    prom.raw = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
    with pytest.raises(PrometheusError, match="query failed: parse error"):
        await poll(prom)


async def test_a_sample_makes_an_online_metrics_only_node_with_load_per_core(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    [sample] = await poll(prom)
    fleet = Fleet()
    apply_sample(fleet, sample)
    node = fleet.nodes["host-a:9100"]
    assert (node.source, node.status, node.cpu_count, node.utilisation) == ("prometheus", "online", 4, 0.5)


async def test_a_node_whose_series_stopped_goes_offline(prom: FakePrometheus) -> None:
    prom.answers = node_answers("host-a:9100")
    [sample] = await poll(prom, clock=ManualClock(10.0))
    fleet = Fleet()
    fleet.track("host-a:9100", 0.0, timeout_s=30.0)
    apply_sample(fleet, sample)
    prom.answers = {}
    assert await poll(prom) == []
    assert [n.id for n in fleet.update_liveness(40.0)] == ["host-a:9100"]
    assert fleet.nodes["host-a:9100"].status == "offline"
