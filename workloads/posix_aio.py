"""posix-aio: glibc's POSIX AIO, `aio_read` + `aio_suspend`/`aio_error`/`aio_return`.

glibc implements it with helper threads that each run a blocking `pread64`
and serialises requests per fd, so `--iodepth 32` overlaps far less than
libaio or io_uring at the same depth: the trace should show the helper
threads' pread64 calls, one per request.

Every request goes through the real glibc calls (a tracer may put uprobes on
them); the `__error_code` field is only peeked with numpy to find which slots
to ask about after each `aio_suspend`, as glibc's own `aio_error` does.
"""

from __future__ import annotations

import ctypes
import errno
import time

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.asyncfile import _failed, request_limit
from iotrace.workloads.datafile import BlockChecker
from iotrace.workloads.engine import Context
from iotrace.workloads.offsets import Offsets, OffsetStream
from iotrace.workloads.registry import DEFAULT_IODEPTH

from iotrace.errors import WorkloadError

SIGEV_NONE = 1
# struct aiocb on LP64 glibc (x86-64, arm64): 168 bytes, checked against <aio.h>.
AIOCB = np.dtype(
    {
        "names": [
            "fildes",
            "lio_opcode",
            "reqprio",
            "buf",
            "nbytes",
            "sigev_notify",
            "error_code",
            "return_value",
            "offset",
        ],
        "formats": ["<i4", "<i4", "<i4", "<u8", "<u8", "<i4", "<i4", "<i8", "<i8"],
        "offsets": [0, 4, 8, 16, 24, 44, 112, 120, 128],
        "itemsize": 168,
    }
)


class PosixAio:
    def __init__(self, ctx: Context) -> None:
        opts = ctx.opts
        self.depth = opts.iodepth or DEFAULT_IODEPTH
        direct = ctx.direct()
        fd, df = ctx.open_data_file(direct)
        self.role = ctx.role("file")
        self.role.fds = [fd]
        self.bs = opts.bs
        self.limit = request_limit(ctx)
        self.total_ops = self.limit
        self.buf = libc.AlignedBuffer(self.depth, opts.bs)
        self.checker = BlockChecker(opts.bs, df.path, self.depth)
        self.offsets = OffsetStream(Offsets(opts.filesize, opts.bs, opts.rw, opts.seed))
        self.cbs = np.zeros(self.depth, dtype=AIOCB)
        self.cbs["fildes"] = fd
        self.cbs["nbytes"] = opts.bs
        self.cbs["sigev_notify"] = SIGEV_NONE
        self.cbs["buf"] = np.uint64(self.buf.address) + np.arange(
            self.depth, dtype=np.uint64
        ) * np.uint64(opts.bs)
        base = self.cbs.ctypes.data
        self.addrs = [base + i * AIOCB.itemsize for i in range(self.depth)]
        # aio_suspend's list: in-flight aiocbs; NULL entries are ignored.
        self.list = (ctypes.c_void_p * self.depth)()
        self.slot_off = np.zeros(self.depth, dtype=np.uint64)
        self.slot_t = np.zeros(self.depth, dtype=np.int64)
        self._offset_col = self.cbs["offset"]
        self._error_col = self.cbs["error_code"]
        self.suspends = 0

    def _submit(self, slots: list[int], offsets: np.ndarray) -> None:
        self._offset_col[slots] = offsets
        self.slot_off[slots] = offsets
        self.slot_t[slots] = time.perf_counter_ns()
        aio_read, addrs, lst = libc.aio_read, self.addrs, self.list
        for s in slots:
            if aio_read(addrs[s]) != 0:
                err = libc.errno_now()
                raise WorkloadError(f"aio_read failed: {errno.errorcode.get(err, err)}")
            lst[s] = addrs[s]

    def run(self, ctx: Context) -> None:
        role, bs, depth = self.role, self.bs, self.depth
        limit = self.limit if self.limit is not None else -1
        first = depth if limit < 0 else min(depth, limit)
        self._submit(list(range(first)), self.offsets.take(first))
        submitted, inflight, stopping = first, first, False
        inflight_mask = np.zeros(depth, dtype=bool)
        inflight_mask[:first] = True
        aio_error, aio_return, suspend = libc.aio_error, libc.aio_return, libc.aio_suspend
        addrs, lst = self.addrs, self.list
        try:
            while inflight:
                if suspend(lst, depth, None) != 0 and libc.errno_now() not in (errno.EINTR,):
                    err = libc.errno_now()
                    raise WorkloadError(f"aio_suspend failed: {errno.errorcode.get(err, err)}")
                self.suspends += 1
                t = time.perf_counter_ns()
                done_np = np.flatnonzero(inflight_mask & (self._error_col != errno.EINPROGRESS))
                if not len(done_np):
                    continue
                done = done_np.tolist()
                results = []
                for s in done:
                    aio_error(addrs[s])
                    results.append(aio_return(addrs[s]))
                    lst[s] = None
                res = np.array(results, dtype=np.int64)
                if (res != bs).any():
                    bad = int(np.flatnonzero(res != bs)[0])
                    if res[bad] < 0:
                        res[bad] = -int(self._error_col[done[bad]])
                    raise _failed(int(res[bad]), bs, int(self.slot_off[done[bad]]))
                self.checker.check(self.buf.blocks[done_np], self.slot_off[done_np])
                role.lat.add_many(t - self.slot_t[done_np])
                k = len(done)
                inflight -= k
                inflight_mask[done_np] = False
                role.ops += k
                role.bytes += k * bs
                if not stopping:
                    now = time.monotonic()
                    stopping = ctx.expired(now)
                    ctx.progress.update(now, ctx.start, role.ops)
                if stopping:
                    continue
                n = k if limit < 0 else min(k, limit - submitted)
                if n <= 0:
                    continue
                again = done[:n]
                self._submit(again, self.offsets.take(n))
                inflight_mask[again] = True
                submitted += n
                inflight += n
        finally:
            role.extra["aio_suspend"] = self.suspends

    def close(self) -> None:
        # The buffer stays mapped: after an interruption glibc's helper threads may
        # still be writing into it, and the process is about to end anyway.
        libc.aio_cancel(self.role.fds[0], None)


def prepare(ctx: Context) -> PosixAio:
    return PosixAio(ctx)
