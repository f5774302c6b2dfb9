"""The few libc entry points and raw syscalls the workloads need, through ctypes.

Python's `os` module cannot read into an aligned buffer with `pread64` (O_DIRECT
needs one; `os.pread` allocates an unaligned bytes object) and has no Linux AIO
or io_uring at all, so the workloads call libc and `syscall()` directly. Every
function here has its argtypes set once: ctypes calls without them are slower
and silently truncate 64-bit arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import os
import platform

import numpy as np

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# Raw syscall numbers by machine: the Linux AIO calls have per-architecture
# numbers; the io_uring ones are the same everywhere (unified table).
_SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {"io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209},
    "aarch64": {"io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_getevents": 4},
}
IO_URING_SETUP = 425
IO_URING_ENTER = 426
IO_URING_REGISTER = 427


def syscall_number(name: str) -> int | None:
    """The number of a Linux AIO syscall on this machine, None when unknown here."""
    return _SYSCALL_NUMBERS.get(platform.machine(), {}).get(name)


syscall = _libc.syscall
syscall.restype = ctypes.c_long
# Six longs cover every syscall used here; shorter calls pass zeros.
syscall.argtypes = [ctypes.c_long] * 7

# The same syscall() without argtypes, for the calls made per request: ctypes
# then passes a Python int as a C int (half the cost of converting seven
# c_longs) and masks it to 32 bits, so ints only for small non-negative values
# (fds, counts, flags, 0 for NULL); pointers and Linux AIO contexts go in as
# ctypes objects made once (c_void_p, c_ulong), which are passed as they are.
# (Indexing the library makes a second function object; attribute access is cached.)
syscall_ints = _libc["syscall"]
syscall_ints.restype = ctypes.c_long

pread = _libc.pread
pread.restype = ctypes.c_ssize_t
pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]

posix_fadvise = _libc.posix_fadvise
posix_fadvise.restype = ctypes.c_int
posix_fadvise.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
POSIX_FADV_DONTNEED = 4

prctl = _libc.prctl
prctl.restype = ctypes.c_int
prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
PR_SET_PDEATHSIG = 1

# glibc >= 2.34 has POSIX AIO in libc itself; older ones keep it in librt.
_aio_lib = _libc if hasattr(_libc, "aio_read") else ctypes.CDLL("librt.so.1", use_errno=True)
aio_read = _aio_lib.aio_read
aio_read.restype = ctypes.c_int
aio_read.argtypes = [ctypes.c_void_p]
aio_error = _aio_lib.aio_error
aio_error.restype = ctypes.c_int
aio_error.argtypes = [ctypes.c_void_p]
aio_return = _aio_lib.aio_return
aio_return.restype = ctypes.c_ssize_t
aio_return.argtypes = [ctypes.c_void_p]
aio_suspend = _aio_lib.aio_suspend
aio_suspend.restype = ctypes.c_int
aio_suspend.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
aio_cancel = _aio_lib.aio_cancel
aio_cancel.restype = ctypes.c_int
aio_cancel.argtypes = [ctypes.c_int, ctypes.c_void_p]


def errno_now() -> int:
    return ctypes.get_errno()


def check(ret: int, what: str) -> int:
    """Raise OSError with the current errno when a libc call returned -1."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class AlignedBuffer:
    """Page-aligned anonymous memory (mmap), viewed as `count` blocks of `bs` bytes.

    O_DIRECT needs the user buffer aligned to the device's DMA alignment; a page
    is enough everywhere. Allocated once per run and reused for every request.
    """

    def __init__(self, count: int, bs: int) -> None:
        self.count = count
        self.bs = bs
        length = max(count * bs, mmap.PAGESIZE)
        self._map = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.bytes = np.frombuffer(self._map, dtype=np.uint8, count=count * bs)
        self.blocks = self.bytes.reshape(count, bs)
        self.address = self.bytes.ctypes.data

    def addr(self, index: int) -> int:
        return self.address + index * self.bs

    def close(self) -> None:
        # The numpy views keep the buffer exported; drop them before unmapping.
        del self.bytes, self.blocks
        # A caller may still hold a view: then the mapping goes with the process.
        with contextlib.suppress(BufferError):
            self._map.close()
