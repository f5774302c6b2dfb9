"""Paced producers: processes that feed a pipe or socket with a seeded, verifiable
stream, pausing `delay` (+/- `jitter`) before each write of one block.

They are forked during set-up and wait for the release signal like the
workload itself, so a tracer that starts between ready and release sees their
first write. They stop after `count` writes, when the reader goes away
(EPIPE), or when the workload process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from dataclasses import dataclass

from iotrace.workloads import libc
from iotrace.workloads.datafile import stream_bytes, stream_salt

RELEASE_SIGNAL = signal.SIGUSR1
HIGH_FD_BASE = 200
"""Producers move their write end up here, away from the workload's fd numbers."""


@dataclass
class Channel:
    """One paced stream: the reader's fd in the workload, the producer's pid."""

    role: str
    """"pipe" or "socket"."""
    read_fd: int
    write_fd: int
    salt: int
    pid: int = 0


def open_channel(role: str, seed: int, index: int) -> Channel:
    if role == "pipe":
        r, w = os.pipe()
    else:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        r, w = a.detach(), b.detach()
    return Channel(role, r, w, stream_salt(seed, index))


def spawn(
    channel: Channel,
    *,
    index: int,
    bs: int,
    delay: float,
    jitter: float,
    seed: int,
    count: int | None,
    close_fds: list[int],
) -> int:
    """Fork the producer for channel; returns its pid. The parent keeps the read end."""
    pid = os.fork()
    if pid:
        channel.pid = pid
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for fd in close_fds:
            if fd != channel.write_fd:
                with contextlib.suppress(OSError):
                    os.close(fd)
        out = HIGH_FD_BASE + index
        os.dup2(channel.write_fd, out)
        os.close(channel.write_fd)
        _produce(out, bs, delay, jitter, seed * 1_000_003 + index, count, channel.salt)
    except BaseException:
        code = 1
    os._exit(code)


def _produce(
    fd: int, bs: int, delay: float, jitter: float, seed: int, count: int | None, salt: int
) -> None:
    signal.sigwait({RELEASE_SIGNAL})
    rng = random.Random(seed)
    position = 0
    written = 0
    # Streams are cut in blocks of bs; build a few blocks at a time.
    while count is None or written < count:
        pause = delay + (rng.uniform(-jitter, jitter) if jitter else 0.0)
        if pause > 0:
            time.sleep(pause)
        data = stream_bytes(position, bs, salt).tobytes()
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except (BrokenPipeError, ConnectionResetError):
            return
        position += bs
        written += 1
