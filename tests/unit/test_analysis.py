"""Per-request figures from synthetic traces whose every time is known exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import (
    MS,
    US,
    TraceBuilder,
    io_uring,
    libaio,
    multiplexed,
    posix_aio,
    sync_blocking,
    sync_nonblocking,
    write_all,
)

from iotrace import analysis, session
from iotrace.events import PROBE_SCHED, SYSCALL_BY_NAME


def _one(tmp_path: Path, build, **kw) -> analysis.Summary:
    b = TraceBuilder()
    build(b, **kw)
    a = analysis.analyze(session.load(b.write(tmp_path / "t.trace")))
    busy = [p for p in a.processes if p.label.model != "idle"]
    assert len(busy) == 1
    return busy[0]


def test_sync_blocking_counts_every_call_as_a_request(tmp_path: Path) -> None:
    s = _one(tmp_path, sync_blocking)
    assert s.syscalls == {"read": 23, "pread64": 29}
    assert s.requests["count"] == 52
    assert s.requests["bytes"] == 52 * 4096
    assert s.families["read"]["latency_us"]["p50"] == 20_000.0
    assert s.families["pread64"]["latency_us"]["max"] == 48.0
    assert s.requests["latency_us"]["max"] == 20_000.0
    assert s.requests["syscalls_per_request"] == 1.0
    # Asleep in the reads almost all the time; never in a multiplexer.
    assert (s.time_share["blocked_io"] or 0) > 0.95
    assert s.time_share["mux_wait"] == 0.0


def test_retry_loop_request_spans_its_eagain_attempts(tmp_path: Path) -> None:
    s = _one(tmp_path, sync_nonblocking, requests=17, tries=5)
    assert s.requests["count"] == 17
    assert s.eagain == {"read": 85}
    assert s.requests["eagain_per_request"] == 5.0
    assert s.requests["syscalls_per_request"] == 6.0
    # 5 x (1 us call + 1 us gap) + the 3 us read that returned data.
    assert s.requests["latency_us"]["p50"] == 13.0
    assert s.time_share["blocked_io"] == 0.0


@pytest.mark.parametrize("mux", ["select", "poll", "epoll_wait"])
def test_multiplexed_request_starts_at_the_wait(tmp_path: Path, mux: str) -> None:
    s = _one(tmp_path, lambda b: multiplexed(b, mux, requests=19))
    assert s.requests["count"] == 19
    assert s.syscalls == {mux: 19, "read": 19}
    # From the start of the wait that found the fd ready: 10 ms + 1 us gap + 4 us read.
    lat = s.requests["latency_us"]
    assert lat["p50"] == lat["max"] == 10_005.0
    assert (s.time_share["mux_wait"] or 0) > 0.95
    assert s.batch["ready_per_mux_call"] == {"calls": 19, "mean": 1.0, "max": 1}


def test_libaio_submit_to_reap_batches_and_depth(tmp_path: Path) -> None:
    s = _one(tmp_path, libaio, batches=7, depth=4)
    r = s.requests
    assert r["count"] == 28 and r["completed"] == 28 and r["not_observed"] == 0
    assert s.batch["iocbs_per_io_submit"] == {"calls": 7, "mean": 4.0, "max": 4}
    assert s.batch["events_per_io_getevents"]["mean"] == 4.0
    assert s.in_flight["max"] == 4
    assert r["syscalls_per_request"] == 0.5
    # Submitted at +2..+5 us, reaped at +210 us; kernel completion at +150 us.
    assert r["latency_us"]["max"] == 208.0 and r["latency_us"]["p50"] == 206.5
    assert r["kernel_latency_us"]["max"] == 148.0


def test_io_uring_to_kernel_completion_with_workers_and_unobserved(tmp_path: Path) -> None:
    s = _one(tmp_path, io_uring, batches=5, depth=8, not_observed=3)
    r = s.requests
    assert r["count"] == 40
    assert r["not_observed"] == 3 and r["completed"] == 37
    assert r["to_kernel_workers"] == 20
    # Reaped by the end of the io_uring_enter (300 us) in which the kernel completed them.
    assert r["reap_inferred"] == 37
    assert r["latency_us"]["max"] == 299.0
    assert r["kernel_latency_us"]["max"] == 105.3
    assert s.batch["sqes_per_io_uring_enter"] == {"calls": 5, "mean": 8.0, "max": 8}
    assert s.in_flight["max"] == 8


def test_posix_aio_uses_uprobe_requests_when_present(tmp_path: Path) -> None:
    s = _one(tmp_path, posix_aio, requests=13, uprobes=True)
    assert s.label.api == "posix-aio"
    assert s.requests["count"] == 13
    assert s.requests["latency_us"]["p50"] == 57.0
    assert s.threads == 2


def test_threads_are_summarised_inside_their_process(tmp_path: Path) -> None:
    s = _one(tmp_path, posix_aio, requests=13)
    assert [t.tid for t in s.thread_summaries] == [600, 601]
    helper = s.thread_summaries[1]
    assert helper.syscalls == {"pread64": 13}


def test_time_shares_never_exceed_the_whole(tmp_path: Path) -> None:
    a = analysis.analyze(session.load(write_all(tmp_path)))
    for p in a.processes:
        total = sum(v for v in p.time_share.values() if v is not None)
        assert total == pytest.approx(1.0, abs=0.01), (p.comm, p.time_share)


def test_lost_records_and_counters_are_reported(tmp_path: Path) -> None:
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=3, preads=0)
    t = b.rows[-1]["ts_ns"]
    b.lost(t + 1 * MS, t + 2 * MS, 7, SYSCALL_BY_NAME["read"].op)
    b.lost(t + 5 * MS, t + 6 * MS, 4, PROBE_SCHED)
    stats = {"lost": {"read": 7, "sched": 4}, "unmatched": {"read": 2}, "evicted": {}}
    a = analysis.analyze(session.load(b.write(tmp_path / "l.trace", stats=stats)))
    assert a.lost_total == 11
    assert a.lost == {"read": 7, "sched": 4}
    assert a.unmatched == {"read": 2}
    assert [r["count"] for r in a.lost_ranges] == [7, 4]
    assert a.lost_ranges[0]["probe"] == "read"


def test_percentiles_and_depth_helpers() -> None:
    import numpy as np

    p = analysis.percentiles_us(np.arange(1, 101) * 1000.0)
    assert p == {"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0}
    assert analysis.percentiles_us([]) == {"p50": None, "p90": None, "p99": None, "max": None}
    # Back-to-back requests do not overlap; nested ones do.
    start = np.array([0, 10, 10, 12])
    end = np.array([10, 20, 15, 13])
    t, d = analysis.depth_series(start, end)
    assert dict(zip(t.tolist(), d.tolist(), strict=True)) == {
        0: 1,
        10: 2,
        12: 3,
        13: 2,
        15: 1,
        20: 0,
    }
    assert analysis.depth_stats(start, end, 20)["max"] == 3


def test_exec_renames_the_process(tmp_path: Path) -> None:
    from iotrace.events import TaskOp

    b = TraceBuilder()
    b.task(700, 700, TaskOp.FORK, "python3", 10)
    b.task(700, 700, TaskOp.EXEC, "dd", 20)
    b.syscall(700, 700, "read", 100, 5 * US, ret=512, fd=0)
    b.syscall(700, 700, "write", 200, 5 * US, ret=512, fd=1)
    a = analysis.analyze(session.load(b.write(tmp_path / "dd.trace")))
    assert a.processes[0].comm == "dd"


def test_reads_after_one_wait_share_its_start_and_trailing_eagain_is_ignored(
    tmp_path: Path,
) -> None:
    """Edge-triggered epoll: one wait reports two fds; each is read until EAGAIN."""
    b = TraceBuilder()
    pid, t = 900, 10**12
    for _ in range(3):
        t = b.syscall(pid, pid, "epoll_wait", t, 5 * MS, ret=2, fd=9, off_cpu=5 * MS - 1000)
        for fd in (3, 4):
            t = b.syscall(pid, pid, "read", t, 2 * US, ret=100, fd=fd)
            t = b.syscall(pid, pid, "read", t, 1 * US, ret=-11, fd=fd)
    trace = session.load(b.write(tmp_path / "et.trace"))
    s = analysis.analyze(trace).processes[0]
    assert s.label.model == "async-blocking"
    assert s.requests["count"] == 6
    reqs = analysis.frames(trace).requests
    lat = {int(str(fd)): set(g.tolist()) for fd, g in reqs.groupby("fd")["latency_ns"]}
    # Both measured from the wait's start; the EAGAIN that ended the previous round
    # does not stretch the next request back to it.
    assert lat == {3: {5 * MS + 2 * US}, 4: {5 * MS + 5 * US}}


def test_io_uring_completion_posted_in_user_space_is_not_pushed_to_the_next_enter(
    tmp_path: Path,
) -> None:
    """Task work posts CQEs on the way out of io_uring_enter, after its exit
    tracepoint: those are reaped right away, not at the next enter's end."""
    from iotrace.events import Kind

    b = TraceBuilder()
    pid, t = 950, 10**12
    b.syscall(pid, pid, "io_uring_enter", t, 100 * US, ret=2, fd=7, size=2)
    b.request(Kind.URING_REQUEST, pid, pid, t + 1 * US, 0, kdone=t + 50 * US, key=1)
    b.request(Kind.URING_REQUEST, pid, pid, t + 2 * US, 0, kdone=t + 120 * US, key=2)
    b.syscall(pid, pid, "io_uring_enter", t + 1 * MS, 100 * US, ret=0, fd=7, size=0)
    reqs = analysis.frames(session.load(b.write(tmp_path / "u.trace"))).requests
    reqs = reqs.sort_values("key")
    assert reqs["reap_ns"].tolist() == [t + 100 * US, t + 120 * US]
    assert reqs["latency_ns"].tolist() == [99 * US, 118 * US]
