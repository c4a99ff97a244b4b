"""heady's costs against ccusage 20's, on the same files, in one run.

Default mode: writes Claude Code transcripts into a temporary CLAUDE_CONFIG_DIR, one project folder
per group:
- `agree`: sonnet 4.5, opus 4.5 and haiku 4.5 calls under 200k context, 5-minute cache writes
  (with and without the `cache_creation` split), cache reads, responses written as several lines
  repeating message.id + requestId, an API error message (model `<synthetic>`), and a subagent file;
- `ttl-1h`: calls whose cache writes are 1-hour writes (`ephemeral_1h_input_tokens`);
- `long-context`: sonnet 4.5 calls whose context (input + cache writes + cache reads) passes 200k.
Then runs `ccusage claude session --json --offline` on that directory, and heady's path: the real
claude-code source reading the same files through a real SourceContext, each `llm.call` priced by
heady_tui.engine.cost. Prints both totals per group and the difference. In `agree` and `ttl-1h`
both use the same facts, so the totals must be equal to the cent (ccusage 17 priced 1-hour writes
at the 5-minute rate; 20 does not). In `long-context` heady follows Anthropic's published pricing
where ccusage does not (docs/engines.md): ccusage charges the long-context rate only on the tokens
of one kind beyond 200k of that kind, where Anthropic charges the whole request at the long-context
rate once its input passes 200k. There the bench checks that ccusage's figure is exactly what its
rule gives on our price table, so the whole difference is accounted for.

`--fixtures`: the recorded real-client fixtures instead (tests/fixtures/real/claude-code-*/ with
`ccusage claude session`, codex-0.171.0/ with `ccusage codex session`), per session and in total:
heady's cost of the files (the way the replay tests compute it), ccusage's, ccusage's rule
recomputed on heady's table from heady's calls, and the fake server's answers priced with heady's
table. Checks: heady = server answers, and ccusage = its rule, both to the cent.

ccusage is pinned to 20.0.24: 20.0.26 (npm's `latest`) has no linux-x64 native package published.
Exit status 0 when every check holds.

    .venv/bin/python bench/cost_vs_ccusage.py [--keep DIR] [--fixtures]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from heady_agent.clock import SystemClock
from heady_agent.config import AgentConfig
from heady_agent.protocol import LlmCallData
from heady_agent.sources.claude_code import ClaudeCodeSource
from heady_agent.sources.codex import CodexSource
from heady_tui.config import CostConfig
from heady_tui.engine.cost import PER_TOKEN, PricingTable
from heady_tui.ledger import cache_write_split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sourcekit import SqliteSourceContext  # noqa: E402  (the test kit's real SourceContext)
from test_replay_claude_code import server_call, unpack  # noqa: E402  (as the replay tests read the fixtures)
from test_source_codex_real import answer_tuple  # noqa: E402

CCUSAGE = ["npx", "-y", "ccusage@20.0.24"]
REPORT = ["session", "--json", "--offline"]
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real"
CODEX_FIXTURE = FIXTURES / "codex-0.171.0"
CENT = 0.005
SONNET, OPUS, HAIKU = "claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"
START = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


# --- transcripts ------------------------------------------------------------------------------


def compact(record: dict[str, Any]) -> str:
    """One line as Claude Code writes it: ccusage 20 finds fields by their compact text (`"usage":{`)."""
    return json.dumps(record, separators=(",", ":"))


@dataclass
class Transcript:
    """One JSONL file of a Claude Code session, written record by record."""

    path: Path
    session: str
    cwd: str
    sidechain: bool = False
    at: datetime = START
    parent: str | None = None
    lines: list[str] = field(default_factory=list)
    counter: int = 0

    def _tag(self) -> str:
        """Unique per file: a subagent file shares its parent's session id."""
        return f"{self.session[-6:]}{'s' if self.sidechain else 'm'}"

    def _uuid(self) -> str:
        self.counter += 1
        return f"{self._tag()}-{self.counter:05d}"

    def _envelope(self, kind: str) -> dict[str, Any]:
        uuid = self._uuid()
        record = {"type": kind, "uuid": uuid, "parentUuid": self.parent, "sessionId": self.session, "cwd": self.cwd,
                  "timestamp": self.at.isoformat().replace("+00:00", "Z"), "isSidechain": self.sidechain,
                  "version": "2.0.31", "gitBranch": "main", "userType": "external"}
        self.parent = uuid
        return record

    def user(self, text: str) -> None:
        self.at += timedelta(seconds=20)
        self.lines.append(compact({**self._envelope("user"), "message": {"role": "user", "content": text}}))

    def assistant(self, model: str, usage: dict[str, Any], *, copies: int = 1, latency_s: float = 4.0) -> None:
        """One API response; Claude Code writes one line per content block, each repeating id and usage."""
        self.at += timedelta(seconds=latency_s)
        self.counter += 1
        message_id, request_id = f"msg_{self._tag()}{self.counter:05d}", f"req_{self._tag()}{self.counter:05d}"
        for i in range(copies):
            block = {"type": "text", "text": "done"} if i == copies - 1 else {"type": "tool_use", "id": f"toolu_{i}", "name": "Read", "input": {}}
            self.lines.append(compact({**self._envelope("assistant"), "requestId": request_id, "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [block],
                "stop_reason": None if i < copies - 1 else "end_turn", "usage": usage}}))

    def api_error(self, status: int, error: str) -> None:
        self.at += timedelta(seconds=1)
        self.counter += 1
        self.lines.append(compact({**self._envelope("assistant"), "isApiErrorMessage": True, "error": error,
                                      "apiErrorStatus": status, "message": {
            "id": f"err_{self._tag()}{self.counter:05d}", "type": "message", "role": "assistant", "model": "<synthetic>",
            "content": [{"type": "text", "text": "API Error: 429 rate limited"}],
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}))

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(self.lines) + "\n")


def usage(rng: random.Random, context: int, *, ttl: str = "5m", split: bool = True) -> dict[str, Any]:
    """A realistic usage block: a few uncached tokens, a cache write of the new turn, the rest read from cache."""
    write = rng.randint(800, 9_000)
    out: dict[str, Any] = {"input_tokens": rng.randint(3, 40), "cache_creation_input_tokens": write,
                           "cache_read_input_tokens": context, "output_tokens": rng.randint(60, 2_400),
                           "service_tier": "standard"}
    if split:
        out["cache_creation"] = {"ephemeral_5m_input_tokens": write if ttl == "5m" else 0,
                                 "ephemeral_1h_input_tokens": write if ttl == "1h" else 0}
    return out


def write_transcripts(root: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    projects = root / "projects"

    # agree: the facts both tools share.
    a = Transcript(projects / "agree" / "0a1b2c3d-0000-4000-8000-000000000001.jsonl", "0a1b2c3d-0000-4000-8000-000000000001", "/home/dev/src/api")
    context = 18_000
    for turn in range(40):
        a.user(f"step {turn}")
        a.assistant(SONNET, usage(rng, context, split=turn % 3 != 0), copies=1 + turn % 3)
        context += rng.randint(1_500, 4_000)
        if turn == 17:
            a.user("retry")
            a.api_error(429, "rate_limit")
    a.write()
    sub = Transcript(projects / "agree" / a.session / "subagents" / "agent-5f3e.jsonl", a.session, a.cwd, sidechain=True)
    for turn in range(12):
        sub.user(f"search {turn}")
        sub.assistant(HAIKU, usage(rng, 6_000 + 2_000 * turn), copies=2)
    sub.write()
    b = Transcript(projects / "agree" / "0a1b2c3d-0000-4000-8000-000000000002.jsonl", "0a1b2c3d-0000-4000-8000-000000000002", "/home/dev/src/api")
    for turn in range(25):
        b.user(f"plan {turn}")
        b.assistant(OPUS if turn % 2 else HAIKU, usage(rng, 30_000 + 5_000 * turn), copies=2)
    b.write()

    # ttl-1h: 1-hour cache writes.
    c = Transcript(projects / "ttl-1h" / "0a1b2c3d-0000-4000-8000-000000000003.jsonl", "0a1b2c3d-0000-4000-8000-000000000003", "/home/dev/src/web")
    for turn in range(20):
        c.user(f"edit {turn}")
        c.assistant(OPUS if turn % 2 else SONNET, usage(rng, 25_000 + 4_000 * turn, ttl="1h" if turn % 4 else "5m"), copies=2)
    c.write()

    # long-context: sonnet 4.5 past 200k; some calls pass only in sum, some with the cache read alone.
    d = Transcript(projects / "long-context" / "0a1b2c3d-0000-4000-8000-000000000004.jsonl", "0a1b2c3d-0000-4000-8000-000000000004", "/home/dev/src/mono")
    context = 150_000
    for turn in range(18):
        d.user(f"refactor {turn}")
        d.assistant(SONNET, usage(rng, context), copies=2)
        context += rng.randint(6_000, 12_000)
    d.write()


# --- the paths ------------------------------------------------------------------------------


def group_of(project_path: str, session_id: str) -> str:
    """ccusage names a top-level transcript's session after its project folder; subagent files after their path."""
    return session_id if project_path == "Unknown Project" else project_path.split("/")[0]


def ccusage_sessions(tool: str, env_name: str, root: Path) -> list[dict[str, Any]]:
    """`ccusage <tool> session --json --offline` on the data under root (CLAUDE_CONFIG_DIR / CODEX_HOME)."""
    env = {**os.environ, env_name: str(root)}
    done = subprocess.run([*CCUSAGE, tool, *REPORT], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"cost_vs_ccusage: ccusage failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout)["sessions"]
    return rows


def scan(source: type[ClaudeCodeSource] | type[CodexSource], config: AgentConfig, journal: Path
         ) -> tuple[dict[str, str], list[tuple[str, LlmCallData]]]:
    """The real source over the files through a real SourceContext: (session -> cwd, (session, call) per llm.call)."""
    ctx = SqliteSourceContext(journal, config, SystemClock())
    try:
        source(ctx).scan()
        cwds = {str(e.session): str(e.data.get("cwd")) for e in ctx.events("session.started")}
        calls = [(str(e.session), LlmCallData.model_validate(e.data)) for e in ctx.events("llm.call")]
    finally:
        ctx.close()
    return cwds, calls


def claude_calls(root: Path, journal: Path) -> tuple[dict[str, str], list[tuple[str, LlmCallData]]]:
    os.environ["CLAUDE_CONFIG_DIR"] = str(root)  # the source reads no other Claude Code folder
    config = AgentConfig.model_validate({"sources": ["claude-code"], "claude_code": {"roots": [str(root)]}})
    return scan(ClaudeCodeSource, config, journal)


def ccusage_rule(table: PricingTable, call: LlmCallData) -> float:
    """ccusage 20's cost of a call, on our price table (its calculate_cost_from_pricing): a 1-hour cache
    write at 2x the input rate, and the long-context rate only on the tokens of one kind beyond 200k
    of that kind. Codex's calls carry no cache writes and our table no long-context rate for them:
    uncached input, cached input and output (reasoning included) at their rates."""
    price = table.match(call.model).price
    if price is None:
        return 0.0
    lc = price.long_context or {}
    threshold = table.long_context_threshold
    w5, w1 = cache_write_split(call)

    def tiered(tokens: int, base: float, tier: float | None) -> float:
        if tier is not None and tokens > threshold:
            return (threshold * base + (tokens - threshold) * tier) * PER_TOKEN
        return tokens * base * PER_TOKEN

    return (tiered(call.input_tokens, price.input, lc.get("input"))
            + tiered(call.output_tokens, price.output, lc.get("output"))
            + tiered(w5, price.cache_write_5m, lc.get("cache_write_5m"))
            + tiered(w1, price.input * 2, lc["input"] * 2 if "input" in lc else None)
            + tiered(call.cache_read_tokens, price.cache_read, lc.get("cache_read")))


def priced(table: PricingTable, call: LlmCallData) -> float:
    if not call.ok:
        return 0.0  # a request that never succeeded was not billed (and may name no model)
    cost, known = table.cost(call)
    if not known:
        raise SystemExit(f"cost_vs_ccusage: heady has no price for {call.model}")
    return cost


# --- generated transcripts ------------------------------------------------------------------


def generated(keep: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="heady-ccusage-") as tmp:
        root = Path(keep) if keep else Path(tmp) / "claude"
        write_transcripts(root)
        table = PricingTable.load(CostConfig())
        ours: dict[str, float] = defaultdict(float)
        theirs_rule: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        group_by_cwd = {"api": "agree", "web": "ttl-1h", "mono": "long-context"}
        cwds, calls = claude_calls(root, Path(tmp) / "journal.db")
        for session, call in calls:
            group = group_by_cwd[Path(cwds[session]).name]
            ours[group] += priced(table, call)
            theirs_rule[group] += ccusage_rule(table, call)
            counts[group] += 1
        theirs: dict[str, float] = defaultdict(float)
        for row in ccusage_sessions("claude", "CLAUDE_CONFIG_DIR", root):
            theirs[group_of(row["projectPath"], row["sessionId"])] += row["totalCost"]

    failures = []
    print(f"{'group':<14}{'calls':>7}{'heady $':>12}{'ccusage $':>12}{'diff $':>10}  check")
    for group in ("agree", "ttl-1h", "long-context"):
        mine, other = ours[group], theirs.get(group, 0.0)
        if group != "long-context":
            ok = abs(mine - other) < CENT
            check = "equal to the cent" if ok else "NOT EQUAL"
        else:
            ok = abs(other - theirs_rule[group]) < CENT and abs(mine - other) >= CENT
            check = ("difference = ccusage's documented rule" if ok
                     else f"UNEXPLAINED (ccusage's rule gives {theirs_rule[group]:.4f})")
        if not ok:
            failures.append(group)
        print(f"{group:<14}{counts[group]:>7}{mine:>12.4f}{other:>12.4f}{mine - other:>+10.4f}  {check}")
    total_ours, total_theirs = sum(ours.values()), sum(theirs.values())
    print(f"{'total':<14}{sum(counts.values()):>7}{total_ours:>12.4f}{total_theirs:>12.4f}{total_ours - total_theirs:>+10.4f}")
    if failures:
        print(f"cost_vs_ccusage: checks failed for {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


# --- recorded fixtures ----------------------------------------------------------------------


@dataclass
class SessionCosts:
    heady: float = 0.0
    ccusage: float = 0.0
    rule: float = 0.0  # ccusage's rule on heady's calls that ccusage can see
    server: float = 0.0
    calls: int = 0

    def in_files(self) -> bool:
        """Whether any file records this session (Codex's title request is answered in a thread that writes none)."""
        return self.calls > 0 or self.ccusage > 0


def claude_fixture(fixture: Path, tmp: Path, table: PricingTable) -> dict[str, SessionCosts]:
    root = tmp / fixture.name
    unpack(fixture, root)
    rows: dict[str, SessionCosts] = defaultdict(SessionCosts)
    for session, call in claude_calls(root, tmp / f"{fixture.name}.db")[1]:
        rows[session].heady += priced(table, call)
        rows[session].calls += 1
        # ccusage prices every response record: a stream cut off (a failed call) left one with the
        # usage of its start; a call with no latency is one heady counted from `cost-state`, no record.
        if call.latency_ms is not None:
            rows[session].rule += ccusage_rule(table, call)
    for row in ccusage_sessions("claude", "CLAUDE_CONFIG_DIR", root):
        rows[row["sessionId"]].ccusage += row["totalCost"]
    for answer in (json.loads(line) for line in (fixture / "answers.jsonl").read_text().splitlines()):
        if answer["ok"]:
            rows[answer["client"]["session"]].server += priced(table, server_call(answer))
    return rows


def codex_fixture(tmp: Path, table: PricingTable) -> dict[str, SessionCosts]:
    home = tmp / "codex-home"
    shutil.copytree(CODEX_FIXTURE / "codex-home", home)
    config = AgentConfig.model_validate({"sources": ["codex"], "codex": {"roots": [str(home)]}})
    rows: dict[str, SessionCosts] = defaultdict(SessionCosts)
    for session, call in scan(CodexSource, config, tmp / "codex.db")[1]:
        rows[session].heady += priced(table, call)
        rows[session].rule += ccusage_rule(table, call)
        rows[session].calls += 1
    for row in ccusage_sessions("codex", "CODEX_HOME", home):
        rows[row["sessionId"][-36:]].ccusage += row["costUSD"]  # ".../rollout-<time>-<thread id>"
    for answer in (json.loads(line) for line in (CODEX_FIXTURE / "server.jsonl").read_text().splitlines()):
        if answer["ok"]:
            uncached, cached, output = answer_tuple(answer)
            call = LlmCallData(provider="openai", model=answer["model"], input_tokens=uncached,
                               cache_read_tokens=cached, output_tokens=output)
            rows[answer["client"]["x-client-request-id"]].server += priced(table, call)
    return rows


def fixtures() -> int:
    table = PricingTable.load(CostConfig())
    failures = []
    header = f"{'session':<38}{'calls':>6}{'heady $':>10}{'ccusage $':>11}{'rule $':>9}{'server $':>10}"
    with tempfile.TemporaryDirectory(prefix="heady-ccusage-") as tmp:
        runs = [(f.name, claude_fixture(f, Path(tmp), table)) for f in sorted(FIXTURES.glob("claude-code-*"))]
        runs.append((CODEX_FIXTURE.name, codex_fixture(Path(tmp), table)))
    for name, rows in runs:
        print(f"{name}\n{header}")
        for session, row in sorted(rows.items(), key=lambda item: -item[1].server):
            note = "" if row.in_files() else "  (in no file)"
            print(f"{session:<38}{row.calls:>6}{row.heady:>10.4f}{row.ccusage:>11.4f}{row.rule:>9.4f}{row.server:>10.4f}{note}")
        total = SessionCosts(*(sum(getattr(r, f) for r in rows.values()) for f in ("heady", "ccusage", "rule", "server", "calls")))
        print(f"{'total':<38}{total.calls:>6}{total.heady:>10.4f}{total.ccusage:>11.4f}{total.rule:>9.4f}{total.server:>10.4f}")
        in_files = sum(r.server for r in rows.values() if r.in_files())
        if in_files != total.server:
            print(f"{'  server, sessions in files':<60}{in_files:>10.4f}")
        checks = {"heady = server answers in files": abs(total.heady - in_files) < CENT,
                  "ccusage = its rule on heady's calls": abs(total.ccusage - total.rule) < CENT}
        print("  " + "; ".join(f"{what}: {'yes' if ok else 'NO'}" for what, ok in checks.items()) + "\n")
        failures += [f"{name} ({what})" for what, ok in checks.items() if not ok]
    if failures:
        print(f"cost_vs_ccusage: checks failed for {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="write the generated transcripts here and keep them")
    parser.add_argument("--fixtures", action="store_true", help="compare on the recorded fixtures instead")
    args = parser.parse_args()
    if shutil.which("npx") is None:
        print("cost_vs_ccusage: npx is not installed; cannot run ccusage", file=sys.stderr)
        return 2
    return fixtures() if args.fixtures else generated(args.keep)


if __name__ == "__main__":
    sys.exit(main())
