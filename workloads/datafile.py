"""Verifiable data: the private data directory, the data file, and the patterns
that let every read be checked byte for byte.

File pattern: the 8-byte little-endian word at byte offset p holds p + FILE_SALT.
Any block read from anywhere can be checked from its offset alone, a block of
zeros or a block from the wrong offset fails, and checking a batch of blocks is
one vectorised subtraction.

Stream pattern (pipes and sockets): the word at stream position p holds
p + salt, where each producer has its own salt derived from the seed, so bytes
from the wrong stream, lost bytes and reordered bytes all fail.

Data directory: `~/.cache/iotrace` of the user the workload runs as, or
`/var/tmp/iotrace-<uid>` when that is unusable (no home, tmpfs, O_DIRECT
refused). Mode 0700, owned by that user. Data files are reused while their
manifest matches and are rebuilt otherwise; `--clean` removes the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from iotrace.errors import WorkloadError

FILE_SALT = 0x696F_7472_6163_6500  # "iotrace\0": a zero-filled block never matches
PATTERN_VERSION = 1
_CHUNK = 4 << 20


class Unavailable(Exception):
    """This machine (or this user) cannot run the workload; the message says why."""


class DataMismatch(WorkloadError):
    """A read returned bytes that are not what the pattern says: fail loudly."""


# ---------------------------------------------------------------- patterns


def file_words(offset: int, nbytes: int, salt: int = FILE_SALT) -> np.ndarray:
    """The pattern words covering [offset, offset+nbytes); offset and nbytes multiples of 8."""
    start = np.uint64(offset + salt)
    return np.arange(nbytes // 8, dtype=np.uint64) * np.uint64(8) + start


def stream_bytes(position: int, nbytes: int, salt: int) -> np.ndarray:
    """Bytes [position, position+nbytes) of a stream whose word at p is p + salt."""
    first = position - position % 8
    words = file_words(first, (position + nbytes - first + 7) // 8 * 8, salt)
    raw = words.view(np.uint8)
    return raw[position - first : position - first + nbytes]


def stream_salt(seed: int, index: int) -> int:
    """A distinct salt per producer stream, so bytes from another stream fail the check."""
    return (
        FILE_SALT
        ^ (
            (seed * 0x9E37_79B9_7F4A_7C15 + (index + 1) * 0xBF58_476D_1CE4_E5B9)
            & 0xFFFF_FFFF_FFFF_FFFF
        )
    ) & 0xFFFF_FFFF_FFFF_FFF8


class BlockChecker:
    """Checks whole blocks of the data file in batches, with scratch reused across calls."""

    def __init__(self, bs: int, path: str, capacity: int) -> None:
        self.bs = bs
        self.path = path
        self._ramp = np.arange(bs // 8, dtype=np.uint64) * np.uint64(8)
        self._ramp_salt = self._ramp + np.uint64(FILE_SALT)
        self._scratch = np.empty((capacity, bs // 8), dtype=np.uint64)
        self.checked = 0

    def check(self, blocks: np.ndarray, offsets: np.ndarray) -> None:
        """blocks: (n, bs) uint8 rows read at byte `offsets` (n,). Raises DataMismatch.

        word - (ramp + salt) - offset is 0 (mod 2**64) exactly where a word is
        right: one read of the blocks (just DMA'd, so from memory), the rest in
        cached scratch, no temporary arrays.
        """
        n = len(offsets)
        if n == 0:
            return
        words = blocks.view(np.uint64)
        diff = self._scratch[:n]
        np.subtract(words, self._ramp_salt, out=diff)
        np.subtract(diff, offsets.astype(np.uint64)[:, None], out=diff)
        if np.count_nonzero(diff):
            self._report(words, offsets)
        self.checked += n

    def check_one(self, block: np.ndarray, offset: int) -> None:
        self.check(block.reshape(1, self.bs), np.array([offset], dtype=np.uint64))

    def _report(self, words: np.ndarray, offsets: np.ndarray) -> None:
        for row, off in zip(words, offsets.tolist(), strict=True):
            expect = self._ramp + np.uint64(int(off) + FILE_SALT)
            bad = np.flatnonzero(row != expect)
            if len(bad):
                at = int(off) + int(bad[0]) * 8
                raise DataMismatch(
                    f"data mismatch in {self.path} at byte {at} (block at {int(off)}): "
                    f"expected {int(expect[bad[0]]):#018x}, read {int(row[bad[0]]):#018x}; "
                    f"{len(bad) * 8} bytes of this {self.bs}-byte block differ "
                    "(remove the data with --clean to rebuild it)"
                )


class StreamChecker:
    """Checks the bytes of one pipe/socket stream in order."""

    def __init__(self, salt: int, what: str) -> None:
        self.salt = salt
        self.what = what
        self.position = 0

    def check(self, data: bytes | memoryview | np.ndarray) -> None:
        got = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        n = len(got)
        expect = stream_bytes(self.position, n, self.salt)
        if not np.array_equal(got, expect):
            bad = int(np.flatnonzero(got != expect)[0])
            raise DataMismatch(
                f"data mismatch on {self.what} at stream byte {self.position + bad}: "
                f"expected {int(expect[bad]):#04x}, read {int(got[bad]):#04x}"
            )
        self.position += n


# ---------------------------------------------------------------- directory


def fs_type(path: str) -> str:
    """The filesystem type holding path, from /proc/self/mountinfo ('' when unknown)."""
    try:
        target = os.path.realpath(path)
        best, fstype = "", ""
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                mnt = parts[4].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                    best
                ):
                    best, fstype = mnt, parts[sep + 1]
        return fstype
    except (OSError, ValueError, IndexError):
        return ""


def candidate_dirs(home: str | None, uid: int) -> list[str]:
    """Where the data directory may go, best first."""
    dirs = []
    if home and home not in ("/", "/nonexistent") and os.path.isdir(home):
        dirs.append(os.path.join(home, ".cache", "iotrace"))
    dirs.append(f"/var/tmp/iotrace-{uid}")
    return dirs


def _make_private_dir(path: str) -> None:
    """Create path (mode 0700) or accept it only if it is a real directory owned by us."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} exists and is not a directory")
    if st.st_uid != os.geteuid():
        # /var/tmp is shared: never use a directory someone else prepared.
        raise OSError(f"{path} belongs to uid {st.st_uid}, not {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def direct_io_works(directory: str) -> str:
    """'' when O_DIRECT reads work in directory, else why not."""
    probe = os.path.join(directory, ".direct-probe")
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        try:
            fd = os.open(probe, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            return f"O_DIRECT refused on {directory} ({fs_type(directory) or 'unknown fs'}): " + (
                exc.strerror or str(exc)
            )
        os.close(fd)
        return ""
    except OSError as exc:
        return f"cannot write in {directory}: {exc.strerror or exc}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def choose_data_dir(explicit: str | None, home: str | None) -> str:
    """The private data directory for the current (already dropped) user.

    Raises Unavailable with every reason when no candidate works.
    """
    uid = os.geteuid()
    candidates = [explicit] if explicit else candidate_dirs(home, uid)
    reasons = []
    for path in candidates:
        try:
            if not explicit and fs_type(os.path.dirname(path) or "/") in ("tmpfs", "ramfs"):
                reasons.append(f"{path}: on tmpfs")
                continue
            if explicit:
                if not os.path.isdir(path):  # the user's own directory: never created
                    raise OSError(f"{path}: no such directory")
            else:
                _make_private_dir(path)
            if not explicit and fs_type(path) in ("tmpfs", "ramfs"):
                reasons.append(f"{path}: on tmpfs")
                continue
            why = direct_io_works(path)
            if why:
                reasons.append(why)
                continue
            return path
        except OSError as exc:
            reasons.append(f"{path}: {exc.strerror or exc}")
    raise Unavailable("no data directory supporting O_DIRECT: " + "; ".join(reasons))


def clean(home: str | None, uid: int | None = None) -> list[str]:
    """Remove every data directory that may belong to this user; returns what was removed."""
    uid = os.geteuid() if uid is None else uid
    removed = []
    for path in candidate_dirs(home, uid):
        # Only that user's own directory, even when root cleans for them.
        if os.path.isdir(path) and not os.path.islink(path) and os.lstat(path).st_uid == uid:
            shutil.rmtree(path)
            removed.append(path)
    return removed


# ---------------------------------------------------------------- data file


@dataclass(frozen=True)
class DataFile:
    path: str
    size: int


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    # Several workloads may start at once and share a file: one builds it.
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_data_file(directory: str, size: int) -> DataFile:
    """The data file of `size` bytes in directory, built once and reused while unchanged.

    Reuse is decided by the manifest (pattern version, size) and the file's
    size, not its mtime: a block corrupted in place must be caught by the
    read-side check, not silently rebuilt.
    """
    path = os.path.join(directory, f"data-{size}.bin")
    manifest = path + ".json"
    want = {"pattern_version": PATTERN_VERSION, "size": size, "salt": FILE_SALT}
    with _locked(directory):
        try:
            with open(manifest, encoding="utf-8") as f:
                have = json.load(f)
            if have == want and os.stat(path).st_size == size:
                return DataFile(path, size)
        except (OSError, ValueError):
            pass
        free = shutil.disk_usage(directory).free
        if free < size + (64 << 20):
            raise Unavailable(
                f"not enough disk in {directory}: need {size >> 20} MiB + 64 MiB spare, "
                f"{free >> 20} MiB free"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(manifest)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for off in range(0, size, _CHUNK):
                n = min(_CHUNK, size - off)
                os.write(fd, file_words(off, n).tobytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        with open(manifest, "w", encoding="utf-8") as f:
            json.dump(want, f)
        return DataFile(path, size)


def drop_cache(fd: int, size: int) -> None:
    """Ask the kernel to forget the file's cached pages (buffered variants start cold)."""
    from iotrace.workloads import libc

    os.fdatasync(fd)
    libc.posix_fadvise(fd, 0, size, libc.POSIX_FADV_DONTNEED)
