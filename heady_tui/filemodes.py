"""The console's data files are private to the operator: 0600 files in a 0700 directory.

The database holds every session, cost and audit entry, and heady.log names nodes and errors, so
no other local user may read them. A umask of 077 covers every file the console creates or
rewrites (SQLite's -wal and -shm, the log, the audit anchor, reports); `harden` fixes what an
older version left readable. The umask is the console's own: the agents it starts, and the coding
sessions they start, get the operator's (`operator_umask`), so a session's checkout keeps the
operator's usual modes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


_operator_umask: int | None = None  # the umask this process started with, kept by the first private_umask()


def private_umask() -> None:
    """From now on this process creates files 0600 and directories 0700."""
    global _operator_umask
    previous = os.umask(PRIVATE_UMASK)
    if _operator_umask is None:
        _operator_umask = previous


def operator_umask() -> int:
    """The umask the operator started the console with (the current one if it was never made private)."""
    if _operator_umask is not None:
        return _operator_umask
    current = os.umask(PRIVATE_UMASK)
    os.umask(current)
    return current


def harden(data_dir: Path) -> None:
    """Make an existing data directory 0700 and the files directly in it 0600."""
    if not data_dir.is_dir():
        return
    os.chmod(data_dir, DIR_MODE)
    for entry in data_dir.iterdir():
        mode = entry.lstat().st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~FILE_MODE:
            os.chmod(entry, FILE_MODE)
