"""A transaction that fails because the disk is full says so, not "cannot rollback"."""

from __future__ import annotations

import sqlite3

import pytest

from heady_tui.store import Store


async def test_a_full_disk_is_the_error_a_failed_transaction_reports(tmp_path):
    store = await Store.open(tmp_path / "heady.db")
    try:
        await store.db.execute("CREATE TABLE filler (b BLOB)")
        pages = (await (await store.db.execute("PRAGMA page_count")).fetchone())[0]
        await store.db.execute(f"PRAGMA max_page_count = {pages + 5}")  # a disk with room for five more pages
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            async with store.transaction() as db:
                for _ in range(100):
                    await db.execute("INSERT INTO filler VALUES (zeroblob(100000))")
        async with store.transaction() as db:  # and the store still works afterwards
            await db.execute("DELETE FROM filler")
    finally:
        await store.close()
