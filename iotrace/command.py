"""Start `iotrace trace -- COMMAND` held at a gate, as the invoking user.

The child is forked, drops to the user who ran sudo, and waits for SIGUSR1
before exec; the tracer adds its pid to the filter in between, so the trace
starts exactly at exec and misses nothing of the program. The waiting is a
sigwait, which is not one of the traced syscalls, so the gate leaves no
half-seen call behind. No shell is involved: argv goes to execvp as is.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import sys
from dataclasses import dataclass

from iotrace.errors import IotraceError, UsageError

EXIT_NOT_FOUND = 127


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
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(err_r)
                os.setpgid(0, 0)
                signal.sigwait({signal.SIGUSR1})
                if run_as is not None:
                    drop_privileges(run_as)
                    os.environ["HOME"] = run_as.home
                    os.environ["USER"] = os.environ["LOGNAME"] = run_as.name
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execv(self.exe, self.argv)
            except BaseException as exc:  # report why exec failed, then vanish
                try:
                    os.write(err_w, f"{self.argv[0]}: {exc}".encode()[:500])
                finally:
                    os._exit(EXIT_NOT_FOUND)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(err_w)
        self.pid = pid
        self._err_r = err_r

    def release(self) -> None:
        """Let the child exec; raises if exec failed."""
        os.kill(self.pid, signal.SIGUSR1)
        with os.fdopen(self._err_r, "rb") as f:
            msg = f.read()  # EOF at a successful exec (CLOEXEC)
        if msg:
            self.wait()
            raise IotraceError(f"could not start {msg.decode(errors='replace')}", EXIT_NOT_FOUND)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
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

    def terminate(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)

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
