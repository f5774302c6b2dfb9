"""fd -> path: the resolver follows fd tables record by record (iotrace.fdpaths)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from iotrace import events, export, fdpaths, session
from iotrace.events import FdOp, Kind, TaskOp
from iotrace.fdpaths import FdTables, path_records
from iotrace.session import EVENT_DTYPE, TaskInfo

PID = 4242
READ = events.SYSCALL_BY_NAME["read"].op


def fd_rec(op: FdOp, ts: int, fd: int, ret: int = 0, size: int = 0, offset: int = 0, pid=PID):
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["op"], r["ts_ns"], r["fd"], r["ret"] = Kind.FD, op, ts, fd, ret
    r["size"], r["offset"], r["pid"], r["tid"] = size, offset, pid, pid
    return r


def opened(ts: int, fd: int, path: str, dirfd: int = fdpaths.AT_FDCWD, pid=PID, flags=0):
    """What the kernel side emits for an open: PATH records, then the OPEN."""
    rows = path_records(FdOp.OPEN, pid, pid, ts, fd, path, flags_arg=flags)
    rows[-1]["ret"] = dirfd
    return rows


def read(ts: int, fd: int, size: int = 1, pid=PID):
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["op"], r["ts_ns"], r["end_ns"] = Kind.SYSCALL, READ, ts, ts + 500
    r["fd"], r["size"], r["ret"], r["pid"], r["tid"] = fd, size, size, pid, pid
    return r


def task(op: TaskOp, ts: int, pid: int):
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["op"], r["ts_ns"], r["pid"], r["tid"], r["fd"] = Kind.TASK, op, ts, pid, pid, -1
    return r


def paths_of_reads(ev: np.ndarray, tasks=()) -> list[tuple[int, str | None]]:
    t = FdTables(tasks)
    got = t.paths(ev)
    return [(int(ev["size"][i]), got[i]) for i in np.flatnonzero(ev["kind"] == Kind.SYSCALL)]


def test_an_fd_closed_and_reused_names_the_new_file():
    ev = np.concatenate(
        [
            opened(10, 3, "/data/a"),
            read(20, 3, 1),
            fd_rec(FdOp.CLOSE, 30, 3),
            opened(40, 3, "/data/b"),
            read(50, 3, 2),
        ]
    )
    assert paths_of_reads(ev) == [(1, "/data/a"), (2, "/data/b")]


def test_dups_share_the_path_and_outlive_the_original():
    ev = np.concatenate(
        [
            opened(10, 3, "/data/a"),
            fd_rec(FdOp.DUP, 20, 4, ret=3),
            fd_rec(FdOp.DUP, 21, 40, ret=3),
            fd_rec(FdOp.CLOSE, 30, 3),
            read(40, 4, 1),
            read(41, 40, 2),
            read(42, 3, 3),
        ]
    )
    assert paths_of_reads(ev) == [(1, "/data/a"), (2, "/data/a"), (3, None)]


def test_unknown_fds_are_none_and_counted_never_guessed():
    t = FdTables()
    ev = np.concatenate([read(10, 7), read(11, 8), opened(12, 9, "/x"), read(13, 9)])
    assert t.paths(ev)[:2] == [None, None]
    assert t.unknown_calls == 2


def test_relative_paths_resolve_against_cwd_chdir_and_dirfd():
    chdir = path_records(FdOp.CHDIR, PID, PID, 15, -1, "sub")
    ev = np.concatenate(
        [
            opened(10, 3, "a"),  # against the cwd at first sight
            chdir,
            opened(20, 4, "b/../c"),  # after chdir("sub")
            opened(30, 5, "/srv"),
            opened(40, 6, "d", dirfd=5),  # openat(dirfd, "d")
            read(50, 3, 1),
            read(51, 4, 2),
            read(52, 6, 3),
        ]
    )
    tasks = [TaskInfo(pid=PID, tid=PID, comm="t", cwd="/home/u")]
    assert paths_of_reads(ev, tasks) == [(1, "/home/u/a"), (2, "/home/u/sub/c"), (3, "/srv/d")]


def test_pipes_sockets_and_anonymous_fds_are_named():
    ev = np.concatenate(
        [
            fd_rec(FdOp.PIPE, 10, 3, ret=4),
            fd_rec(FdOp.SOCKETPAIR, 11, 5, ret=6, offset=1 | 1 << 32),
            fd_rec(FdOp.SOCKET, 12, 7, ret=2, offset=1),
            fd_rec(FdOp.ACCEPT, 13, 8, ret=7),
            fd_rec(FdOp.ANON, 14, 9, offset=1),
            read(20, 3, 1),
            read(21, 4, 2),
            read(22, 6, 3),
            read(23, 7, 4),
            read(24, 8, 5),
            read(25, 9, 6),
        ]
    )
    assert paths_of_reads(ev) == [
        (1, "pipe#1"),
        (2, "pipe#1"),
        (3, "socketpair#2 AF_UNIX/stream"),
        (4, "socket#3 AF_INET/stream"),
        (5, "socket#4 accepted on socket#3 AF_INET/stream"),
        (6, "anon_inode:[eventfd]"),
    ]


def test_a_fork_copies_the_table_and_an_exec_drops_close_on_exec_fds():
    child = PID + 1
    ev = np.concatenate(
        [
            opened(10, 3, "/kept"),
            opened(11, 4, "/cloexec", flags=fdpaths.O_CLOEXEC),
            task(TaskOp.FORK, 20, child),
            read(30, 3, 1, pid=child),
            task(TaskOp.EXEC, 40, child),
            read(50, 3, 2, pid=child),
            read(51, 4, 3, pid=child),
            read(52, 4, 4),  # the parent still has it
        ]
    )
    tasks = [TaskInfo(pid=child, tid=child, comm="c", ppid=PID)]
    assert paths_of_reads(ev, tasks) == [(1, "/kept"), (2, "/kept"), (3, None), (4, "/cloexec")]


def test_a_snapshot_path_is_taken_as_proc_shows_it():
    snap = path_records(FdOp.SNAPSHOT, PID, PID, 5, 0, "pipe:[1234]")
    ev = np.concatenate([snap, read(10, 0)])
    assert paths_of_reads(ev, [TaskInfo(pid=PID, tid=PID, comm="t", cwd="/x")]) == [
        (1, "pipe:[1234]")
    ]


def test_long_paths_span_path_records_and_a_lost_piece_gives_a_question_mark():
    long = "/" + "d" * 200
    ev = np.concatenate([opened(10, 3, long), read(20, 3)])
    assert paths_of_reads(ev) == [(1, long)]
    lost = opened(10, 3, long)
    lost = np.delete(lost, 1)  # its second PATH record never reached the ring
    t = FdTables()
    assert t.paths(np.concatenate([lost, read(20, 3)]))[-1] == "?"
    assert t.incomplete_paths == 1


def test_a_call_in_flight_when_its_fd_is_reopened_keeps_the_old_path():
    """Records come in drain order (a call at its exit), the tables change in time
    order: a read that began before the close sees the file it was made on."""
    ev = np.concatenate(
        [opened(10, 3, "/a"), fd_rec(FdOp.CLOSE, 30, 3), opened(31, 3, "/b"), read(20, 3)]
    )
    assert paths_of_reads(ev) == [(1, "/a")]


def _trace_file(tmp_path, ev: np.ndarray, tasks: list[TaskInfo]):
    path = tmp_path / "f.trace"
    with session.TraceWriter(path, {"tool": "iotrace"}) as w:
        w.write_tasks(tasks)
        w.write_events(ev)
    return path


def test_report_file_table_and_export_path_column(tmp_path):
    ev = np.concatenate(
        [
            opened(10, 3, "/data/a"),
            read(20, 3, 100),
            read(30, 3, 300),
            fd_rec(FdOp.CLOSE, 40, 3),
            opened(50, 3, "/data/b"),
            read(60, 3, 7),
            read(70, 9, 1),
        ]
    )
    path = _trace_file(tmp_path, ev, [TaskInfo(pid=PID, tid=PID, comm="t")])
    ft = fdpaths.file_table(path)
    assert {p: (f.calls, f.bytes) for p, f in ft.files.items()} == {
        "/data/a": (2, 400),
        "/data/b": (1, 7),
    }
    assert ft.unknown_calls == 1
    text = "\n".join(fdpaths.render_file_table(ft))
    assert "/data/a" in text and "1 calls on fds not seen opened" in text

    out = tmp_path / "f.parquet"
    export.export(path, "parquet", out)
    table = pq.read_table(out)
    assert str(table.schema.field("path").type).startswith("dictionary")
    rows = table.to_pylist()
    reads = [(r["size"], r["path"]) for r in rows if r["name"] == "read"]
    assert reads == [(100, "/data/a"), (300, "/data/a"), (7, "/data/b"), (1, None)]
    # the opens are rows with their path; the PATH pieces are not
    assert [(r["name"], r["path"]) for r in rows if r["kind"] == "fd"] == [
        ("open", "/data/a"),
        ("close", None),
        ("open", "/data/b"),
    ]
