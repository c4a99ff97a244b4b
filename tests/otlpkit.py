"""Test kit: the OTLP requests real clients sent (tests/fixtures/real/otlp-*), as sent or decoded.

scripts/record/otlp.sh stored every request body with a line in otlp/requests.jsonl naming its
path, media type and encoding; bodies that came plain are stored gzipped (`<file>.gz`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from heady_agent.otlp import SIGNALS, Batch, decode

FIXTURES = Path(__file__).parent / "fixtures" / "real"


@dataclass(frozen=True)
class SentRequest:
    path: str
    content_type: str
    content_encoding: str  # "gzip" or ""
    body: bytes  # exactly as the client sent it

    def decoded(self) -> Batch:
        return decode(SIGNALS[self.path], self.body, "json" in self.content_type, self.content_encoding == "gzip")


def sent_requests(fixture: Path) -> list[SentRequest]:
    requests = []
    for line in (fixture / "otlp" / "requests.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["content_encoding"] == "gzip":
            body = (fixture / "otlp" / entry["file"]).read_bytes()
        else:
            body = gzip.decompress((fixture / "otlp" / f"{entry['file']}.gz").read_bytes())
        requests.append(SentRequest(entry["path"], entry["content_type"], entry["content_encoding"], body))
    return requests
