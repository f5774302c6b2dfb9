"""Start `iotrace trace -- COMMAND` held at a gate, as the invoking user.

The child is forked, drops to the user who ran sudo, and waits for SIGUSR1
before exec; the tracer adds its pid to the filter in between, so the trace
starts exactly at exec and misses nothing of the program. The waiting is a
sigwait, which is not one of the traced syscalls, so the gate leaves no
half-seen call behind. No shell is involved: argv goes to execvp as is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import sys
import time
from dataclasses import dataclass

from iotrace.errors import IotraceError, UsageError

EXIT_NOT_FOUND = 127
PR_SET_PDEATHSIG = 1
TERMINATE_GRACE_S = 5.0
"""How long a stopped command gets between SIGTERM and SIGKILL."""

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int, parent: int) -> None:
    """Have the kernel send `sig` when iotrace dies (even by SIGKILL), so a
    command never runs on unnoticed; exits at once if iotrace is already gone.
    Must be set again after a change of credentials, which clears it."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(EXIT_NOT_FOUND)


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str


def invoking_user() -> Credentials | None:
    """The user behind sudo, when root was reached through sudo."""
    if os.geteuid() != 0:
        return None
    uid_s, gid_s = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if not uid_s or not gid_s:
        return None
    try:
        uid, gid = int(uid_s), int(gid_s)
    except ValueError:
        return None
    if uid == 0:
        return None
    try:
        pw = pwd.getpwuid(uid)
        name, home = pw.pw_name, pw.pw_dir
        groups = tuple(os.getgrouplist(name, gid))
    except KeyError:
        name, home, groups = str(uid), "/", (gid,)
    return Credentials(uid=uid, gid=gid, groups=groups, home=home, name=name)


def drop_privileges(cred: Credentials) -> None:
    """Become `cred` for good (groups first, then gid, then uid)."""
    os.setgroups(list(cred.groups))
    os.setresgid(cred.gid, cred.gid, cred.gid)
    os.setresuid(cred.uid, cred.uid, cred.uid)


def resolve(argv: list[str]) -> str:
    """The executable for argv[0], or a one-line error when there is none."""
    if not argv:
        raise UsageError("no command given: use 'iotrace trace -- COMMAND [ARGS...]' or -p PID")
    exe = shutil.which(argv[0])
    if exe is None:
        raise IotraceError(f"command not found: {argv[0]}", EXIT_NOT_FOUND)
    return exe


class GatedCommand:
    """A forked child held before exec until `release()`."""

    def __init__(self, argv: list[str], run_as: Credentials | None) -> None:
        self.argv = list(argv)
        self.exe = resolve(self.argv)
        self.returncode: int | None = None
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            try:
                # iotrace's own stop handlers would make the held child ignore
                # SIGTERM and wait at the gate for ever.
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                die_with_parent(signal.SIGKILL, parent)  # nothing of the user's ran yet
                os.close(err_r)
                os.setpgid(0, 0)
                signal.sigwait({signal.SIGUSR1})
                if run_as is not None:
                    drop_privileges(run_as)
                    os.environ["HOME"] = run_as.home
                    os.environ["USER"] = os.environ["LOGNAME"] = run_as.name
                # From here on the user's program: the same SIGTERM as after Ctrl-C.
                die_with_parent(signal.SIGTERM, parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
                os.execv(self.exe, self.argv)
            except BaseException as exc:  # report why exec failed, then vanish
                try:
                    os.write(err_w, f"{self.argv[0]}: {exc}".encode()[:500])
                finally:
                    os._exit(EXIT_NOT_FOUND)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(err_w)
        with contextlib.suppress(OSError):  # also here, so the group exists at once
            os.setpgid(pid, pid)
        self.pid = pid
        self._err_r = err_r

    def release(self) -> None:
        """Let the child exec; raises if exec failed."""
        os.kill(self.pid, signal.SIGUSR1)
        err_r, self._err_r = self._err_r, -1
        with os.fdopen(err_r, "rb") as f:
            msg = f.read()  # EOF at a successful exec (CLOEXEC)
        if msg:
            self.wait()
            raise IotraceError(f"could not start {msg.decode(errors='replace')}", EXIT_NOT_FOUND)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = 0
        return self.returncode

    def terminate(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """SIGTERM the command's process group, SIGKILL it after `grace_s`, and
        reap the command, so its exit status is known and no zombie is left."""
        if self._err_r >= 0:  # never released: nobody will read it
            os.close(self._err_r)
            self._err_r = -1
        if self.poll() is None:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.poll() is None:
                self._signal_group(signal.SIGKILL)
                self.wait()

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    @property
    def exit_code(self) -> int:
        """The command's status the way a shell reports it (128+N for signal N)."""
        rc = self.returncode if self.returncode is not None else 0
        return 128 - rc if rc < 0 else rc


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stdout_is_tty() -> bool:
    return sys.stdout.isatty() and sys.stdin.isatty()
