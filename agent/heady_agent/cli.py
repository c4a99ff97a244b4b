"""`heady-agent`: run the node agent, print a token, or check the config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from . import __version__
from .config import SCENARIOS, SOURCE_NAMES, AgentConfig, ConfigError, load_agent_config, validation_message

log = logging.getLogger("heady_agent")

MAX_HOOK_INPUT_BYTES = 16 * 1024 * 1024  # a hook's JSON holds the tool input (a whole file for Write)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="heady-agent",
        description="Headless node agent of heady: streams host metrics and LLM-session events over WebSockets.",
    )
    parser.add_argument("--version", action="version", version=f"heady-agent {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: $HEADY_CONFIG, else the user config dir)")
    parser.add_argument("--check", action="store_true", help="validate the config, print OK or the reason, and exit")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (port 0: any free port)")
    parser.add_argument(
        "--source", dest="sources", action="append", choices=SOURCE_NAMES, metavar="NAME",
        help=f"session source, repeatable; replaces agent.sources ({', '.join(SOURCE_NAMES)})",
    )
    parser.add_argument("--scenario", choices=SCENARIOS, help="synthetic source scenario")
    parser.add_argument("--node-id", metavar="ID", help="node id announced to consoles (default: hostname)")
    parser.add_argument("--node-index", type=int, metavar="N", help="which node of a simulated fleet this agent plays")
    parser.add_argument("--node-count", type=int, metavar="N", help="size of the simulated fleet")
    parser.add_argument("--seed", type=int, help="random seed of the synthetic source")
    parser.add_argument("--speed", type=float, help="event-rate multiplier of the synthetic source")
    parser.add_argument("--interval", type=float, metavar="SECONDS", help="metrics interval (agent.interval_s)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (journal default: DIR/agent-journal.db)")
    parser.add_argument("--ready-file", metavar="FILE", help="once listening, write the bound ws URL to FILE (atomically)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="stderr log level (default info)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("token", help="print a new random token for agent.token / $HEADY_AGENT_TOKEN")
    sub.add_parser(
        "hook", help="run by a Claude Code hook: hand its JSON (stdin) to the running agent; prints nothing, exits 0"
    )
    sub.add_parser(
        "statusline",
        help="Claude Code's status line command: print one line, hand the session's limits (stdin) to the running agent",
    )
    hooks = sub.add_parser("hooks", help="add or remove the hook in Claude Code's settings.json")
    hooks.add_argument("action", choices=("install", "uninstall"))
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    agent: dict[str, Any] = {}
    if args.listen is not None:
        agent["listen"] = args.listen
    if args.sources:
        agent["sources"] = args.sources
    if args.node_id is not None:
        agent["node_id"] = args.node_id
    if args.interval is not None:
        agent["interval_s"] = args.interval
    synthetic = {
        key: value
        for key, value in (
            ("scenario", args.scenario),
            ("node_index", args.node_index),
            ("node_count", args.node_count),
            ("seed", args.seed),
            ("speed", args.speed),
        )
        if value is not None
    }
    if synthetic:
        agent["synthetic"] = synthetic
    return agent


def resolve_config(args: argparse.Namespace) -> tuple[AgentConfig, Path | None]:
    """The config after command-line overrides, and the journal path the data dir implies."""
    config, path = load_agent_config(args.config)
    overrides = _overrides(args)
    if overrides:
        data = config.model_dump()
        synthetic = overrides.pop("synthetic", None)
        data.update(overrides)
        if synthetic:
            data["synthetic"] = {**data["synthetic"], **synthetic}
        try:
            config = AgentConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(validation_message(Path("command line"), exc, "agent.")) from None
    journal_path = None
    if args.data_dir and not config.journal_path:
        journal_path = Path(args.data_dir).expanduser() / "agent-journal.db"
    return config, journal_path


def _write_ready(path: Path, url: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


async def _serve(config: AgentConfig, journal_path: Path | None, ready_file: Path | None, data_dir: str | None) -> int:
    from .hook_socket import socket_path
    from .server import AgentServer

    hook_socket = socket_path(data_dir) if "claude-code" in config.sources else None
    server = AgentServer(config, journal_path=journal_path, hook_socket=hook_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        if ready_file is not None:
            _write_ready(ready_file, server.url)
        await stop.wait()
    finally:
        await server.stop()
    return 0


def _check(config: AgentConfig, journal_path: Path | None) -> None:
    """Everything start() would refuse, without listening or opening the journal."""
    from .server import AgentServer

    server = AgentServer(config, journal_path=journal_path)
    server.check_tls()


def _hooks_status() -> str:
    from .hooks import installed, settings_path
    from .statusline import configured

    path = settings_path(os.environ)
    if installed(path):
        hooks = f"claude-code hooks: installed in {path}"
    else:
        hooks = f"claude-code hooks: not installed in {path} (heady-agent hooks install)"
    if configured(path):
        return f"{hooks}\nclaude-code status line: heady-agent statusline, set in {path}"
    return (f"{hooks}\nclaude-code status line: not set in {path} (statusLine command `heady-agent statusline` "
            "reports the account's limits)")


def _hook(data_dir: str | None) -> int:
    """Never fails Claude Code: no output, exit 0, whatever the input and whether an agent runs."""
    from .hook_socket import send_hook, socket_path

    try:
        send_hook(sys.stdin.buffer.read(MAX_HOOK_INPUT_BYTES), socket_path(data_dir))
    except Exception:  # a hook that fails would show an error in Claude Code
        log.debug("hook not handed over", exc_info=True)
    return 0


def _statusline(data_dir: str | None) -> int:
    """Always prints a line and exits 0: Claude Code shows whatever the command prints."""
    import json

    from .hook_socket import send_line, socket_path
    from .statusline import handed, status_text

    try:
        payload = json.loads(sys.stdin.buffer.read(MAX_HOOK_INPUT_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        payload = None
    if not isinstance(payload, dict):
        print("heady: no status")
        return 0
    fields = handed(payload)
    connected = False
    try:
        connected = send_line(fields, socket_path(data_dir)) if fields is not None else _agent_listens(data_dir)
    except Exception:  # the status line must print whatever happens to the hand-over
        log.debug("status line not handed over", exc_info=True)
    print(status_text(payload, connected=connected))
    return 0


def _agent_listens(data_dir: str | None) -> bool:
    from .hook_socket import listening, socket_path

    return listening(socket_path(data_dir))


def _hooks(action: str, data_dir: str | None) -> int:
    from .hooks import HooksError, hook_command, install, settings_path, uninstall

    path = settings_path(os.environ)
    try:
        if action == "install":
            changed = install(path, hook_command(data_dir))
            print(f"installed the heady hook in {path}" if changed else f"the heady hook is already in {path}")
        else:
            changed = uninstall(path)
            print(f"removed the heady hook from {path}" if changed else f"no heady hook in {path}")
    except (HooksError, OSError) as exc:
        print(f"heady-agent: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        print(secrets.token_urlsafe(32))
        return 0
    if args.command == "hook":
        return _hook(args.data_dir)
    if args.command == "statusline":
        return _statusline(args.data_dir)
    if args.command == "hooks":
        return _hooks(args.action, args.data_dir)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":
        # websockets logs every request and close at info; the server logs refusals itself, aggregated.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    from .journal import JournalError
    from .server import StartError

    try:
        config, journal_path = resolve_config(args)
        if args.check:
            _check(config, journal_path)
            print("OK")
            if "claude-code" in config.sources:
                print(_hooks_status())
            return 0
        ready = Path(args.ready_file).expanduser() if args.ready_file else None
        return asyncio.run(_serve(config, journal_path, ready, args.data_dir))
    except (ConfigError, StartError, JournalError) as exc:
        print(f"heady-agent: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
