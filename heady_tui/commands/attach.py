"""`heady attach [SOCKET]`: the console UI on a headless console of this machine (docs/attach.md).

The brain stays in the headless service; this console shows its fleet and sends its operator's
actions there. Plain `heady` does the same when a headless console answers on the data dir's socket.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..attach.client import AttachedConsole, answers
from ..attach.wire import socket_path
from ..config import Config, Paths
from .headless import log_to_file, paths_and_config


def serving(path: Path) -> bool:
    """A headless console answers on this socket."""
    return path.exists() and asyncio.run(answers(path))


def run_attached(path: Path, paths: Paths, config: Config, args: argparse.Namespace) -> int:
    from ..ui.app import run_app

    console = AttachedConsole(path, paths)
    return run_app(console, config, args, operator=console.operator)


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    path = Path(args.socket).expanduser() if args.socket else socket_path(paths.data_dir)
    if not serving(path):
        print(f"heady: error: no headless console answers on {path} (start one with `heady run --headless`)", file=sys.stderr)
        return 1
    log_to_file(paths)
    return run_attached(path, paths, config, args)
