"""Which account a client's sessions draw on, from the client's own config: identifiers only.

Claude Code keeps the signed-in account in `.claude.json` (`oauthAccount`: accountUuid,
emailAddress, organizationUuid); Codex keeps its sign-in in `auth.json`, whose `id_token` is a JWT
naming the ChatGPT account and plan. Both files hold more than that (`.claude.json` an API key for
some users, `auth.json` the tokens): the part read here is taken out at once and the rest dropped,
the token is decoded only for its claims (never verified, stored or sent), and only
`<kind>:<id>` and the plan name leave this module. Facts: docs/sources.md "Accounts".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .sources.common import plain_text

ID_CHARS = 200  # an account id or plan name is cut here
MAX_CONFIG_BYTES = 64 * 1024 * 1024  # .claude.json grows with history; a bigger file is not read
CLAUDE_FILE = ".claude.json"
CODEX_FILE = "auth.json"
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"  # the id token's namespaced claim with the plan

Account = tuple[str | None, str | None]  # (account, plan)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return plain_text(value, ID_CHARS) or None


def claude_account(config: dict[str, Any]) -> Account:
    """`claude:<email>` (or the account uuid) of a parsed `.claude.json`; (None, None) when signed out."""
    oauth = config.get("oauthAccount")
    if not isinstance(oauth, dict):
        return None, None
    ident = _text(oauth.get("emailAddress")) or _text(oauth.get("accountUuid"))
    return (f"claude:{ident}" if ident else None), None


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: only read for who it names, never trusted with anything."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def codex_account(auth: dict[str, Any]) -> Account:
    """`openai:<email>` (or the ChatGPT account id) and the plan of a parsed `auth.json`; (None,
    None) for an API key sign-in, which has no account windows."""
    tokens = auth.get("tokens")
    if not isinstance(tokens, dict):
        return None, None
    id_token = tokens.get("id_token")
    claims = jwt_claims(id_token) if isinstance(id_token, str) else {}
    namespaced = claims.get(OPENAI_AUTH_CLAIM)
    openai = namespaced if isinstance(namespaced, dict) else {}
    ident = _text(claims.get("email")) or _text(tokens.get("account_id")) or _text(openai.get("chatgpt_account_id"))
    plan = _text(openai.get("chatgpt_plan_type"))
    return (f"openai:{ident}" if ident else None), plan


class AccountFile:
    """The account in the first of some config files that names one, read again only when a file changes."""

    def __init__(self, paths: Iterable[Path], parse: Callable[[dict[str, Any]], Account]) -> None:
        self.paths = list(paths)
        self.parse = parse
        self._seen: tuple[tuple[int, int] | None, ...] | None = None
        self._account: Account = (None, None)

    def account(self) -> Account:
        seen = tuple(_identity(p) for p in self.paths)
        if seen != self._seen:
            self._seen = seen
            self._account = (None, None)
            for path, identity in zip(self.paths, seen):
                config = _read_json(path) if identity is not None else None
                found = self.parse(config) if config is not None else (None, None)
                if found[0] is not None:
                    self._account = found
                    break
        return self._account


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def claude_files(roots: Iterable[Path]) -> list[Path]:
    """Where Claude Code keeps `.claude.json`: in $CLAUDE_CONFIG_DIR, else beside `~/.claude` in the home."""
    out = []
    for root in roots:
        out.append(root / CLAUDE_FILE)
        if root.name == ".claude":
            out.append(root.parent / CLAUDE_FILE)
    return out


def codex_files(roots: Iterable[Path]) -> list[Path]:
    return [root / CODEX_FILE for root in roots]
