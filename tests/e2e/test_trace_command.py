"""`iotrace trace`: -p and -- COMMAND, loss made visible, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from e2e_util import BENCH_PROGS, compile_prog, iotrace, needs_root, of

from iotrace import events, session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def readloop(tmp_path_factory):
    return compile_prog("readloop", tmp_path_factory.mktemp("bin"), where=BENCH_PROGS)


def test_command_is_traced_from_exec_with_its_exit_code(tmp_path, readloop):
    out = tmp_path / "t.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", str(readloop), "-n", "4999")
    assert proc.returncode == 0, proc.stderr
    t = session.load(out)
    reads = of(t, "read")
    ones = reads[(reads["size"] == 1) & (reads["ret"] == 1)]
    assert len(ones) == 4999
    assert not t.stats.get("unmatched_exit")


def test_the_commands_output_alone_is_on_stdout(tmp_path):
    """`iotrace trace --no-tui -- CMD > out`: out holds CMD's output only; the
    summary and the "trace saved" line are on stderr (as strace -c does)."""
    out = tmp_path / "echo.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", "sh", "-c", "echo fio says hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fio says hi\n"
    assert "LAT p50(us)" in proc.stderr and f"trace saved: {out}" in proc.stderr
    assert "compiling" in proc.stderr  # said before the seconds compiling takes


def test_summary_file_and_quiet(tmp_path):
    out, summary = tmp_path / "q.trace", tmp_path / "summary.txt"
    proc = iotrace(
        "trace", "--no-tui", "-q", "--summary-file", str(summary), "-o", str(out),
        "--", "sh", "-c", "echo hi; exit 3",
    )  # fmt: skip
    assert proc.returncode == 3  # the command's status
    assert proc.stdout == "hi\n" and proc.stderr == ""
    text = summary.read_text()
    assert "LAT p50(us)" in text and "complete" in text
    rep = iotrace("report", str(out))
    # The summary leaves out the per-file table (a second pass; report prints it).
    assert rep.stdout.split("\nFILES ")[0].splitlines()[1:] == text.splitlines()[1:]
    quiet = iotrace("trace", "--no-tui", "-q", "-o", str(tmp_path / "q2.trace"), "--", "true")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert session.load(tmp_path / "q2.trace").complete


def test_pid_is_traced_and_left_running(tmp_path):
    # A process already running before tracing starts, reading a pipe every 20 ms.
    code = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "print(r, flush=True)\n"
        "while True:\n"
        "    os.write(w, b'x' * 7); os.read(r, 7); time.sleep(0.02)\n"
    )
    target = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        fd = int(target.stdout.readline())
        out = tmp_path / "p.trace"
        proc = iotrace("trace", "--no-tui", "-p", str(target.pid), "-d", "4", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert target.poll() is None  # -p targets are never stopped by iotrace
        reads = of(session.load(out), "read", fd)
        assert len(reads) >= 20 and (reads["size"] == 7).all() and (reads["ret"] == 7).all()
    finally:
        target.kill()
        target.wait()


def test_ring_buffer_overflow_is_counted_and_reported(tmp_path, readloop):
    out = tmp_path / "lost.trace"
    proc = iotrace(
        "trace", "--no-tui", "--no-fold", "--ringbuf-mb", "1", "--drain-ms", "1000",
        "-o", str(out),
        "--", str(readloop), "-n", "600000",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    t = session.load(out)
    lost = t.events[t.events["kind"] == events.Kind.LOST]
    assert len(lost) > 0 and int(lost["size"].sum()) > 0
    assert sum(t.stats["lost"].values()) == int(lost["size"].sum())
    assert t.stats["lost"]["read"] > 0
    assert (lost["end_ns"] > lost["ts_ns"]).all()  # a dated range, never idle time
    recorded = int(((t.events["kind"] == events.Kind.SYSCALL) & (t.events["size"] == 1)).sum())
    assert recorded + int(lost["size"].sum()) >= 600_000
    assert "LOST EVENTS" in proc.stderr
    rep = iotrace("report", str(out))
    assert "LOST EVENTS" in rep.stdout and "range" in rep.stdout


def test_command_not_found_is_one_line_127():
    proc = iotrace("trace", "--no-tui", "--", "no-such-command-xyz")
    assert proc.returncode == 127
    assert proc.stderr.strip() == "iotrace: command not found: no-such-command-xyz"


def test_missing_pid_is_one_line_usage_error():
    dead = subprocess.Popen(["true"])
    dead.wait()
    time.sleep(0.1)
    proc = iotrace("trace", "--no-tui", "-p", str(dead.pid))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no such process" in proc.stderr


def test_tracing_without_privileges_is_one_line_77():
    proc = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-m", "iotrace", "trace", "--no-tui",
         "--", "true"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 77
    assert proc.stderr.count("\n") == 1 and "sudo" in proc.stderr


def test_nothing_to_trace_is_a_usage_error():
    proc = iotrace("trace", "--no-tui")
    assert proc.returncode == 2 and "nothing to trace" in proc.stderr
