"""`heady`: argument parsing and dispatch. Each subcommand's work lives in heady_tui/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from heady_agent.config import SCENARIOS, ConfigError

from . import __version__
from .config import Paths
from .engine.healing import TASK_STATES
from .filemodes import harden, private_umask


class UsageError(Exception):
    """Bad input on the command line, reported as one line."""


def _duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '1d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 15m, 24h)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as every command promises
        self.exit(2, f"{self.prog}: error: {message}\n")


def _shared_options(*, top: bool) -> tuple[_Parser, _Parser]:
    """Options accepted before and after the subcommand. After it they default to SUPPRESS, so a
    subcommand never overwrites what was given before it (`heady --config F run ...`)."""
    default = None if top else argparse.SUPPRESS
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", default=default,
        help="config file (default: $HEADY_CONFIG, else the user config dir)",
    )
    common.add_argument("--data-dir", metavar="DIR", default=default, help="data directory (default: the user data dir)")

    ui = _Parser(add_help=False)
    ui.add_argument(
        "--read-only", action="store_true", default=False if top else argparse.SUPPRESS,
        help="hide every action that changes anything",
    )
    ui.add_argument("--theme", choices=("dark", "light"), default=default, help="colour theme (default from [ui] theme)")
    ui.add_argument(
        "--color",
        choices=("auto", "truecolor", "256", "16", "none"),
        default="auto" if top else argparse.SUPPRESS,
        help="colour depth for terminals that do not announce it (NO_COLOR is honoured)",
    )
    return common, ui


def build_parser() -> argparse.ArgumentParser:
    top_common, top_ui = _shared_options(top=True)
    common, ui = _shared_options(top=False)

    parser = _Parser(
        prog="heady",
        description="Keyboard-driven console for a fleet of machines running LLM coding agents.",
        parents=[top_common, top_ui],
    )
    parser.add_argument("--version", action="version", version=f"heady {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common, ui], help="console on a simulated fleet")
    demo.add_argument("--nodes", type=_positive_int, default=4, help="simulated nodes (default 4)")
    demo.add_argument("--scenario", choices=SCENARIOS, default="calm", help="what the fleet does (default calm)")
    demo.add_argument("--speed", type=float, default=1.0, help="event-rate multiplier (default 1)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    demo.add_argument("--headless", action="store_true", help="no UI: JSON lines on stdout")
    demo.add_argument("--for", dest="duration", type=_duration, metavar="SECONDS", help="stop after this long")

    run = sub.add_parser("run", parents=[common], help="the engine without UI (JSON lines on stdout)")
    run.add_argument("--headless", action="store_true", required=True, help="required: run without UI")
    run.add_argument("--for", dest="duration", type=_duration, metavar="SECONDS", help="stop after this long")

    attach = sub.add_parser("attach", parents=[common, ui], help="the console on a headless console of this machine")
    attach.add_argument("socket", nargs="?", metavar="SOCKET",
                        help="its attach socket (default: <data dir>/attach/console.sock)")

    for noun in ("nodes", "sessions"):
        p = sub.add_parser(noun, parents=[common], help=f"list {noun}")
        verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
        lst = verbs.add_parser("list", parents=[common], help=f"list {noun}")
        lst.add_argument("--json", action="store_true", help="JSON instead of a table")
        lst.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for live nodes (default 3)")

    report = sub.add_parser("report", parents=[common], help="session reports")
    rverbs = report.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    export = rverbs.add_parser("export", parents=[common], help="export a session report")
    export.add_argument("--since", default="24h", help="24h, 7d, or an ISO 8601 time (default 24h)")
    export.add_argument("--until", default=None, help="ISO 8601 time (default now)")
    export.add_argument("--format", choices=("html", "md", "json"), default="html")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    audit = sub.add_parser("audit", parents=[common], help="the hash-chained audit trail")
    averbs = audit.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    averify = averbs.add_parser("verify", parents=[common], help="verify the chain and its anchor")
    averify.add_argument(
        "--against", metavar="COUNT:HASH",
        help="also check that this exported head (from `audit anchor --export`) is still part of the chain",
    )
    aanchor = averbs.add_parser("anchor", parents=[common], help="the chain's current head")
    aanchor.add_argument("--export", action="store_true", required=True,
                         help="print the verified head as COUNT:HASH, to keep somewhere the database's writers cannot reach")
    alog = averbs.add_parser("log", parents=[common], help="show audit entries, newest last")
    alog.add_argument("--limit", type=_positive_int, default=50)
    alog.add_argument("--json", action="store_true")

    costs = sub.add_parser("costs", parents=[common], help="the stored calls' costs")
    costverbs = costs.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    reprice = costverbs.add_parser("reprice", parents=[common], help="price stored calls again with the current pricing table (audited)")
    reprice.add_argument("--since", default=None, help="24h, 7d, or an ISO 8601 time (default: every stored call)")
    reprice.add_argument("--json", action="store_true", help="the outcome as JSON")

    perms = sub.add_parser("permissions", parents=[common], help="rebalancing permission grants")
    pverbs = perms.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    plist = pverbs.add_parser("list", parents=[common], help="list grants")
    plist.add_argument("--json", action="store_true")
    plist.add_argument("--all", action="store_true", help="include expired, spent and revoked grants")
    grant = pverbs.add_parser("grant", parents=[common], help="grant permission to rebalance")
    grant.add_argument("--scope", choices=("single", "session", "persistent"), required=True)
    grant.add_argument("--reason", default="granted from the command line")
    revoke = pverbs.add_parser("revoke", parents=[common], help="revoke a grant")
    revoke.add_argument("id", help="grant id")

    kpis = sub.add_parser("kpis", parents=[common], help="rebalancing KPIs against their targets")
    kpis.add_argument("--since", default="7d", help="24h, 7d, or an ISO 8601 time (default 7d)")
    kpis.add_argument("--json", action="store_true")

    accounts = sub.add_parser("accounts", parents=[common], help="each account's 5-hour and weekly limits across the fleet")
    accounts.add_argument("--json", action="store_true")

    notify = sub.add_parser("notify-deploy", parents=[common], help="tell the healing loop a deploy happened")
    notify.add_argument("--node", metavar="NAME", help="the node that was deployed (default: all)")

    healing = sub.add_parser("healing", parents=[common], help="the healing loop: cycles, weak points, repair tasks")
    hverbs = healing.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    hstatus = hverbs.add_parser("status", parents=[common], help="last cycles, open weak points, queued tasks")
    hstatus.add_argument("--json", action="store_true")
    htasks = hverbs.add_parser("tasks", parents=[common], help="repair tasks, oldest first")
    htasks.add_argument("--state", choices=TASK_STATES)
    htasks.add_argument("--json", action="store_true")
    for verb, what in (("approve", "approve a task waiting for approval (audited)"), ("reject", "reject a task waiting for approval (audited)")):
        decide = hverbs.add_parser(verb, parents=[common], help=what)
        decide.add_argument("task", help="task id (see `heady healing tasks`)")

    consent = sub.add_parser("consent", parents=[common], help="permission prompts outside the console")
    cverbs = consent.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=_Parser)
    cprompt = cverbs.add_parser("prompt", parents=[common], help="ask on this terminal")
    cprompt.add_argument("reason")
    chtml = cverbs.add_parser("html", parents=[common], help="write a self-contained permission page to stdout")
    chtml.add_argument("reason")

    return parser


# subcommand -> module in heady_tui.commands exposing `run(args) -> int`
_HANDLERS = {
    None: "console",
    "demo": "demo",
    "run": "headless",
    "attach": "attach",
    "nodes": "inventory",
    "sessions": "inventory",
    "report": "report",
    "audit": "audit",
    "costs": "costs",
    "permissions": "permissions",
    "notify-deploy": "notify",
    "healing": "healing",
    "kpis": "kpis",
    "accounts": "accounts",
    "consent": "consent",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"heady_tui.commands.{_HANDLERS[args.command]}")
    private_umask()
    try:
        harden(Paths.resolve(getattr(args, "config", None), getattr(args, "data_dir", None)).data_dir)
        return int(module.run(args) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
