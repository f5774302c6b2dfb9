"""Output-file safety, for every file iotrace writes: trace files (`run`,
`trace`), `report --html` and `export`.

- Never clobber an existing file unless asked (--force).
- Never follow a symlink at the target: a planted link must not redirect
  root's output.
- Only regular files: a FIFO, a device node or a socket at the target is
  refused with one line. Opening is non-blocking and the type is checked on
  the opened descriptor before anything is truncated, so a FIFO swapped in at
  the last moment cannot hang iotrace (with probes loaded) and a device is
  never truncated, written or handed over.
- A regular file with other hard links is not overwritten (root would write
  through a link planted to a file it owns).
- Under sudo, a file iotrace created belongs to the user who ran sudo; an
  existing file overwritten with --force keeps its owner.
- Every failure is one line (OutputError), never a traceback. A file that
  could not be written completely is removed, so a half-written export is
  never mistaken for a good one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from iotrace.errors import OutputError


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _not_regular(path: Path, mode: int) -> OutputError:
    return OutputError(f"{path} is {_kind(mode)}, not a regular file; refusing to write to it")


def _exists(path: Path, hint: str) -> OutputError:
    return OutputError(f"{path} already exists; choose another {hint} or pass --force")


def check_target(path: str | Path, *, force: bool, hint: str = "name") -> Path:
    """Fail early (before long work, before probes are loaded) when `path`
    cannot be an output; returns it. `create` checks all of it again on the
    descriptor it opens, so this is for a quick, clear message only."""
    path = Path(path)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"{path} is a symbolic link; refusing to write through it")
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if not force:
            raise _exists(path, hint)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: directory {parent} does not exist")
    return path


@dataclass
class Opened:
    fd: int
    created: bool
    """True when iotrace made the file (False: an existing one, --force)."""


def _open_fd(path: Path, force: bool, hint: str) -> Opened:
    base = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    created = True
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if not force:
            raise _exists(path, hint) from None
        created = False
        try:
            # No O_TRUNC here: nothing is truncated before its type is known.
            fd = os.open(path, base)
        except OSError as exc:
            raise _open_error(path, exc) from None
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if not created and st.st_nlink > 1:
            raise OutputError(f"{path} has other hard links; refusing to overwrite it")
        if not created:
            os.ftruncate(fd, 0)
        # Writes to a regular file never block anyway; clear the flag so a short
        # write is only ever a real error.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except OutputError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise OutputError(f"cannot create {path}: {exc.strerror}") from None
    return Opened(fd, created)


def _open_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ELOOP:  # the target is a symlink and O_NOFOLLOW refused it
        return OutputError(f"{path} is a symbolic link; refusing to write through it")
    if exc.errno == errno.EISDIR:
        return OutputError(f"{path} is a directory")
    if exc.errno == errno.ENXIO:  # a FIFO with no reader (O_NONBLOCK)
        return OutputError(f"{path} is a FIFO, not a regular file; refusing to write to it")
    return OutputError(f"cannot create {path}: {exc.strerror}")


def _give_to_invoker(fd: int) -> None:
    """Under sudo, a file iotrace created belongs to the user who ran sudo."""
    from iotrace.command import invoking_user

    cred = invoking_user()
    if cred is not None and stat.S_ISREG(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):
            os.fchown(fd, cred.uid, cred.gid)


def create(path: str | Path, *, force: bool = False, hint: str = "name") -> int:
    """A descriptor open for writing on a new (or, with `force`, emptied) regular
    file at `path`; OutputError with one line otherwise."""
    opened = _open_fd(Path(path), force, hint)
    if opened.created:
        _give_to_invoker(opened.fd)
    return opened.fd


def _remove_if_ours(path: Path, fd_stat: os.stat_result | None) -> None:
    # Only the half-written regular file we wrote is ours to remove, never
    # whatever has taken its name since.
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (
            fd_stat is not None
            and stat.S_ISREG(st.st_mode)
            and (st.st_dev, st.st_ino) == (fd_stat.st_dev, fd_stat.st_ino)
        ):
            path.unlink()


@contextlib.contextmanager
def output_file(path: str | Path, *, force: bool = False) -> Iterator[IO[bytes]]:
    """A new binary file at `path`; removed again if the body fails."""
    path = Path(path)
    fd = create(path, force=force)
    st = os.fstat(fd)
    f = os.fdopen(fd, "wb")
    try:
        with f:
            yield f
    except OSError as exc:
        _remove_if_ours(path, st)
        raise OutputError(f"writing {path} failed: {exc.strerror or exc}") from None
    except BaseException:
        _remove_if_ours(path, st)
        raise
