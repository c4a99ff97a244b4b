"""The hash chain: append, verify, anchor; any edit, deletion, reorder or tail cut is detected."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heady_tui import audit
from heady_tui.engine.consent import Grant
from heady_tui.records import Records
from heady_tui.store import Store


async def chain(tmp_path, n: int) -> Records:
    store = await Store.open(tmp_path / "heady.db")
    records = await Records.open(store, tmp_path / "heady.db.anchor")
    for i in range(n):
        await records.audit(float(i), "u@h", "test.entry", {"i": i})
    return records


def test_hash_is_sha256_of_domain_prev_hex_and_canonical_entry():
    entry = audit.canonical({"b": 1, "a": [1, 2]})
    assert entry == '{"a":[1,2],"b":1}'
    expected = hashlib.sha256(b"heady-audit-v1\0" + b"0" * 64 + entry.encode()).hexdigest()
    assert audit.chain_hash(audit.GENESIS, entry) == expected


async def test_intact_chain_verifies_and_anchor_holds_the_head(tmp_path):
    records = await chain(tmp_path, 5)
    result = await records.verify_audit()
    assert result.ok and result.entries == 5
    assert audit.read_anchor(tmp_path / "heady.db.anchor").head == result.head
    await records.store.close()


async def test_tail_cut_is_detected_through_the_anchor(tmp_path):
    records = await chain(tmp_path, 5)
    await records.store.db.execute("DELETE FROM audit WHERE seq = 5")
    result = await records.verify_audit()
    assert not result.ok and result.first_bad == 5 and "anchor records 5" in result.message
    await records.store.close()


async def test_unreadable_anchor_fails_verification(tmp_path):
    records = await chain(tmp_path, 2)
    (tmp_path / "heady.db.anchor").write_text("garbage")
    assert not (await records.verify_audit()).ok
    await records.store.close()


async def test_an_append_returns_once_its_entry_is_fsynced_and_anchored_by_a_worker_thread(tmp_path, monkeypatch):
    records = await chain(tmp_path, 2)
    fsyncs_on_loop_thread: list[bool] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        fsyncs_on_loop_thread.append(threading.current_thread() is threading.main_thread())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    await records.audit(2.0, "u@h", "test.entry", {"i": 2})
    head = (await records.verify_audit()).head
    assert head.count == 3 and audit.read_anchor(tmp_path / "heady.db.anchor").head == head
    # the pending anchor (temp file, directory), the database, the final anchor (temp file,
    # directory); none of them on the event loop's thread
    assert len(fsyncs_on_loop_thread) == 5 and not any(fsyncs_on_loop_thread)
    await records.store.close()


async def test_concurrent_appends_keep_one_chain_and_the_anchor_ends_at_its_head(tmp_path):
    records = await chain(tmp_path, 0)
    await asyncio.gather(*(records.audit(float(i), "u@h", "test.entry", {"i": i}) for i in range(20)))
    result = await records.verify_audit()
    assert result.ok and result.entries == 20
    assert audit.read_anchor(tmp_path / "heady.db.anchor").head == result.head
    assert sorted(e.details["i"] for e in await records.audit_entries()) == list(range(20))
    await records.store.close()


def tamper(path, kind: str, i: int, n: int) -> None:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT seq, ts, actor, action, entry, prev_hash, hash FROM audit ORDER BY seq").fetchall()
    if kind == "edit":
        con.execute("UPDATE audit SET entry = replace(entry, '\"i\":', '\"i\":1') WHERE seq = ?", (i + 1,))
    elif kind == "delete":
        con.execute("DELETE FROM audit WHERE seq = ?", (i + 1,))
    elif kind == "reorder":
        j = (i + 1) % n
        a, b = rows[i], rows[j]
        con.execute("DELETE FROM audit WHERE seq IN (?, ?)", (a[0], b[0]))
        con.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)", (a[0], *b[1:]))
        con.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)", (b[0], *a[1:]))
    elif kind == "append":
        last = rows[-1]
        con.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)", (last[0] + 1, 0.0, "x", "forged", "{}", last[6], "0" * 64))
    elif kind == "cut":
        con.execute("DELETE FROM audit WHERE seq > ?", (i,))
    con.commit()
    con.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 8), kind=st.sampled_from(["edit", "delete", "reorder", "append", "cut"]), data=st.data())
def test_any_tampering_is_detected(tmp_path_factory, n, kind, data):
    import asyncio

    i = data.draw(st.integers(0, n - 1))
    tmp = tmp_path_factory.mktemp("chain")

    async def scenario():
        records = await chain(tmp, n)
        await records.store.close()
        tamper(tmp / "heady.db", kind, i, n)
        store = await Store.open(tmp / "heady.db")
        result = await audit.verify(store.db, tmp / "heady.db.anchor")
        await store.close()
        return result

    result = asyncio.run(scenario())
    assert not result.ok and result.first_bad is not None


ANCHOR = "heady.db.anchor"


async def test_a_cut_tail_with_its_anchor_deleted_fails(tmp_path):
    records = await chain(tmp_path, 5)
    await records.store.db.execute("DELETE FROM audit WHERE seq > 3")
    (tmp_path / ANCHOR).unlink()
    result = await records.verify_audit()
    assert not result.ok and "anchor" in result.message and "missing" in result.message
    await records.store.close()


async def test_an_emptied_chain_with_its_anchor_deleted_fails(tmp_path):
    records = await chain(tmp_path, 3)
    await records.store.db.execute("DELETE FROM audit")
    (tmp_path / ANCHOR).unlink()
    result = await records.verify_audit()
    assert not result.ok and "is empty and its anchor is missing" in result.message
    await records.store.close()


async def test_a_fresh_database_without_an_anchor_verifies(tmp_path):
    records = await chain(tmp_path, 0)
    assert (await records.verify_audit()).ok
    await records.store.close()


async def test_a_correctly_chained_entry_appended_after_the_anchored_head_fails(tmp_path):
    records = await chain(tmp_path, 3)
    async with records.store.transaction() as db:  # a writer of the database, not the console
        await audit.append_in(db, ts=9.0, actor="forger", action="consent.grant", details={"grant": "g-forged"})
    result = await records.verify_audit()
    assert not result.ok and result.first_bad == 4 and "not anchored" in result.message
    await records.store.close()


async def test_a_crash_between_commit_and_anchor_leaves_a_verifiable_chain(tmp_path):
    records = await chain(tmp_path, 3)
    anchored = audit.read_anchor(tmp_path / ANCHOR).head
    async with records.store.transaction() as db:  # what Records.write does up to the commit
        entry = await audit.append_in(db, ts=3.0, actor="u@h", action="test.entry", details={"i": 3})
        audit.mark_pending(tmp_path / ANCHOR, anchored, audit.Head(entry.seq, entry.hash))
    # ...and the process dies before make_durable moves the anchor.
    result = await records.verify_audit()
    assert result.ok and result.entries == 4
    await records.store.close()


async def test_only_one_entry_past_the_anchor_is_tolerated_after_a_crash(tmp_path):
    records = await chain(tmp_path, 3)
    anchored = audit.read_anchor(tmp_path / ANCHOR).head
    async with records.store.transaction() as db:
        entry = await audit.append_in(db, ts=3.0, actor="u@h", action="test.entry", details={"i": 3})
        audit.mark_pending(tmp_path / ANCHOR, anchored, audit.Head(entry.seq, entry.hash))
    async with records.store.transaction() as db:
        await audit.append_in(db, ts=4.0, actor="forger", action="test.entry", details={"i": 4})
    assert not (await records.verify_audit()).ok
    await records.store.close()


async def test_the_anchor_records_the_time_of_its_entry(tmp_path):
    records = await chain(tmp_path, 3)
    assert audit.read_anchor(tmp_path / ANCHOR).at == 2.0
    await records.store.close()


async def test_a_deleted_anchor_is_not_recreated_over_a_non_empty_chain(tmp_path):
    records = await chain(tmp_path, 3)
    (tmp_path / ANCHOR).unlink()
    await records.audit(3.0, "u@h", "test.entry", {"i": 3})
    assert not (tmp_path / ANCHOR).exists()
    assert not (await records.verify_audit()).ok
    await records.store.close()


async def test_an_exported_head_that_is_still_in_the_chain_verifies(tmp_path):
    records = await chain(tmp_path, 3)
    exported = (await records.verify_audit()).head
    await records.audit(3.0, "u@h", "test.entry", {"i": 3})
    assert (await records.verify_audit(against=exported)).ok
    await records.store.close()


async def test_a_rewritten_history_fails_against_the_exported_head(tmp_path):
    records = await chain(tmp_path, 3)
    exported = (await records.verify_audit()).head
    await records.store.close()
    # A writer of both the database and the anchor rebuilds a consistent chain: only the export sees it.
    con = sqlite3.connect(tmp_path / "heady.db")
    con.execute("DELETE FROM audit")
    con.commit()
    con.close()
    (tmp_path / ANCHOR).unlink()
    records = await chain(tmp_path, 0)
    for i in range(3):
        await records.audit(float(i), "u@h", "test.entry", {"i": i + 100})
    assert (await records.verify_audit()).ok
    result = await records.verify_audit(against=exported)
    assert not result.ok and "exported head" in result.message
    await records.store.close()


def persistent_grant(gid: str = "g1") -> Grant:
    return Grant(gid, "persistent", "op@host", 10.0, None, {"max_moves": 3}, 0, None, None, "night shift")


async def test_a_grant_row_without_its_audit_entry_fails(tmp_path):
    records = await chain(tmp_path, 1)
    await records.add_grant(persistent_grant(), actor="op@host", now=10.0)
    async with records.store.transaction() as db:  # inserted by a writer of the database
        await db.execute("INSERT INTO grants VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         ("g-forged", "persistent", "op@host", 11.0, None, "{}", 0, None, None, "forged", None))
    result = await records.verify_audit()
    assert not result.ok and "grant g-forged: no audit entry records it" in result.message
    await records.store.close()


async def test_a_grant_changed_after_its_audit_entry_fails(tmp_path):
    records = await chain(tmp_path, 1)
    await records.add_grant(persistent_grant(), actor="op@host", now=10.0)
    async with records.store.transaction() as db:
        await db.execute("UPDATE grants SET caps = ? WHERE id = 'g1'", ('{"max_moves": 300}',))
    result = await records.verify_audit()
    assert not result.ok and "grant g1: caps differ from its audit entry" in result.message
    await records.store.close()


async def test_a_revoked_grant_made_active_again_fails(tmp_path):
    records = await chain(tmp_path, 1)
    await records.add_grant(persistent_grant(), actor="op@host", now=10.0)
    await records.revoke_grant("g1", actor="op@host", now=11.0)
    async with records.store.transaction() as db:
        await db.execute("UPDATE grants SET revoked = NULL WHERE id = 'g1'")
    result = await records.verify_audit()
    assert not result.ok and "grant g1: active unlike its audit entries say" in result.message
    await records.store.close()


async def test_grants_recorded_through_the_chain_verify(tmp_path):
    records = await chain(tmp_path, 1)
    await records.add_grant(persistent_grant(), actor="op@host", now=10.0)
    await records.revoke_grant("g1", actor="op@host", now=11.0)
    assert (await records.verify_audit()).ok
    await records.store.close()
