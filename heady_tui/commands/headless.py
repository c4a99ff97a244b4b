"""`heady run --headless [--for S]`: the supervisor without UI; JSON lines on stdout, logs on stderr,
and the attach socket under the data dir for consoles on this machine (docs/attach.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from heady_agent.protocol import clean_text

from ..attach.service import AttachService
from ..attach.wire import AttachError, socket_path
from ..config import Config, Paths, load_config
from ..events import HeadyEvent
from ..launcher import embedded_launcher
from ..store import StoreError
from ..supervisor import Launcher, Supervisor

log = logging.getLogger("heady")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_RECORD_MAX = 64 * 1024  # characters; room for a traceback


class TerminalSafeFormatter(logging.Formatter):
    """Log records carry agent text (node errors, notices, names). Escape sequences and control
    characters are removed from the formatted record, so reading stderr or heady.log in a terminal
    cannot set the clipboard, retitle the window or repaint the screen."""

    def format(self, record: logging.LogRecord) -> str:
        return clean_text(super().format(record), LOG_RECORD_MAX)


def configure_logging(level: int = logging.INFO) -> None:
    """Human-readable logs to stderr only (stdout carries the JSON lines)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalSafeFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)


def log_to_file(paths: Paths, level: int = logging.INFO) -> None:
    """Under the UI, logs go to <data dir>/heady.log: the terminal belongs to the screen."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.data_dir / "heady.log", encoding="utf-8")
    handler.setFormatter(TerminalSafeFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def paths_and_config(args: argparse.Namespace) -> tuple[Paths, Config]:
    paths = Paths.resolve(args.config, args.data_dir)
    return paths, load_config(paths, required=bool(args.config))


def node_launcher(config: Config, paths: Paths) -> Launcher | None:
    """With no [[nodes]] configured the console runs an embedded agent for this machine."""
    return None if config.nodes else embedded_launcher(config.agent, paths.data_dir)


async def run_headless(supervisor: Supervisor, duration: float | None) -> int:
    """Print every event as a JSON line and serve attached consoles until `duration` passes or
    SIGINT/SIGTERM; exit 0. A socket that cannot be served is logged; the console runs on without it."""
    stop = asyncio.Event()

    def emit(event: HeadyEvent) -> None:
        try:
            sys.stdout.write(event.to_json_line() + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            stop.set()  # the reader went away: nothing left to report to

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    unsubscribe = supervisor.subscribe(emit)
    service: AttachService | None = None
    try:
        await supervisor.start()
        service = AttachService(supervisor, socket_path(supervisor.paths.data_dir))
        try:
            await service.start()
        except AttachError as exc:
            log.warning("no attach socket: %s", exc)
            service = None
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
    except StoreError as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as exc:
        log.exception("the console could not start")
        print(f"heady: error: could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        if service is not None:
            await service.stop()
        await supervisor.stop()
        unsubscribe()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def run(args: argparse.Namespace) -> int:
    configure_logging()
    paths, config = paths_and_config(args)
    supervisor = Supervisor(config, paths, launcher=node_launcher(config, paths))
    return asyncio.run(run_headless(supervisor, args.duration))
