"""The workload's own measurements: per-request latency from its own clock,
operation and byte counts per role (pipe, socket, file), CPU time, and the
fio-style text and JSON made from them.

Latencies are appended in batches to a growing numpy array (doubling), so the
hot loops never allocate per request.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np


class LatencyLog:
    """Latencies in nanoseconds, appended one at a time or as arrays."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._data = np.empty(capacity, dtype=np.int64)
        self.count = 0

    def _grow(self, need: int) -> None:
        size = len(self._data)
        while size < need:
            size *= 2
        grown = np.empty(size, dtype=np.int64)
        grown[: self.count] = self._data[: self.count]
        self._data = grown

    def add(self, ns: int) -> None:
        if self.count >= len(self._data):
            self._grow(self.count + 1)
        self._data[self.count] = ns
        self.count += 1

    def add_many(self, ns: np.ndarray) -> None:
        n = len(ns)
        if self.count + n > len(self._data):
            self._grow(self.count + n)
        self._data[self.count : self.count + n] = ns
        self.count += n

    def values(self) -> np.ndarray:
        return self._data[: self.count]

    def summary_us(self) -> dict[str, float]:
        v = self.values()
        if len(v) == 0:
            return {}
        p = np.percentile(v, [50, 90, 99, 99.9])
        return {
            "min": round(float(v.min()) / 1e3, 1),
            "mean": round(float(v.mean()) / 1e3, 1),
            "p50": round(float(p[0]) / 1e3, 1),
            "p90": round(float(p[1]) / 1e3, 1),
            "p99": round(float(p[2]) / 1e3, 1),
            "p99.9": round(float(p[3]) / 1e3, 1),
            "max": round(float(v.max()) / 1e3, 1),
        }


@dataclass
class Role:
    """One kind of fd a workload reads (pipe, socket, file): its counts and latencies."""

    name: str
    fds: list[int] = field(default_factory=list)
    ops: int = 0
    bytes: int = 0
    lat: LatencyLog = field(default_factory=LatencyLog)
    extra: dict[str, int] = field(default_factory=dict)
    """Counts that explain the syscall pattern: eagain, waits, fallbacks, submits..."""


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all its threads included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO | None, total_ops: int | None, runtime: float | None):
        self.stream = stream if stream is not None and stream.isatty() else None
        self.total_ops = total_ops
        self.runtime = runtime
        self._next = 0.0
        self.shown = False

    def update(self, now: float, start: float, ops: int) -> None:
        if self.stream is None or now < self._next:
            return
        self._next = now + 0.2
        elapsed = max(now - start, 1e-9)
        if self.total_ops:
            frac = ops / self.total_ops
        elif self.runtime:
            frac = elapsed / self.runtime
        else:
            frac = 0.0
        frac = min(max(frac, 0.0), 1.0)
        width = 30
        done = int(frac * width)
        bar = "#" * done + "." * (width - done)
        self.stream.write(
            f"\r[{bar}] {frac * 100:3.0f}%  {ops:,} ops  {_si(ops / elapsed)} IOPS  "
            f"{elapsed:5.1f}s "
        )
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


def _si(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def build_result(
    *,
    name: str,
    model: str,
    api: str,
    roles: list[Role],
    elapsed_s: float,
    cpu: tuple[float, float],
    settings: dict[str, Any],
    verified_blocks: int,
    stopped: bool,
) -> dict[str, Any]:
    """The workload's JSON result (what Launched.result() returns)."""
    all_lat = LatencyLog(1)
    for r in roles:
        all_lat.add_many(r.lat.values())
    ops = sum(r.ops for r in roles)
    nbytes = sum(r.bytes for r in roles)
    elapsed = max(elapsed_s, 1e-9)
    fds: dict[str, int] = {}
    for r in roles:
        for i, fd in enumerate(r.fds):
            fds[r.name if len(r.fds) == 1 else f"{r.name}{i}"] = fd
    return {
        "name": name,
        "model": model,
        "api": api,
        "pid": os.getpid(),
        "settings": settings,
        "ops": ops,
        "bytes": nbytes,
        "runtime_s": round(elapsed_s, 6),
        "iops": round(ops / elapsed, 1),
        "mb_s": round(nbytes / elapsed / 1e6, 3),
        "lat_us": all_lat.summary_us(),
        "cpu_s": round(cpu[0] + cpu[1], 3),
        "cpu_user_s": round(cpu[0], 3),
        "cpu_sys_s": round(cpu[1], 3),
        "verified": True,
        "verified_blocks": verified_blocks,
        "stopped": stopped,
        "fds": fds,
        "roles": {
            r.name: {
                "fds": r.fds,
                "ops": r.ops,
                "bytes": r.bytes,
                "iops": round(r.ops / elapsed, 1),
                "mb_s": round(r.bytes / elapsed / 1e6, 3),
                "lat_us": r.lat.summary_us(),
                **r.extra,
            }
            for r in roles
        },
    }


_SIZES = ("bs", "filesize", "size")
_TIMES = ("runtime", "delay", "jitter", "backoff")


def _setting(name: str, value: Any) -> str:
    """A setting in the units one would type it in (4k, 256m, 20ms)."""
    if name in _SIZES and isinstance(value, int):
        for suffix, scale in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if value % scale == 0:
                return f"{value // scale}{suffix}"
        return str(value)
    if name in _TIMES and isinstance(value, float):
        if value == 0:
            return "0"
        for unit, seconds in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if value >= seconds:
                return f"{value / seconds:g}{unit}"
        return f"{value * 1e9:.0f}ns"
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _bw(nbytes: int, elapsed: float) -> str:
    mib = nbytes / elapsed / (1 << 20)
    mb = nbytes / elapsed / 1e6
    return f"BW={mib:.1f}MiB/s ({mb:.1f}MB/s)"


def format_text(res: dict[str, Any]) -> str:
    """fio-like text: one block per role, then CPU and the data check."""
    head = " ".join(f"{k}={_setting(k, v)}" for k, v in res["settings"].items())
    lines = [f"{res['name']}: (model={res['model']}, api={res['api']}) {head}"]
    elapsed = max(res["runtime_s"], 1e-9)
    for role, r in res["roles"].items():
        lat = r["lat_us"]
        lines.append(
            f"  {role:<6} read: ops={r['ops']:,} IOPS={_si(r['ops'] / elapsed)}, "
            f"{_bw(r['bytes'], elapsed)}({r['bytes'] / (1 << 20):.1f}MiB/{elapsed * 1000:.0f}msec)"
        )
        if lat:
            lines.append(
                f"    lat (usec): min={lat['min']:g}, p50={lat['p50']:g}, p99={lat['p99']:g}, "
                f"max={lat['max']:g}, avg={lat['mean']:g}"
            )
        extra = {
            k: v for k, v in r.items() if k not in ("fds", "ops", "bytes", "iops", "mb_s", "lat_us")
        }
        if extra:
            lines.append("    " + ", ".join(f"{k}={v:,}" for k, v in extra.items()))
    if len(res["roles"]) > 1:
        lines.append(
            f"  total  read: ops={res['ops']:,} IOPS={_si(res['iops'])}, "
            f"{_bw(res['bytes'], elapsed)}"
        )
    cpu_pct = 100.0 * res["cpu_s"] / elapsed
    lines.append(
        f"  cpu          : usr={res['cpu_user_s']:.2f}s, sys={res['cpu_sys_s']:.2f}s "
        f"({cpu_pct:.0f}% of one CPU)"
    )
    lines.append(
        f"  data         : verified ({res['verified_blocks']:,} reads checked byte for byte)"
        + ("; stopped early" if res["stopped"] else "")
    )
    return "\n".join(lines)
