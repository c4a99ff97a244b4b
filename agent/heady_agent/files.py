"""The agent's files are private to its user: 0600 files in 0700 directories, also when rewritten.

The journal holds every prompt title, path and cost of the node; the launcher's config and log
hold the embedded agent's token. Modes are set explicitly rather than through the umask, because
managed sessions inherit the agent's umask and their files (a checkout) must keep the user's own.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it 0700; returns it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Make an existing file 0600, or create it empty with that mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: Path, mode: str) -> int:
    """A file descriptor of `path` opened for writing ("w" truncates, "a" appends), mode 0600 even
    when the file already existed with a wider one."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "w" else os.O_APPEND)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd
