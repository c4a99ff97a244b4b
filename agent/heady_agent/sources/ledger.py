"""One count of each model call, whichever way the agent learnt of it.

A Claude Code or Codex call can reach the agent twice: from the transcript (rollout) the client
writes, and from the OpenTelemetry it exports (sources/otlp.py). Each route asks this ledger
before it emits an `llm.call`, with the call's identity in the form both routes can compute:

- Claude Code: the API request id (`requestId` of the transcript record, `request_id` of the
  `claude_code.api_request` / `api_error` event);
- Codex: the response's token counts (input, cached, output, reasoning), which its
  `token_usage_record` and `codex.sse_event` `response.completed` both carry (the telemetry has
  no response id); a turn Codex gave up on is the identity `failed-turn`.

Each route counts how often it met an identity in a session; a call is emitted when this route's
count passes every other route's. So a call both report counts once whichever comes first, and two
calls with the same identity (equal token counts) count twice, as they happened.

Claude Code writes no response record for the summaries a compaction asks for; the transcript
source counts them from its `cost-state` totals less what was counted. `tallied` gives what the
telemetry route counted for the session, so that figure leaves out calls the telemetry already
reported, and `credit` / `covered` keep what the transcript counted that way, so the telemetry
drops those calls when they arrive later.

Counts live in the journal's source state, written in the transaction that emits the call.
"""

from __future__ import annotations

import json
from typing import Literal

from .base import SourceContext

Route = Literal["transcript", "telemetry"]
ROUTES: tuple[Route, ...] = ("transcript", "telemetry")
# Token kinds of a tally, in LlmCallData's names.
TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
               "cache_creation_5m_tokens", "cache_creation_1h_tokens")
FAILED_TURN = "failed-turn"


def anthropic_identity(request_id: str) -> str:
    return f"req:{request_id}"


def openai_identity(input_tokens: int, cached_tokens: int, output_tokens: int, reasoning_tokens: int) -> str:
    return f"usage:{input_tokens}:{cached_tokens}:{output_tokens}:{reasoning_tokens}"


class CallLedger:
    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx

    def first(self, route: Route, session: str, identity: str) -> bool:
        """Count one report of the call by `route`; True when no route had counted it yet."""
        seen = self._count(route, session, identity) + 1
        self.ctx.set_state(self._key(route, session, identity), str(seen))
        return all(seen > self._count(other, session, identity) for other in ROUTES if other != route)

    def tally(self, session: str, model: str, tokens: dict[str, int]) -> None:
        """Add a call the telemetry route emitted to its per-session, per-model token total."""
        key = f"calls.tally:{session}:{model}"
        self.ctx.set_state(key, json.dumps([a + b for a, b in zip(self._tokens(key), _as_list(tokens))]))

    def tallied(self, session: str, model: str) -> list[int]:
        """The telemetry route's token total of a session and model, TOKEN_KINDS order."""
        return self._tokens(f"calls.tally:{session}:{model}")

    def credit(self, session: str, model: str, tokens: dict[str, int]) -> None:
        """Tokens the transcript route counted without knowing their calls (Claude Code's `cost-state`)."""
        key = f"calls.credit:{session}:{model}"
        self.ctx.set_state(key, json.dumps([a + b for a, b in zip(self._tokens(key), _as_list(tokens))]))

    def covered(self, session: str, model: str, tokens: dict[str, int]) -> bool:
        """The call's tokens were counted by a credit: take them off it and say so."""
        key = f"calls.credit:{session}:{model}"
        left = [a - b for a, b in zip(self._tokens(key), _as_list(tokens))]
        if min(left) < 0 or not any(_as_list(tokens)):
            return False
        self.ctx.set_state(key, json.dumps(left))
        return True

    def _count(self, route: Route, session: str, identity: str) -> int:
        raw = self.ctx.get_state(self._key(route, session, identity))
        return int(raw) if raw is not None and raw.isdigit() else 0

    @staticmethod
    def _key(route: Route, session: str, identity: str) -> str:
        return f"calls.{route}:{session}:{identity}"

    def _tokens(self, key: str) -> list[int]:
        raw = self.ctx.get_state(key)
        try:
            values = json.loads(raw) if raw else None
        except ValueError:
            values = None
        if isinstance(values, list) and len(values) == len(TOKEN_KINDS) and all(isinstance(v, int) for v in values):
            return values
        return [0] * len(TOKEN_KINDS)


def _as_list(tokens: dict[str, int]) -> list[int]:
    return [int(tokens.get(kind) or 0) for kind in TOKEN_KINDS]
