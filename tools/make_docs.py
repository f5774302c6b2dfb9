"""`make docs`: rerun every example in README.md and docs/*.md and write its real
output between its markers, then regenerate the man page, so no example can go
stale. An example is

    <!-- example: iotrace report dd.trace -->
    ...output, replaced on every run...
    <!-- /example -->

Commands run in build/docs, next to a small real trace (dd.trace) recorded
first. Recording needs root: without it, examples that start with 'sudo' (and
any needing dd.trace when it was never recorded) keep their last output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "docs"
BIN = Path(sys.executable).parent
MARKER = re.compile(r"^(<!-- example: (.+?) -->\n)(.*?)^(<!-- /example -->)", re.S | re.M)
# The small trace every other example reads; the README shows this very command.
RECORD = (
    "sudo iotrace trace --no-tui -o dd.trace --force -- "
    "dd if=/dev/zero of=out bs=64k count=200 oflag=direct"
)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def examples() -> list[tuple[Path, str]]:
    """Every (file, command) example in the docs."""
    return [(f, m.group(2)) for f in doc_files() for m in MARKER.finditer(f.read_text())]


def run_example(command: str) -> str:
    """The command's real output (stdout then stderr), as a user sees it in a terminal."""
    argv = shlex.split(command.removeprefix("sudo "))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", COLUMNS="80")
    shell = "|" in argv
    proc = subprocess.run(
        command.removeprefix("sudo ") if shell else argv,
        shell=shell,
        cwd=WORK,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"make docs: '{command}' exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout + proc.stderr


def main() -> int:
    # A fresh directory each time: examples write their own -o files without --force.
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    root = os.geteuid() == 0
    have_trace = root
    if root:
        run_example(RECORD)
    for f in doc_files():
        text = f.read_text()

        def fill(m: re.Match[str]) -> str:
            command = m.group(2)
            if (command.startswith("sudo ") and not root) or (
                "dd.trace" in command and not have_trace
            ):
                return m.group(0)
            out = run_example(command).rstrip("\n")
            return f"{m.group(1)}```\n$ {command}\n{out}\n```\n{m.group(4)}"

        new = MARKER.sub(fill, text)
        if new != text:
            f.write_text(new)
            print(f"make docs: updated {f.relative_to(ROOT)}")
    from tools import gen_manpage

    return gen_manpage.main([])


if __name__ == "__main__":
    sys.exit(main())
