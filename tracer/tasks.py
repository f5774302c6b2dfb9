"""Who is who: task identities for the records of a live trace.

The BPF side only knows pids and tids; names, parents and workload labels
come from TASK records and /proc. A process is named by (pid, start time),
so a recycled pid never merges two processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from iotrace.events import Kind, TaskOp, comm_from_words
from iotrace.session import TaskInfo
from iotrace.text import escape_bytes

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_to_monotonic_ns() -> int:
    """What to add to a CLOCK_BOOTTIME reading to get CLOCK_MONOTONIC (the clock of
    every record): they differ by the time the machine spent suspended."""
    try:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC) - time.clock_gettime_ns(
            time.CLOCK_BOOTTIME
        )
    except (AttributeError, OSError):
        return 0


def read_proc_stat(pid: int, tid: int | None = None, proc: Path = Path("/proc")) -> dict | None:
    """comm (escaped, see iotrace.text), ppid and start time (CLOCK_MONOTONIC ns, to
    the kernel's clock tick) of a task, or None if it is gone."""
    path = proc / str(pid) / "stat" if tid is None else proc / str(pid) / "task" / str(tid) / "stat"
    try:
        # Bytes: a name is any bytes a program gave prctl(PR_SET_NAME), not UTF-8.
        data = path.read_bytes()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split at the last ')'.
    lpar, rpar = data.find(b"("), data.rfind(b")")
    if lpar < 0 or rpar < 0:
        return None
    rest = data[rpar + 2 :].split()
    try:
        return {
            "comm": escape_bytes(data[lpar + 1 : rpar]),
            "ppid": int(rest[1]),
            "start_ns": int(rest[19]) * (1_000_000_000 // _CLK_TCK) + _boot_to_monotonic_ns(),
        }
    except (IndexError, ValueError):
        return None


def proc_title(pid: int, comm: str, proc: Path = Path("/proc")) -> str:
    """The title a process set over its argv, in the "NAME: TITLE" form that
    PostgreSQL, nginx and sshd use ("postgres: checkpointer" -> "checkpointer");
    "" for a process that set none, or is gone."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    first = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    head, sep, title = first.partition(": ")
    if not sep or not comm or not head.endswith(comm[:15]):
        return ""
    return " ".join(title.split())


def proc_cwd(pid: int, proc: Path = Path("/proc")) -> str:
    """A process's working directory now, "" if it is gone (or not ours to read).
    Read once, at first sight: a relative path opened before the first chdir the
    trace saw resolves against it (a chdir before that sight is not seen)."""
    try:
        return os.readlink(proc / str(pid) / "cwd")
    except OSError:
        return ""


def fd_snapshot(
    pid: int, ts_ns: int, *, before_exec: bool = False, proc: Path = Path("/proc")
) -> np.ndarray:
    """SNAPSHOT records of the fds a process has open now (/proc/PID/fd), with
    O_CLOEXEC from fdinfo: the fds of `trace -p PID`, and, `before_exec`, what a
    held command will inherit (not its close-on-exec fds: iotrace's own, which the
    exec closes). Empty if it is gone."""
    from iotrace.events import FdOp
    from iotrace.fdpaths import path_records
    from iotrace.session import empty_events

    parts = []
    try:
        names = os.listdir(proc / str(pid) / "fd")
    except OSError:
        return empty_events()
    for name in sorted(names, key=lambda n: int(n) if n.isdigit() else -1):
        if not name.isdigit():
            continue
        try:
            target = os.readlink(proc / str(pid) / "fd" / name)
            info = (proc / str(pid) / "fdinfo" / name).read_text()
        except OSError:
            continue  # closed meanwhile
        flags = 0
        for line in info.splitlines():
            if line.startswith("flags:"):
                flags = int(line.split()[1], 8)
        if before_exec and flags & os.O_CLOEXEC:
            continue
        parts.append(path_records(FdOp.SNAPSHOT, pid, pid, ts_ns, int(name), target,
                                  flags_arg=flags))  # fmt: skip
    return np.concatenate(parts) if parts else empty_events()


def tgid_of(tid: int, proc: Path = Path("/proc")) -> int | None:
    try:
        for line in (proc / str(tid) / "status").read_bytes().splitlines():
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def descendants(
    pids: list[int], proc: Path = Path("/proc"), exclude: int | None = None
) -> list[int]:
    """The given pids and every process below them, as /proc shows them now;
    never `exclude` (iotrace itself, default: this process) or what is below it."""
    if exclude is None:
        exclude = os.getpid()
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        st = read_proc_stat(int(entry.name), proc=proc)
        if st:
            children.setdefault(st["ppid"], []).append(int(entry.name))
    out, todo = [], list(pids)
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen or p == exclude:
            continue
        seen.add(p)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class TaskRegistry:
    """Tasks seen so far; hands out the ones new since the last call."""

    def __init__(self) -> None:
        self.by_tid: dict[int, TaskInfo] = {}
        self.pid_of_tid: dict[int, int] = {}
        self.workload_of_pid: dict[int, str] = {}
        self._new: list[TaskInfo] = []

    def label(self, pid: int, workload: str) -> None:
        """Name the workload a process (and its future children) belongs to."""
        self.workload_of_pid[pid] = workload
        for t in self.by_tid.values():
            if t.pid == pid and not t.workload:
                t.workload = workload

    def add(self, pid: int, tid: int, comm: str = "", ts_ns: int = 0, born_ns: int = 0) -> TaskInfo:
        """Record a task. `born_ns` is the kernel's time of its fork when a record saw
        it; without one the start time comes from /proc, which only has clock-tick
        resolution (10 ms): two children forked on one pid inside a tick would share it."""
        known = self.by_tid.get(tid)
        if known is not None and known.pid == pid and (not comm or known.comm == comm):
            return known
        st = read_proc_stat(pid, tid if tid != pid else None)
        ppid = 0
        start_ns = born_ns or ts_ns
        if st is not None:
            comm = comm or st["comm"]
            start_ns = born_ns or st["start_ns"]
            ppid = st["ppid"]
        if tid != pid:
            ppid = pid
        workload = self.workload_of_pid.get(pid) or self.workload_of_pid.get(ppid, "")
        if workload:
            self.workload_of_pid.setdefault(pid, workload)
        info = TaskInfo(
            pid=pid, tid=tid, comm=comm, ppid=ppid, start_ns=start_ns, workload=workload,
            title=proc_title(pid, comm) if tid == pid else "",
            cwd=proc_cwd(pid) if tid == pid else "",
        )  # fmt: skip
        self.by_tid[tid] = info
        self.pid_of_tid[tid] = pid
        self._new.append(info)
        return info

    def observe(self, batch: np.ndarray) -> None:
        """Learn tasks from a decoded batch, and fill in the pid of OFF_CPU records
        (the sched_switch tracepoint names only the thread)."""
        if len(batch) == 0:
            return
        # Each column once into contiguous memory: a record is 104 bytes, so every
        # pass over a column of the batch itself touches all of its cache lines.
        kinds = np.ascontiguousarray(batch["kind"])
        tid_col = np.ascontiguousarray(batch["tid"])
        task_rows = np.flatnonzero(kinds == Kind.TASK)
        for i in task_rows:
            r = batch[i]
            comm = comm_from_words(int(r["key"]), int(r["user_data"]))
            pid, tid, op, ts = int(r["pid"]), int(r["tid"]), int(r["op"]), int(r["ts_ns"])
            born = 0
            old = None
            if op in (TaskOp.FORK, TaskOp.THREAD):
                # A new task on this tid: a recycled pid must not inherit the identity
                # of the process that had it before, so date it by its first return.
                self.by_tid.pop(tid, None)
                born = ts
            elif op == TaskOp.EXEC:
                # Same process, new program: keep its start time, take the new name.
                old = self.by_tid.pop(tid, None)
                born = old.start_ns if old is not None and old.pid == pid else 0
            info = self.add(pid, tid, comm, ts, born)
            if op == TaskOp.EXEC and old is not None and not info.cwd:
                info.cwd = old.cwd  # exec keeps the cwd; the process may be gone by now
        # The kernel side names the process of OFF_CPU records; a record from an
        # older program (pid 0) gets it from the tid here.
        off = np.flatnonzero(kinds == Kind.OFF_CPU)
        off = off[batch["pid"][off] == 0]
        if len(off):
            tids, inverse = np.unique(batch["tid"][off], return_inverse=True)
            pids = np.array([self._pid_for(int(t)) for t in tids.tolist()], dtype=np.uint32)
            batch["pid"][off] = pids[inverse]
        # Threads that were running before tracing began show up first in a call
        # record. A batch holds long stretches of one thread: look only where the
        # tid changes, so this costs one pass over the column, not a sort of it.
        firsts = np.flatnonzero(tid_col[1:] != tid_col[:-1]) + 1
        firsts = np.concatenate((np.zeros(1, dtype=firsts.dtype), firsts))
        seen, at = np.unique(tid_col[firsts], return_index=True)
        for t, row in zip(seen.tolist(), firsts[at].tolist(), strict=True):
            if t and t not in self.by_tid and kinds[row] != Kind.TASK:
                self.add(int(batch["pid"][row]), t)

    def _pid_for(self, tid: int) -> int:
        pid = self.pid_of_tid.get(tid)
        if pid is None:
            pid = tgid_of(tid) or tid
            self.add(pid, tid)
        return pid

    def take_new(self) -> list[TaskInfo]:
        new, self._new = self._new, []
        return new

    def all(self) -> list[TaskInfo]:
        return list(self.by_tid.values())
