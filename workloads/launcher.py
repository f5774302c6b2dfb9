"""Starting workloads as child processes for the tracer, behind a ready/release gate.

    launched = start("sync-blocking", ["--pipe-reads", "23"], run_as=invoking_user(),
                     duration_s=None)
    launched.wait_ready(30)      # child set up, parked in sigtimedwait (not a traced call)
    if launched.unavailable: ...  # it exited: this machine cannot run it
    tracer.add_pids(launched.pids)
    launched.release()           # SIGUSR1 to the workload and its producers
    launched.wait(None); launched.result()

The child runs `python -m iotrace.workloads.child` as `run_as` (uid, gid and
supplementary groups) in its own session, so `stop()` can signal the tree.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from iotrace.workloads import engine
from iotrace.workloads.options import parse

from iotrace.errors import WorkloadError


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def invoking_user() -> RunAs | None:
    """The user behind sudo (SUDO_UID/SUDO_GID) when we are root under sudo; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        uid = int(os.environ["SUDO_UID"])
        gid = int(os.environ.get("SUDO_GID", ""))
    except (KeyError, ValueError):
        return None
    if uid == 0:
        return None
    return run_as_for(uid, gid)


def run_as_for(uid: int, gid: int | None = None) -> RunAs:
    """RunAs for a uid: its primary group unless gid is given, its supplementary groups,
    its home directory (from the password database)."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return RunAs(uid, gid if gid is not None else uid, (), "")
    gid = pw.pw_gid if gid is None else gid
    try:
        groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, gid))))
    except OSError:
        groups = (gid,)
    return RunAs(uid, gid, groups, pw.pw_dir)


def drop_privileges(run_as: RunAs) -> None:
    """Become run_as in this process (groups first, then gid, then uid: the order that works)."""
    os.setgroups(list(run_as.groups))
    os.setgid(run_as.gid)
    os.setuid(run_as.uid)
    os.environ["HOME"] = run_as.home
    with contextlib.suppress(KeyError):
        name = pwd.getpwuid(run_as.uid).pw_name
        os.environ["USER"] = os.environ["LOGNAME"] = name


def child_env(run_as: RunAs | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if run_as is not None:
        for key in list(env):
            if key.startswith(("SUDO_", "XDG_")):
                del env[key]
        env["HOME"] = run_as.home
        with contextlib.suppress(KeyError):
            env["USER"] = env["LOGNAME"] = pwd.getpwuid(run_as.uid).pw_name
    return env


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class Launched:
    """A started workload: gate control, status, its own result."""

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes] | None,
        report_fd: int,
        stderr: IO[bytes] | None,
        unavailable: str = "",
    ) -> None:
        self.name = name
        self.pids: list[int] = [proc.pid] if proc is not None else []
        self.fds: dict[str, int] = {}
        self.unavailable = unavailable
        self._proc = proc
        self._fd = report_fd
        self._stderr = stderr
        self._buf = b""
        self._result: dict[str, Any] | None = None
        self._error = ""
        self._ready = bool(unavailable)
        self._released = False

    # -- the report pipe

    def _read_line(self, deadline: float | None) -> dict[str, Any] | None:
        """The next JSON line from the child; None at EOF or when the deadline passes."""
        while b"\n" not in self._buf:
            if self._fd < 0:
                return None
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                os.close(self._fd)
                self._fd = -1
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            obj = json.loads(line)
        except ValueError:
            return {"error": f"garbled report from the workload: {line[:80]!r}"}
        return obj if isinstance(obj, dict) else {"error": "garbled report from the workload"}

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError):
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln]
            return lines[-1] if lines else ""
        return ""

    def _died(self, what: str) -> WorkloadError:
        status = self._proc.poll() if self._proc is not None else None
        tail = self._stderr_tail()
        how = f"exit status {status}" if status is not None else "no report"
        return WorkloadError(f"workload {self.name} {what} ({how}){': ' + tail if tail else ''}")

    # -- the contract

    def wait_ready(self, timeout: float) -> None:
        """Return once the child is set up and parked before its first measured I/O
        (or has reported itself unavailable); WorkloadError otherwise."""
        if self._ready:
            return
        msg = self._read_line(time.monotonic() + timeout)
        if msg is None:
            if self._fd >= 0:
                self.stop()
                raise WorkloadError(f"workload {self.name} not ready after {timeout:g}s")
            raise self._died("failed during set-up")
        if "unavailable" in msg:
            self.unavailable = str(msg["unavailable"]) or "unavailable"
            self.wait(5.0)
            self._ready = True
            return
        if "error" in msg:
            self.wait(5.0)
            raise WorkloadError(f"workload {self.name}: {msg['error']}")
        if not msg.get("ready"):
            self.stop()
            raise WorkloadError(f"workload {self.name} sent an unexpected report")
        self.pids = [int(p) for p in msg.get("pids", [])]
        self.fds = {str(k): int(v) for k, v in msg.get("fds", {}).items()}
        self._ready = True

    def release(self) -> None:
        """Let the workload and its producers start their I/O."""
        if self.unavailable or self._released:
            return
        self._released = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, engine.RELEASE_SIGNAL)

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc is not None else 0

    def wait(self, timeout: float | None) -> int | None:
        if self._proc is None:
            return 0
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM the tree (the workload then reports what it measured), SIGKILL after timeout."""
        if self._proc is None or self._proc.poll() is not None:
            self._kill_group(signal.SIGKILL)
            return
        self._kill_group(signal.SIGTERM)
        if self.wait(timeout) is None:
            self._kill_group(signal.SIGKILL)
            self.wait(timeout)
        self._kill_group(signal.SIGKILL)  # producers left behind

    def _kill_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def result(self) -> dict[str, Any]:
        """The workload's own JSON result (after exit): ops, iops, mb_s, lat_us, cpu_s,
        verified, fds, roles. WorkloadError if it failed or left none."""
        if self._result is not None:
            return self._result
        if self.unavailable:
            raise WorkloadError(f"workload {self.name} unavailable: {self.unavailable}")
        while True:
            msg = self._read_line(time.monotonic() + 5.0)
            if msg is None:
                raise self._died("left no result")
            if "result" in msg:
                self._result = dict(msg["result"])
                return self._result
            if "error" in msg:
                raise WorkloadError(f"workload {self.name}: {msg['error']}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _precheck(name: str) -> str:
    """Reasons known without starting the child ('' when none)."""
    if name.startswith("io_uring"):
        with (
            contextlib.suppress(OSError, ValueError),
            open("/proc/sys/kernel/io_uring_disabled", encoding="ascii") as f,
        ):
            if int(f.read().strip() or 0) == 2:
                return "io_uring is disabled (sysctl kernel.io_uring_disabled=2)"
    return ""


def start(
    name: str,
    options: Sequence[str],
    *,
    run_as: RunAs | None,
    duration_s: float | None,
) -> Launched:
    """Start workload `name` with `options` (its command-line options), parked at the gate.

    Options are checked here first, so a bad one is a UsageError before any process
    starts. duration_s bounds the run (as --runtime; the smaller wins).
    """
    spec, opts, _ = engine.parse_for(name, options)
    argv = list(options)
    if duration_s is not None and (opts.runtime is None or duration_s < opts.runtime):
        argv += ["--runtime", f"{duration_s:.6f}"]
        parse(argv)
    why = _precheck(spec.name)
    if why:
        return Launched(spec.name, None, -1, None, unavailable=why)
    r, w = os.pipe()
    # Kept open by Launched (its last line explains a crash), closed in Launched.close().
    stderr = tempfile.TemporaryFile(prefix="iotrace-workload-")  # noqa: SIM115
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups))
    cwd = run_as.home if run_as is not None and os.path.isdir(run_as.home) else "/"
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotrace.workloads.child",
                "--report-fd",
                str(w),
                "--parent",
                str(os.getpid()),
                spec.name,
                *argv,
            ],
            pass_fds=(w,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=child_env(run_as),
            cwd=cwd,
            start_new_session=True,
            **kwargs,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(r)
        stderr.close()
        raise WorkloadError(f"cannot start workload {spec.name}: {exc}") from None
    finally:
        os.close(w)
    return Launched(spec.name, proc, r, stderr)
