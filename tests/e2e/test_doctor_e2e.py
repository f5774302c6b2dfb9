"""`iotrace doctor` on the real machine: everything iotrace needs is in place here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="doctor's real checks need root"),
]

IOTRACE = Path(sys.executable).with_name("iotrace")


def _doctor(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(IOTRACE), "doctor", *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_required_check_passes_here() -> None:
    proc = _doctor("--json")
    report = json.loads(proc.stdout)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed == [], proc.stdout
    assert report["ok"] is True and proc.returncode == 0
    by = {c["name"]: c for c in report["checks"]}
    assert by["privileges"]["summary"] == "root"
    assert by["BPF compile+load"]["status"] == "ok"
    assert by["tracefs"]["summary"].startswith("mounted at /sys/kernel")
    assert by["bcc"]["summary"].startswith("version ")


def test_text_output_matches_json_verdict() -> None:
    proc = _doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].endswith("— ready to trace")
    # under 80 columns, except a single path too long to break
    assert all(len(line) < 80 or " " not in line.strip() for line in lines), proc.stdout


@pytest.mark.skipif(shutil.which("runuser") is None, reason="runuser (util-linux) not installed")
def test_without_root_doctor_still_runs_and_says_sudo() -> None:
    # The venv must be readable by an unprivileged user (it is, unless under /root).
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", str(IOTRACE), "--version"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"{IOTRACE} is not runnable as nobody")
    proc = _doctor("--json", user="nobody")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    by = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert by["privileges"]["status"] == "fail"
    assert "sudo" in by["privileges"]["fix"]
