"""Plain text forms of the numbers the console shows: money, tokens, durations, percentages.

Pure functions with no Textual import, so views and tests share one spelling of every figure.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

SEVERITIES = ("ok", "careful", "warning", "critical")

# Host-resource bands in percent, as glances uses them: careful from 50, warning from 70, critical from 90.
_PERCENT_BANDS = (50.0, 70.0, 90.0)


def money(usd: float | None) -> str:
    if usd is None:
        return "-"
    if abs(usd) >= 100:
        return f"${usd:,.0f}"
    if abs(usd) >= 10:
        return f"${usd:.1f}"
    return f"${usd:.2f}"


def tokens(count: int | float | None) -> str:
    if count is None:
        return "-"
    count = float(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit:
            return f"{count / limit:.1f}{suffix}"
    return f"{count:.0f}"


def duration(seconds: float | None) -> str:
    """Compact age: 45s, 12m, 3h05m, 2d04h. Past a minute, seconds are left out: an age column
    that changed on every repaint would rewrite every row's line over SSH for nothing."""
    if seconds is None or math.isnan(seconds):
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def clock_time(ts: float | None) -> str:
    """HH:MM:SS in UTC; the console runs on servers whose local zone means little."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def date_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def metric_value(name: str, value: float | None) -> str:
    """An equilibrium metric in its own unit."""
    if value is None:
        return "n/a"
    if name == "error_rate":
        return f"{value * 100:.1f}%"
    if name == "response_time_p95":
        return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"
    if name == "task_queue_depth":
        return f"{value:.0f}"
    return f"{value:.2f}"


def percent_severity(value: float | None) -> str:
    if value is None:
        return "careful"
    careful, warning, critical = _PERCENT_BANDS
    if value >= critical:
        return "critical"
    if value >= warning:
        return "warning"
    if value >= careful:
        return "careful"
    return "ok"


def threshold_severity(value: float | None, threshold: float, critical: float) -> str:
    """ok well below the threshold, careful within 20 % of it, warning past it, critical past critical."""
    if value is None:
        return "careful"
    if value >= critical:
        return "critical"
    if value >= threshold:
        return "warning"
    if value >= 0.8 * threshold:
        return "careful"
    return "ok"


LEVEL_SEVERITY = {"balanced": "ok", "unknown": "careful", "degraded": "warning", "critical": "critical"}


def level_severity(level: str | None) -> str:
    return LEVEL_SEVERITY.get(level or "unknown", "careful")
