"""The documentation cannot drift from the code: every command's --help ends
with its two examples, the man page is what the parsers generate today, and the
documented commands that need no trace and no root still run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iotrace.cli import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
IOTRACE = [sys.executable, "-m", "iotrace"]


def _help(command: str) -> str:
    proc = subprocess.run([*IOTRACE, command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_help_ends_with_two_examples(command: str) -> None:
    first, second = EXAMPLES[command]
    assert _help(command).rstrip().endswith(f"examples:\n  {first}\n  {second}")


def test_every_command_has_examples() -> None:
    listed = re.findall(r"^    (\w+)\b", _help_top(), re.M)
    assert sorted(listed) == sorted(EXAMPLES)


def _help_top() -> str:
    return subprocess.run([*IOTRACE, "--help"], capture_output=True, text=True).stdout


def test_man_page_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, "tools/gen_manpage.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("man") is None, reason="no man(1) on this machine")
def test_man_page_renders() -> None:
    proc = subprocess.run(
        ["man", "-l", str(ROOT / "docs" / "iotrace.1")],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "iotrace report" in proc.stdout
    assert "EXIT STATUS" in proc.stdout
