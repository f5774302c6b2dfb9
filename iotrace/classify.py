"""Label a process or thread with its I/O model, from aggregate numbers.

Both the report (pandas over a whole trace) and the dashboard (numpy over a
live window) reduce events to an `Activity` and call `classify`, so the two
always agree. Pure standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

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
_DATA_FAMILIES = {"read", "write", "recv", "send", "copy"}
POSITIONAL: Final = frozenset(
    {"pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "copy_file_range"}
)
"""Data calls that only work on seekable files (a pipe or socket gives ESPIPE or
EINVAL). No multiplexer reports a regular file ready (epoll refuses them), so a
wait never starts a request made with these: they are the thread's blocking
file I/O whatever else it waits for."""
FAULTS: Final = frozenset({"page_fault"})
"""Pseudo-calls that are page faults of memory-mapped files (events.SYSCALLS)."""


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
    threads: int = 1
    """Threads that did anything traced."""
    main_data_calls: int = 0
    """Data calls made by the main thread (tid == pid)."""
    helper_threads: int = 0
    """Threads other than the main one that made data calls."""
    main_mux_calls: int = 0
    """Multiplexer calls made by the main thread."""
    helper_calls: Mapping[str, int] = field(default_factory=dict)
    """Syscall name -> data calls made by threads other than the main one."""
    mux_timeouts: Mapping[str, int] = field(default_factory=dict)
    """Multiplexer name -> waits that returned 0 ready (timed out): idle, not I/O."""
    mux_idle_ns: Mapping[str, int] = field(default_factory=dict)
    """Multiplexer name -> time asleep in the waits that timed out."""
    waited_data_calls: int | None = None
    """Data calls on the fds a ready wait started requests on (the multiplexed
    fds); the other data calls are blocking ones. None: not known, every
    non-positional data call counts as multiplexed."""


@dataclass(frozen=True)
class Label:
    model: str
    """One of events.MODELS, or "idle" when no I/O was seen."""
    api: str
    evidence: str
    """One sentence built from the numbers."""
    breakdown: Mapping[str, float] = field(default_factory=dict)
    """Model -> share of I/O calls, when a program mixes models."""


_AIO_CALLS = {"io_submit", "io_getevents", "io_pgetevents"}
_POSITIONAL = POSITIONAL


def _pct(part: float, whole: float) -> int:
    return round(100 * part / whole) if whole > 0 else 0


def _time_share(part: float, a: Activity) -> str:
    """ "49% of wall time" for one thread; with several, a share of their summed
    time, so it never passes 100% ("225% of wall time asleep" read as nonsense)."""
    n = max(a.threads, 1)
    if n == 1:
        return f"{_pct(part, a.wall_ns)}% of wall time"
    return f"{_pct(part, a.wall_ns * n)}% of its {n} threads' time"


def _data_calls(a: Activity) -> dict[str, int]:
    return {
        n: c
        for n, c in a.syscalls.items()
        if n in SYSCALL_BY_NAME and SYSCALL_BY_NAME[n].family in _DATA_FAMILIES and c > 0
    }


def _async_requests(a: Activity) -> dict[str, int]:
    """Async requests by API; when the request probes saw nothing, the submission
    calls still show the API (one request per call at least)."""
    reqs = {k: v for k, v in a.requests.items() if v > 0}
    if not reqs.get("libaio") and a.syscalls.get("io_submit", 0) > 0:
        reqs["libaio"] = a.syscalls["io_submit"]
    if not reqs.get("io_uring") and a.syscalls.get("io_uring_enter", 0) > 0:
        reqs["io_uring"] = a.syscalls["io_uring_enter"]
    return reqs


def _looks_like_posix_aio(a: Activity) -> bool:
    """glibc's POSIX AIO without uprobe data: helper threads make only positional
    reads/writes while the main thread (which submits with aio_read and waits in
    aio_suspend, neither a traced syscall) makes almost none itself (a start-up
    read of a config file is allowed) and no multiplexer calls."""
    helper = {n: c for n, c in a.helper_calls.items() if c > 0}
    n_helper = sum(helper.values())
    return (
        a.helper_threads > 0
        and a.main_data_calls * 50 <= n_helper
        and a.main_mux_calls == 0
        and bool(helper)
        and set(helper) <= _POSITIONAL
    )


def io_units(a: Activity) -> int:
    """The I/O calls and requests an activity's label weighs: data calls, async
    requests, multiplexer waits that found something ready, major page faults."""
    n_mux = sum(c - a.mux_timeouts.get(n, 0) for n, c in a.syscalls.items() if n in _MUX)
    n_fault = sum(c for n, c in a.syscalls.items() if n in FAULTS)
    return sum(_data_calls(a).values()) + sum(_async_requests(a).values()) + n_mux + n_fault


def classify(a: Activity) -> Label:
    """The model this activity shows, its API and the evidence for it."""
    data = _data_calls(a)
    n_data = sum(data.values())
    positional = sum(c for n, c in data.items() if n in _POSITIONAL)
    n_stream = n_data - positional
    if a.waited_data_calls is not None:
        # Calls on fds no ready wait was for (files, blocking sockets, stdout) are
        # blocking calls, like the positional ones.
        waited = min(a.waited_data_calls, n_stream)
        positional += n_stream - waited
        n_stream = waited
    reqs = _async_requests(a)
    n_async = sum(reqs.values())
    # A wait that timed out is idle time: it found nothing to do I/O on.
    mux_all = {n: c for n, c in a.syscalls.items() if n in _MUX and c > 0}
    mux = {n: c - a.mux_timeouts.get(n, 0) for n, c in mux_all.items()}
    mux = {n: c for n, c in mux.items() if c > 0}
    n_mux = sum(mux.values())
    n_timeouts = sum(mux_all.values()) - n_mux
    faults = sum(c for n, c in a.syscalls.items() if n in FAULTS)
    eagain = sum(v for n, v in a.eagain.items() if n in data)
    total = n_data + n_async + n_mux + faults
    if total == 0:
        if n_timeouts:
            top = max(mux_all, key=lambda k: mux_all[k])
            return Label("idle", "-", f"{n_timeouts} {top} waits, every one timed out; no I/O")
        return Label("idle", "-", "no I/O system calls seen")

    def shares(primary: str) -> dict[str, float]:
        """Model -> share of the I/O calls, the calls the primary model explains
        (the stream reads after a multiplexer, the completed call of a retry loop,
        POSIX AIO's helper calls) counted as the primary's."""
        units = {
            "async-nonblocking": n_async,
            "async-blocking": n_mux,
            "sync-nonblocking": eagain,
            "sync-blocking": n_data - eagain,
            "memory-mapped": faults,
        }
        if primary == "async-blocking" and n_stream:
            # Positional calls are on files, which no wait reports ready.
            units[primary] += n_stream
            units["sync-blocking"] = positional
            units["sync-nonblocking"] = 0
        elif primary == "sync-nonblocking":
            units[primary] += units["sync-blocking"]
            units["sync-blocking"] = 0
        elif primary == "async-nonblocking" and ("posix-aio" in reqs or _looks_like_posix_aio(a)):
            helper = min(sum(a.helper_calls.values()), units["sync-blocking"])
            units["sync-blocking"] -= helper
            if "posix-aio" not in reqs:
                units[primary] += helper
        elif a.waited_data_calls is not None and n_mux:
            # the calls on fds a ready wait was for are the multiplexing pattern's
            moved = min(n_stream, units["sync-blocking"])
            units["async-blocking"] += moved
            units["sync-blocking"] -= moved
        whole = sum(units.values())
        return {m: u / whole for m, u in units.items() if u > 0} if whole else {}

    asleep_data = sum(a.off_cpu_ns.get(n, 0) for n in data)

    if reqs and (n_async * 4 >= n_data or "posix-aio" not in reqs or len(reqs) > 1):
        api = max(reqs, key=lambda k: reqs[k])
        nreq = reqs[api]
        if api == "posix-aio":
            how = (
                f"; glibc ran them as {sum(a.helper_calls.values())} blocking calls on "
                f"{a.helper_threads} helper thread(s)"
                if a.helper_threads
                else ""
            )
            evidence = f"{nreq} POSIX AIO requests (aio_read/aio_write){how}"
        else:
            calls = {"libaio": _AIO_CALLS, "io_uring": {"io_uring_enter"}}[api]
            n_calls = sum(a.syscalls.get(n, 0) for n in calls)
            waited = sum(a.off_cpu_ns.get(n, 0) for n in calls)
            evidence = (
                f"{nreq} requests through {api} in {n_calls} calls "
                f"({n_calls / nreq:.2f} per request); {_time_share(waited, a)} "
                f"asleep waiting for completions"
            )
        return Label("async-nonblocking", api, evidence, shares("async-nonblocking"))

    if _looks_like_posix_aio(a):
        helper = {n: c for n, c in a.helper_calls.items() if c > 0}
        top = max(helper, key=lambda k: helper[k])
        return Label(
            "async-nonblocking",
            "posix-aio",
            f"{a.helper_threads} helper thread(s) made {sum(helper.values())} blocking {top} "
            f"calls while the main thread made {a.main_data_calls}: glibc's POSIX AIO "
            "(no aio_read uprobe data, so latency is the helper's call only)",
            shares("async-nonblocking"),
        )

    asleep_stream = sum(a.off_cpu_ns.get(n, 0) for n in data if n not in _POSITIONAL)
    mux_wait = sum(a.off_cpu_ns.get(n, 0) - a.mux_idle_ns.get(n, 0) for n in mux)
    idle = f"; {n_timeouts} more waits timed out (idle, not counted as I/O)" if n_timeouts else ""
    if faults and faults >= n_data + n_async + n_mux:
        asleep_f = sum(a.off_cpu_ns.get(n, 0) for n in FAULTS)
        return Label(
            "memory-mapped",
            "mmap",
            f"{faults} major page faults of mapped files ({_time_share(asleep_f, a)} "
            f"asleep in them) against {n_data} data calls: the program reads memory, "
            "the kernel reads the file",
            shares("memory-mapped"),
        )
    multiplexed = n_mux + n_stream >= positional
    if mux and n_stream and multiplexed and (mux_wait >= asleep_stream or n_mux * 50 >= n_stream):
        top = max(mux, key=lambda k: mux[k])
        if _pct(asleep_stream, a.wall_ns * max(a.threads, 1)) < 5:
            after = f"the {n_stream} data calls after it return at once"
        else:
            after = f"the {n_stream} data calls after it are asleep {_time_share(asleep_stream, a)}"
        if positional:
            after += f"; {positional} calls on other fds are blocking ones"
        return Label(
            "async-blocking",
            _MUX_API[top],
            f"{_time_share(mux_wait, a)} asleep in {n_mux} {top} calls that "
            f"found an fd ready; {after}{idle}",
            shares("async-blocking"),
        )
    if not data:
        # Only multiplexer calls (e.g. a timer loop) and nothing else.
        top = max(mux, key=lambda k: mux[k])
        return Label(
            "async-blocking",
            _MUX_API[top],
            f"{n_mux} {top} calls, no data calls{idle}",
            shares("async-blocking"),
        )
    top = max(data, key=lambda k: data[k])
    if eagain and eagain >= max(1, 0.05 * n_data):
        return Label(
            "sync-nonblocking",
            top,
            f"{eagain} of {n_data} data calls returned EAGAIN "
            f"({eagain / max(n_data - eagain, 1):.1f} per completed call): a retry loop",
            shares("sync-nonblocking"),
        )
    mix = ", ".join(f"{c} {n}" for n, c in sorted(data.items(), key=lambda kv: -kv[1])[:3])
    if mux and n_stream:
        top_mux = max(mux, key=lambda k: mux[k])
        idle = f"; {n_mux} {top_mux} waits found an fd ready for {n_stream} of them" + idle
    return Label(
        "sync-blocking",
        top,
        f"{n_data} blocking calls ({mix}); {_time_share(asleep_data, a)} asleep inside them{idle}",
        shares("sync-blocking"),
    )


def combine(process: Label, parts: list[tuple[Label, int]]) -> Label:
    """A process's label from its threads' own labels, each weighed by its I/O
    units: a thread pool doing blocking reads beside an epoll thread is that
    mix, not one model spread over all the calls. The process keeps its own
    label when its threads agree, and for POSIX AIO (a process-wide pattern:
    the helpers' blocking calls are the submitter's requests)."""
    parts = [(lb, w) for lb, w in parts if w > 0 and lb.model != "idle"]
    whole = sum(w for _, w in parts)
    if len(parts) < 2 or not whole or process.api == "posix-aio":
        return process
    mix: dict[str, float] = {}
    for lb, w in parts:
        for m, v in (lb.breakdown or {lb.model: 1.0}).items():
            mix[m] = mix.get(m, 0.0) + v * w / whole
    # The process is the model most of its I/O is, among its threads' own models.
    top = max(sorted({lb.model for lb, _ in parts}), key=lambda m: mix.get(m, 0.0))
    if top == process.model or mix.get(top, 0.0) <= mix.get(process.model, 0.0):
        return replace(process, breakdown=mix)
    lead, _ = max(((lb, w) for lb, w in parts if lb.model == top), key=lambda p: p[1])
    n = sum(1 for lb, _ in parts if lb.model == top)
    return Label(
        top,
        lead.api,
        f"{n} of {len(parts)} threads doing I/O are {top}, {_pct(mix[top], 1)}% of the "
        f"I/O calls; the busiest: {lead.evidence}",
        mix,
    )
