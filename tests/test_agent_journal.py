"""The agent journal: seq, ids, retention, atomic source state, corruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heady_agent.clock import ManualClock
from heady_agent.journal import Journal


def _metrics(ts: float) -> dict:
    return {"type": "metrics", "ts": ts, "cpu": 1.0}


def _journal(path: Path, clock: ManualClock, **kw) -> Journal:
    return Journal(path, clock=clock, **kw)


def test_append_numbers_frames_and_stamps_the_journal_id(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock)
    first = journal.append(_metrics(clock.now()))
    second = journal.append(_metrics(clock.now()))
    assert (first.seq, second.seq) == (1, 2)
    assert json.loads(second.text)["journal"] == journal.id
    assert json.loads(second.text)["seq"] == 2


def test_id_and_seq_survive_reopening(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock)
    for _ in range(3):
        journal.append(_metrics(clock.now()))
    journal_id = journal.id
    journal.close()
    again = _journal(tmp_path / "j.db", clock)
    assert again.id == journal_id
    assert again.append(_metrics(clock.now())).seq == 4


def test_replay_since_yields_every_later_frame_in_batches(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock)
    for _ in range(25):
        journal.append(_metrics(clock.now()))
    batches = list(journal.replay_since(5, batch=7))
    assert [len(b) for b in batches] == [7, 7, 6]
    assert [seq for b in batches for seq, _ in b] == list(range(6, 26))


def test_retention_by_rows_keeps_the_newest(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock, retention_rows=10)
    for _ in range(25):
        journal.append(_metrics(clock.now()))
    journal.prune()
    assert journal.first_seq == 16
    assert journal.count() == 10


def test_retention_by_age_drops_frames_journalled_before_the_window(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock, retention_days=1)
    for _ in range(5):
        journal.append(_metrics(clock.now()))
    clock.advance(2 * 86400)
    journal.append(_metrics(clock.now()))
    journal.prune()
    assert journal.first_seq == 6


def test_retention_by_age_uses_journal_time_not_the_frame_timestamp(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock, retention_days=1)
    journal.append(_metrics(clock.now() - 30 * 86400))  # an old transcript line ingested today
    journal.prune()
    assert journal.count() == 1


def test_seq_continues_after_every_row_was_pruned(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock, retention_days=1)
    for _ in range(3):
        journal.append(_metrics(clock.now()))
    clock.advance(3 * 86400)
    journal.prune()
    assert journal.count() == 0
    journal.close()
    again = _journal(tmp_path / "j.db", clock)
    assert again.first_seq == 4
    assert again.append(_metrics(clock.now())).seq == 4


def test_transaction_commits_frames_and_state_together(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock)
    with journal.transaction():
        journal.append(_metrics(clock.now()))
        journal.set_state("offset", "120")
        assert journal.read_after(0) == []  # not visible to readers before commit
    assert journal.get_state("offset") == "120"
    assert [seq for seq, _ in journal.read_after(0)] == [1]


def test_failed_transaction_keeps_neither_frames_nor_state(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = _journal(tmp_path / "j.db", clock)
    with pytest.raises(RuntimeError):
        with journal.transaction():
            journal.append(_metrics(clock.now()))
            journal.set_state("offset", "120")
            raise RuntimeError("source failed mid-batch")
    assert journal.get_state("offset") is None
    assert journal.count() == 0
    assert journal.append(_metrics(clock.now())).seq == 1


def test_corrupt_journal_is_moved_aside_and_a_new_journal_starts(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    clock = ManualClock()
    old = _journal(path, clock)
    old_id = old.id
    old.close()
    path.write_bytes(b"this is not a database\x00" * 100)
    journal = _journal(path, clock)
    aside = list(tmp_path.glob("j.db.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a database")
    assert journal.id != old_id
    assert journal.append(_metrics(clock.now())).seq == 1
    assert journal.reset_notice is not None
    assert str(path) in journal.reset_notice and str(aside[0]) in journal.reset_notice
    assert "\n" not in journal.reset_notice
