"""HeadyEvent: what the console reports to subscribers and, headless, prints as JSON lines."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def iso_utc(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-21T05:40:00.123Z."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class HeadyEvent:
    name: str
    ts: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # ts and event come first and cannot be overwritten by a detail of the same name.
        return {"ts": iso_utc(self.ts), "event": self.name, **{k: v for k, v in self.details.items() if k not in ("ts", "event")}}

    def to_json_line(self) -> str:
        """Strict JSON: NaN and infinities (not JSON) become null."""
        body = self.to_dict()
        try:
            return json.dumps(body, separators=(",", ":"), default=str, allow_nan=False)
        except ValueError:
            return json.dumps(finite_json(body), separators=(",", ":"), default=str, allow_nan=False)


def finite_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
