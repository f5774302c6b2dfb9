"""select, poll, epoll: async-blocking. One thread sleeps in the multiplexer
until one of N paced pipes/sockets is readable, then read()s each ready fd
once; those reads return at once because the data is already there.

Python's select.select() is glibc select(), which is the pselect6 syscall on
x86-64; select.poll() is poll; select.epoll().poll() is epoll_wait.

Counts: `--number-ios N` makes exactly N read() calls in total (the number
of waits depends on how the producers' writes bunch up; reported as
`waits`). A request's latency is from the start of the wait that found it
ready to the end of its read.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

from iotrace.workloads.asyncfile import request_limit
from iotrace.workloads.datafile import StreamChecker
from iotrace.workloads.engine import Context

from iotrace.errors import WorkloadError


class Multiplex:
    def __init__(self, ctx: Context) -> None:
        opts, name = ctx.opts, ctx.spec.name
        kind = opts.transport or ("socket" if name == "epoll" else "pipe")
        self.channels = [ctx.open_channel(kind) for _ in range(opts.fds)]
        ctx.spawn_producers([None] * opts.fds)
        self.role = ctx.role(kind)
        self.role.fds = [ch.read_fd for ch in self.channels]
        self.checkers = {
            ch.read_fd: StreamChecker(ch.salt, f"{kind} {i} (fd {ch.read_fd})")
            for i, ch in enumerate(self.channels)
        }
        self.limit = request_limit(ctx)
        self.total_ops = self.limit
        self.wait = self._make_wait(name, self.role.fds)
        self.role.extra["waits"] = 0

    def _make_wait(self, name: str, fds: list[int]) -> Callable[[float | None], list[int]]:
        if name == "select":

            def wait_select(timeout: float | None) -> list[int]:
                return select.select(fds, [], [], timeout)[0]

            return wait_select
        if name == "poll":
            p = select.poll()
            for fd in fds:
                p.register(fd, select.POLLIN)
            self._poller = p

            def wait_poll(timeout: float | None) -> list[int]:
                ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
                return [fd for fd, _ in p.poll(ms)]

            return wait_poll
        ep = select.epoll()
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        self._epoll = ep

        def wait_epoll(timeout: float | None) -> list[int]:
            return [fd for fd, _ in ep.poll(-1 if timeout is None else timeout, len(fds))]

        return wait_epoll

    def run(self, ctx: Context) -> None:
        role, bs, wait = self.role, ctx.opts.bs, self.wait
        read, clock, monotonic = os.read, time.perf_counter_ns, time.monotonic
        checkers, lat = self.checkers, role.lat
        limit = self.limit if self.limit is not None else -1
        done = waits = 0
        try:
            while done != limit:
                now = monotonic()
                if ctx.expired(now):
                    break
                ctx.progress.update(now, ctx.start, done)
                timeout = None if ctx.deadline == float("inf") else ctx.deadline - now
                t0 = clock()
                ready = wait(timeout)
                waits += 1
                for fd in ready:
                    data = read(fd, bs)
                    t1 = clock()
                    if not data:
                        raise WorkloadError(f"producer of fd {fd} ended early")
                    checkers[fd].check(data)
                    lat.add(t1 - t0)
                    done += 1
                    role.ops = done
                    role.bytes += len(data)
                    if done == limit:
                        break
        finally:
            role.extra["waits"] = waits

    def close(self) -> None:
        ep = getattr(self, "_epoll", None)
        if ep is not None:
            ep.close()


def prepare(ctx: Context) -> Multiplex:
    return Multiplex(ctx)
