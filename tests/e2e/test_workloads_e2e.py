"""Built-in workloads end to end: each runs to completion untraced with its data
verified; a corrupted data file fails loudly; and under `iotrace run` the trace
shows each model's syscall pattern with the exact counts the workload promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_util import iotrace, needs_root, syscalls
from iotrace.workloads import registry

from iotrace import events, session
from iotrace.events import Kind

pytestmark = [pytest.mark.e2e]

EAGAIN = 11


def _io_uring_disabled() -> str:
    try:
        level = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        return ""
    return f"kernel.io_uring_disabled={level}" if level == "2" else ""


def _skip_if_unavailable(name: str) -> None:
    if name.startswith("io_uring") and _io_uring_disabled():
        pytest.skip(f"io_uring unavailable here: {_io_uring_disabled()}")


# Short, exactly bounded runs (prime counts where the workload promises them).
UNTRACED = {
    "sync-blocking": ["--pipe-reads", "23", "--socket-reads", "19", "--file-reads", "29",
                      "--delay", "2ms"],
    "sync-nonblocking": ["--pipe-reads", "23", "--socket-reads", "19", "--file-reads", "29",
                         "--delay", "2ms"],
    "select": ["--number-ios", "31", "--delay", "2ms"],
    "poll": ["--number-ios", "31", "--delay", "2ms"],
    "epoll": ["--number-ios", "31", "--delay", "2ms"],
    "libaio": ["--number-ios", "1009", "--filesize", "16m"],
    "io_uring": ["--number-ios", "1009", "--filesize", "16m"],
    "io_uring-buffered": ["--number-ios", "1009", "--filesize", "16m"],
    "io_uring-socket": ["--number-ios", "31", "--delay", "2ms"],
    "posix-aio": ["--number-ios", "1009", "--filesize", "16m"],
}  # fmt: skip
EXPECTED_OPS = {
    "sync-blocking": 23 + 19 + 29,
    "sync-nonblocking": 23 + 19 + 29,
    "select": 31,
    "poll": 31,
    "epoll": 31,
    "libaio": 1009,
    "io_uring": 1009,
    "io_uring-buffered": 1009,
    "io_uring-socket": 31,
    "posix-aio": 1009,
}


def test_every_workload_has_a_test_case() -> None:
    assert set(UNTRACED) == set(registry.names()) == set(EXPECTED_OPS)


def _workload_json(name: str, *args: str) -> dict[str, Any]:
    proc = iotrace("workload", name, *args, "--output-format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.parametrize("name", registry.names())
def test_workload_runs_to_completion_with_data_verified(name: str) -> None:
    _skip_if_unavailable(name)
    r = _workload_json(name, *UNTRACED[name])
    assert r["verified"] is True and not r["stopped"]
    assert r["ops"] == EXPECTED_OPS[name]
    assert r["verified_blocks"] == r["ops"]
    assert r["model"] == registry.get(name).model
    assert r["lat_us"]["p50"] > 0 and r["lat_us"]["p99"] >= r["lat_us"]["p50"]
    assert r["iops"] > 0 and r["mb_s"] > 0 and r["cpu_s"] >= 0


def test_text_output_reads_like_fio() -> None:
    proc = iotrace("workload", "libaio", "--number-ios", "499", "--filesize", "16m")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in (
        "IOPS=",
        "BW=",
        "MiB/s",
        "lat (usec):",
        "p50=",
        "p99=",
        "cpu",
        "usr=",
        "sys=",
        "verified (499 reads checked byte for byte)",
    ):
        assert word in out, out


def test_runtime_bounds_a_run() -> None:
    r = _workload_json("io_uring", "--runtime", "1s", "--filesize", "16m")
    assert 0.9 <= r["runtime_s"] < 3 and r["ops"] > 100


def test_submit_batch_bounds_requests_per_submitting_call() -> None:
    # One request per io_submit: exactly as many calls as requests.
    r = _workload_json("libaio", "--number-ios", "97", "--iodepth", "8",
                       "--iodepth-batch-submit", "1", "--filesize", "16m")  # fmt: skip
    assert r["ops"] == 97 and r["roles"]["file"]["io_submit"] == 97
    # io_uring: one io_uring_enter per request submitted, plus the waits.
    _skip_if_unavailable("io_uring")
    r = _workload_json("io_uring", "--number-ios", "97", "--iodepth", "8",
                       "--iodepth-batch-submit", "1", "--filesize", "16m")  # fmt: skip
    assert r["ops"] == 97 and r["roles"]["file"]["io_uring_enter"] >= 97


def test_corrupted_block_fails_loudly(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir(mode=0o700)  # --directory must exist: a typo is never created
    args = ["--filesize", "1m", "--rw", "read", "--directory", str(d)]
    r = _workload_json("sync-blocking", "--file-reads", "256", *args)
    assert r["verified"] is True
    data = d / f"data-{1 << 20}.bin"
    with open(data, "r+b") as f:  # one byte of block 77
        f.seek(77 * 4096 + 1234)
        b = f.read(1)
        f.seek(77 * 4096 + 1234)
        f.write(bytes([b[0] ^ 0x5A]))
        os.fsync(f.fileno())
    for name, count in (
        ("sync-blocking", ["--file-reads", "256"]),
        ("libaio", ["--number-ios", "256"]),
    ):
        proc = iotrace("workload", name, *count, *args)
        assert proc.returncode == 1, proc.stdout
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr  # one line, no traceback
        assert "data mismatch" in lines[0] and f"block at {77 * 4096}" in lines[0]
        assert str(data) in lines[0]


def test_data_dir_is_private_reused_and_rebuilt_after_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("SUDO_UID", None)
    args = ["libaio", "--number-ios", "7", "--filesize", "1m"]
    assert iotrace("workload", *args, env=env).returncode == 0
    d = home / ".cache" / "iotrace"
    data = d / f"data-{1 << 20}.bin"
    assert (d.stat().st_mode & 0o777) == 0o700
    ino = data.stat().st_ino
    assert iotrace("workload", *args, env=env).returncode == 0
    assert data.stat().st_ino == ino  # unchanged: reused
    marker = d / "marker"
    marker.write_text("x")
    assert iotrace("workload", *args, "--clean", env=env).returncode == 0
    assert not marker.exists() and data.exists()  # the directory was removed, then rebuilt


def test_unknown_workload_and_bad_option_are_one_line_usage_errors() -> None:
    proc = iotrace("workload", "nope")
    assert proc.returncode == 2 and "sync-blocking" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = iotrace("workload", "sync-blocking", "--iodepth", "4")
    assert proc.returncode == 2 and "does not apply" in proc.stderr


def test_workloads_lists_name_model_description() -> None:
    proc = iotrace("workloads")
    assert proc.returncode == 0
    for s in registry.all_specs():
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(s.name + " "))
        assert s.model in line and s.description in line


# --- under the tracer -----------------------------------------------------------

# Workloads that take the same options share one `iotrace run` (one BPF compile).
TRACED_GROUPS = [
    (("sync-blocking", "sync-nonblocking"),
     ["--pipe-reads", "23", "--file-reads", "29", "--delay", "5ms"]),
    (("select", "poll", "epoll", "io_uring-socket"), ["--number-ios", "31", "--delay", "5ms"]),
    (("libaio", "io_uring", "io_uring-buffered", "posix-aio"),
     ["--number-ios", "101", "--filesize", "16m"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run each group once under `iotrace run`, lazily; name -> (trace, its result)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> tuple[session.Trace, dict[str, Any]]:
        if name not in cache:
            names, args = next(g for g in TRACED_GROUPS if name in g[0])
            if any(n.startswith("io_uring") for n in names) and _io_uring_disabled():
                names = tuple(n for n in names if not n.startswith("io_uring"))
            out = tmp_path_factory.mktemp("traced") / "group.trace"
            proc = iotrace("run", *names, "--no-tui", "-d", "60", "-o", str(out),
                           "--", *args)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            t = session.load(out)
            assert t.footer is not None, t.damage
            for n in names:
                res = t.footer["results"][n]
                assert "error" not in res, res
                cache[n] = (t, res)
        return cache[name]

    return {"get": get}


def test_every_workload_is_traced_in_a_group() -> None:
    assert sorted(n for names, _ in TRACED_GROUPS for n in names) == sorted(registry.names())


def _pid_calls(t: session.Trace, res: dict[str, Any], name: str) -> np.ndarray:
    sc = syscalls(t, res["pid"])
    return sc[sc["op"] == events.SYSCALL_BY_NAME[name].op]


def _calls(t: session.Trace, res: dict[str, Any], name: str, fd: int) -> np.ndarray:
    """The workload process's calls of one syscall on one fd (groups share fd numbers)."""
    sc = _pid_calls(t, res, name)
    return sc[sc["fd"] == fd]


@needs_root
def test_traced_sync_blocking_counts(traced: dict[str, Any]) -> None:
    t, res = traced["get"]("sync-blocking")
    assert len(_calls(t, res, "read", res["fds"]["pipe"])) == 23
    assert len(_calls(t, res, "pread64", res["fds"]["file"])) == 29


@needs_root
def test_traced_sync_nonblocking_retries_on_eagain(traced: dict[str, Any]) -> None:
    t, res = traced["get"]("sync-nonblocking")
    reads = _pid_calls(t, res, "read")
    pipe = reads[reads["fd"] == res["fds"]["pipe"]]
    assert (pipe["ret"] > 0).sum() == 23
    assert (pipe["ret"] == -EAGAIN).sum() == res["roles"]["pipe"]["eagain"] > 0
    file_fd = res["fds"]["file"]
    assert len(_calls(t, res, "preadv2", file_fd)) == 29
    assert len(_calls(t, res, "pread64", file_fd)) == res["roles"]["file"]["fallbacks"]


@needs_root
@pytest.mark.parametrize(
    ("name", "mux"), [("select", "pselect6"), ("poll", "poll"), ("epoll", "epoll_wait")]
)
def test_traced_multiplexers_wait_then_read(traced: dict[str, Any], name: str, mux: str) -> None:
    t, res = traced["get"](name)
    fds = set(res["roles"][next(iter(res["roles"]))]["fds"])
    reads = _pid_calls(t, res, "read")
    assert np.isin(reads["fd"], list(fds)).sum() == 31
    waits = _pid_calls(t, res, mux)
    assert len(waits) == next(iter(res["roles"].values()))["waits"] > 0


@needs_root
def test_traced_libaio_submits_and_reaps_every_request(traced: dict[str, Any]) -> None:
    t, res = traced["get"]("libaio")
    role = res["roles"]["file"]
    assert len(_pid_calls(t, res, "io_submit")) == role["io_submit"]
    assert len(_pid_calls(t, res, "io_getevents")) == role["io_getevents"]
    reqs = t.events[(t.events["kind"] == Kind.AIO_REQUEST) & (t.events["pid"] == res["pid"])]
    assert len(reqs) == 101
    assert (reqs["fd"] == res["fds"]["file"]).all() and (reqs["ret"] == 4096).all()


@needs_root
@pytest.mark.parametrize("name", ["io_uring", "io_uring-buffered", "io_uring-socket"])
def test_traced_io_uring_requests(traced: dict[str, Any], name: str) -> None:
    _skip_if_unavailable(name)
    t, res = traced["get"](name)
    want = 31 if name == "io_uring-socket" else 101
    role = next(iter(res["roles"].values()))
    assert len(_pid_calls(t, res, "io_uring_enter")) == role["io_uring_enter"]
    reqs = t.events[(t.events["kind"] == Kind.URING_REQUEST) & (t.events["pid"] == res["pid"])]
    assert len(reqs) == want
    if name == "io_uring-buffered":
        workers = (reqs["flags"] & int(events.Flag.WORKER)) != 0
        assert workers.sum() >= role["forced_async"]


@needs_root
def test_traced_posix_aio_is_helper_threads_doing_pread64(traced: dict[str, Any]) -> None:
    t, res = traced["get"]("posix-aio")
    preads = _calls(t, res, "pread64", res["fds"]["file"])
    assert len(preads) == 101
    assert (preads["tid"] != res["pid"]).all()  # glibc's helper threads, not the main thread


def test_fio_bench_without_fio_says_so_and_still_measures() -> None:
    repo = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fio_fidelity", "--fio", "/nonexistent/fio",
         "--runtime", "0.2"],
        cwd=repo, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "fio not found" in proc.stdout
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["fio"] is None and len(doc["results"]) == 4
    assert all(r["ratio"] is None and r["iotrace_iops"] > 0 for r in doc["results"])
