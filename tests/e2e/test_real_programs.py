"""What real programs do that the built-in workloads do not (issue 16), each
reproduced by a small C program under progs/ (or fio) and traced with the real
probes: AIO reaped from the user-space ring, epoll waits that time out between
file writes, a blocking read pool beside an epoll thread, in-kernel copies,
reads through a memory mapping, io_uring SQPOLL."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_util import compile_prog, iotrace, needs_root, of

from iotrace import analysis, events, session

pytestmark = [pytest.mark.e2e, needs_root]


def _run(tmp: Path, name: str, *argv: str, libs: tuple[str, ...] = ()) -> tuple[Any, Path]:
    exe = compile_prog(name, tmp, *libs)
    out = tmp / f"{name}.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", str(exe), *argv)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0] if proc.stdout.startswith("{") else "{}"
    return json.loads(first), out


def _process(out: Path) -> analysis.Summary:
    a = analysis.analyze_file(out)
    (p,) = [p for p in a.processes if p.label.model != "idle"]
    return p


def _direct_file(tmp: Path, mib: int = 1) -> Path:
    data = tmp / "data"
    data.write_bytes(b"d" * (mib << 20))
    return data


def test_aio_reaped_from_the_user_ring_counts_every_request(tmp_path):
    _, out = _run(tmp_path, "aio_ring", str(_direct_file(tmp_path)))
    t = session.load(out)
    aio = t.events[t.events["kind"] == events.Kind.AIO_REQUEST]
    assert len(aio) == 23
    assert (aio["flags"] & events.Flag.NOT_OBSERVED).all() and (aio["end_ns"] == 0).all()
    assert sorted(aio["user_data"].tolist()) == list(range(100, 123))
    assert sorted(aio["offset"].tolist()) == [i * 4096 for i in range(23)]
    assert t.stats["other"]["aio_reaped_in_user_space"] == 22  # the last: still in the map
    p = _process(out)
    assert (p.label.model, p.label.api) == ("async-nonblocking", "libaio")
    assert p.requests["count"] == 23 and p.requests["not_observed"] == 23
    assert p.requests["latency_us"]["p50"] is None  # never an invented time


def test_epoll_waits_that_time_out_are_idle_not_the_writes_latency(tmp_path):
    fds, out = _run(tmp_path, "idle_waits", str(tmp_path / "out"))
    t = session.load(out)
    waits = of(t, "epoll_wait", fds["epfd"])
    assert len(waits) == 67 and int((waits["ret"] == 0).sum()) == 60
    fr = analysis.frames(t)
    reqs = fr.requests[fr.requests["sync"]]
    writes = reqs[(reqs["fd"] == fds["file"]) & (reqs["size"] == 8192)]  # not the loader's
    assert len(writes) == 60
    # each write is timed by itself, not from the 10 ms wait before it
    assert (writes["start_ns"] == writes["submit_ns"]).all()
    assert not writes["waited"].any()
    reads = reqs[(reqs["fd"] == fds["pipe_r"]) & (reqs["size"] == 1)]
    assert len(reads) == 7 and reads["waited"].all()
    p = _process(out)
    assert p.label.model == "sync-blocking"
    assert p.label.breakdown["async-blocking"] > 0
    assert "60 more waits timed out" in p.label.evidence
    # a timed-out wait is idle sleep, not time waiting for I/O
    assert (p.time_share["other_sleep"] or 0) > (p.time_share["mux_wait"] or 0)


def test_blocking_read_pool_beside_an_epoll_thread_is_a_mix(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"p" * 16 * 4096)
    _, out = _run(tmp_path, "pool_reads", str(data), libs=("-lpthread",))
    p = _process(out)
    by_model: dict[str, list[analysis.Summary]] = {}
    for th in p.thread_summaries:
        by_model.setdefault(th.label.model, []).append(th)
    pool = [th for th in by_model.get("sync-blocking", []) if th.syscalls.get("read") == 53]
    assert len(pool) == 2 and all(th.label.api == "read" for th in pool)
    (main,) = by_model["async-blocking"]
    assert main.label.api == "epoll" and main.syscalls["epoll_wait"] == 41
    # the process is what its threads are, weighed by their I/O: not 100% epoll
    assert p.label.breakdown["sync-blocking"] > 0.5
    assert p.label.breakdown["async-blocking"] > 0.15


def test_in_kernel_copies_are_data_calls_with_their_bytes(tmp_path):
    fds, out = _run(tmp_path, "copies", str(tmp_path / "src"))
    t = session.load(out)
    sf = of(t, "sendfile64", fds["sock"])
    assert len(sf) == 7 and (sf["ret"] == 65536).all() and (sf["offset"] == fds["file"]).all()
    cfr = of(t, "copy_file_range", fds["copy"])
    assert len(cfr) == 5 and (cfr["ret"] == 1 << 20).all() and (cfr["size"] == 1 << 20).all()
    sp = of(t, "splice", fds["copy"])
    assert len(sp) == 3 and (sp["ret"] == 4096).all() and (sp["offset"] == fds["pipe_r"]).all()
    assert len(of(t, "tee", fds["pipe2_w"])) == 2
    vm = of(t, "vmsplice", fds["pipe_w"])
    assert len(vm) == 2 and (vm["size"] == 4096).all()
    p = _process(out)
    assert p.families["sendfile64"]["bytes"] == 7 * 65536
    assert p.families["copy_file_range"]["bytes"] == 5 << 20
    # 8 MiB written + 448 KiB sent + 5 MiB copied + splices, tees, vmsplices, reads
    assert p.requests["bytes"] >= (8 << 20) + 7 * 65536 + (5 << 20)


def test_mmap_reader_major_faults_counted_and_named(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(np.random.default_rng(1).bytes(24 << 20))
    info, out = _run(tmp_path, "mmap_reader", str(data))
    t = session.load(out)
    faults = of(t, "page_fault")
    lo, hi = info["addr"], info["addr"] + info["len"]
    mine = faults[(faults["offset"] >= lo) & (faults["offset"] < hi)]
    assert len(mine) == 23  # MADV_RANDOM: one major fault per page touched
    assert sorted(((mine["offset"] - lo) >> 20).tolist()) == list(range(23))
    assert (mine["end_ns"] > mine["ts_ns"]).all()
    assert "major faults" in t.meta["probes"]["page_faults"]
    p = _process(out)
    assert (p.label.model, p.label.api) == ("memory-mapped", "mmap")
    assert p.requests["major_faults"] >= 23
    assert p.requests["mb_per_s"] is None


def test_no_rate_from_a_handful_of_requests(tmp_path):
    _, out = _run(tmp_path, "aio_ring", str(_direct_file(tmp_path)))
    p = _process(out)
    assert p.requests["completed"] == 0 and p.requests["iops"] is None


def test_io_uring_sqpoll_is_said(tmp_path):
    if shutil.which("fio") is None:
        pytest.fail("fio is not installed: ./setup.sh installs it")
    out = tmp_path / "sq.trace"
    # Laid out beforehand: fio's own layout writes would otherwise be the
    # process with the most requests on a machine slow enough to starve the job.
    (tmp_path / "sq.dat").write_bytes(os.urandom(8 << 20))
    proc = iotrace(
        "trace", "--no-tui", "-o", str(out), "--", "fio", "--name=sq",
        f"--filename={tmp_path / 'sq.dat'}", "--size=8M", "--rw=randread", "--bs=4k",
        "--direct=1", "--ioengine=io_uring", "--sqthread_poll=1", "--iodepth=8",
        "--runtime=1", "--time_based",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    a = analysis.analyze_file(out)
    job = max(a.processes, key=lambda p: p.requests["count"])
    assert job.label.api == "io_uring" and job.requests["sqpoll"]
    assert "SQ thread" in proc.stderr
