"""Record-time filters: `-e trace=SET` in strace's vocabulary and `--min-latency DUR`.

Pure and standard-library only (events is): the recorder turns a `CallFilter`
into program options (tracer/program.py then attaches only the selected
syscalls' probes, so an unselected call costs nothing), and the trace header
keeps `CallFilter.to_meta()` so the report can say what was left out.

The families are the project's own (`events.Syscall.family`, the README's
"What is probed" table), named with strace's `%` prefix; strace's own names are
accepted where iotrace has a close equivalent (`%network`, `%desc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from iotrace import events

PAGE_FAULT: Final = "page_fault"
"""Major page faults: a SYSCALLS row of its own (family "fault"), not a syscall."""
POSIX_AIO: Final = "posix_aio"
"""glibc's aio_read/aio_write/aio_return, timed by uprobes (not a syscall)."""

SYSCALL_NAMES: Final = tuple(s.name for s in events.SYSCALLS if s.family != "fault")
ALL_NAMES: Final = (*SYSCALL_NAMES, PAGE_FAULT, POSIX_AIO)


def _family(*fams: str) -> tuple[str, ...]:
    return tuple(s.name for s in events.SYSCALLS if s.family in fams)


# %name -> (what it selects, what it is). Families of events.SYSCALLS come first,
# under their own names; then groups and strace's names that mean nearly the same.
FAMILIES: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "read": (_family("read"), "read, pread64, readv, preadv, preadv2"),
    "write": (_family("write"), "write, pwrite64, writev, pwritev, pwritev2"),
    "recv": (_family("recv"), "recvfrom, recvmsg, recvmmsg"),
    "send": (_family("send"), "sendto, sendmsg, sendmmsg"),
    "net": (_family("recv", "send"), "socket data calls: %recv + %send"),
    "copy": (_family("copy"), "in-kernel copies: sendfile64, splice, tee, vmsplice, ..."),
    "data": (_family("read", "write", "recv", "send", "copy"), "every call that moves data"),
    "mux": (_family("mux"), "select, pselect6, poll, ppoll, epoll_wait, ..."),
    "ctl": (_family("ctl"), "epoll_ctl"),
    "aio": (
        (*_family("aio"), POSIX_AIO),
        "Linux AIO (io_setup ... io_destroy) and POSIX AIO (libc uprobes)",
    ),
    "uring": (_family("uring"), "io_uring_setup, io_uring_enter and io_uring's requests"),
    "fault": ((PAGE_FAULT,), "major page faults of memory-mapped files"),
    # strace's names
    "network": (_family("recv", "send"), "strace's %network: here %net"),
    "multiplex": (_family("mux"), "%mux"),
    "desc": (
        _family("read", "write", "recv", "send", "copy", "mux", "ctl"),
        "strace's %desc: the calls on fds (%data, %mux, %ctl)",
    ),
}


def _valid_names() -> str:
    return "all, " + ", ".join(f"%{f}" for f in FAMILIES) + ", or a syscall name"


def describe_families() -> list[tuple[str, str]]:
    """(%name, what it selects), for --help and the README."""
    return [(f"%{name}", doc) for name, (_, doc) in FAMILIES.items()]


@dataclass(frozen=True)
class CallFilter:
    """What a recording keeps: the calls of `selected` only (None: every one),
    and of those only calls lasting at least `min_latency_ns` (0: every one)."""

    expr: str = ""
    """The -e values as given, joined with spaces ("" when none)."""
    selected: frozenset[str] | None = None
    min_latency_ns: int = 0

    @property
    def active(self) -> bool:
        return self.selected is not None or self.min_latency_ns > 0

    def keeps(self, name: str) -> bool:
        return self.selected is None or name in self.selected

    @property
    def syscalls(self) -> tuple[str, ...]:
        """The syscalls to probe, in events.SYSCALLS order."""
        return tuple(n for n in SYSCALL_NAMES if self.keeps(n))

    @property
    def left_out(self) -> tuple[str, ...]:
        return tuple(n for n in ALL_NAMES if not self.keeps(n))

    def to_meta(self) -> dict[str, Any]:
        """The trace header's `filter` (read back by `from_meta` and the report)."""
        return {
            "trace": self.expr or None,
            "selected": None if self.selected is None else [n for n in ALL_NAMES if self.keeps(n)],
            "left_out": list(self.left_out),
            "min_latency_ns": self.min_latency_ns,
        }


def _expand(item: str) -> set[str]:
    if item == "all":
        return set(ALL_NAMES)
    if item.startswith("%"):
        fam = FAMILIES.get(item[1:])
        if fam is None:
            if item == "%file":
                raise ValueError(
                    "%file: strace's file-name calls (open, stat, ...) are not traced by "
                    f"iotrace; for file I/O use %read,%write (valid: {_valid_names()})"
                )
            raise ValueError(f"unknown syscall family {item!r} (valid: {_valid_names()})")
        return set(fam[0])
    if item.startswith("/"):
        try:
            rx = re.compile(item[1:])
        except re.error as exc:
            raise ValueError(f"bad regular expression {item!r}: {exc}") from None
        found = {n for n in ALL_NAMES if rx.search(n)}
        if not found:
            raise ValueError(f"{item!r} matches no syscall iotrace traces ({_valid_names()})")
        return found
    if item in ALL_NAMES:
        return {item}
    raise ValueError(
        f"iotrace does not trace {item!r}: valid are {_valid_names()} "
        f"({', '.join(SYSCALL_NAMES)}, {PAGE_FAULT}, {POSIX_AIO})"
    )


def parse_trace(values: list[str] | None) -> frozenset[str] | None:
    """The set that `-e trace=SET` options select (None: no -e, every call).

    strace's grammar: `trace=` may be left out; SET is a comma list of syscall
    names, `%family` names, `/regex` and `all`; a leading `!` takes every call
    but those; several -e options add up. Raises ValueError with one line."""
    if not values:
        return None
    chosen: set[str] = set()
    for raw in values:
        text = raw.strip()
        qual, sep, rest = text.partition("=")
        if sep:
            if qual not in ("trace", "t"):
                raise ValueError(f"-e {qual}=...: only -e trace=SET is supported")
            text = rest
        negate = text.startswith("!")
        if negate:
            text = text[1:]
        items = [p.strip() for p in text.split(",")]
        if not text or any(not p for p in items):
            raise ValueError(f"-e {raw!r}: empty name in the list (valid: {_valid_names()})")
        got: set[str] = set()
        for item in items:
            got |= _expand(item)
        chosen |= set(ALL_NAMES) - got if negate else got
    if not chosen:
        raise ValueError("-e selects nothing to trace")
    return frozenset(chosen)


def from_meta(meta: dict[str, Any]) -> CallFilter | None:
    """The filter a trace was recorded with (None: none, or not readable)."""
    raw = meta.get("filter")
    if not isinstance(raw, dict):
        return None
    sel = raw.get("selected")
    selected = (
        frozenset(str(n) for n in sel if isinstance(n, str)) if isinstance(sel, list) else None
    )
    try:
        mlat = int(raw.get("min_latency_ns") or 0)
    except (TypeError, ValueError):
        mlat = 0
    expr = raw.get("trace")
    return CallFilter(
        expr=str(expr) if isinstance(expr, str) else "", selected=selected, min_latency_ns=mlat
    )


def fmt_ns(ns: int) -> str:
    """A threshold as a user would write it: 1ms, 500us, 2.5ms, 1s."""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            return f"{ns / scale:.4g}{unit}"
    return f"{ns}ns"


def parse_latency(text: str) -> int:
    """--min-latency: 1ms, 500us, 2.5ms, 1s, 800ns; a bare number is microseconds
    (as bcc's fileslower). Returns nanoseconds; raises ValueError."""
    t = text.strip().lower()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ns|us|µs|ms|s)?", t)
    if not m:
        raise ValueError(f"not a latency: {text!r} (try 1ms, 500us, 2.5ms)")
    scale = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
    ns = round(float(m.group(1)) * scale[m.group(2) or "us"])
    if ns <= 0:
        raise ValueError(f"--min-latency must be positive: {text!r}")
    if ns >= 1 << 32:
        # The kernel compares it with a call's duration as 64-bit ns; past ~4 s a
        # threshold keeps next to nothing and is almost surely a typo.
        raise ValueError(f"--min-latency at most 4s: {text!r}")
    return ns


@dataclass(frozen=True)
class Below:
    """Calls of one process and syscall faster than --min-latency: counted, not recorded."""

    pid: int
    syscall: str
    calls: int
    dur_ns: int


def below_counts(stats: dict[str, Any]) -> list[Below]:
    """The trace's `below_min_latency` counters (STAT / footer), read defensively."""
    raw = stats.get("below_min_latency")
    out: list[Below] = []
    if not isinstance(raw, list):
        return out
    for r in raw:
        if not isinstance(r, dict):
            continue
        try:
            b = Below(int(r["pid"]), str(r["syscall"]), int(r["calls"]), int(r["dur_ns"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if b.calls > 0:
            out.append(b)
    return out


def by_syscall(rows: list[Below]) -> dict[str, int]:
    """Calls per syscall, most first."""
    acc: dict[str, int] = {}
    for r in rows:
        acc[r.syscall] = acc.get(r.syscall, 0) + r.calls
    return dict(sorted(acc.items(), key=lambda kv: (-kv[1], kv[0])))


def _names(names: tuple[str, ...] | list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def filter_lines(f: CallFilter, below: list[Below], unattributed: int = 0) -> list[str]:
    """What the report says a filter left out (unwrapped lines; none without a filter)."""
    lines = []
    if f.selected is not None:
        kept = [n for n in ALL_NAMES if f.keeps(n)]
        lines.append(
            f"filter -e {f.expr}: recorded only {_names(kept)}; not recorded: "
            f"{_names(list(f.left_out))} (their calls are not in this trace)"
        )
    if f.min_latency_ns:
        total = sum(b.calls for b in below) + unattributed
        per = ", ".join(f"{k} {v:,}" for k, v in list(by_syscall(below).items())[:6])
        inside = fmt_ns(sum(b.dur_ns for b in below))
        lines.append(
            f"filter --min-latency {fmt_ns(f.min_latency_ns)}: {total:,} calls faster than "
            f"{fmt_ns(f.min_latency_ns)} counted, not recorded"
            + (f" ({per}; {inside} inside them)" if per else "")
            + (f", {unattributed:,} of them for no process (map full)" if unattributed else "")
            + "; figures below cover the recorded calls only"
        )
    return lines
