"""Helpers shared by the benchmarks: compiling the C loops, gated starts,
and an in-process recording session built from the tracer's parts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from iotrace.tracer import bcc_source, program
from iotrace.tracer.live import LiveSource
from iotrace.tracer.tasks import TaskRegistry

from iotrace import session

PROGS = Path(__file__).with_name("progs")


def compile_c(name: str, *libs: str) -> Path:
    out = Path(tempfile.gettempdir()) / f"iotrace-bench-{name}"
    src = PROGS / f"{name}.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("bench: no C compiler (sudo ./setup.sh installs gcc)")
        subprocess.run([cc, "-O2", "-o", str(out), str(src), *libs], check=True)
    return out


class Gated:
    """A C benchmark program started with -g: it prints 'ready' and waits for SIGUSR1."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen([*argv, "-g"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"bench: {argv[0]} did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        os.kill(self.proc.pid, signal.SIGUSR1)

    def go(self) -> str:
        self.release()
        return self.output()

    def output(self) -> str:
        """What it printed, once it has ended (after release())."""
        out, _ = self.proc.communicate(timeout=600)
        return out.strip()


class Recording:
    """The iotrace tracer with full per-call recording into a real trace file."""

    def __init__(self, out: Path, drain_interval_s: float = 0.010, **opts: Any) -> None:
        avail = program.available_tracepoints()
        self.opts = program.ProgramOptions(
            available=frozenset(avail), self_tgid=os.getpid(), **opts
        )
        self.prog = bcc_source.load(self.opts)
        self.writer = session.TraceWriter(out, {"command": "bench"}, force=True)
        self.source = LiveSource(
            self.prog, self.writer, {}, TaskRegistry(), consumer=False,
            drain_interval_s=drain_interval_s,
        )  # fmt: skip
        self.source.start()

    def add(self, pid: int) -> None:
        self.prog.add_pids([pid])

    def stop(self) -> dict[str, Any]:
        self.source.stop()
        self.source.join(60)
        stats = self.source.stats
        self.writer.close({"stats": stats})
        self.source.close()
        self.prog.close()
        return stats


def foreign_bpf_holders() -> list[int]:
    """Other processes holding BPF programs now. While any of them has a syscall
    tracepoint attached, every syscall on the machine takes the slow path, which
    inflates the untraced baselines: the benches say so next to their figures."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            fds = list((d / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == "anon_inode:bpf-prog":
                    out.append(int(d.name))
                    break
            except OSError:
                continue
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def emit_json(name: str, data: dict[str, Any]) -> None:
    print(f"JSON {name} " + json.dumps(data, sort_keys=True))


def require_root(bench: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"bench.{bench} loads BPF programs: run it as root")


def publish(name: str, text: str, figures: dict[str, Any]) -> int:
    """A bench's end: its lines for people, then its JSON line for `python -m bench`."""
    print(text)
    emit_json(name, figures)
    return 0
