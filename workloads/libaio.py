"""libaio: Linux AIO on an O_DIRECT file through the raw syscalls.

`io_setup` once; then every batch of completed slots is resubmitted at once,
`--iodepth-batch-submit` (default 2) iocb pointers per `io_submit`, and
completions are reaped with `io_getevents(min_nr=--iodepth_batch_complete_min,
nr=iodepth)`. Without
O_DIRECT (`--direct 0`) the kernel completes each read inside io_submit:
that is the point of showing it.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.asyncfile import AsyncFileLoop
from iotrace.workloads.datafile import Unavailable
from iotrace.workloads.engine import Context
from iotrace.workloads.registry import DEFAULT_IODEPTH, DEFAULT_IODEPTH_BATCH_SUBMIT

IOCB_CMD_PREAD = 0

IOCB = np.dtype(
    [
        ("data", "<u8"),
        ("key", "<u4"),
        ("rw_flags", "<i4"),
        ("opcode", "<u2"),
        ("reqprio", "<i2"),
        ("fildes", "<u4"),
        ("buf", "<u8"),
        ("nbytes", "<u8"),
        ("offset", "<i8"),
        ("reserved2", "<u8"),
        ("flags", "<u4"),
        ("resfd", "<u4"),
    ]
)
IO_EVENT = np.dtype([("data", "<u8"), ("obj", "<u8"), ("res", "<i8"), ("res2", "<i8")])
assert IOCB.itemsize == 64 and IO_EVENT.itemsize == 32


class LinuxAio:
    def __init__(
        self, fd: int, depth: int, nslots: int, buf_address: int, bs: int, batch: int
    ) -> None:
        nums = {
            n: libc.syscall_number(n)
            for n in ("io_setup", "io_submit", "io_getevents", "io_destroy")
        }
        missing = [n for n, v in nums.items() if v is None]
        if missing:
            raise Unavailable(f"Linux AIO syscall numbers unknown on {os.uname().machine}")
        self._nr_setup, self._nr_submit = nums["io_setup"], nums["io_submit"]
        self._nr_getevents, self._nr_destroy = nums["io_getevents"], nums["io_destroy"]
        self.ctx_id = ctypes.c_ulong(0)
        ret = libc.syscall(self._nr_setup, depth, ctypes.addressof(self.ctx_id), 0, 0, 0, 0)
        if ret < 0:
            err = libc.errno_now()
            raise Unavailable(
                f"io_setup({depth}) failed: {os.strerror(err)}"
                + (" (raise fs.aio-max-nr)" if err == 11 else "")
            )
        self.depth = depth
        self.batch = batch
        # One iocb per buffer slot (the loop uses more slots than requests in flight).
        self.iocbs = np.zeros(nslots, dtype=IOCB)
        self.iocbs["opcode"] = IOCB_CMD_PREAD
        self.iocbs["fildes"] = fd
        self.iocbs["nbytes"] = bs
        self.iocbs["data"] = np.arange(nslots, dtype=np.uint64)
        self.iocbs["buf"] = np.uint64(buf_address) + np.arange(nslots, dtype=np.uint64) * np.uint64(
            bs
        )
        # The iocb pointer of each slot, gathered into _ptrs for io_submit.
        self._slot_ptr = np.uint64(self.iocbs.ctypes.data) + np.arange(
            nslots, dtype=np.uint64
        ) * np.uint64(IOCB.itemsize)
        self._ptrs = np.zeros(depth, dtype=np.uint64)
        self._ptrs_addr = self._ptrs.ctypes.data
        self._events = np.zeros(depth, dtype=IO_EVENT)
        self._events_addr = self._events.ctypes.data
        self._offset_col = self.iocbs["offset"]
        self.slot_offsets = self._offset_col
        self._ev_data = self._events["data"].view(np.int64)
        self._ev_res = self._events["res"]
        self._ctx = self.ctx_id.value
        # Per-request calls go through libc.syscall_ints: 64-bit values as ctypes objects.
        self._ctx_arg = ctypes.c_ulong(self._ctx)
        self._events_arg = ctypes.c_void_p(self._events_addr)
        self._ptr_args = [ctypes.c_void_p(self._ptrs_addr + 8 * i) for i in range(depth)]
        self.submits = 0
        self.getevents = 0

    def queue(self, slots: np.ndarray, offsets: np.ndarray) -> None:
        n = len(slots)
        self._offset_col[slots] = offsets
        np.take(self._slot_ptr, slots, out=self._ptrs[:n])
        call, nr, ctx, ptrs, batch = (
            libc.syscall_ints,
            self._nr_submit,
            self._ctx_arg,
            self._ptr_args,
            self.batch,
        )
        i = 0
        while i < n:
            got = call(nr, ctx, min(n - i, batch), ptrs[i])
            self.submits += 1
            if got < 0:
                err = libc.errno_now()
                if err == 4:  # EINTR: nothing was queued, try again
                    continue
                raise OSError(err, f"io_submit: {os.strerror(err)}")
            i += got

    def flush(self) -> None:
        """Nothing to do: queue() already called io_submit."""

    def reap(self, min_nr: int) -> tuple[np.ndarray, np.ndarray]:
        while True:
            got = libc.syscall_ints(
                self._nr_getevents, self._ctx_arg, min_nr, self.depth, self._events_arg, None
            )
            self.getevents += 1
            if got >= 0:
                break
            err = libc.errno_now()
            if err != 4:
                raise OSError(err, f"io_getevents: {os.strerror(err)}")
        # Views into the events buffer: the caller uses them before the next reap.
        return self._ev_data[:got], self._ev_res[:got]

    def close(self) -> None:
        if self._ctx:
            libc.syscall(self._nr_destroy, self._ctx, 0, 0, 0, 0, 0)
            self._ctx = 0


class Libaio:
    def __init__(self, ctx: Context) -> None:
        opts = ctx.opts
        depth = opts.iodepth or DEFAULT_IODEPTH
        direct = ctx.direct()
        fd, df = ctx.open_data_file(direct)
        role = ctx.role("file")
        role.fds = [fd]
        self.loop = AsyncFileLoop(ctx, role, df.path, depth)
        self.total_ops = self.loop.total_ops
        batch = opts.iodepth_batch_submit or DEFAULT_IODEPTH_BATCH_SUBMIT
        self.aio = LinuxAio(fd, depth, self.loop.nslots, self.loop.buf.address, opts.bs, batch)
        self.role = role

    def run(self, ctx: Context) -> None:
        try:
            self.loop.run(self.aio)
        finally:
            self.role.extra["io_submit"] = self.aio.submits
            self.role.extra["io_getevents"] = self.aio.getevents

    def close(self) -> None:
        self.aio.close()
        self.loop.close()


def prepare(ctx: Context) -> Libaio:
    return Libaio(ctx)
