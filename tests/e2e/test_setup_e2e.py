"""setup.sh as a user meets it: usage, refusal without root, a quick repeat run, and the
fresh-machine case where tracefs is not mounted (simulated in a private mount namespace)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "setup.sh"
STAMP = REPO / ".venv/.iotrace-setup-stamp"


def _setup(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, str(SETUP), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd="/",  # set-up must not depend on the caller's directory
    )


def _set_up_already() -> bool:
    # A repeat run must not reinstall: only test it where set-up already ran from here.
    return STAMP.is_file() and STAMP.stat().st_mtime >= (REPO / "pyproject.toml").stat().st_mtime


def test_help_and_bad_mode() -> None:
    ok = _setup("--help")
    assert ok.returncode == 0
    assert "sudo ./setup.sh run" in ok.stdout and "sudo ./setup.sh test" in ok.stdout
    bad = _setup("bogus")
    assert bad.returncode == 2 and "sudo ./setup.sh run" in bad.stderr


@pytest.mark.skipif(shutil.which("runuser") is None, reason="runuser (util-linux) missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_without_root_one_line_and_exit_77() -> None:
    # A copy nobody can read (the checkout may sit under /root); it stops before any work.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        copy = Path(tmp) / "setup.sh"
        shutil.copy(SETUP, copy)
        proc = subprocess.run(
            ["runuser", "-u", "nobody", "--", str(copy), "run"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == 77
    want = f"setup: needs root (installs packages, mounts tracefs): sudo {copy} run\n"
    assert proc.stderr == want
    assert proc.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="set-up needs root")
def test_repeat_run_changes_nothing() -> None:
    if not _set_up_already():
        pytest.skip("set-up has not run from this checkout (sudo ./setup.sh)")
    proc = _setup()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "setup: venv up to date" in out
    assert "apt-get" not in out and "pip install" not in out and "creating" not in out
    assert "setup: kernel headers: " in out
    assert out.splitlines()[-1] == "setup: ready"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="set-up needs root")
def test_fresh_machine_without_tracefs_gets_it_mounted() -> None:
    if not _set_up_already():
        pytest.skip("set-up has not run from this checkout (sudo ./setup.sh)")
    # A private mount namespace: unmounting here cannot disturb the rest of the machine.
    script = (
        "umount -l /sys/kernel/debug/tracing 2>/dev/null; "
        "umount -l /sys/kernel/tracing 2>/dev/null; "
        "if grep -q ' tracefs ' /proc/self/mounts; then echo STILL-MOUNTED; exit 9; fi; "
        f"{SETUP} </dev/null || exit $?; "
        "grep ' tracefs ' /proc/self/mounts"
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "setup: mounting tracefs at /sys/kernel/tracing" in proc.stdout
    assert "/sys/kernel/tracing tracefs" in proc.stdout
