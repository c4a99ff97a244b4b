"""Reads see committed data only: a transaction another task has open on the writer is invisible."""

from __future__ import annotations

from heady_tui.store import Store


async def test_a_read_during_an_open_transaction_does_not_see_its_rows(tmp_path):
    store = await Store.open(tmp_path / "heady.db")
    try:
        async with store.transaction() as db:
            await db.execute("INSERT INTO nodes (id, first_seen, last_seen) VALUES ('n1', 0, 0)")
            assert await store.nodes() == []
        assert [n["id"] for n in await store.nodes()] == ["n1"]
    finally:
        await store.close()


async def test_a_rolled_back_transaction_is_never_read(tmp_path):
    store = await Store.open(tmp_path / "heady.db")
    try:
        try:
            async with store.transaction() as db:
                await db.execute("INSERT INTO nodes (id, first_seen, last_seen) VALUES ('n1', 0, 0)")
                raise RuntimeError("abandon")
        except RuntimeError:
            pass
        assert await store.nodes() == []
    finally:
        await store.close()
