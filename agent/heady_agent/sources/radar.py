"""The format radar: what a source met in a client's files that it does not know.

Clients change their formats without notice; a new record type or token field read as nothing
silently undercounts. Each source counts, per kind, what it skipped or did not recognise, and the
first time a given name appears it sends one `agent.notice`, so the change is seen the day the
client updates. Names seen are kept in the source state: a restarted agent does not repeat notices.
The counts are this process's (since the agent started), for `/metrics` and the node screen.
"""

from __future__ import annotations

import json
from collections import Counter

from .base import SourceContext
from .common import plain_text

UNKNOWN_TYPE = "unknown_record_type"
UNKNOWN_FIELD = "unknown_field"
SKIPPED_LINE = "skipped_line"
UNREADABLE_FILE = "unreadable_file"
KINDS = (UNKNOWN_TYPE, UNKNOWN_FIELD, SKIPPED_LINE, UNREADABLE_FILE)
NAME_CHARS = 80  # a name from a client's file, as a notice quotes it
NOTICED_KEEP = 500  # distinct names remembered per source; past that, counts go on without notices
_WHAT = {UNKNOWN_TYPE: "new record type", UNKNOWN_FIELD: "new field", SKIPPED_LINE: "unreadable lines in",
         UNREADABLE_FILE: "cannot read"}


def clean_name(name: str) -> str:
    """A name from an untrusted file, fit for a one-line notice: printable, bounded."""
    return plain_text(name, NAME_CHARS)


class FormatRadar:
    def __init__(self, source: str, ctx: SourceContext, state_prefix: str) -> None:
        self.source = source
        self.ctx = ctx
        self._key = f"{state_prefix}.radar.noticed"
        self.counts: Counter[str] = Counter({kind: 0 for kind in KINDS})
        self._noticed: set[str] | None = None  # loaded on first use: reading the state needs the journal open

    def seen(self, kind: str, name: str, count: int = 1, detail: str = "") -> None:
        """`count` more of `kind` named `name`; the first of a name sends a notice (call inside ctx.atomic())."""
        self.counts[kind] += count
        noticed = self._load()
        key = f"{kind}:{clean_name(name)}"
        if key in noticed or len(noticed) >= NOTICED_KEEP:
            return
        noticed.add(key)
        self.ctx.set_state(self._key, json.dumps(sorted(noticed)))
        suffix = f" ({clean_name(detail)})" if detail else ""
        self.ctx.notice("warning", f"{self.source}: {_WHAT[kind]} {clean_name(name)!r}{suffix}; its data may be missed")

    def forget(self) -> None:
        """Re-read the names noticed from the source state (a rolled-back poll's notices were not sent)."""
        self._noticed = None

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def _load(self) -> set[str]:
        if self._noticed is None:
            raw = self.ctx.get_state(self._key)
            try:
                loaded = json.loads(raw) if raw else []
            except ValueError:
                loaded = []
            self._noticed = {str(k) for k in loaded} if isinstance(loaded, list) else set()
        return self._noticed
