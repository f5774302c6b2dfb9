"""`sudo iotrace run sync-blocking --no-tui`: the first end-to-end slice.

A prime number of reads (23 from a pipe whose producer pauses 20 ms before
each write, 29 O_DIRECT preads) must appear in the trace exactly, with the
right fds and sizes, and every pipe read must show the wait as off-CPU time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from e2e_util import iotrace, needs_root, of

from iotrace import session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    out = d / "run.trace"
    proc = iotrace(
        "run", "sync-blocking", "--no-tui", "-d", "20", "-o", str(out),
        "--", "--pipe-reads", "23", "--file-reads", "29", "--delay", "20ms", "--bs", "4k",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return session.load(out), proc, out


def test_exact_counts_fds_and_sizes(run):
    t, _, _ = run
    fds = t.footer["results"]["sync-blocking"]["fds"]
    pipe_reads = of(t, "read", fds["pipe"])
    preads = of(t, "pread64", fds["file"])
    assert len(pipe_reads) == 23
    assert len(preads) == 29
    assert (pipe_reads["size"] == 4096).all() and (pipe_reads["ret"] == 4096).all()
    assert (preads["size"] == 4096).all() and (preads["ret"] == 4096).all()
    assert (preads["offset"] % 4096 == 0).all()
    assert t.footer["results"]["sync-blocking"]["verified"] is True


def test_every_pipe_read_sleeps_through_the_producer_pause(run):
    t, _, _ = run
    fds = t.footer["results"]["sync-blocking"]["fds"]
    pipe_reads = of(t, "read", fds["pipe"])
    off_cpu_ms = pipe_reads["off_cpu_ns"] / 1e6
    assert (off_cpu_ms >= 15).all(), off_cpu_ms
    # off-CPU time lies inside the call
    assert (pipe_reads["off_cpu_ns"] <= pipe_reads["end_ns"] - pipe_reads["ts_ns"]).all()
    assert (pipe_reads["runq_ns"] <= pipe_reads["off_cpu_ns"]).all()


def test_summary_is_printed_and_report_prints_the_same_table(run):
    _, proc, out = run
    # On stderr, as strace -c: stdout stays the traced program's.
    assert "LAT p50(us)" in proc.stderr and "BLOCK%" in proc.stderr
    assert f"trace saved: {out}" in proc.stderr
    assert "LAT p50(us)" not in proc.stdout and "trace saved" not in proc.stdout
    # `iotrace report` needs no root: run it as nobody on a copy nobody can read
    pub = Path(tempfile.mkdtemp(prefix="iotrace-e2e-"))  # pytest's tmp is root-only
    pub.chmod(0o755)
    shared = pub / "shared.trace"
    shutil.copy(out, shared)
    shared.chmod(0o644)
    rep = subprocess.run(
        ["runuser", "-u", "nobody", "--", *_cli(), "report", str(shared)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    table = proc.stderr[proc.stderr.index("iotrace report:") :].split("trace saved:")[0].strip()
    # The summary leaves out the per-file table (a second pass; report prints it).
    assert _body(rep.stdout.split("\nFILES ")[0]) == _body(table)


def _body(text: str) -> list[str]:
    # the first line names the file, which differs between the copies
    return [ln for ln in text.strip().splitlines() if not ln.startswith("iotrace report:")]


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "iotrace"]


def test_run_without_root_says_use_sudo_exit_77():
    proc = subprocess.run(
        ["runuser", "-u", "nobody", "--", *_cli(), "run", "sync-blocking", "--no-tui"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 77
    assert proc.stderr.count("\n") == 1 and "sudo" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_workload_lists_the_valid_ones_exit_2():
    proc = iotrace("run", "no-such-workload", "--no-tui")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "sync-blocking" in proc.stderr and "libaio" in proc.stderr


@pytest.mark.parametrize("make", ["missing", "unreadable", "garbage"])
def test_report_on_a_bad_file_is_one_line_nonzero(tmp_path, make):
    pub = Path(tempfile.mkdtemp(prefix="iotrace-e2e-"))
    pub.chmod(0o755)
    p = pub / "x.trace"
    cmd = [*_cli(), "report", str(p)]
    if make == "unreadable":
        p.write_bytes(b"IOTRACE\0")
        p.chmod(0o600)
        cmd = ["runuser", "-u", "nobody", "--", *cmd]
    elif make == "garbage":
        p.write_bytes(os.urandom(300))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
