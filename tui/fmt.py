"""Short human renderings of times, sizes and rates for a terminal cell budget."""

from __future__ import annotations


def fmt_ns(ns: float) -> str:
    """A duration in the largest unit that keeps it above 1: 850 ns, 212 us, 4.1 ms, 2.0 s."""
    ns = float(ns)
    if ns < 0:
        return "-" + fmt_ns(-ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            v = ns / scale
            return f"{v:.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return f"{ns:.0f} ns"


def fmt_bytes(n: float) -> str:
    """A size in binary units: 512 B, 4 KiB, 1.2 GiB."""
    n = float(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 100 or v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_count(n: float) -> str:
    """A count or rate in at most 5 characters: 950, 12.3k, 4.5M."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            v = n / scale
            decimals = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
            return f"{v:.{decimals}f}{unit}"
    if n == int(n):
        return f"{n:.0f}"
    return f"{n:.2g}" if abs(n) < 10 else f"{n:.0f}"


def fmt_axis(ns: float, step_ns: float) -> str:
    """A tick label on the time axis, with as many decimals as the tick step needs:
    12s, 12.5s, 12.53s; below a second, ms or us."""
    if abs(ns) >= 1e9 or step_ns >= 1e9:
        decimals = 0
        while step_ns < 1e9 / 10**decimals and decimals < 6:
            decimals += 1
        return f"{ns / 1e9:.{decimals}f}s"
    for unit, scale in (("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale or step_ns >= scale or unit == "us":
            decimals = 0
            while step_ns < scale / 10**decimals and decimals < 3:
                decimals += 1
            return f"{ns / scale:.{decimals}f}{unit}"
    return f"{ns:.0f}ns"  # pragma: no cover - the loop always returns


def nice_step(span_ns: float, max_ticks: int) -> float:
    """A 1/2/5 x 10^k step giving at most `max_ticks` ticks over `span_ns`."""
    if span_ns <= 0 or max_ticks <= 0:
        return 1.0
    raw = span_ns / max_ticks
    base = 1.0
    while base * 10 <= raw:
        base *= 10
    for m in (1, 2, 5, 10):
        if base * m >= raw:
            return base * m
    return base * 10  # pragma: no cover
