"""Label a process or thread with its I/O model, from aggregate numbers.

Both the report (pandas over a whole trace) and the dashboard (numpy over a
live window) reduce events to an `Activity` and call `classify`, so the two
always agree. Pure standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from iotrace.events import SYSCALL_BY_NAME

_MUX = {"select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2"}
_MUX_API = {
    "select": "select",
    "pselect6": "select",
    "poll": "poll",
    "ppoll": "poll",
    "epoll_wait": "epoll",
    "epoll_pwait": "epoll",
    "epoll_pwait2": "epoll",
}
_DATA_FAMILIES = {"read", "write", "recv", "send"}


@dataclass(frozen=True)
class Activity:
    """What one process or thread did over a window of `wall_ns`."""

    wall_ns: int
    syscalls: Mapping[str, int] = field(default_factory=dict)
    """Syscall name -> number of calls."""
    syscall_ns: Mapping[str, int] = field(default_factory=dict)
    """Syscall name -> total time inside the calls."""
    off_cpu_ns: Mapping[str, int] = field(default_factory=dict)
    """Syscall name -> time off CPU inside the calls."""
    eagain: Mapping[str, int] = field(default_factory=dict)
    """Syscall name -> calls that returned EAGAIN."""
    requests: Mapping[str, int] = field(default_factory=dict)
    """Async API ("libaio", "io_uring", "posix-aio") -> requests seen."""


@dataclass(frozen=True)
class Label:
    model: str
    """One of events.MODELS, or "idle" when no I/O was seen."""
    api: str
    evidence: str
    """One sentence built from the numbers."""
    breakdown: Mapping[str, float] = field(default_factory=dict)
    """Model -> share of I/O calls, when a program mixes models."""


def _pct(part: float, whole: float) -> int:
    return round(100 * part / whole) if whole > 0 else 0


def _data_calls(a: Activity) -> dict[str, int]:
    return {
        n: c
        for n, c in a.syscalls.items()
        if n in SYSCALL_BY_NAME and SYSCALL_BY_NAME[n].family in _DATA_FAMILIES and c > 0
    }


def classify(a: Activity) -> Label:
    """The model this activity shows, its API and the evidence for it."""
    data = _data_calls(a)
    n_data = sum(data.values())
    async_reqs = {k: v for k, v in a.requests.items() if v > 0}
    mux = {n: c for n, c in a.syscalls.items() if n in _MUX and c > 0}
    eagain = sum(a.eagain.values())

    shares: dict[str, float] = {}
    total = n_data + sum(async_reqs.values()) + sum(mux.values())
    if total == 0:
        return Label("idle", "-", "no I/O system calls seen")
    if async_reqs:
        api = max(async_reqs, key=lambda k: async_reqs[k])
        nreq = async_reqs[api]
        shares["async-nonblocking"] = nreq / total
        if nreq >= max(n_data, sum(mux.values())) or api != "posix-aio":
            return Label(
                "async-nonblocking",
                api,
                f"{nreq} requests submitted through {api}; they overlap in flight",
                shares,
            )
    if mux:
        top = max(mux, key=lambda k: mux[k])
        wait = sum(a.syscall_ns.get(n, 0) for n in mux)
        shares["async-blocking"] = sum(mux.values()) / total
        return Label(
            "async-blocking",
            _MUX_API[top],
            f"{_pct(wait, a.wall_ns)}% of wall time waiting in {top}; "
            f"{n_data} data calls after it",
            shares,
        )
    top = max(data, key=lambda k: data[k])
    if eagain and eagain >= 0.2 * n_data:
        return Label(
            "sync-nonblocking",
            top,
            f"{_pct(eagain, n_data)}% of {n_data} {top} calls returned EAGAIN (retry loop)",
            {"sync-nonblocking": 1.0},
        )
    asleep = sum(a.off_cpu_ns.get(n, 0) for n in data)
    return Label(
        "sync-blocking",
        top,
        f"{n_data} {top} calls; {_pct(asleep, a.wall_ns)}% of wall time asleep inside them",
        {"sync-blocking": 1.0},
    )
