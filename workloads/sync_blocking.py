"""sync-blocking: the thread asks and sleeps inside the syscall until data is there.

One thread per source: `read()` on a blocking pipe and a blocking socket, each
fed by a paced producer (so each read sleeps about `--delay`), and `pread64()`
of the O_DIRECT data file at random offsets into a page-aligned buffer (glibc
`pread` through ctypes: `os.pread` cannot read into an aligned buffer).

Counts are exact: `--pipe-reads 23 --file-reads 29` makes 23 `read` calls on
the pipe fd and 29 `pread64` calls on the file fd after release, nothing else
on those fds.
"""

from __future__ import annotations

import os
import time

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.datafile import BlockChecker, StreamChecker
from iotrace.workloads.engine import Context
from iotrace.workloads.measure import Role
from iotrace.workloads.offsets import Offsets, OffsetStream
from iotrace.workloads.producer import Channel
from iotrace.workloads.sources import SourceThreads, source_counts

from iotrace.errors import WorkloadError

VERIFY_BATCH = 64
"""File reads land in 64 different slots and are checked 64 at a time (one numpy pass)."""


class StreamLoop:
    """Blocking reads of one paced stream: exactly `count` read() calls, or until the deadline."""

    def __init__(
        self, ctx: Context, role: Role, ch: Channel, count: int | None, threads: SourceThreads
    ) -> None:
        self.ctx, self.role, self.fd, self.count = ctx, role, ch.read_fd, count
        self.checker = StreamChecker(ch.salt, f"the {role.name} (fd {ch.read_fd})")
        self.threads = threads

    def __call__(self) -> None:
        fd, bs, role, ctx = self.fd, self.ctx.opts.bs, self.role, self.ctx
        lat, check, clock = role.lat, self.checker.check, time.perf_counter_ns
        limit = self.count if self.count is not None else -1
        done = 0
        while done != limit and not self.threads.stop:
            if ctx.expired(time.monotonic()):
                break
            t0 = clock()
            data = os.read(fd, bs)
            t1 = clock()
            if not data:
                raise WorkloadError(f"{role.name} producer ended after {role.bytes} bytes")
            done += 1
            check(data)
            lat.add(t1 - t0)
            role.ops = done
            if self.threads.solo:
                ctx.progress.update(time.monotonic(), ctx.start, done)
            role.bytes += len(data)


class FileLoop:
    """pread64() of the data file, one request at a time."""

    def __init__(
        self,
        ctx: Context,
        role: Role,
        fd: int,
        path: str,
        count: int | None,
        threads: SourceThreads,
    ) -> None:
        opts = ctx.opts
        self.ctx, self.role, self.fd, self.count, self.threads = ctx, role, fd, count, threads
        self.buf = libc.AlignedBuffer(VERIFY_BATCH, opts.bs)
        self.checker = BlockChecker(opts.bs, path, VERIFY_BATCH)
        self.offsets = OffsetStream(Offsets(opts.filesize, opts.bs, opts.rw, opts.seed))

    def __call__(self) -> None:
        ctx, role, fd, bs = self.ctx, self.role, self.fd, self.ctx.opts.bs
        pread, clock, monotonic = libc.pread, time.perf_counter_ns, time.monotonic
        base = self.buf.address
        addrs = [base + i * bs for i in range(VERIFY_BATCH)]
        slot_offs = np.empty(VERIFY_BATCH, dtype=np.uint64)
        lats = [0] * VERIFY_BATCH
        limit = self.count if self.count is not None else -1
        done = 0
        while done != limit and not self.threads.stop:
            if ctx.expired(monotonic()):
                break
            n = VERIFY_BATCH if limit < 0 else min(VERIFY_BATCH, limit - done)
            offs = self.offsets.take(n)
            offs_list = offs.tolist()
            for i in range(n):
                off = offs_list[i]
                t0 = clock()
                got = pread(fd, addrs[i], bs, off)
                t1 = clock()
                if got != bs:
                    raise _short(got, bs, off, "pread64")
                lats[i] = t1 - t0
            slot_offs[:n] = offs
            self.checker.check(self.buf.blocks[:n], slot_offs[:n])
            role.lat.add_many(np.array(lats[:n], dtype=np.int64))
            done += n
            role.ops = done
            if self.threads.solo:
                ctx.progress.update(time.monotonic(), ctx.start, done)
            role.bytes += n * bs

    def close(self) -> None:
        self.buf.close()


def _short(got: int, bs: int, off: int, call: str) -> WorkloadError:
    if got < 0:
        err = libc.errno_now()
        return WorkloadError(f"{call} at offset {off} failed: {os.strerror(err)}")
    return WorkloadError(f"{call} at offset {off} returned {got} bytes, expected {bs}")


class SyncBlocking:
    def __init__(self, ctx: Context) -> None:
        counts = source_counts(ctx.opts)
        self.threads = SourceThreads()
        self.loops: list[object] = []
        self.total_ops = sum(c for c in counts.values() if c) if all(counts.values()) else None
        stream_roles = [r for r in ("pipe", "socket") if r in counts]
        channels = [ctx.open_channel(r) for r in stream_roles]
        file_loop = None
        if "file" in counts:
            direct = ctx.direct()
            fd, df = ctx.open_data_file(direct)
            role = ctx.role("file")
            role.fds = [fd]
            file_loop = FileLoop(ctx, role, fd, df.path, counts["file"], self.threads)
        ctx.spawn_producers([None] * len(channels))
        for ch in channels:
            role = ctx.role(ch.role)
            role.fds = [ch.read_fd]
            loop = StreamLoop(ctx, role, ch, counts[ch.role], self.threads)
            self.threads.add(f"{ch.role}-reader", loop)
        if file_loop is not None:
            self.loops.append(file_loop)
            self.threads.add("file-reader", file_loop)
        # Report roles in a stable order: pipe, socket, file.
        self.threads.start()
        ctx.roles.sort(key=lambda r: ("pipe", "socket", "file").index(r.name))

    def run(self, ctx: Context) -> None:
        self.threads.run(ctx, lambda: sum(r.ops for r in ctx.roles))

    def close(self) -> None:
        self.threads.close()


def prepare(ctx: Context) -> SyncBlocking:
    return SyncBlocking(ctx)
