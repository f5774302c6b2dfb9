"""Task identities from TASK records: a recycled pid is a new process."""

import os

import numpy as np
from iotrace.tracer.tasks import TaskRegistry

from iotrace.events import Kind, TaskOp
from iotrace.session import EVENT_DTYPE

# Far above pid_max, so /proc never has them and only the records speak.
PID = 4_000_000_001


def _task(
    op: int, ts_ns: int, pid: int = PID, tid: int = PID, comm: bytes = b"child"
) -> np.ndarray:
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["op"], r["ts_ns"], r["pid"], r["tid"] = Kind.TASK, op, ts_ns, pid, tid
    raw = comm.ljust(16, b"\0")
    r["key"] = int.from_bytes(raw[:8], "little")
    r["user_data"] = int.from_bytes(raw[8:], "little")
    return r


def test_two_processes_forked_on_one_pid_inside_a_clock_tick_are_two_tasks():
    # A live pid (ours), so /proc answers with one start time for both, as it does
    # when two children start on one pid inside a clock tick (10 ms).
    me = os.getpid()
    reg = TaskRegistry()
    reg.observe(_task(TaskOp.FORK, 10_000_000_000, pid=me, tid=me))
    reg.observe(_task(TaskOp.EXIT, 10_001_000_000, pid=me, tid=me))
    reg.observe(_task(TaskOp.FORK, 10_003_000_000, pid=me, tid=me))
    starts = {t.start_ns for t in reg.take_new() if t.pid == me}
    assert starts == {10_000_000_000, 10_003_000_000}


def test_exec_keeps_the_process_start_time_and_takes_the_new_name():
    reg = TaskRegistry()
    reg.observe(_task(TaskOp.FORK, 5_000_000_000, comm=b"python3"))
    reg.observe(_task(TaskOp.EXEC, 5_200_000_000, comm=b"dd"))
    new = reg.take_new()
    assert [(t.comm, t.start_ns) for t in new] == [
        ("python3", 5_000_000_000),
        ("dd", 5_000_000_000),
    ]
    assert reg.by_tid[PID].comm == "dd"


def test_a_thread_is_dated_by_its_own_start_and_belongs_to_its_process():
    reg = TaskRegistry()
    reg.observe(_task(TaskOp.FORK, 1_000))
    reg.observe(_task(TaskOp.THREAD, 2_000, tid=PID + 1))
    t = reg.by_tid[PID + 1]
    assert (t.pid, t.ppid, t.start_ns) == (PID, PID, 2_000)
