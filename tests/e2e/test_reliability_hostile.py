"""Hostile programs and hostile outputs (issue 17), with real probes: a traced
process with a name that is not UTF-8 and holds a terminal escape, outputs
that are devices or FIFOs (with --force, under sudo), `-p` naming iotrace's
own ancestors, and a recording thread that fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_util import iotrace, needs_root

from iotrace import session

pytestmark = [pytest.mark.e2e, needs_root]

HOSTILE_NAME = b"\xff\x1b[31mx"
RENAME = (
    "import ctypes, time; "
    f"ctypes.CDLL(None).prctl(15, {HOSTILE_NAME!r}, 0, 0, 0); "
    "time.sleep(0.3); open('/etc/passwd').read()"
)


def no_raw_escapes(text: str) -> None:
    assert "\x1b" not in text and "\udcff" not in text, text[-2000:]


def test_a_process_named_with_invalid_utf8_and_an_escape_is_traced_and_shown_escaped(tmp_path):
    out = tmp_path / "c.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", sys.executable, "-c", RENAME)
    assert proc.returncode == 0, proc.stderr
    no_raw_escapes(proc.stdout + proc.stderr)
    t = session.load(out)
    assert t.complete
    assert len(t.events) > 10
    comms = {x.comm for x in t.tasks}
    assert "\\xff\\x1b[31mx" in comms, comms
    # The read of /etc/passwd after the rename is there.
    assert (t.events["kind"] == 1).sum() > 0
    for args in (["report", str(out)], ["report", str(out), "--json"]):
        r = iotrace(*args)
        assert r.returncode == 0, r.stderr
        no_raw_escapes(r.stdout + r.stderr)
    html = tmp_path / "c.html"
    r = iotrace("report", str(out), "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in html.read_text()
    for fmt in ("csv", "jsonl"):
        dest = tmp_path / f"c.{fmt}"
        assert iotrace("export", str(out), "--format", fmt, "-o", str(dest)).returncode == 0
        assert b"\x1b" not in dest.read_bytes()


def test_trace_p_works_while_a_process_has_such_a_name(tmp_path):
    """descendants() reads every /proc/PID/stat: one hostile name broke every -p."""
    renamed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import ctypes, time; ctypes.CDLL(None).prctl(15, {HOSTILE_NAME!r}, 0, 0, 0); "
            "time.sleep(30)",
        ]
    )
    target = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.3)
        out = tmp_path / "p.trace"
        proc = iotrace("trace", "--no-tui", "-p", str(target.pid), "-d", "1", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert session.load(out).complete
    finally:
        renamed.kill()
        target.kill()
        renamed.wait()
        target.wait()


def test_p_of_an_ancestor_or_init_never_traces_iotrace_itself(tmp_path):
    """`trace -p $$` from a shell, and `-p 1`: iotrace is among the descendants;
    its own records (drain reads, trace writes) must not be in the trace."""
    out = tmp_path / "self.trace"
    # A shell that starts iotrace with `-p $$`, as a user would type it.
    script = f"{sys.executable} -m iotrace trace --no-tui -p $$ -d 1 -o {out} & echo $!; wait"
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    own = int(proc.stdout.split()[0])
    t = session.load(out)
    assert t.complete
    assert not np.any(t.events["pid"] == own), "iotrace traced itself"
    out1 = tmp_path / "init.trace"
    p1 = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotrace",
            "trace",
            "--no-tui",
            "-p",
            "1",
            "-d",
            "1",
            "-o",
            str(out1),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = p1.communicate(timeout=120)
    assert p1.returncode == 0, err
    t1 = session.load(out1)
    assert not np.any(t1.events["pid"] == p1.pid), "iotrace traced itself under -p 1"
    assert p1.pid not in {x.pid for x in t1.tasks}


@pytest.mark.parametrize("node", ["chardev", "dev-null", "fifo"])
def test_force_never_writes_or_hands_over_a_device_or_fifo(tmp_path, node):
    """Under sudo, `--force -o n` chowned a device node to the user, and a FIFO
    hung iotrace for good (SIGTERM ignored) with probes loaded."""
    if node == "chardev":
        target = tmp_path / "n"
        os.mknod(target, 0o644 | 0o020000, os.makedev(1, 3))
    elif node == "dev-null":
        target = Path("/dev/null")
    else:
        target = tmp_path / "f"
        os.mkfifo(target)
    before = os.stat(target)
    env = {**os.environ, "SUDO_UID": "65534", "SUDO_GID": "65534"}
    started = time.monotonic()
    proc = iotrace(
        "trace", "--no-tui", "--force", "-o", str(target), "--", "true", env=env, timeout=60
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 74
    kind = "a FIFO" if node == "fifo" else "a device"
    assert proc.stderr.strip() == (
        f"iotrace: {target} is {kind}, not a regular file; refusing to write to it"
    )
    after = os.stat(target)
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


def test_a_fifo_swapped_in_after_the_checks_is_refused_without_hanging(tmp_path):
    """The race the early check cannot close: the writer opens non-blocking and
    checks the type on the descriptor, so a FIFO (with or without a reader)
    is one line, at once."""
    from iotrace.errors import OutputError

    fifo = tmp_path / "late.trace"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        session.TraceWriter(fifo, {}, force=True)  # no reader: ENXIO
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(OutputError, match="FIFO"):
            session.TraceWriter(fifo, {}, force=True)  # a reader: opened, then refused
    finally:
        os.close(reader)


def test_only_a_file_iotrace_created_goes_to_the_sudo_user(tmp_path):
    env = {**os.environ, "SUDO_UID": "65534", "SUDO_GID": "65534"}
    new = tmp_path / "new.trace"
    assert iotrace("trace", "--no-tui", "-o", str(new), "--", "true", env=env).returncode == 0
    assert (new.stat().st_uid, new.stat().st_gid) == (65534, 65534)
    kept = tmp_path / "root.trace"
    kept.write_text("old")
    r = iotrace("trace", "--no-tui", "--force", "-o", str(kept), "--", "true", env=env)
    assert r.returncode == 0, r.stderr
    assert kept.stat().st_uid == 0  # overwritten, not given away
    assert session.load(kept).complete


def test_a_failing_recording_thread_is_a_non_zero_exit_and_a_failed_trace(tmp_path):
    """Any recording thread failing (here: the drain's task lookup, as the
    non-UTF-8 name did) ends the run with one line and a non-zero exit, and the
    trace says the recording failed: never 'complete', never exit 0."""
    out = tmp_path / "fail.trace"
    code = (
        "import sys\n"
        "from iotrace.tracer import tasks\n"
        "def boom(self, batch):\n"
        "    raise UnicodeDecodeError('utf-8', b'\\xff', 0, 1, 'invalid start byte')\n"
        "tasks.TaskRegistry.observe = boom\n"
        "from iotrace.cli import main\n"
        f"sys.exit(main(['trace', '--no-tui', '-o', {str(out)!r}, '--', 'cat', '/etc/passwd']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the drain thread failed" in proc.stderr
    t = session.load(out)
    assert not t.complete
    assert t.damage.startswith("the recording failed")
    r = iotrace("report", str(out))
    assert r.returncode == 0 and "RECORDING FAILED" in r.stdout, r.stdout
