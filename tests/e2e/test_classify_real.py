"""The classifier, the report and the exports on REAL traces (root, real probes):
third-party programs that use each model (fio's psync, libaio, io_uring and
posixaio engines; dd) and every built-in workload, whose own latency figures the
report must match within 10%."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from e2e_util import iotrace, needs_root
from iotrace.workloads import registry

from iotrace import analysis, session

pytestmark = [pytest.mark.e2e, needs_root]

FIO_EXPECTED = {
    "psync": ("sync-blocking", "pread64"),
    "libaio": ("async-nonblocking", "libaio"),
    "io_uring": ("async-nonblocking", "io_uring"),
    "posixaio": ("async-nonblocking", "posix-aio"),
}


def _trace(out: Path, *argv: str, duration: str = "60") -> session.Trace:
    proc = iotrace("trace", "--no-tui", "-d", duration, "-o", str(out), "--", *argv)
    assert proc.returncode == 0, proc.stderr
    return session.load(out)


def _busiest(a: analysis.Analysis) -> analysis.Summary:
    """The process that made the requests (fio's job process, not its parent)."""
    return max(a.processes, key=lambda p: p.requests["count"])


def _io_uring_disabled() -> str:
    try:
        value = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        return ""
    return "" if value == "0" else f"kernel.io_uring_disabled={value}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(tmp_path_factory.mktemp("fio"))
    if shutil.which("fio") is None:
        pytest.fail("fio is not installed: ./setup.sh installs it")
    # Lay the file out untraced, so the traced fio parent does not write 16 MiB.
    subprocess.run(
        ["fio", "--name=layout", f"--filename={d / 'fio.dat'}", "--size=16M", "--create_only=1"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return d


@pytest.fixture(scope="module")
def fio_traces(data_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for engine in FIO_EXPECTED:
        if engine == "io_uring" and _io_uring_disabled():
            continue
        depth = "1" if engine == "psync" else "8"
        path = data_dir / f"fio-{engine}.trace"
        _trace(
            path, "fio", "--name=t", f"--filename={data_dir / 'fio.dat'}", "--size=16M",
            "--bs=4k", "--rw=randread", "--direct=1", f"--ioengine={engine}",
            f"--iodepth={depth}", "--runtime=1", "--time_based", "--output-format=json",
            f"--output={data_dir / f'fio-{engine}.json'}",
        )  # fmt: skip
        out[engine] = path
    return out


@pytest.mark.parametrize("engine", sorted(FIO_EXPECTED))
def test_fio_engines_are_classified(fio_traces: dict[str, Path], engine: str) -> None:
    if engine not in fio_traces:
        pytest.skip(f"io_uring unavailable: {_io_uring_disabled()}")
    a = analysis.analyze(session.load(fio_traces[engine]))
    job = _busiest(a)
    assert (job.label.model, job.label.api) == FIO_EXPECTED[engine], job.label
    assert job.comm == "fio"
    assert job.requests["count"] > 500
    if engine in ("libaio", "io_uring"):
        assert job.in_flight["max"] > 1  # depth 8: requests overlap
        assert job.requests["not_observed"] <= 8  # only those in flight at the end


@pytest.mark.parametrize("engine", ["psync", "libaio", "io_uring"])
def test_fio_latency_matches_fios_own(
    fio_traces: dict[str, Path], data_dir: Path, engine: str
) -> None:
    """fio's clat runs from submit to reap, like iotrace's request latency."""
    if engine not in fio_traces:
        pytest.skip(f"io_uring unavailable: {_io_uring_disabled()}")
    a = analysis.analyze(session.load(fio_traces[engine]))
    job = _busiest(a)
    fio = json.loads((data_dir / f"fio-{engine}.json").read_text())
    read = fio["jobs"][0]["read"]
    fio_ios = read["total_ios"]
    # fio counts the I/Os of its timed run; the trace also holds the ramp-down ones.
    assert job.requests["completed"] >= fio_ios
    assert job.requests["completed"] <= fio_ios * 1.05 + 16
    fio_p50 = read["clat_ns"]["percentile"]["50.000000"] / 1000
    ours = job.requests["latency_us"]["p50"]
    # fio stamps a completion when it processes it, after the reaping call returns;
    # that user-space time per reap is outside the kernel's view.
    slack = 5.0 if engine == "psync" else _user_loop_us(a, job.pid, {job.pid})
    if engine == "io_uring":
        # Completions are reaped from shared memory with no syscall, so iotrace's
        # reap time is a lower bound (README: "What a request is"): it may only
        # come out shorter than fio's own clock, never longer.
        assert 0 < ours <= 1.10 * fio_p50 + slack, (ours, fio_p50, slack)
        return
    assert abs(ours - fio_p50) <= 0.10 * fio_p50 + slack, (ours, fio_p50, slack)


def test_dd_is_sync_blocking_with_exact_counts(tmp_path: Path) -> None:
    out_file = tmp_path / "dd.out"
    t = _trace(
        tmp_path / "dd.trace",
        "dd",
        "if=/dev/zero",
        f"of={out_file}",
        "bs=4k",
        "count=23",
        "status=none",
    )
    a = analysis.analyze(t)
    (dd,) = [p for p in a.processes if p.comm == "dd"]
    assert (dd.label.model, dd.label.api) in {("sync-blocking", "read"), ("sync-blocking", "write")}
    fr = a.frames
    mine = fr.syscalls[fr.syscalls["pid"] == dd.pid]
    zero_reads = mine[(mine["name"] == "read") & (mine["fd"] == 0) & (mine["ret"] == 4096)]
    writes = mine[(mine["name"] == "write") & (mine["fd"] == 1) & (mine["ret"] == 4096)]
    assert len(zero_reads) == 23 and len(writes) == 23


def test_real_round_trip_report_and_parquet_agree(
    fio_traces: dict[str, Path], tmp_path: Path
) -> None:
    path = fio_traces["libaio"]
    proc = iotrace("report", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "iotrace.report/1"
    out = tmp_path / "x.parquet"
    proc = iotrace("export", str(path), "--format", "parquet", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    df = pq.read_table(out).to_pandas()
    job = max(doc["processes"], key=lambda p: p["requests"]["count"])
    calls = df[(df["kind"] == "syscall") & (df["pid"] == job["pid"])]
    assert calls.groupby("name").size().to_dict() == job["syscalls"]
    aio = df[(df["kind"] == "aio_request") & (df["pid"] == job["pid"])]
    done = aio[aio["completion_observed"]]
    assert len(aio) == job["requests"]["count"]
    lat_us = ((done["end_ns"] - done["ts_ns"]) / 1000).to_numpy()
    assert np.percentile(lat_us, 99) == pytest.approx(
        job["requests"]["latency_us"]["p99"], abs=0.001
    )


def test_real_perfetto_export_nests_and_pairs(fio_traces: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    proc = iotrace(
        "export",
        str(fio_traces["io_uring" if "io_uring" in fio_traces else "libaio"]),
        "--format",
        "chrome-json",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    evs = json.loads(out.read_text())["traceEvents"]
    by_track: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for e in evs:
        if e["ph"] == "X":
            ts = round(e["ts"] * 1000)
            by_track.setdefault((e["pid"], e["tid"]), []).append((ts, ts + round(e["dur"] * 1000)))
    for slices in by_track.values():
        stack: list[tuple[int, int]] = []
        for s in sorted(slices, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= s[0] and not (stack[-1][0] == stack[-1][1] == s[0]):
                stack.pop()
            if stack:
                assert s[1] <= stack[-1][1]
            stack.append(s)
    begins = sum(1 for e in evs if e["ph"] == "b")
    ends = sum(1 for e in evs if e["ph"] == "e")
    assert begins == ends > 500
    assert any(e["ph"] == "C" for e in evs)


def test_real_perfetto_protobuf_export_reads_back(
    fio_traces: dict[str, Path], tmp_path: Path
) -> None:
    """The protobuf export of real fio libaio, read back with the test decoder: one
    slice per call and per request, each request's flow ending on the io_getevents
    that reaped it, the in-flight counter within fio's depth of 8."""
    import sys
    from collections import Counter

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
    from perfetto_decode import decode

    trace = fio_traces["libaio"]
    out = tmp_path / "x.pftrace"
    proc = iotrace("export", str(trace), "--format", "perfetto", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    d = decode(out.read_bytes())
    slices = d.slices()
    ev = session.load(trace).events
    lanes = {u for u, t in d.tracks.items() if t.get("name") == "libaio requests"}
    reqs = [s for s in slices if s.track in lanes and s.depth == 0]
    assert len(reqs) == int((ev["kind"] == 2).sum()) > 500
    calls = Counter(s.name for s in slices if s.depth == 0 and s.track not in lanes)
    submits = ev[(ev["kind"] == 1) & (ev["op"] == 31)]  # io_submit
    assert calls["io_submit"] == len(submits)
    reapers = {f: s for s in slices for f in s.ends_flows}
    flows = [r.flows[0] for r in reqs if r.flows]
    assert len(flows) >= len(reqs) - 8  # all but those in flight at the end
    assert all(reapers[f].name in ("io_getevents", "io_pgetevents") for f in flows)
    (counter,) = [u for u, t in d.tracks.items() if t.get("name") == "libaio in flight"]
    depths = [v for _, v in d.counter_values()[counter]]
    assert 2 <= max(depths) <= 8 and min(depths) >= 0


# --- built-in workloads -------------------------------------------------------------

# Options that bound each workload to a second or two and keep the producers quick.
WORKLOAD_ARGS = {
    "sync-blocking": [
        "--pipe-reads",
        "23",
        "--socket-reads",
        "19",
        "--file-reads",
        "997",
        "--delay",
        "10ms",
    ],
    # A short back-off instead of a spin: three spinning threads on two cores starve the
    # producers and the workload's own clock alike.
    "sync-nonblocking": ["--runtime", "1s", "--delay", "5ms", "--backoff", "100us"],
    "select": ["--runtime", "1s", "--delay", "5ms"],
    "poll": ["--runtime", "1s", "--delay", "5ms"],
    "epoll": ["--runtime", "1s", "--delay", "5ms"],
    "libaio": ["--runtime", "1s", "--filesize", "64m"],
    "io_uring": ["--runtime", "1s", "--filesize", "64m"],
    "io_uring-buffered": ["--runtime", "1s", "--filesize", "64m"],
    "io_uring-socket": ["--runtime", "1s", "--delay", "5ms"],
    "posix-aio": ["--runtime", "1s", "--filesize", "64m"],
}


@pytest.mark.parametrize("name", registry.names())
def test_builtin_workload_is_classified_and_latency_agrees(name: str, tmp_path: Path) -> None:
    spec = registry.get(name)
    if spec.model != "sync-blocking" and "io_uring" in name and _io_uring_disabled():
        pytest.skip(f"io_uring unavailable: {_io_uring_disabled()}")
    out = tmp_path / f"{name}.trace"
    proc = iotrace(
        "run",
        name,
        "--no-tui",
        "-d",
        "60",
        "-o",
        str(out),
        "--",
        *WORKLOAD_ARGS.get(name, ["--runtime", "1s"]),
    )
    assert proc.returncode == 0, proc.stderr
    t = session.load(out)
    assert t.footer is not None, t.damage
    result = t.footer["results"][name]
    assert "error" not in result, result
    a = analysis.analyze(t)
    (main,) = [p for p in a.processes if p.pid == result["pid"]]
    assert main.label.model == spec.model, (main.label, main.thread_summaries)
    assert main.expected_model == spec.model

    # The report's request latency agrees with the workload's own clock, role by role
    # (a role is one kind of fd: pipe, socket or file; the process also reads its Python
    # modules and writes its data file, which are requests too but not the workload's).
    reqs = a.frames.requests
    reqs = reqs[(reqs["pid"] == main.pid) & reqs["observed"]]
    is_async = main.label.api in ("libaio", "io_uring", "posix-aio")
    if main.label.api == "posix-aio" and not (~reqs["sync"]).any():
        pytest.skip(
            "POSIX AIO seen only as helper threads (no aio_read uprobe data): "
            "the helper's pread64 is not the request's submit-to-return latency"
        )
    for role, fig in result["roles"].items():
        mine = reqs[reqs["fd"].isin(fig["fds"]) & (reqs["sync"] != is_async)]
        assert len(mine) >= fig["ops"] * 0.95, (role, len(mine), fig["ops"])
        ours = float(np.percentile(mine["latency_ns"].to_numpy(dtype="float64"), 50)) / 1000
        own = fig["lat_us"]["p50"]
        slack = _user_loop_us(a, main.pid, set(mine["tid"])) if is_async else 30.0
        if main.label.api == "io_uring":
            # reap time inferred from shared memory: a lower bound (see above)
            assert 0 < ours <= 1.10 * own + slack, (role, ours, own, slack)
            continue
        assert abs(ours - own) <= 0.10 * own + slack, (role, ours, own, slack)


def _user_loop_us(a: analysis.Analysis, pid: int, tids: set[int]) -> float:
    """What a program's own clock adds to an async request beyond the kernel's view:
    it stamps a request before it builds the submission and after it processes the
    completion, in user space between the loop's syscalls. Per loop iteration (one
    reap call each), that is the user time between consecutive traced calls."""
    sc = a.frames.syscalls
    calls = sc[(sc["pid"] == pid) & sc["tid"].isin(tids)].sort_values("ts_ns")
    calls = calls[calls["name"].isin(["io_submit", "io_getevents", "io_uring_enter"])]
    gaps = calls["ts_ns"].to_numpy()[1:] - calls["end_ns"].to_numpy()[:-1]
    reaps = int(calls["name"].isin(["io_getevents", "io_uring_enter"]).sum())
    return float(gaps[gaps > 0].sum()) / max(reaps, 1) / 1000


def test_html_report_renders_in_headless_chromium(
    fio_traces: dict[str, Path], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: ./setup.sh installs it (apt: chromium)")
    page = tmp_path / "r.html"
    proc = iotrace("report", str(fio_traces["libaio"]), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    shot = tmp_path / "r.png"
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,3000", f"--screenshot={shot}", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", page.as_uri()],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    assert shot.stat().st_size > 50_000  # a blank page is a few KiB
