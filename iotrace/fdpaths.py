"""fd -> path: each call's file, from the fd-table records of a trace.

The kernel side (tracer/bpf/fdpath.bpf.c) records every change of a traced
process's fd table as a `Kind.FD` record at the exit of the call that made it:
opens with their path, closes, dups, pipes, sockets, accepts, anonymous-inode
fds and chdirs; the recorder adds a SNAPSHOT of /proc/PID/fd at attach for the
fds a process already had (`trace -p`, or what a command inherited).
`FdTables` walks the records in time order, keeps one table per process and
gives every record that names an fd the path that fd had at that moment, so a
number closed and reused for another file gets the new path.

What it cannot know is said, never guessed: a call on an fd no record opened is
`None` and counted in `unknown_calls`. Limits: a relative path resolves against
the cwd the process had when iotrace first saw it, followed through the
chdir/fchdir calls seen since; `..` is resolved lexically (a symlinked
directory is not followed); pipes and sockets made while tracing are named by a
number in the trace (`pipe#3`), not the kernel's inode, and sockets by family and
type only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from iotrace import events, runs, session
from iotrace.events import FdOp, Kind
from iotrace.session import EVENT_DTYPE, TaskInfo

O_CLOEXEC: Final = 0o2000000
AT_FDCWD: Final = -100
CLOSE_RANGE_CLOEXEC: Final = 4
PATH_BYTES: Final = events.PATH_CHUNK * events.PATH_CHUNKS
_PAYLOAD: Final = slice(8, 8 + events.PATH_CHUNK)
"""Where a PATH record holds its bytes: end_ns .. user_data."""
_FAMILIES: Final = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK",
                    17: "AF_PACKET", 40: "AF_VSOCK"}  # fmt: skip
_TYPES: Final = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}
_URING_SETUP: Final = events.SYSCALL_BY_NAME["io_uring_setup"].op
_WITH_FD: Final = (
    int(Kind.SYSCALL),
    int(Kind.SYSCALL_RUN),
    int(Kind.AIO_REQUEST),
    int(Kind.URING_REQUEST),
    int(Kind.POSIX_AIO_REQUEST),
    int(Kind.FD),
)
DATA_FAMILIES: Final = frozenset({"read", "write", "recv", "send", "copy"})
"""Syscall families whose calls move a file's bytes: what the per-file table counts."""


def path_records(
    op: FdOp, pid: int, tid: int, ts_ns: int, fd: int, path: str, *, flags_arg: int = 0
) -> np.ndarray:
    """PATH records holding `path`, then the `op` record (OPEN layout): how the
    recorder writes a SNAPSHOT, and what tests build traces from."""
    raw = path.encode("utf-8", "surrogateescape")[: PATH_BYTES - 1]
    n = -(-len(raw) // events.PATH_CHUNK)
    out = np.zeros(n + 1, dtype=EVENT_DTYPE)
    out["ts_ns"], out["pid"], out["tid"], out["kind"] = ts_ns, pid, tid, Kind.FD
    view = out.view(np.uint8).reshape(n + 1, EVENT_DTYPE.itemsize)
    for i in range(n):
        part = raw[i * events.PATH_CHUNK : (i + 1) * events.PATH_CHUNK]
        view[i, 8 : 8 + len(part)] = np.frombuffer(part, np.uint8)
        out[i]["op"], out[i]["flags"] = FdOp.PATH, i
    head = out[n]
    head["op"], head["fd"], head["ret"] = op, fd, AT_FDCWD
    head["size"], head["offset"] = flags_arg, len(raw)
    return out


@dataclass
class _Fd:
    path: str
    cloexec: bool


@dataclass
class FdTables:
    """The fd tables of a trace's processes, followed record by record."""

    tasks: Iterable[TaskInfo] = ()
    unknown_calls: int = 0
    """Records on an fd that no record opened (opened before tracing, or a change lost)."""
    cut_paths: int = 0
    """Paths longer than the kernel side reads (kept cut, flagged in the trace)."""
    incomplete_paths: int = 0
    """Opens whose path was unreadable or lost a PATH record to a full ring."""
    _tables: dict[int, dict[int, _Fd]] = field(default_factory=dict)
    _cwd: dict[int, str] = field(default_factory=dict)
    _ppid: dict[int, int] = field(default_factory=dict)
    _chunks: dict[int, list[np.void]] = field(default_factory=dict)
    _made: int = 0

    def __post_init__(self) -> None:
        for t in self.tasks:
            self.add_task(t)

    def add_task(self, t: TaskInfo) -> None:
        """What the trace says of a process: its parent and its cwd at first sight."""
        if t.tid != t.pid:
            return
        self._ppid.setdefault(t.pid, t.ppid)
        if t.cwd:
            self._cwd.setdefault(t.pid, t.cwd)

    def paths(self, ev: np.ndarray) -> list[str | None]:
        """The path of each record's fd (None: no fd, or not known), in `ev`'s order,
        following the table changes in it. Records are taken in time order (a call at
        its enter, a change at the exit that made it); call this batch after batch."""
        out: list[str | None] = [None] * len(ev)
        if not len(ev):
            return out
        kinds = ev["kind"]
        interesting = np.flatnonzero(np.isin(kinds, (*_WITH_FD, int(Kind.TASK))))
        order = interesting[np.argsort(ev["ts_ns"][interesting], kind="stable")]
        for i in order.tolist():
            r = ev[i]
            kind = int(r["kind"])
            if kind == Kind.TASK:
                self._task(r)
            elif kind == Kind.FD:
                out[i] = self._change(r)
            elif int(r["fd"]) >= 0:
                pid, fd = int(r["pid"]), int(r["fd"])
                if kind == Kind.SYSCALL and int(r["op"]) == _URING_SETUP:
                    continue
                entry = self._tables.get(pid, {}).get(fd)
                if entry is None:
                    self.unknown_calls += int(r["offset"]) if kind == Kind.SYSCALL_RUN else 1
                else:
                    out[i] = entry.path
            elif kind == Kind.SYSCALL and int(r["op"]) == _URING_SETUP and int(r["ret"]) >= 0:
                out[i] = self._set(int(r["pid"]), int(r["ret"]), "anon_inode:[io_uring]", False)
        return out

    # ---- table changes ----
    def _table(self, pid: int) -> dict[int, _Fd]:
        t = self._tables.get(pid)
        if t is None:
            t = self._tables[pid] = {}
        return t

    def _set(self, pid: int, fd: int, path: str, cloexec: bool) -> str:
        self._table(pid)[fd] = _Fd(path, cloexec)
        return path

    def _task(self, r: np.void) -> None:
        pid, op = int(r["pid"]), int(r["op"])
        if op == events.TaskOp.FORK:
            # A new process starts with a copy of its parent's table and cwd.
            parent = self._ppid.get(pid, 0)
            table = self._tables.get(parent, {})
            self._tables[pid] = {fd: _Fd(e.path, e.cloexec) for fd, e in table.items()}
            if parent in self._cwd:
                self._cwd[pid] = self._cwd[parent]
        elif op == events.TaskOp.EXEC:
            mine = self._tables.get(pid)
            if mine:
                for fd in [fd for fd, e in mine.items() if e.cloexec]:
                    del mine[fd]

    def _path_of(self, r: np.void) -> str:
        """The path an OPEN/SNAPSHOT/CHDIR record carries, made absolute."""
        tid, ts = int(r["tid"]), int(r["ts_ns"])
        parts = [c for c in self._chunks.pop(tid, []) if int(c["ts_ns"]) == ts]
        want = min(int(r["offset"]), PATH_BYTES - 1)
        raw = bytearray(PATH_BYTES)
        got = set()
        for c in parts:
            i = int(c["flags"])
            if 0 <= i < events.PATH_CHUNKS:
                raw[i * events.PATH_CHUNK : (i + 1) * events.PATH_CHUNK] = c.tobytes()[_PAYLOAD]
                got.add(i)
        flags = int(r["flags"])
        if flags & events.Flag.PATH_CUT:
            self.cut_paths += 1
        if flags & events.Flag.PATH_UNREAD or len(got) < -(-want // events.PATH_CHUNK):
            self.incomplete_paths += 1
            return "?"
        name = bytes(raw[:want]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if int(r["op"]) == FdOp.SNAPSHOT:
            return name  # as /proc/PID/fd shows it: absolute, or pipe:[inode] & co.
        if name.startswith("/"):
            return posixpath.normpath(name)
        pid, dirfd = int(r["pid"]), _s32(int(r["ret"]))
        base = (
            self._cwd.get(pid, "")
            if dirfd == AT_FDCWD
            else getattr(self._tables.get(pid, {}).get(dirfd), "path", "")
        )
        return posixpath.normpath(posixpath.join(base, name)) if base else name

    def _new_name(self, what: str) -> str:
        self._made += 1
        return f"{what}#{self._made}"

    def _change(self, r: np.void) -> str | None:
        op, pid, fd = int(r["op"]), int(r["pid"]), int(r["fd"])
        cloexec = bool(int(r["size"]) & O_CLOEXEC)
        if op == FdOp.PATH:
            self._chunks.setdefault(int(r["tid"]), []).append(r.copy())
            return None
        if op in (FdOp.OPEN, FdOp.SNAPSHOT):
            return self._set(pid, fd, self._path_of(r), cloexec)
        if op == FdOp.CHDIR:
            path = self._path_of(r)
            if path.startswith("/"):
                self._cwd[pid] = path
            return path
        if op == FdOp.FCHDIR:
            entry = self._tables.get(pid, {}).get(_s32(int(r["ret"])))
            if entry is not None and entry.path.startswith("/"):
                self._cwd[pid] = entry.path
            return entry.path if entry else None
        if op == FdOp.CLOSE:
            self._tables.get(pid, {}).pop(fd, None)
            return None
        if op == FdOp.CLOSE_RANGE:
            table = self._tables.get(pid, {})
            last = int(r["ret"]) & 0xFFFFFFFF
            for n in [n for n in table if fd <= n <= last]:
                if int(r["size"]) & CLOSE_RANGE_CLOEXEC:
                    table[n].cloexec = True
                else:
                    del table[n]
            return None
        if op == FdOp.DUP:
            entry = self._tables.get(pid, {}).get(_s32(int(r["ret"])))
            if entry is None:
                self._table(pid).pop(fd, None)  # what fd held before is gone either way
                self.unknown_calls += 1
                return None
            return self._set(pid, fd, entry.path, cloexec)
        if op in (FdOp.PIPE, FdOp.SOCKETPAIR):
            if op == FdOp.PIPE:
                name = self._new_name("pipe")
            else:
                name = f"{self._new_name('socketpair')} {_socket_kind(int(r['offset']))}"
            self._set(pid, fd, name, cloexec)
            self._set(pid, _s32(int(r["ret"])), name, cloexec)
            return name
        if op == FdOp.SOCKET:
            kind = _socket_kind(int(r["ret"]) | (int(r["offset"]) << 32))
            return self._set(pid, fd, f"{self._new_name('socket')} {kind}", cloexec)
        if op == FdOp.ACCEPT:
            listening = self._tables.get(pid, {}).get(_s32(int(r["ret"])))
            on = f" on {listening.path}" if listening else ""
            return self._set(pid, fd, f"{self._new_name('socket')} accepted{on}", cloexec)
        if op == FdOp.ANON:
            what = events.ANON_NAMES.get(int(r["offset"]), "anon")
            return self._set(pid, fd, f"anon_inode:[{what}]", cloexec)
        return None


def _s32(v: int) -> int:
    """An int the kernel passed as 32 bits, sign restored (AT_FDCWD is -100)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _socket_kind(word: int) -> str:
    """'AF_UNIX/stream' from family | type << 32 (the type's flag bits dropped)."""
    family, stype = word & 0xFFFFFFFF, (word >> 32) & 0xF
    return f"{_FAMILIES.get(family, f'family{family}')}/{_TYPES.get(stype, f'type{stype}')}"


# ---- the per-file table (report) ----


@dataclass
class FileStats:
    """What the calls on one file did: like bcc's filetop + fileslower."""

    path: str
    calls: int = 0
    bytes: int = 0
    blocked_ns: int = 0
    durations: list[np.ndarray] = field(default_factory=list)

    def percentiles_us(self) -> tuple[float | None, float | None]:
        if not self.durations:
            return None, None
        d = np.concatenate(self.durations)
        if not len(d):
            return None, None
        p50, p99 = np.percentile(d, [50, 99])
        return float(p50) / 1e3, float(p99) / 1e3


@dataclass
class FileTable:
    files: dict[str, FileStats]
    unknown_calls: int
    cut_paths: int
    incomplete_paths: int
    from_runs: bool
    """Some calls were folded into run records: their durations are estimated."""


_DATA_OPS: Final = np.array(
    [s.op for s in events.SYSCALLS if s.family in DATA_FAMILIES], dtype=np.uint16
)


def _calls(ev: np.ndarray) -> Iterator[np.ndarray]:
    """The batch with its runs laid out as calls (their paths are the run's)."""
    if runs.has_runs(ev):
        yield from runs.expand(ev)
    else:
        yield ev


def file_table(path: Path | str) -> FileTable:
    """Per-file calls, bytes, p50/p99 and time blocked, over the data calls of a
    trace (read/write/recv/send/copy families), one chunk at a time."""
    stream = session.TraceStream(path)
    tables: FdTables | None = None
    seen_tasks = 0
    files: dict[str, FileStats] = {}
    from_runs = False
    for batch in stream.events():
        tasks = stream.trace().tasks
        if tables is None:
            tables = FdTables(tasks)
        elif len(tasks) != seen_tasks:
            for t in tasks:
                tables.add_task(t)
        seen_tasks = len(tasks)
        for ev in _calls(batch):
            paths = tables.paths(ev)
            sel = np.flatnonzero(
                (ev["kind"] == int(Kind.SYSCALL)) & np.isin(ev["op"], _DATA_OPS) & (ev["fd"] >= 0)
            )
            if not len(sel):
                continue
            from_runs |= bool((ev["flags"][sel] & np.uint32(events.Flag.FROM_RUN)).any())
            names = np.array([paths[i] or "" for i in sel.tolist()], dtype=object)
            ret = ev["ret"][sel].astype(np.int64)
            dur = ev["end_ns"][sel].astype(np.int64) - ev["ts_ns"][sel].astype(np.int64)
            off = ev["off_cpu_ns"][sel].astype(np.int64)
            for name in np.unique(names).tolist():
                if not name:
                    continue  # on fds never seen opened: counted in unknown_calls
                m = names == name
                fs = files.get(name) or files.setdefault(name, FileStats(name))
                fs.calls += int(m.sum())
                fs.bytes += int(np.maximum(ret[m], 0).sum())
                fs.blocked_ns += int(off[m].sum())
                fs.durations.append(dur[m])
    ft = tables or FdTables()
    return FileTable(files, ft.unknown_calls, ft.cut_paths, ft.incomplete_paths, from_runs)


def _fmt_us(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def render_file_table(ft: FileTable, width: int = 80, top: int = 15) -> list[str]:
    """The report's FILES section: the files the most time was spent in first."""
    if not ft.files and not ft.unknown_calls:
        return []
    lines = ["FILES (data calls by the file their fd named)"]
    head = f"{'CALLS':>8} {'BYTES':>7} {'p50(us)':>8} {'p99(us)':>8} {'BLOCKED(ms)':>11}  PATH"
    lines.append(head)
    ranked = sorted(
        ft.files.values(),
        key=lambda f: (-(sum(int(d.sum()) for d in f.durations)), -f.calls, f.path),
    )
    room = max(width - len(head) + 4, 20)
    for f in ranked[:top]:
        p50, p99 = f.percentiles_us()
        name = f.path if len(f.path) <= room else "..." + f.path[-(room - 3) :]
        lines.append(
            f"{f.calls:>8,} {_fmt_bytes(f.bytes):>7} {_fmt_us(p50):>8} {_fmt_us(p99):>8} "
            f"{f.blocked_ns / 1e6:>11.2f}  {name}"
        )
    if len(ranked) > top:
        lines.append(f"... and {len(ranked) - top:,} more files")
    notes = []
    if ft.unknown_calls:
        notes.append(f"{ft.unknown_calls:,} calls on fds not seen opened (path unknown)")
    if ft.cut_paths:
        notes.append(f"{ft.cut_paths:,} paths cut at {PATH_BYTES - 1} bytes")
    if ft.incomplete_paths:
        notes.append(f"{ft.incomplete_paths:,} opens whose path was not read ('?')")
    if ft.from_runs:
        notes.append("percentiles include calls folded into runs (estimated)")
    if notes:
        lines.append("  " + "; ".join(notes))
    return lines


def file_table_json(ft: FileTable) -> dict[str, Any]:
    rows = []
    for f in sorted(ft.files.values(), key=lambda f: f.path):
        p50, p99 = f.percentiles_us()
        rows.append(
            {"path": f.path, "calls": f.calls, "bytes": f.bytes, "p50_us": p50, "p99_us": p99,
             "blocked_ns": f.blocked_ns}
        )  # fmt: skip
    return {
        "files": rows,
        "unknown_calls": ft.unknown_calls,
        "cut_paths": ft.cut_paths,
        "incomplete_paths": ft.incomplete_paths,
    }
