"""sync-nonblocking: the thread asks again and again and burns CPU meanwhile.

Streams: `read()` on an O_NONBLOCK pipe and socket fed by paced producers;
most calls fail with EAGAIN and are retried at once (`--backoff 0`, the
default: spin) or after a short sleep (`--backoff 100us`).

File: `preadv2(RWF_NOWAIT)` through the page cache (started cold). When the
block is not cached the kernel answers EAGAIN instead of waiting, and the
workload falls back to a blocking `pread64`, the way real programs use
RWF_NOWAIT. O_NONBLOCK itself means nothing on regular files.

Counts: `--pipe-reads N` = exactly N read() calls that return data on the
pipe (plus however many EAGAINs, reported as `eagain`); `--file-reads N` =
exactly N preadv2() plus one pread64() per EAGAIN (reported as `fallbacks`).
"""

from __future__ import annotations

import os
import time

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.datafile import StreamChecker, drop_cache
from iotrace.workloads.engine import Context
from iotrace.workloads.measure import Role
from iotrace.workloads.producer import Channel
from iotrace.workloads.sources import SourceThreads, source_counts
from iotrace.workloads.sync_blocking import FileLoop

from iotrace.errors import WorkloadError

VERIFY_BATCH = 64


class SpinLoop:
    """read() on an O_NONBLOCK fd, retried on EAGAIN until data comes."""

    def __init__(
        self, ctx: Context, role: Role, ch: Channel, count: int | None, threads: SourceThreads
    ) -> None:
        self.ctx, self.role, self.fd, self.count, self.threads = (
            ctx,
            role,
            ch.read_fd,
            count,
            threads,
        )
        os.set_blocking(ch.read_fd, False)
        self.checker = StreamChecker(ch.salt, f"the {role.name} (fd {ch.read_fd})")
        role.extra["eagain"] = 0

    def __call__(self) -> None:
        fd, bs, role, ctx = self.fd, self.ctx.opts.bs, self.role, self.ctx
        backoff = self.ctx.opts.backoff
        sleep, read, clock, monotonic = time.sleep, os.read, time.perf_counter_ns, time.monotonic
        lat, check, extra = role.lat, self.checker.check, role.extra
        limit = self.count if self.count is not None else -1
        done = 0
        eagain = 0
        try:
            while done != limit and not self.threads.stop:
                t0 = clock()
                while True:
                    try:
                        data = read(fd, bs)
                        break
                    except BlockingIOError:
                        eagain += 1
                        if self.threads.stop or ctx.expired(monotonic()):
                            return
                        if backoff:
                            sleep(backoff)
                t1 = clock()
                if not data:
                    raise WorkloadError(f"{role.name} producer ended after {role.bytes} bytes")
                check(data)
                done += 1
                lat.add(t1 - t0)
                role.ops = done
                if self.threads.solo:
                    ctx.progress.update(time.monotonic(), ctx.start, done)
                role.bytes += len(data)
                extra["eagain"] = eagain
                if ctx.expired(monotonic()):
                    break
        finally:
            extra["eagain"] = eagain


class NowaitFileLoop(FileLoop):
    """preadv2(RWF_NOWAIT), falling back to pread64 on EAGAIN or a short read."""

    def __init__(
        self,
        ctx: Context,
        role: Role,
        fd: int,
        path: str,
        count: int | None,
        threads: SourceThreads,
    ) -> None:
        super().__init__(ctx, role, fd, path, count, threads)
        role.extra["fallbacks"] = 0

    def __call__(self) -> None:
        ctx, role, fd, bs = self.ctx, self.role, self.fd, self.ctx.opts.bs
        preadv, pread, nowait = os.preadv, libc.pread, os.RWF_NOWAIT
        clock, monotonic = time.perf_counter_ns, time.monotonic
        rows = [[self.buf.blocks[i]] for i in range(VERIFY_BATCH)]
        addrs = [self.buf.addr(i) for i in range(VERIFY_BATCH)]
        slot_offs = np.empty(VERIFY_BATCH, dtype=np.uint64)
        lats = [0] * VERIFY_BATCH
        limit = self.count if self.count is not None else -1
        done = fallbacks = 0
        try:
            while done != limit and not self.threads.stop:
                if ctx.expired(monotonic()):
                    break
                n = VERIFY_BATCH if limit < 0 else min(VERIFY_BATCH, limit - done)
                offs = self.offsets.take(n)
                offs_list = offs.tolist()
                for i in range(n):
                    off = offs_list[i]
                    t0 = clock()
                    try:
                        got = preadv(fd, rows[i], off, nowait)
                    except BlockingIOError:
                        got = -1
                    if got != bs:
                        fallbacks += 1
                        got = pread(fd, addrs[i], bs, off)
                        if got != bs:
                            raise WorkloadError(f"pread64 at offset {off} returned {got}")
                    lats[i] = clock() - t0
                slot_offs[:n] = offs
                self.checker.check(self.buf.blocks[:n], slot_offs[:n])
                role.lat.add_many(np.array(lats[:n], dtype=np.int64))
                done += n
                role.ops = done
                if self.threads.solo:
                    ctx.progress.update(time.monotonic(), ctx.start, done)
                role.bytes += n * bs
                role.extra["fallbacks"] = fallbacks
        finally:
            role.extra["fallbacks"] = fallbacks


class SyncNonblocking:
    def __init__(self, ctx: Context) -> None:
        counts = source_counts(ctx.opts)
        self.threads = SourceThreads()
        self.total_ops = sum(c for c in counts.values() if c) if all(counts.values()) else None
        channels = [ctx.open_channel(r) for r in ("pipe", "socket") if r in counts]
        file_loop = None
        if "file" in counts:
            direct = ctx.direct()
            fd, df = ctx.open_data_file(direct)
            if not direct:
                drop_cache(fd, df.size)
            role = ctx.role("file")
            role.fds = [fd]
            file_loop = NowaitFileLoop(ctx, role, fd, df.path, counts["file"], self.threads)
        ctx.spawn_producers([None] * len(channels))
        for ch in channels:
            role = ctx.role(ch.role)
            role.fds = [ch.read_fd]
            self.threads.add(
                f"{ch.role}-spinner", SpinLoop(ctx, role, ch, counts[ch.role], self.threads)
            )
        if file_loop is not None:
            self.threads.add("file-reader", file_loop)
        self.threads.start()
        ctx.roles.sort(key=lambda r: ("pipe", "socket", "file").index(r.name))

    def run(self, ctx: Context) -> None:
        self.threads.run(ctx, lambda: sum(r.ops for r in ctx.roles))

    def close(self) -> None:
        self.threads.close()


def prepare(ctx: Context) -> SyncNonblocking:
    return SyncNonblocking(ctx)
