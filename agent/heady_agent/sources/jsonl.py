"""Incremental reading of append-only JSONL logs, and the polling source built on it, shared by
the claude-code and codex sources.

A file's read position is kept in the source state (set inside the same `ctx.atomic()` as the
events read from it), so a restarted agent continues exactly where the committed events end.
Only complete lines are read: a partly written last line waits for its newline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .base import SourceContext
from .common import WatchedSession, WatchedSource
from .radar import SKIPPED_LINE, UNREADABLE_FILE, FormatRadar

READ_CHUNK = 1 << 20  # bytes read per file per poll (a long backlog is read over several polls)
RECENT_KEEP = 16  # (uuid, ts) pairs remembered per file across restarts, for latencies (a parent is a few records back)
INACTIVE_AFTER_S = 600.0  # a session with no record for this long has ended
TOUCHED_EVERY_S = 30.0  # how stale a restarted agent may find a session's latest record time (ending needs 600 s)
LISTING_SETTLE_NS = 2_000_000_000  # a folder whose mtime is younger than this is listed on every walk
HELD = "held"  # FileCursor.extra key: what a source read but can only judge once the next line (or a quiet poll) comes


@dataclass
class FileCursor:
    offset: int = 0
    inode: int = 0
    recent: dict[str, float] = field(default_factory=dict)  # record uuid -> timestamp
    noticed: bool = False  # the skipped-lines notice for this file was sent
    extra: dict[str, Any] = field(default_factory=dict)  # what a source needs to resume this file

    def remember(self, uuid: str, ts: float) -> None:
        self.recent[uuid] = ts
        if len(self.recent) > RECENT_KEEP:
            del self.recent[next(iter(self.recent))]

    def dump(self) -> str:
        return json.dumps(
            {
                "offset": self.offset,
                "inode": self.inode,
                "recent": list(self.recent.items()),
                "noticed": self.noticed,
                "extra": self.extra,
            }
        )

    @classmethod
    def load(cls, text: str | None) -> FileCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls(
                offset=int(raw.get("offset", 0)),
                inode=int(raw.get("inode", 0)),
                recent={str(u): float(t) for u, t in raw.get("recent", [])},
                noticed=bool(raw.get("noticed", False)),
                extra=dict(raw.get("extra") or {}),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


def read_complete_lines(
    path: Path, cursor: FileCursor, chunk: int = READ_CHUNK, *, by_inode: bool = True
) -> tuple[list[bytes], int] | None:
    """The complete lines after the cursor and the offset just past them; None if unchanged or gone.

    A file that shrank, or was replaced (other inode) when `by_inode`, is read again from the start.
    Without `by_inode` the cursor follows the content (a log identified by name, copied elsewhere).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if (by_inode and st.st_ino != cursor.inode) or st.st_size < cursor.offset:
        if cursor.inode or cursor.offset:
            cursor.offset = 0
            cursor.recent.clear()
            cursor.extra.clear()
        cursor.inode = st.st_ino
    if st.st_size == cursor.offset:
        return None
    fd = os.open(path, os.O_RDONLY)  # a file that exists but cannot be read raises: the caller counts it
    try:
        # Ask only for what the stat saw appended: pread allocates the full size asked for.
        data = os.pread(fd, min(chunk, st.st_size - cursor.offset), cursor.offset)
        # A single line longer than the chunk: keep reading until its end (or the file's).
        while data and b"\n" not in data:
            more = os.pread(fd, chunk, cursor.offset + len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    if end < 0:
        return None
    complete = data[: end + 1]
    return complete.splitlines(), cursor.offset + len(complete)


def parse_record(line: bytes) -> dict[str, Any] | None:
    """One JSON object, or None for a line that is not one (blank lines are not records either)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def parse_records(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """The records among the lines, and how many non-blank lines were not records."""
    records: list[dict[str, Any]] = []
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        record = parse_record(line)
        if record is None:
            skipped += 1
        else:
            records.append(record)
    return records, skipped


def parse_ts(value: Any) -> float | None:
    """ISO 8601 (with Z or an offset) or epoch seconds/milliseconds -> epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclass
class Listing:
    mtime_ns: int
    files: list[Path]
    folders: list[Path]


def walk_jsonl(
    root: Path, listings: dict[str, Listing] | None = None, suffixes: tuple[str, ...] = (".jsonl",)
) -> Iterator[Path]:
    """Every file below root whose name ends in one of `suffixes` (*.jsonl); files before folders,
    so a session's own file precedes its subagents'.

    With `listings`, a folder whose mtime did not change since the last walk is not listed again
    (adding or removing an entry changes its folder's mtime). One `listings` serves one `suffixes`.
    """
    try:
        mtime = os.stat(root).st_mtime_ns
    except OSError:
        return
    listing = listings.get(str(root)) if listings is not None else None
    # A folder changed within the file system's timestamp granularity of the last listing may have
    # changed again without its mtime moving: list it until its mtime has settled (file-system time).
    settled = time.time_ns() - mtime > LISTING_SETTLE_NS
    if listing is None or listing.mtime_ns != mtime or not settled:
        try:
            entries = sorted(os.scandir(root), key=lambda e: (_is_dir(e), e.name))
        except OSError:
            return
        files, folders = [], []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.name.endswith(suffixes) and entry.is_file(follow_symlinks=False):
                    files.append(Path(entry.path))
            except OSError:
                continue
        listing = Listing(mtime, files, folders)
        if listings is not None:
            listings[str(root)] = listing
    yield from listing.files
    for folder in listing.folders:
        yield from walk_jsonl(folder, listings, suffixes)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def as_int(value: Any) -> int:
    """A token count from a log: non-negative int, 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))


@dataclass
class JsonlSession(WatchedSession):
    last_ts: float = 0.0  # time of the session's latest record
    ended_at: float = 0.0


J = TypeVar("J", bound=JsonlSession)


class JsonlSource(WatchedSource[J], ABC):
    """A watching source that polls the JSONL logs its program writes below `log_folders` of each root."""

    log_folders: ClassVar[tuple[str, ...]]

    def __init__(self, ctx: SourceContext, roots: list[Path], poll_interval_s: float) -> None:
        super().__init__(ctx)
        self.roots = roots
        self.poll_interval_s = poll_interval_s
        self.radar = FormatRadar(self.name, ctx, self.state_prefix)
        self._cursors: dict[str, FileCursor] = {}  # state key -> the cursor as last committed
        self._listings: dict[str, Listing] = {}  # folder -> its entries, while its mtime stays
        self._touched: set[str] = set()
        self._touched_at = float("-inf")
        self._isolated = False

    @property
    def skipped_lines(self) -> int:
        """Log lines that were not JSON objects, since this source started."""
        return self.radar.counts[SKIPPED_LINE]

    def format_radar(self) -> dict[str, int]:
        return self.radar.snapshot()

    async def start(self) -> None:
        self._load_live()
        self.scan()
        self._task = asyncio.create_task(self._poll(), name=f"{self.name}-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                self.scan()
            except Exception:  # a surprise in one poll must not end the watching
                logging.getLogger(type(self).__module__).exception("%s scan failed", self.name)

    def scan(self) -> None:
        """Read what is new in every log; emit what changed.

        One poll is one commit (events, cursors and session records together), which keeps a busy
        node's write cost per poll, not per file. After a poll failed, each file commits on its own,
        so one file that keeps failing cannot hold back the others.
        """
        try:
            with nullcontext() if self._isolated else self.ctx.atomic():
                self._poll_once()
                self._write_touched()
        except Exception:
            self._isolated = True
            self._forget()  # what this poll changed in memory was rolled back in the journal
            raise
        self._flush()

    def _poll_once(self) -> None:
        self._read_logs()
        self._end_inactive()

    def _touch(self, session: J) -> None:
        """The session's record changed in a way only a restart needs (its latest record time): saved every TOUCHED_EVERY_S."""
        self._touched.add(session.id)

    def _write_touched(self) -> None:
        now = self.ctx.clock.now()
        if now - self._touched_at < TOUCHED_EVERY_S:
            return
        self._touched_at = now
        changed = self._changed
        for sid in sorted(self._touched):
            session = self._sessions.get(sid)
            if session is not None:
                self._save(session)
        self._touched.clear()
        self._changed = changed  # nothing the sessions list shows changed: no fresh list to push

    def _forget(self) -> None:
        """Drop what memory holds beyond the journal: a failed poll's changes were rolled back there."""
        self.radar.forget()
        self._cursors.clear()
        self._listings.clear()
        self._touched.clear()
        self._sessions.clear()
        self._live.clear()
        self._load_live()

    def _read_logs(self) -> None:
        for root in self.roots:
            for folder in self.log_folders:
                if (root / folder).is_dir():
                    for path in walk_jsonl(root / folder, self._listings):
                        self._read_file(path)

    def _cursor_key(self, path: Path) -> str:
        """Where the file's cursor is kept in the source state (and in memory)."""
        return f"{self.state_prefix}.file:{path}"

    def _new_lines(self, path: Path, cursor: FileCursor) -> tuple[list[bytes], int] | None:
        """The complete lines after the cursor and the offset past them (None: nothing new)."""
        return read_complete_lines(path, cursor)

    def _read_file(self, path: Path) -> None:
        key = self._cursor_key(path)
        cursor = self._cursors.get(key)
        if cursor is None:
            cursor = self._cursors[key] = FileCursor.load(self.ctx.get_state(key))
        try:
            got = self._new_lines(path, cursor)
        except OSError as exc:
            with self.ctx.atomic():
                self.radar.seen(UNREADABLE_FILE, str(path), detail=exc.strerror or type(exc).__name__)
            return
        if got is None:
            if cursor.extra.get(HELD):
                with self.ctx.atomic():
                    if self._unchanged(path, cursor):
                        self.ctx.set_state(key, cursor.dump())
            return
        lines, new_offset = got
        records, skipped = parse_records(lines)
        with self.ctx.atomic():
            self._records(path, records, cursor)
            cursor.offset = new_offset
            if skipped:
                self.radar.counts[SKIPPED_LINE] += skipped  # noticed per file just below, not per name
                if not cursor.noticed:
                    cursor.noticed = True
                    self.ctx.notice("warning", f"{self.name}: skipped {skipped} unreadable line(s) in {path}")
            self.ctx.set_state(key, cursor.dump())

    def _unchanged(self, path: Path, cursor: FileCursor) -> bool:
        """The file did not grow since the last poll while records wait in cursor.extra[HELD]; True if the cursor changed."""
        return False

    @abstractmethod
    def _records(self, path: Path, records: list[dict[str, Any]], cursor: FileCursor) -> None:
        """Emit what one read of the file says; runs inside the commit that moves its cursor."""

    def _active(self, sid: str, when: float) -> J:
        """The session a record at `when` belongs to; one that had ended before then runs again."""
        session = self._session(sid)
        if session.ended and when > session.ended_at:
            self._reopen(session)
        return session

    def _seen(self, session: J, when: float) -> None:
        """The session has a record at `when`; its first one announces it."""
        session.last_ts = max(session.last_ts, when)
        if session.started is None and not session.ended:
            self._announce(session, when)

    def _quiet(self, session: J, now: float) -> str | None:
        """Why the session has ended, judged by its records (None while it may go on): here, long silence."""
        return "inactive" if now - session.last_ts > INACTIVE_AFTER_S else None

    def _end_inactive(self) -> None:
        now = self.ctx.clock.now()
        with self.ctx.atomic():
            for sid in sorted(self._live):
                session = self._sessions.get(sid)
                reason = self._quiet(session, now) if session is not None else None
                if session is not None and reason is not None:
                    self._end(session, reason, session.last_ts)

    def _end(self, session: J, reason: str, when: float) -> None:
        session.ended_at = when
        super()._end(session, reason, when)
