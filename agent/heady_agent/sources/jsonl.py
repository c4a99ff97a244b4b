"""Incremental reading of append-only JSONL logs, shared by the claude-code and codex sources.

A file's read position is kept in the source state (set inside the same `ctx.atomic()` as the
events read from it), so a restarted agent continues exactly where the committed events end.
Only complete lines are read: a partly written last line waits for its newline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

READ_CHUNK = 1 << 20  # bytes read per file per poll (a long backlog is read over several polls)
RECENT_KEEP = 64  # (uuid, ts) pairs remembered per file across restarts, for latencies


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


def read_complete_lines(path: Path, cursor: FileCursor, chunk: int = READ_CHUNK) -> tuple[list[bytes], int] | None:
    """The complete lines after the cursor and the offset just past them; None if unchanged or unreadable.

    A file that shrank or was replaced (other inode) is read again from the start.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_ino != cursor.inode or st.st_size < cursor.offset:
        if cursor.inode or cursor.offset:
            cursor.offset = 0
            cursor.recent.clear()
            cursor.extra.clear()
        cursor.inode = st.st_ino
    if st.st_size == cursor.offset:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(cursor.offset)
            data = fh.read(chunk)
            # A single line longer than the chunk: keep reading until its end (or the file's).
            while data and b"\n" not in data:
                more = fh.read(chunk)
                if not more:
                    break
                data += more
    except OSError:
        return None
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


def walk_jsonl(root: Path) -> Iterator[Path]:
    """Every *.jsonl below root; files before folders, so a session's own file precedes its subagents'."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: (_is_dir(e), e.name))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from walk_jsonl(Path(entry.path))
            elif entry.name.endswith(".jsonl") and entry.is_file(follow_symlinks=False):
                yield Path(entry.path)
        except OSError:
            continue


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
