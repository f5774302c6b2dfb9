"""The built-in workloads: what each one is, which I/O model it exercises and
which syscalls a tracer should see for each of its requests.

Each spec names the module (in iotrace.workloads) that implements it; modules
are imported only when a workload runs, so listing them is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iotrace.errors import UsageError
from iotrace.events import MODELS, SYSCALL_BY_NAME

DEFAULT_RUNTIME_S = 15.0
"""How long a workload runs when neither a duration nor a count bounds it."""

DEFAULT_IODEPTH = 32
"""Requests in flight for the asynchronous file workloads unless --iodepth says otherwise."""

DEFAULT_IODEPTH_BATCH_SUBMIT = 2
"""Most requests per io_submit()/io_uring_enter() (libaio, io_uring) unless
--iodepth-batch-submit says otherwise. A reaped batch goes back to the device in
pieces this small, so its first requests start before the last are prepared:
measured against one submit for the whole batch on the reference VM, 4 KiB
random O_DIRECT reads at depth 32 ran about 10-20% faster (fio's default is 1)."""

# Options every workload accepts (see iotrace.workloads.options).
COMMON_OPTIONS = frozenset({"runtime", "seed", "directory", "clean", "output_format", "bs"})
_FILE = frozenset({"filesize", "rw", "direct"})
_COUNTED = frozenset({"number_ios", "size"})
_PACED = frozenset({"delay", "jitter"})
_ASYNC = frozenset({"iodepth", "iodepth_batch_complete_min", "iodepth_batch_submit"})


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    model: str
    """One of iotrace.events.MODELS."""
    api: str
    """The interface it uses: read, pread, epoll, libaio, io_uring, posix-aio, ..."""
    description: str
    """One line."""
    expected_syscalls: tuple[str, ...]
    """iotrace.events.SYSCALLS names a tracer should see per request, in order."""
    module: str = field(default="", compare=False)
    options: frozenset[str] = field(default=frozenset(), compare=False)
    """Option names (Options fields) this workload uses besides COMMON_OPTIONS."""
    counts: str = field(default="", compare=False)
    """What a count option guarantees, for tests and the README."""
    direct_default: bool = field(default=True, compare=False)
    """File workloads: O_DIRECT unless --direct 0 (page-cache workloads default to 0)."""


_SPECS: tuple[WorkloadSpec, ...] = (
    WorkloadSpec(
        "sync-blocking",
        "sync-blocking",
        "read/pread64",
        "one thread per source: blocking read() on a paced pipe and socket, pread64() on a file",
        ("read", "pread64"),
        module="sync_blocking",
        options=_FILE | _PACED | {"pipe_reads", "socket_reads", "file_reads"},
        counts="--pipe-reads/--socket-reads N: exactly N read() on that fd; "
        "--file-reads N: exactly N pread64() on the file",
    ),
    WorkloadSpec(
        "sync-nonblocking",
        "sync-nonblocking",
        "read(O_NONBLOCK)/preadv2(RWF_NOWAIT)",
        "O_NONBLOCK pipe/socket read() retried on EAGAIN; file preadv2(RWF_NOWAIT) + pread64",
        ("read", "preadv2", "pread64"),
        module="sync_nonblocking",
        options=_FILE | _PACED | {"pipe_reads", "socket_reads", "file_reads", "backoff"},
        counts="--pipe-reads/--socket-reads N: exactly N read() that return data (any number "
        "return EAGAIN); --file-reads N: exactly N preadv2(), plus one pread64() per EAGAIN",
        direct_default=False,
    ),
    WorkloadSpec(
        "select",
        "async-blocking",
        "select",
        "one thread waits in select() on N paced pipes, then read()s each ready one",
        ("pselect6", "read"),
        module="multiplex",
        options=_PACED | _COUNTED | {"fds", "transport"},
        counts="--number-ios N: exactly N read() in total; waits vary",
    ),
    WorkloadSpec(
        "poll",
        "async-blocking",
        "poll",
        "one thread waits in poll() on N paced pipes, then read()s each ready one",
        ("poll", "read"),
        module="multiplex",
        options=_PACED | _COUNTED | {"fds", "transport"},
        counts="--number-ios N: exactly N read() in total; waits vary",
    ),
    WorkloadSpec(
        "epoll",
        "async-blocking",
        "epoll",
        "one thread waits in epoll_wait() on N paced sockets, then read()s each ready one",
        ("epoll_wait", "read"),
        module="multiplex",
        options=_PACED | _COUNTED | {"fds", "transport"},
        counts="--number-ios N: exactly N read() in total; waits vary",
    ),
    WorkloadSpec(
        "libaio",
        "async-nonblocking",
        "libaio",
        "Linux AIO on an O_DIRECT file, depth 32: io_submit() 2 at a time, io_getevents()",
        ("io_submit", "io_getevents"),
        module="libaio",
        options=_FILE | _COUNTED | _ASYNC,
        counts="--number-ios N: exactly N requests submitted and reaped",
    ),
    WorkloadSpec(
        "io_uring",
        "async-nonblocking",
        "io_uring",
        "io_uring reads of an O_DIRECT file, depth 32: io_uring_enter() submits and waits",
        ("io_uring_enter",),
        module="io_uring",
        options=_FILE | _COUNTED | _ASYNC | {"force_async"},
        counts="--number-ios N: exactly N read requests, each completed once",
    ),
    WorkloadSpec(
        "io_uring-buffered",
        "async-nonblocking",
        "io_uring",
        "io_uring reads through the page cache, cold; every 2nd forced to an io-wq kernel worker",
        ("io_uring_enter",),
        module="io_uring",
        options=_FILE | _COUNTED | _ASYNC | {"force_async"},
        counts="--number-ios N: exactly N read requests, each completed once",
        direct_default=False,
    ),
    WorkloadSpec(
        "io_uring-socket",
        "async-nonblocking",
        "io_uring",
        "io_uring recv on N paced sockets, one request in flight per socket",
        ("io_uring_enter",),
        module="io_uring",
        options=_PACED | _COUNTED | {"fds"},
        counts="--number-ios N: exactly N recv requests completed with data",
    ),
    WorkloadSpec(
        "posix-aio",
        "async-nonblocking",
        "posix-aio",
        "glibc aio_read() + aio_suspend()/aio_error()/aio_return(); helper threads pread64()",
        ("pread64",),
        module="posix_aio",
        options=_FILE | _COUNTED | {"iodepth"},
        counts="--number-ios N: exactly N aio_read() and aio_return(), so N pread64() "
        "in glibc's helper threads",
    ),
)

for _s in _SPECS:
    assert _s.model in MODELS, _s
    assert all(name in SYSCALL_BY_NAME for name in _s.expected_syscalls), _s

_BY_NAME = {s.name: s for s in _SPECS}


def all_specs() -> list[WorkloadSpec]:
    return list(_SPECS)


def names() -> list[str]:
    return [s.name for s in _SPECS]


def get(name: str) -> WorkloadSpec:
    """The spec called name; UsageError listing the valid names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UsageError(
            f"unknown workload {name!r}; valid workloads: {', '.join(names())}"
        ) from None


def default_set() -> list[str]:
    """One workload per model, each reading the same way (4 KiB), for `iotrace run` with
    no names: about a minute in total at the default duration when run one after another."""
    return ["sync-blocking", "sync-nonblocking", "epoll", "io_uring"]
