"""Text sparklines for table cells and headers, with an ASCII fallback for plain terminals."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII = "_.-=+*#@"


def sparkline(
    values: Sequence[float],
    width: int,
    *,
    low: float | None = None,
    high: float | None = None,
    ascii_only: bool = False,
) -> str:
    """The last `width` values as one character each, scaled between low and high.

    Fixed bounds (e.g. 0..100 for percentages) keep lines comparable between rows; without them
    the line spans the data's own range. Fewer values than `width` are padded on the left.
    """
    if width <= 0:
        return ""
    glyphs = ASCII if ascii_only else BLOCKS
    tail = [v for v in values[-width:] if v is not None]
    if not tail:
        return " " * width
    lo = min(tail) if low is None else low
    hi = max(tail) if high is None else high
    span = hi - lo
    top = len(glyphs) - 1
    chars = []
    for value in tail:
        if span <= 0:
            index = 0
        else:
            index = round((min(max(value, lo), hi) - lo) / span * top)
        chars.append(glyphs[index])
    return " " * (width - len(chars)) + "".join(chars)


def bar(fraction: float, width: int, *, ascii_only: bool = False) -> str:
    """A horizontal fill bar, e.g. for a budget: fraction 0..1 (clamped)."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    full, empty = ("#", "-") if ascii_only else ("█", "░")
    return full * filled + empty * (width - filled)
