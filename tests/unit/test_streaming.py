"""`report` streams a trace a batch at a time: its figures must be exactly the
ones the whole-trace pandas analysis (tests/unit/legacy_analysis.py, the code
`report` used before) computes, whatever the batch size, with requests whose
submit and reap, EAGAIN chains and multiplexer waits, and io_uring completions
and reaping calls fall in different batches. And its memory stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import legacy_analysis
import numpy as np
import pytest
from report_fixtures import MS, US, TraceBuilder, all_models, io_uring, libaio, sync_blocking

from iotrace import analysis, report, session
from iotrace.events import EAGAIN, PROBE_SCHED, SYSCALL_BY_NAME, Flag, Kind, TaskOp

# --- a random but well-formed trace ---------------------------------------------------

DATA_CALLS = ["read", "pread64", "recvfrom", "write", "sendto", "readv"]
MUX_CALLS = ["select", "poll", "epoll_wait", "ppoll"]
ACTIONS = ["data", "retry", "mux", "aio", "uring", "posix", "off", "other"]
PROFILES = [  # weights of ACTIONS: each thread leans to one model, or mixes them
    [6, 1, 0, 0, 0, 0, 2, 1],
    [1, 6, 0, 0, 0, 0, 1, 1],
    [1, 1, 6, 0, 0, 0, 1, 1],
    [1, 0, 0, 6, 0, 0, 1, 1],
    [1, 0, 0, 0, 6, 0, 1, 1],
    [0, 0, 0, 0, 0, 6, 1, 0],
    [3, 1, 1, 1, 1, 1, 1, 1],
]


def random_trace(b: TraceBuilder, seed: int) -> None:
    """Processes with several threads mixing every model: retry loops, waits that
    find several fds ready, Linux AIO reaped later (or never), io_uring requests
    completed inside or outside the program's io_uring_enter calls (from any of
    its threads), POSIX AIO, off-CPU intervals, unknown syscalls, errors, a pid
    and a tid used again by a later process, and lost records."""
    rng = np.random.default_rng(seed)
    t0 = 10**12
    lifetimes = [(1000, [1000, 1001, 1002], 0), (1100, [1100], 0), (1200, [1200, 1201], 0)]
    # pid 1000 exits and a new process gets pid 1000 again (with tid 1001 reused too).
    lifetimes.append((1000, [1000, 1001], 60 * MS))
    for pid, tids, begin in lifetimes:
        b.task(pid, pid, TaskOp.FORK, f"p{pid}", t0 + begin, parent=1)
        if rng.random() < 0.5:
            b.task(pid, pid, TaskOp.EXEC, f"x{pid}", t0 + begin + 10)
        for tid in tids:
            if tid != pid:
                b.task(pid, tid, TaskOp.THREAD, f"t{tid}", t0 + begin + 20, parent=pid)
            t = t0 + begin + 100 + int(rng.integers(0, 50 * US))
            pending_aio: list[tuple[int, int, int]] = []
            mix = PROFILES[int(rng.integers(0, len(PROFILES)))]
            for _ in range(int(rng.integers(20, 120))):
                t += int(rng.integers(0, 30 * US))
                action = rng.choice(ACTIONS, p=np.array(mix) / sum(mix))
                dur = int(rng.integers(1, 400 * US))
                off = int(rng.integers(0, dur + 1)) if rng.random() < 0.6 else 0
                runq = int(rng.integers(0, off + 1)) if off else 0
                if action in ("data", "retry"):
                    name = str(rng.choice(DATA_CALLS))
                    fd = int(rng.integers(3, 7))
                    for _ in range(int(rng.integers(1, 5)) if action == "retry" else 0):
                        t = b.syscall(
                            pid, tid, name, t, int(rng.integers(1, 5 * US)), ret=-EAGAIN, fd=fd
                        ) + int(rng.integers(0, 3 * US))
                    ret = int(
                        rng.choice([4096, 512, 0, -5, -EAGAIN], p=[0.5, 0.25, 0.1, 0.1, 0.05])
                    )
                    t = b.syscall(pid, tid, name, t, dur, ret=ret, fd=fd, off_cpu=off, runq=runq)
                elif action == "mux":
                    name = str(rng.choice(MUX_CALLS))
                    t = b.syscall(
                        pid,
                        tid,
                        name,
                        t,
                        dur,
                        ret=int(rng.integers(-1, 4)),
                        fd=-1,
                        size=8,
                        off_cpu=off,
                        runq=runq,
                    )
                    for fd in rng.choice([3, 4, 5, 6], size=int(rng.integers(0, 3)), replace=False):
                        t = b.syscall(
                            pid,
                            tid,
                            "read",
                            t + int(rng.integers(0, 3 * US)),
                            int(rng.integers(1, 9 * US)),
                            ret=100,
                            fd=int(fd),
                        )
                elif action == "aio":
                    n = int(rng.integers(1, 5))
                    sub = t
                    t = b.syscall(pid, tid, "io_submit", t, dur, ret=n, fd=-1, size=n)
                    for i in range(n):
                        pending_aio.append((sub + i + 1, int(rng.integers(0, 2)), 0x7000 + i))
                    if rng.random() < 0.7:
                        t += int(rng.integers(0, 50 * US))
                        reaped = pending_aio[: int(rng.integers(0, len(pending_aio) + 1))]
                        del pending_aio[: len(reaped)]
                        end = t + dur
                        for ts, lost_flag, key in reaped:
                            kdone = int(rng.integers(ts, end + 1)) if rng.random() < 0.8 else 0
                            b.request(
                                Kind.AIO_REQUEST,
                                pid,
                                tid,
                                ts,
                                0 if lost_flag else end,
                                kdone=kdone,
                                key=key,
                                flags=int(Flag.NOT_OBSERVED) if lost_flag else 0,
                                ret=int(rng.choice([4096, -5])),
                            )
                        t = b.syscall(
                            pid,
                            tid,
                            "io_getevents",
                            t,
                            dur,
                            ret=len(reaped),
                            fd=-1,
                            size=8,
                            off_cpu=off,
                            runq=runq,
                        )
                elif action == "uring":
                    n = int(rng.integers(0, 9))
                    enter = t
                    t = b.syscall(
                        pid,
                        tid,
                        "io_uring_enter",
                        t,
                        dur,
                        ret=n,
                        fd=7,
                        size=n,
                        off_cpu=off,
                        runq=runq,
                    )
                    for i in range(n):
                        ts = enter + int(rng.integers(0, max(dur, 1)))
                        # Completed inside this call, after it, or never.
                        kdone = int(
                            rng.choice(
                                [
                                    int(rng.integers(ts, t + 1)),
                                    t + int(rng.integers(1, 900 * US)),
                                    0,
                                ],
                                p=[0.5, 0.4, 0.1],
                            )
                        )
                        b.request(
                            Kind.URING_REQUEST,
                            pid,
                            tid,
                            ts,
                            0,
                            kdone=kdone,
                            key=i,
                            op=22,
                            flags=int(Flag.WORKER) if rng.random() < 0.3 else 0,
                            ret=int(rng.choice([4096, -11])),
                        )
                elif action == "posix":
                    b.request(Kind.POSIX_AIO_REQUEST, pid, tid, t, t + dur, key=5)
                    t = b.syscall(pid, tid, "pread64", t, dur, ret=4096, fd=5, off_cpu=off)
                elif action == "off":
                    b.off_cpu(pid, tid, t, t + dur, runq=runq)
                    t += dur
                else:
                    t = b.syscall(
                        pid, tid, str(rng.choice(["io_setup", "io_destroy"])), t, dur, ret=0, fd=-1
                    )
                    b.add(
                        kind=Kind.SYSCALL, op=99, pid=pid, tid=tid, ts_ns=t, end_ns=t + 5, ret=-38
                    )
                    t += 5
            b.task(pid, tid, TaskOp.EXIT, f"p{pid}", t + 1)
    b.lost(t0 + 5 * MS, t0 + 6 * MS, 17, PROBE_SCHED)
    b.lost(t0 + 2 * MS, t0 + 3 * MS, 3, SYSCALL_BY_NAME["read"].op)
    b.workload("mix", "sync-blocking", "read", [1000, 1200])


def legacy_doc(trace: session.Trace) -> dict[str, Any]:
    old = legacy_analysis.analyze(trace)
    return {
        "processes": old["processes"],
        "workloads": old["workloads"],
        "lost_events": old["lost_total"],
        "lost": old["lost"],
        "lost_ranges": old["lost_ranges"],
        "unmatched": old["unmatched"],
        "evicted": old["evicted"],
        "records": old["records"],
        "start_ns": old["start_ns"],
        "duration_s": old["duration_s"],
    }


def new_doc(a: analysis.Analysis) -> dict[str, Any]:
    doc = report.report_json(a)
    return {
        **{k: doc[k] for k in ("processes", "workloads", "lost_events", "lost", "lost_ranges")},
        "unmatched": doc["unmatched"],
        "evicted": doc["evicted"],
        "records": doc["trace"]["records"],
        "start_ns": doc["trace"]["start_ns"],
        "duration_s": doc["trace"]["duration_s"],
    }


def assert_same(path: Path, *batch_sizes: int, streamed: bool = True) -> dict[str, Any]:
    trace = session.load(path)
    want = legacy_doc(trace)
    # JSON both ways: a float that differs in its last bit shows up here.
    assert json.dumps(new_doc(analysis.analyze(trace))) == json.dumps(want)
    for size in batch_sizes:
        a = analysis.analyze_file(path, batch_records=size)
        # Streamed, not loaded whole after all (that fallback holds the records).
        assert (len(a.trace.events) == 0) == streamed, size
        assert json.dumps(new_doc(a)) == json.dumps(want), size
    return want


@pytest.mark.parametrize("seed", range(12))
def test_random_traces_match_the_whole_trace_analysis(tmp_path: Path, seed: int) -> None:
    b = TraceBuilder()
    random_trace(b, seed)
    path = b.write(tmp_path / "r.trace", chunk=int(np.random.default_rng(seed).integers(5, 60)))
    want = assert_same(path, 1, 7, 64, 1000, analysis.BATCH_RECORDS)
    assert len(want["processes"]) >= 3


@pytest.mark.parametrize("chunk", [0, 1, 37])
def test_every_model_matches_with_any_chunking(tmp_path: Path, chunk: int) -> None:
    b = TraceBuilder()
    all_models(b)
    t = max(r.get("end_ns", 0) for r in b.rows)
    b.lost(t + MS, t + 2 * MS, 9, PROBE_SCHED)
    path = b.write(tmp_path / "all.trace", chunk=chunk, stats={"lost": {"sched": 9}})
    want = assert_same(path, 1, 2, 3, 5, 13, 100)
    assert {p["model"] for p in want["processes"]} >= {"sync-blocking", "async-nonblocking"}


def test_io_uring_reaped_by_a_call_in_a_later_batch(tmp_path: Path) -> None:
    """A completion written before the io_uring_enter it completed in: the reap
    is only known once that call's record arrives, batches later."""
    b = TraceBuilder()
    pid, t = 950, 10**12
    b.request(Kind.URING_REQUEST, pid, pid, t + 1 * US, 0, kdone=t + 50 * US, key=1)
    b.request(Kind.URING_REQUEST, pid, pid + 1, t + 2 * US, 0, kdone=t + 120 * US, key=2)
    for i in range(5):
        b.syscall(pid, pid + 1, "write", t + i, 0, ret=1, fd=9)
    b.syscall(pid, pid, "io_uring_enter", t, 100 * US, ret=2, fd=7, size=2)
    b.syscall(pid, pid + 1, "io_uring_enter", t + 110 * US, 100 * US, ret=0, fd=7, size=0)
    arr = b.array()  # written as is: the completions first
    path = tmp_path / "u.trace"
    w = session.TraceWriter(path, {"command": "x"})
    for i in range(len(arr)):
        w.write_events(arr[i : i + 1])
    w.close()
    want = assert_same(path, 1, 2, 3)
    (p,) = want["processes"]
    assert p["requests"]["reap_inferred"] == 2
    assert p["requests"]["latency_us"]["max"] == 208.0  # reaped at the end of the second call


def test_out_of_order_records_fall_back_to_the_whole_trace(tmp_path: Path) -> None:
    """Not something iotrace writes: a thread's calls out of time order across
    batches. The streamed analysis notices and gives the whole-trace figures."""
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=4, preads=6)
    libaio(b, batches=3)
    arr = b.array()[::-1].copy()  # latest first
    path = tmp_path / "rev.trace"
    w = session.TraceWriter(path, {"command": "x"})
    w.write_events(arr)
    w.close()
    assert_same(path, 1, 3, streamed=False)
    assert_same(path, len(arr))  # one batch: nothing to fall back from


def test_depth_max_equals_the_step_function() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 50, 500):
        start = rng.integers(0, 100, size=n)
        end = start + rng.integers(0, 30, size=n)  # zero-length and shared ends too
        assert analysis._depth_max(start, end) == int(analysis.depth_series(start, end)[1].max())
    assert analysis._depth_max(np.zeros(0, np.int64), np.zeros(0, np.int64)) == 0


def test_sampled_depth_series_equals_the_full_one_sampled() -> None:
    rng = np.random.default_rng(4)
    empty = np.zeros(0, np.int64)
    assert [len(x) for x in analysis.depth_series_sampled(empty, empty, 5)] == [0, 0]
    for n, points in ((1, 5), (40, 1000), (400, 37), (3000, 500)):
        start = rng.integers(0, 2000, size=n)
        end = start + rng.integers(0, 60, size=n)
        t, d = analysis.depth_series(start, end)
        if len(t) > points:
            idx = np.linspace(0, len(t) - 1, points).astype(int)
            t, d = t[idx], d[idx]
        st, sd = analysis.depth_series_sampled(start, end, points)
        assert st.tolist() == t.tolist() and sd.tolist() == d.tolist()


def test_depth_swept_by_time_range_equals_the_whole_sweep() -> None:
    """Past a size the depth is swept one time range at a time: same maximum."""
    rng = np.random.default_rng(5)
    for n in (1, 30, 300, 3000):
        start = np.sort(rng.integers(0, 5000, size=n))
        lat = rng.integers(-5, 400, size=n)  # negative ones are left out
        cols = []
        for part in np.array_split(np.arange(n), 7):
            s_col, l_col = analysis._Column(based=True), analysis._Column()
            s_col.add(start[part])
            l_col.add(lat[part])
            cols.append((s_col, l_col))
        ok = lat >= 0
        want = analysis._depth_max(start[ok], start[ok] + lat[ok]) if ok.any() else None
        for group in (1, 2, 16, 10**9):
            assert analysis._depth_max_of(cols, group) == want, (n, group)


def test_percentiles_found_in_place_equal_numpys() -> None:
    """Past a size a 4-byte series is not copied: its order statistics are counted
    digit by digit and interpolated as np.percentile does. Same floats, bit for bit."""
    rng = np.random.default_rng(6)
    for trial in range(300):
        n = int(rng.choice([1, 2, 3, 7, 100, 1001, 5000]))
        top = int(rng.choice([3, 1000, 2**16, 2**20, 2**32 - 1]))
        values = rng.integers(0, top, size=n, endpoint=True)
        cols = []
        for part in np.array_split(values, int(rng.integers(1, 5))):
            col = analysis._Column()
            col.add(part)
            cols.append(col)
        want = analysis.percentiles_us(values.astype(np.float64))
        assert analysis._percentiles(cols, copy_max=0) == want, (trial, n, top)
        assert analysis._percentiles(cols) == want, (trial, n, top)
        p = np.percentile(values.astype(np.float64), [50, 90, 99])
        assert analysis._interpolate(cols, n).tolist() == p.tolist()


def test_narrow_columns_keep_every_value() -> None:
    values = [np.array([0, 5, 2**32 - 1]), np.array([2**32, 7]), np.array([-3]), np.arange(5)]
    values += [np.arange(10**12, 10**12 + 70_000, 7), np.array([10**12, 10**12 + 2**33])]
    for based in (False, True):
        col = analysis._Column(based=based)
        for v in values:
            col.add(v)
        assert col.array().tolist() == np.concatenate(values).tolist()
    small = analysis._Column()
    small.add(np.array([1, 2, 3]))
    assert small.array().dtype == np.uint32


def test_a_streamed_analysis_has_no_frames(tmp_path: Path) -> None:
    b = TraceBuilder()
    io_uring(b, batches=2)
    path = b.write(tmp_path / "f.trace")
    a = analysis.analyze_file(path)
    assert a.records == len(b.rows) and not len(a.trace.events)
    with pytest.raises(RuntimeError, match="streamed"):
        _ = a.frames
    assert len(analysis.analyze(session.load(path)).frames.requests) == 16


def test_html_from_a_stream_draws_what_the_whole_trace_draws(tmp_path: Path) -> None:
    """The page's figures from the streamed analysis, with a timeline cut to the
    longest segments, against the same figures drawn from whole-trace frames."""
    from iotrace import html_report

    b = TraceBuilder()
    random_trace(b, 5)
    path = b.write(tmp_path / "h.trace", chunk=50)
    trace = session.load(path)
    whole = analysis.analyze(trace, timeline=True)
    fr = whole.frames
    streamed = analysis.analyze_file(path, timeline=True, batch_records=64)
    assert streamed.timeline is not None and whole.timeline is not None
    assert streamed.timeline.total == len(fr.syscalls) + len(fr.off_cpu)
    cols = ["pid", "tid", "name", "family", "ts_ns", "end_ns", "dur_ns"]
    assert streamed.timeline.syscalls.equals(fr.syscalls[cols].reset_index(drop=True))
    off = fr.off_cpu[["pid", "tid", "ts_ns", "end_ns"]].reset_index(drop=True)
    assert streamed.timeline.off_cpu.equals(off)
    assert html_report.time_share_figure(streamed).to_json() == (
        html_report.time_share_figure(whole).to_json()
    )
    for fig in ("latency_figure", "depth_figure"):
        (a, a_note), (w, w_note) = (
            getattr(html_report, fig)(streamed),
            getattr(html_report, fig)(whole),
        )
        assert a is not None and w is not None
        assert a.to_json() == w.to_json() and a_note == w_note, fig
    # Past the segment limit: the longest ones, as pandas' nlargest picks them.
    keep = 40
    old = html_report.MAX_TIMELINE_SEGMENTS
    html_report.MAX_TIMELINE_SEGMENTS = keep
    try:
        small = analysis.analyze_file(path, timeline=True, batch_records=16)
        tl_fig, note = html_report.timeline(small)
        want_fig, want_note = html_report.timeline(whole)
        assert note == want_note and "longest" in note
        assert tl_fig.to_json() == want_fig.to_json()
    finally:
        html_report.MAX_TIMELINE_SEGMENTS = old


# --- memory -----------------------------------------------------------------------------

PEAK_PROBE = """
import sys
from iotrace.cli import main
rc = main(sys.argv[1:])
status = open("/proc/self/status").read()
print(status.split("VmHWM:")[1].split()[0], file=sys.stderr)
sys.exit(rc)
"""
"""Runs the CLI and prints its peak resident memory (KiB). VmHWM, not getrusage's
ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a
child of this test process would report the test's own (much larger) memory."""


def peak_rss_kib(*argv: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, *argv], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stderr.strip().splitlines()[-1]), proc.stdout


@pytest.fixture(scope="module")
def big_traces(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    from iotrace.tui import synthetic

    out = []
    folder = tmp_path_factory.mktemp("big")
    for seconds in (8.0, 32.0):  # ~0.43 M and ~1.7 M records (46 and 180 MB as records)
        t = synthetic.make_trace(seconds)
        # Chunks of 20 k records: a busy recording's, and a batch needs several.
        path = synthetic.write_trace(folder / f"{seconds:.0f}s.trace", t, chunk=20_000)
        out.append((path, len(t.events)))
        del t
    return out


def test_report_memory_per_record_is_small(big_traces: list[tuple[Path, int]]) -> None:
    """What a record costs `report` (the slope between two trace sizes, so the
    interpreter, its libraries and one batch in flight cancel out). The
    whole-trace analysis paid ~450 bytes per record, and merely holding the
    records is 104; the streamed one keeps a few narrow columns per call and
    request (~10-20 bytes). 64 leaves room for allocator noise (a few MB) and
    still fails for anything that holds the records."""
    (_, n_small), (_, n_big) = big_traces
    peaks = []
    for path, n in big_traces:
        peak, out = peak_rss_kib("report", "--json", str(path))
        assert json.loads(out)["trace"]["records"] == n
        peaks.append(peak * 1024)
    per_record = (peaks[1] - peaks[0]) / (n_big - n_small)
    print(f"peaks {[p >> 20 for p in peaks]} MiB, {per_record:.1f} bytes per record")
    assert per_record < 64
    assert peaks[1] < 400 * 2**20  # the whole-trace analysis: ~850 MB here
