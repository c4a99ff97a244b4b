"""The console store: idempotent batches, cursors committed with rows, migrations, bad files."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heady_agent.protocol import Event, Metrics

from heady_tui.store import Store, StoreError

T0 = 1_800_000_000.0


def metrics(seq: int, ts: float | None = None, cpu: float = 10.0, queue: int = 0) -> Metrics:
    return Metrics(seq=seq, ts=ts if ts is not None else T0 + seq, cpu=cpu, load=[1.0, 1.0, 1.0], mem=30, swap=0, queue_depth=queue)


def call(seq: int, ts: float | None = None, session: str = "s1") -> Event:
    return Event(seq=seq, ts=ts if ts is not None else T0 + seq, kind="llm.call", session=session,
                 data={"provider": "p", "model": "m", "latency_ms": 10.0})  # fmt: skip


def mixed(first: int, last: int) -> list[Metrics | Event]:
    return [metrics(s) if s % 3 else call(s) for s in range(first, last + 1)]


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "heady.db")
    yield s
    await s.close()


async def test_a_batch_is_stored_and_the_cursor_advances(store):
    stored, duplicates, top = await store.store_batch("a", "j1", mixed(1, 30))
    assert (stored, duplicates, top) == (30, 0, 30)
    assert await store.cursor("a") == ("j1", 30)
    assert await store.stored_seqs("a", "j1") == list(range(1, 31))


async def test_a_replay_stores_nothing_twice(store):
    await store.store_batch("a", "j1", mixed(1, 30))
    stored, duplicates, top = await store.store_batch("a", "j1", mixed(1, 40))
    assert (stored, duplicates, top) == (10, 30, 40)
    assert await store.stored_seqs("a", "j1") == list(range(1, 41))


async def test_a_missing_frame_below_the_cursor_is_stored_when_it_arrives(store):
    await store.store_batch("a", "j1", mixed(1, 3) + mixed(6, 8))
    stored, duplicates, top = await store.store_batch("a", "j1", mixed(3, 5))
    assert (stored, duplicates, top) == (2, 1, 8)
    assert await store.stored_seqs("a", "j1") == list(range(1, 9))


async def test_out_of_order_frames_in_a_batch_are_all_kept(store):
    batch = mixed(1, 10)
    batch.reverse()
    assert (await store.store_batch("a", "j1", batch))[0] == 10
    assert await store.stored_seqs("a", "j1") == list(range(1, 11))


async def test_a_failed_batch_leaves_neither_rows_nor_cursor(store):
    await store.store_batch("a", "j1", mixed(1, 5))
    await store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.seq = 9 BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(StoreError):
        await store.store_batch("a", "j1", mixed(6, 10))
    assert await store.cursor("a") == ("j1", 5)
    assert await store.stored_seqs("a", "j1") == [1, 2, 3, 4, 5]


async def test_a_new_journal_is_a_new_stream_and_moves_the_cursor(store):
    await store.store_batch("a", "j1", mixed(1, 10))
    await store.store_batch("a", "j2", mixed(1, 4))
    assert await store.cursor("a") == ("j2", 4)
    counts = {(c.node, c.journal): c for c in await store.node_counts()}
    assert counts[("a", "j1")].frames == 10 and counts[("a", "j2")].frames == 4


async def test_node_counts_report_gaps(store):
    await store.store_batch("a", "j1", mixed(1, 5) + mixed(9, 12))
    (count,) = await store.node_counts()
    assert (count.first_seq, count.last_seq, count.frames, count.gaps) == (1, 12, 9, 3)


async def test_events_query_by_time_kind_and_node(store):
    await store.store_batch("a", "j1", mixed(1, 30))
    await store.store_batch("b", "k1", mixed(1, 30))
    calls = await store.events(T0 + 10, T0 + 20, kinds=("llm.call",), node="b")
    assert [e.seq for e in calls] == [12, 15, 18]
    assert all(e.node == "b" and e.kind == "llm.call" and e.data["model"] == "m" for e in calls)


async def test_metrics_roll_up_per_bucket(tmp_path):
    store = await Store.open(tmp_path / "r.db", metric_rollup_s=10)
    try:
        await store.store_batch("a", "j1", [metrics(s, ts=T0 + s, cpu=float(s), queue=s) for s in range(1, 10)])
        await store.store_batch("a", "j1", [metrics(s, ts=T0 + s, cpu=float(s), queue=s) for s in range(1, 12)])
        rows = await store.rollups(node="a")
        first = next(r for r in rows if r["bucket"] == int(T0))
        assert first["samples"] == 9 and first["cpu_max"] == 9.0 and first["cpu_avg"] == 5.0
        assert sum(r["samples"] for r in rows) == 11  # the replayed samples were not counted twice
    finally:
        await store.close()


async def test_retention_deletes_only_old_rows(store):
    await store.store_batch("a", "j1", [metrics(1, ts=T0 - 40 * 86400), call(2, ts=T0 - 40 * 86400), metrics(3, ts=T0)])
    assert await store.prune(T0, retention_days=30) >= 2
    assert await store.stored_seqs("a", "j1") == [3]
    assert await store.cursor("a") == ("j1", 3)


async def test_migrations_run_once_and_in_order(store):
    migrations = ["CREATE TABLE engine_a (x INTEGER)", "ALTER TABLE engine_a ADD COLUMN y TEXT"]
    assert await store.apply_migrations("engine", migrations[:1]) == 1
    assert await store.apply_migrations("engine", migrations) == 2
    assert await store.apply_migrations("engine", migrations) == 2
    assert await store.schema_version("engine") == 2
    await store.db.execute("INSERT INTO engine_a (x, y) VALUES (1, 'ok')")


async def test_a_failing_migration_changes_nothing(store):
    with pytest.raises(StoreError, match="migration engine v1 failed: table t1 already exists"):
        await store.apply_migrations("engine", ["CREATE TABLE t1 (x); CREATE TABLE t1 (y)"])
    assert await store.schema_version("engine") == 0
    rows = await store.db.execute_fetchall("SELECT name FROM sqlite_master WHERE name = 't1'")
    assert list(rows) == []


async def test_a_database_newer_than_the_code_is_refused(tmp_path):
    store = await Store.open(tmp_path / "h.db")
    await store.apply_migrations("engine", ["CREATE TABLE a (x)", "CREATE TABLE b (x)"])
    with pytest.raises(StoreError, match="newer than this heady knows"):
        await store.apply_migrations("engine", ["CREATE TABLE a (x)"])
    await store.close()


async def test_a_transaction_rolls_back_on_error(store):
    await store.apply_migrations("engine", ["CREATE TABLE t (x INTEGER)"])
    with pytest.raises(RuntimeError):
        async with store.transaction() as db:
            await db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("abort")
    assert list(await store.db.execute_fetchall("SELECT count(*) FROM t")) == [(0,)]


async def test_a_durable_transaction_commits(store):
    await store.apply_migrations("engine", ["CREATE TABLE t (x INTEGER)"])
    async with store.transaction(durable=True) as db:
        await db.execute("INSERT INTO t VALUES (1)")
    assert list(await store.db.execute_fetchall("SELECT count(*) FROM t")) == [(1,)]
    assert list(await store.db.execute_fetchall("PRAGMA synchronous")) == [(1,)]  # back to NORMAL


async def test_a_corrupt_database_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "heady.db"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StoreError) as info:
        await Store.open(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "move it aside or restore a backup" in message
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing was overwritten


async def test_a_locked_database_is_a_one_line_error(tmp_path):
    path = tmp_path / "heady.db"
    store = await Store.open(path, busy_timeout_s=0.2)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked") as info:
            await store.apply_migrations("engine", ["CREATE TABLE t (x)"])
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    finally:
        holder.rollback()
        holder.close()
        await store.close()


async def test_ingest_errors_are_kept_per_node(store):
    await store.record_ingest_error("a", "bad_json", "frame ignored: not JSON", T0)
    await store.record_ingest_error("b", "too_large", "frame too large", T0 + 1)
    assert [e["code"] for e in await store.ingest_errors(node="a")] == ["bad_json"]


async def test_nodes_are_recorded_with_their_info(store):
    await store.record_node("a", hostname="host-a", info={"cpu_count": 4}, simulated=True, now=T0)
    await store.record_node("a", hostname="host-a2", info={"cpu_count": 8}, simulated=True, now=T0 + 5)
    (node,) = await store.nodes()
    assert node["hostname"] == "host-a2" and node["info"] == {"cpu_count": 8}
    assert node["first_seen"] == T0 and node["last_seen"] == T0 + 5 and node["simulated"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 25)), min_size=1, max_size=8))
async def test_any_sequence_of_overlapping_replays_stores_each_seq_once(tmp_path_factory, windows):
    store = await Store.open(tmp_path_factory.mktemp("prop") / "heady.db")
    try:
        stored_total = 0
        seen: set[int] = set()
        for first, length in windows:
            batch = mixed(first, first + length)
            stored, duplicates, top = await store.store_batch("a", "j1", batch)
            stored_total += stored
            assert stored + duplicates == len(batch)
            seen |= {f.seq for f in batch}
            assert top == max(seen)
        assert await store.stored_seqs("a", "j1") == sorted(seen)
        assert stored_total == len(seen)
        assert await store.cursor("a") == ("j1", max(seen))
    finally:
        await store.close()
