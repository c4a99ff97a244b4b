"""The console's data files are private to the operator: 0600 files in a 0700 directory.

The database holds every session, cost and audit entry, and heady.log names nodes and errors, so
no other local user may read them. A umask of 077 covers every file the console creates or
rewrites (SQLite's -wal and -shm, the log, the audit anchor, reports); `harden` fixes what an
older version left readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> None:
    """From now on this process creates files 0600 and directories 0700."""
    os.umask(PRIVATE_UMASK)


def harden(data_dir: Path) -> None:
    """Make an existing data directory 0700 and the files directly in it 0600."""
    if not data_dir.is_dir():
        return
    os.chmod(data_dir, DIR_MODE)
    for entry in data_dir.iterdir():
        mode = entry.lstat().st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~FILE_MODE:
            os.chmod(entry, FILE_MODE)
