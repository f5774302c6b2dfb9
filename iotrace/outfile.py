"""Creating the files `report --html` and `export` write.

Never clobber an existing file unless asked (--force), never follow a symlink
at the target (a planted link must not redirect root's output), and turn every
failure into one line (OutputError) instead of a traceback. A file that could
not be written completely is removed, so a half-written export is never
mistaken for a good one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from iotrace.errors import OutputError


def _open(path: Path, force: bool) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    flags |= os.O_TRUNC if force else os.O_EXCL
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise OutputError(f"{path} already exists; choose another name or pass --force") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the target is a symlink and O_NOFOLLOW refused it
            raise OutputError(f"{path} is a symbolic link; refusing to write through it") from None
        raise OutputError(f"cannot create {path}: {exc.strerror}") from None
    _give_to_invoker(fd)
    return os.fdopen(fd, "wb")


def _give_to_invoker(fd: int) -> None:
    """Under sudo, a new regular file belongs to the user who ran sudo."""
    from iotrace.command import invoking_user

    cred = invoking_user()
    if cred is not None and stat.S_ISREG(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):
            os.fchown(fd, cred.uid, cred.gid)


def _remove_if_regular(path: Path) -> None:
    # Only a half-written regular file is ours to remove: `-o /dev/full
    # --force` must not delete the device node.
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()


@contextlib.contextmanager
def output_file(path: str | Path, *, force: bool = False) -> Iterator[IO[bytes]]:
    """A new binary file at `path`; removed again if the body fails."""
    path = Path(path)
    f = _open(path, force)
    try:
        with f:
            yield f
    except OSError as exc:
        _remove_if_regular(path)
        raise OutputError(f"writing {path} failed: {exc.strerror or exc}") from None
    except BaseException:
        _remove_if_regular(path)
        raise


def check_target(path: str | Path, *, force: bool) -> Path:
    """Fail early (before long work) when `path` cannot be created; returns it.

    Writers that need a path rather than a file object (pyarrow) create the file
    through `output_file` and write to its descriptor, so this is only a courtesy
    check for a quick, clear message.
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; refusing to write through it")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists; choose another name or pass --force")
    if path.is_dir():
        raise OutputError(f"{path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: no such directory {parent}")
    return path
