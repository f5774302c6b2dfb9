"""Every misuse of the command line is one line on stderr and a non-zero exit,
never a traceback, and is caught before anything is started or loaded.

These run the real CLI in a subprocess (as any user): each case fails in
argument or output checks, before privileges are even looked at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iotrace.cli import main
from iotrace.errors import EXIT_DATA, EXIT_IO, EXIT_USAGE


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotrace", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        cwd=cwd,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert "\n" not in err, err
    assert err.startswith("iotrace: "), err
    return err


MISUSE = [
    # (argv, exit code, words the line must hold)
    (["frobnicate"], EXIT_USAGE, "invalid choice"),
    (["--bogus"], EXIT_USAGE, "unrecognized arguments: --bogus"),
    (["trace", "--bogus", "--", "true"], EXIT_USAGE, "unrecognized"),
    (["run", "--no-such-flag"], EXIT_USAGE, "unrecognized"),
    (["trace"], EXIT_USAGE, "nothing to trace"),
    (["trace", "-p"], EXIT_USAGE, "expected one argument"),
    (["trace", "-p", "abc"], EXIT_USAGE, "not a pid: 'abc'"),
    (["trace", "-p", "0"], EXIT_USAGE, "not a pid: '0'"),
    (["trace", "-p", "-5"], EXIT_USAGE, "-p/--pid"),
    (["trace", "-p", "1,x"], EXIT_USAGE, "not a pid: 'x'"),
    (["trace", "-p", "4194305"], EXIT_USAGE, "no such process: 4194305"),
    (["trace", "-p", "1", "--", "true"], EXIT_USAGE, "give one of"),
    (["trace", "--all", "--", "true"], EXIT_USAGE, "give one of"),
    (["trace", "--all", "-p", "1"], EXIT_USAGE, "give one of"),
    (["trace", "--", "no-such-command-xyz"], 127, "command not found: no-such-command-xyz"),
    (["trace", "-d", "abc", "--", "true"], EXIT_USAGE, "not a duration: 'abc'"),
    (["trace", "-d", "0", "--", "true"], EXIT_USAGE, "duration must be positive"),
    (["trace", "--duration=-3s", "--", "true"], EXIT_USAGE, "duration must be positive"),
    (["trace", "-d", "inf", "--", "true"], EXIT_USAGE, "duration must be positive"),
    (["trace", "-d", "nan", "--", "true"], EXIT_USAGE, "duration must be positive"),
    (["trace", "-d", "5parsecs", "--", "true"], EXIT_USAGE, "not a duration"),
    (["trace", "-d", "1e9", "--", "true"], EXIT_USAGE, "duration too long: '1e9' (at most 3 days)"),
    (["run", "-d", "73h"], EXIT_USAGE, "duration too long"),
    (["workload", "sync-blocking", "--runtime", "1000000000"], EXIT_USAGE, "duration too long"),
    (
        ["workload", "libaio", "--directory", "/nonexistent-iotrace", "--number-ios", "1"],
        EXIT_USAGE,
        "--directory /nonexistent-iotrace: no such directory",
    ),
    (
        ["run", "libaio", "--", "--directory", "/nonexistent-iotrace"],
        EXIT_USAGE,
        "no such directory",
    ),
    (["run", "-d", ""], EXIT_USAGE, "not a duration"),
    (["trace", "--ringbuf-mb", "3", "--", "true"], EXIT_USAGE, "power of two"),
    (["trace", "--ringbuf-mb", "0", "--", "true"], EXIT_USAGE, "power of two"),
    (["trace", "--ringbuf-mb", "x", "--", "true"], EXIT_USAGE, "invalid int value"),
    (["trace", "--drain-ms", "0", "--", "true"], EXIT_USAGE, "--drain-ms"),
    (["trace", "--drain-ms", "1e9", "--", "true"], EXIT_USAGE, "--drain-ms"),
    (["run", "no-such-workload"], EXIT_USAGE, "unknown workload 'no-such-workload'"),
    (["run", "sync-blocking", "--", "--no-such-option"], EXIT_USAGE, "no-such-option"),
    (["workload", "no-such-workload"], EXIT_USAGE, "no-such-workload"),
    (["report"], EXIT_USAGE, "required: FILE"),
    (["report", "/no/such/file.trace"], EXIT_DATA, "no such trace file"),
    (["report", "/"], EXIT_DATA, "is a directory"),
    (["report", "/etc/hostname"], EXIT_DATA, "not an iotrace trace file"),
    (["view", "/no/such/file.trace"], EXIT_DATA, "no such trace file"),
    (["export", "/no/such.trace", "-o", "x"], EXIT_USAGE, "--format"),
    (["export", "/no/such.trace", "--format", "xml", "-o", "x"], EXIT_USAGE, "invalid choice"),
    (["export", "/no/such.trace", "--format", "csv"], EXIT_USAGE, "-o/--output"),
    (["export", "/no/such.trace", "--format", "csv", "-o", "x.csv"], EXIT_DATA, "no such"),
]


@pytest.mark.parametrize(("argv", "code", "words"), MISUSE, ids=[" ".join(m[0]) for m in MISUSE])
def test_misuse_is_one_line_and_an_exit_code(tmp_path, monkeypatch, capsys, argv, code, words):
    # In-process (main() is the one boundary that prints and exits), so the
    # dozens of cases stay quick; the subprocess tests below cover the whole
    # process, interpreter start-up included.
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("iotrace: "), err
    assert words in err
    assert list(tmp_path.iterdir()) == []  # nothing was written


@pytest.mark.parametrize("argv", [["--bogus"], ["trace", "-p", "abc"], ["report", "/"]])
def test_misuse_in_a_real_process_has_no_traceback(argv):
    proc = cli(*argv)
    assert proc.returncode != 0
    one_line(proc)


def test_a_file_that_is_not_executable_is_not_a_command(tmp_path, capsys):
    data = tmp_path / "data.txt"
    data.write_text("not a program")
    data.chmod(0o644)
    assert main(["trace", "--", str(data)]) == 127
    assert capsys.readouterr().err.strip() == f"iotrace: command not found: {data}"


def test_no_command_prints_help_and_exits_2():
    proc = cli()
    assert proc.returncode == EXIT_USAGE
    assert "usage: iotrace" in proc.stdout and "Traceback" not in proc.stderr


# Output files: checked before root is needed, so these hold for any user.


def test_existing_output_is_never_clobbered_without_force(tmp_path):
    out = tmp_path / "kept.trace"
    out.write_text("precious")
    for cmd in (["trace", "--", "true"], ["run", "sync-blocking"]):
        proc = cli(cmd[0], "-o", str(out), *cmd[1:])
        assert proc.returncode == EXIT_IO
        assert one_line(proc) == f"iotrace: {out} already exists; choose another -o or pass --force"
    assert out.read_text() == "precious"


def test_output_symlink_is_refused_even_with_force(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link.trace"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.trace"
    dangling.symlink_to(tmp_path / "would-be-created")
    for path in (link, dangling):
        for force in ([], ["--force"]):
            proc = cli("trace", "-o", str(path), *force, "--", "true")
            assert proc.returncode == EXIT_IO
            assert one_line(proc) == (
                f"iotrace: {path} is a symbolic link; refusing to write through it"
            )
    assert victim.read_text() == "precious"
    assert not (tmp_path / "would-be-created").exists()


def test_output_in_missing_or_unwritable_directory_or_a_directory(tmp_path):
    proc = cli("trace", "-o", str(tmp_path / "no" / "x.trace"), "--", "true")
    assert proc.returncode == EXIT_IO
    assert "does not exist" in one_line(proc)
    proc = cli("trace", "-o", str(tmp_path), "--force", "--", "true")
    assert proc.returncode == EXIT_IO
    assert "is a directory" in one_line(proc)
    # An unwritable directory is judged after the privilege check (root may
    # write where the user may not): see the read-only mount in the e2e tests.


def test_export_and_html_refuse_existing_files_and_symlinks(tmp_path):
    from iotrace.session import TraceWriter

    tr = tmp_path / "t.trace"
    TraceWriter(tr, {"command": "test"}).close({})
    kept = tmp_path / "kept.csv"
    kept.write_text("precious")
    link = tmp_path / "link.csv"
    link.symlink_to(kept)
    for out in (kept, link):
        proc = cli("export", str(tr), "--format", "csv", "-o", str(out))
        assert proc.returncode == EXIT_IO
        one_line(proc)
    proc = cli("export", str(tr), "--format", "csv", "-o", str(link), "--force")
    assert proc.returncode == EXIT_IO
    assert "symbolic link" in one_line(proc)
    proc = cli("report", str(tr), "--html", str(kept))
    assert proc.returncode == EXIT_IO
    one_line(proc)
    assert kept.read_text() == "precious"


def _small_trace(tmp_path: Path) -> Path:
    import numpy as np

    from iotrace.session import EVENT_DTYPE, TraceWriter

    tr = tmp_path / "t.trace"
    w = TraceWriter(tr, {"command": "test"})
    w.write_events(np.zeros(1000, dtype=EVENT_DTYPE))
    w.close({})
    return tr


def test_export_to_a_device_is_refused_and_the_device_kept(tmp_path):
    """/dev/full, /dev/null, any device: not a regular file, so never written,
    truncated, removed or (under sudo) handed over, even with --force."""
    tr = _small_trace(tmp_path)
    if os.geteuid() == 0:
        dev = tmp_path / "full"
        os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 7))  # a private /dev/full
    else:
        dev = Path("/dev/full")
    before = os.stat(dev)
    proc = cli("export", str(tr), "--format", "jsonl", "-o", str(dev), "--force")
    assert proc.returncode == EXIT_IO
    assert one_line(proc) == (
        f"iotrace: {dev} is a device, not a regular file; refusing to write to it"
    )
    after = os.stat(dev)
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tiny tmpfs")
def test_export_to_a_full_disk_is_one_line_and_leaves_no_half_file(tmp_path):
    tr = _small_trace(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = small / "t.jsonl"
        proc = cli("export", str(tr), "--format", "jsonl", "-o", str(out))
        assert proc.returncode == EXIT_IO
        assert "No space left on device" in one_line(proc)
        assert not out.exists()
    finally:
        subprocess.run(["umount", str(small)])


def test_export_to_a_directory_says_so(tmp_path):
    tr = _small_trace(tmp_path)
    for force in ([], ["--force"]):
        assert main(["export", str(tr), "--format", "csv", "-o", str(tmp_path), *force]) == EXIT_IO
    proc = cli("export", str(tr), "--format", "csv", "-o", str(tmp_path))
    assert one_line(proc) == f"iotrace: {tmp_path} is a directory"


@pytest.mark.parametrize("reader_left", [True, False])
def test_a_broken_pipe_is_quiet_only_when_it_is_the_reader_of_stdout(
    reader_left, monkeypatch, capsys
):
    """`iotrace report x | head`: the reader leaving is its choice, exit 0. A pipe of
    iotrace's own breaking (a workload's, a helper's) is a failure, never exit 0."""
    from iotrace import cli as cli_mod

    r, w = os.pipe()
    if reader_left:
        os.close(r)
    out = os.fdopen(w, "w")

    def broken(_args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_mod, "_dispatch", broken)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        rc = cli_mod.main(["workloads"])
    finally:
        monkeypatch.undo()
        out.close()
        if not reader_left:
            os.close(r)
    err = capsys.readouterr().err
    if reader_left:
        assert (rc, err) == (0, "")
    else:
        assert rc != 0 and err.startswith("iotrace: ") and "Broken pipe" in err


def test_a_missing_workload_directory_is_never_created():
    assert main(["workload", "libaio", "--directory", "/nonexistent-iotrace/d"]) == EXIT_USAGE
    assert not os.path.exists("/nonexistent-iotrace")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_workload_help_is_the_workloads_help(flag, capsys):
    assert main(["workload", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: iotrace workload NAME [options]") and "libaio" in out
    assert main(["workload", "libaio", flag]) == 0
    assert "libaio" in capsys.readouterr().out


NOBODY = ("runuser", "-u", "nobody", "--")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_ebpf_needs_no_root():
    """tracefs is 0700: the program is printed without the tracepoint list."""
    import shutil

    if shutil.which("runuser") is None:
        pytest.skip("no runuser")
    proc = subprocess.run(
        [*NOBODY, sys.executable, "-m", "iotrace", "trace", "--ebpf", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "TRACEPOINT_PROBE" in proc.stdout
