"""Shared helpers for end-to-end tests: run the real CLI as a subprocess,
compile the small C programs under progs/, load what was recorded."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iotrace import events, runs, session

PROGS = Path(__file__).with_name("progs")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="end-to-end tracing loads eBPF probes and needs root"
)


def iotrace(*args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess[str]:
    """Run `iotrace ARGS` the way a user does, with this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "iotrace", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kw,
    )


BENCH_PROGS = Path(__file__).parents[2] / "bench" / "progs"


def compile_prog(name: str, out_dir: Path, *libs: str, where: Path = PROGS) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: ./setup.sh installs gcc")
    exe = out_dir / name
    subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(exe), str(where / f"{name}.c"), *libs],
        check=True,
        capture_output=True,
    )
    return exe


def syscalls(trace: session.Trace, pid: int | None = None) -> np.ndarray:
    """Every call, those the kernel folded into run records included (as their calls)."""
    e = trace.events
    if runs.has_runs(e):
        e = np.concatenate(list(runs.expand(e)))
    sel = e["kind"] == events.Kind.SYSCALL
    if pid is not None:
        sel &= e["pid"] == pid
    return e[sel]


def count_by(trace: session.Trace, pid: int | None = None) -> collections.Counter:
    """(syscall name, fd) -> number of calls."""
    sc = syscalls(trace, pid)
    return collections.Counter(
        (events.SYSCALL_BY_OP[int(op)].name, int(fd))
        for op, fd in zip(sc["op"], sc["fd"], strict=True)
    )


def of(trace: session.Trace, name: str, fd: int | None = None) -> np.ndarray:
    sc = syscalls(trace)
    sel = sc["op"] == events.SYSCALL_BY_NAME[name].op
    if fd is not None:
        sel &= sc["fd"] == fd
    return sc[sel]
