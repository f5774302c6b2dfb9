"""Real probes on a real program: every syscall family, counted exactly.

progs/families.c makes a known prime number of calls of each kind and prints
its fds; the trace must hold exactly those calls with the right fds, sizes and
results, and match every Linux AIO and io_uring request submit-to-completion.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_util import compile_prog, count_by, iotrace, needs_root, of

from iotrace import events, session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("families")
    exe = compile_prog("families", d, "-luring")
    out = d / "families.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", str(exe), str(d / "data"))
    assert proc.returncode == 0, proc.stderr
    fds = json.loads(proc.stdout.splitlines()[0])
    return session.load(out), fds, proc


def test_read_write_families_exact_counts_fds_sizes(recorded):
    t, fds, _ = recorded
    c = count_by(t)
    assert c[("write", fds["pipe_w"])] == 29 + 1  # + the byte that makes the pipe readable
    assert c[("pwrite64", fds["file"])] == 37
    assert c[("pread64", fds["file"])] == 31
    assert c[("writev", fds["pipe_w"])] == 11
    assert c[("readv", fds["pipe_r"])] == 7
    assert c[("pwritev", fds["file"])] == 17
    assert c[("preadv", fds["file"])] == 13
    assert c[("pwritev2", fds["file"])] == 5
    assert c[("preadv2", fds["file"])] == 19
    # the dynamic loader read()s libraries on the same low fd number before the pipe exists
    reads = of(t, "read", fds["pipe_r"])
    reads = reads[reads["size"] == 100]
    assert len(reads) == 23
    assert (reads["ret"] == 100).all()
    assert (of(t, "pread64", fds["file"])["size"] == 4096).all()
    assert (of(t, "write", fds["pipe_w"])["ret"] > 0).all()
    # iovec calls record the bytes asked across the whole iovec (10 + 20)
    assert (of(t, "readv", fds["pipe_r"])["size"] == 30).all()
    assert (of(t, "pwritev2", fds["file"])["ret"] == 30).all()
    offs = np.sort(of(t, "pread64", fds["file"])["offset"])
    assert list(offs) == [i * 4096 for i in range(31)]


def test_socket_families(recorded):
    t, fds, _ = recorded
    c = count_by(t)
    assert c[("sendto", fds["sock0"])] == 7
    assert c[("recvfrom", fds["sock1"])] == 7
    assert c[("sendmsg", fds["sock0"])] == 3
    assert c[("recvmsg", fds["sock1"])] == 3
    assert c[("sendmmsg", fds["sock0"])] == 2
    assert c[("recvmmsg", fds["sock1"])] == 2
    assert (of(t, "recvfrom")["size"] == 60).all() and (of(t, "recvfrom")["ret"] == 50).all()
    assert (of(t, "sendmsg")["size"] == 30).all()  # from the msghdr's iovec
    assert (of(t, "recvmmsg")["ret"] == 2).all()


def test_multiplexers_counts_and_ready_numbers(recorded):
    t, fds, _ = recorded
    c = count_by(t)
    # glibc implements select() with pselect6
    assert c[("pselect6", -1)] == 5 + 3
    assert c[("poll", -1)] == 7
    assert c[("ppoll", -1)] == 11
    assert c[("epoll_wait", fds["epfd"])] == 13
    assert c[("epoll_pwait", fds["epfd"])] == 17
    for name in ("pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait"):
        assert (of(t, name)["ret"] == 1).all(), name
    assert (of(t, "epoll_wait")["size"] == 4).all()  # maxevents
    assert (of(t, "poll")["size"] == 1).all()  # nfds


def test_linux_aio_every_request_matched_submit_to_reap(recorded):
    t, fds, _ = recorded
    assert len(of(t, "io_submit")) == 7
    assert (of(t, "io_submit")["size"] == 3).all() and (of(t, "io_submit")["ret"] == 3).all()
    aio = t.events[t.events["kind"] == events.Kind.AIO_REQUEST]
    assert len(aio) == 21
    assert (aio["flags"] & events.Flag.NOT_OBSERVED == 0).all()
    assert (aio["fd"] == fds["direct"]).all() and (aio["size"] == 4096).all()
    assert (aio["ret"] == 4096).all()
    assert sorted(aio["user_data"].tolist()) == list(range(1000, 1021))
    assert (aio["end_ns"] > aio["ts_ns"]).all()  # a latency for each
    assert len(set(aio["key"].tolist())) == 3  # the three iocbs, reused per batch


def test_io_uring_every_request_matched_to_its_completion(recorded):
    t, fds, _ = recorded
    ur = t.events[t.events["kind"] == events.Kind.URING_REQUEST]
    assert len(ur) == 11
    assert sorted(ur["user_data"].tolist()) == list(range(5000, 5011))
    assert (ur["kdone_ns"] > ur["ts_ns"]).all()
    assert (ur["ret"] == 4096).all()
    assert (ur["fd"] == fds["direct"]).all()
    assert len(of(t, "io_uring_setup")) == 1 and len(of(t, "io_uring_enter")) >= 1


def test_nothing_lost_or_unmatched(recorded):
    t, _, _ = recorded
    assert t.complete
    assert not t.stats.get("lost") and not t.stats.get("unmatched_exit")
    assert t.footer["not_observed"] == {"aio": 0, "uring": 0, "posix_aio": 0}


def test_posix_aio_requests_timed_and_helper_threads_attributed(tmp_path):
    exe = compile_prog("posix_aio", tmp_path)
    data = tmp_path / "data"
    data.write_bytes(b"z" * 4096 * 20)
    out = tmp_path / "paio.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", str(exe), str(data))
    assert proc.returncode == 0, proc.stderr
    fd = json.loads(proc.stdout.splitlines()[0])["file"]
    t = session.load(out)
    assert "uprobes" in t.meta["probes"]["posix_aio"]
    reqs = t.events[t.events["kind"] == events.Kind.POSIX_AIO_REQUEST]
    assert len(reqs) == 13
    assert sorted(reqs["offset"].tolist()) == [i * 4096 for i in range(13)]
    assert (reqs["ret"] == 4096).all() and (reqs["fd"] == fd).all()
    assert (reqs["end_ns"] > reqs["ts_ns"]).all()
    # glibc's helper threads do the preads, in the same process, on other threads
    preads = of(t, "pread64", fd)
    preads = preads[preads["size"] == 4096]  # not the loader's reads of libraries on fd 3
    assert len(preads) == 13
    main_tid = int(reqs["tid"][0])
    assert set(preads["pid"].tolist()) == {int(reqs["pid"][0])}
    assert main_tid not in set(preads["tid"].tolist())


def test_requests_never_reaped_are_not_observed_never_timed(tmp_path):
    exe = compile_prog("unreaped", tmp_path)
    data = tmp_path / "data"
    data.write_bytes(b"u" * 4096 * 8)
    out = tmp_path / "unreaped.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), "--", str(exe), str(data))
    assert proc.returncode == 0, proc.stderr
    fds = json.loads(proc.stdout.splitlines()[0])
    t = session.load(out)
    aio = t.events[t.events["kind"] == events.Kind.AIO_REQUEST]
    assert len(aio) == 5
    assert (aio["flags"] & events.Flag.NOT_OBSERVED).all()
    assert (aio["end_ns"] == 0).all() and (aio["fd"] == fds["direct"]).all()
    assert sorted(aio["offset"].tolist()) == [i * 4096 for i in range(5)]
    paio = t.events[t.events["kind"] == events.Kind.POSIX_AIO_REQUEST]
    assert len(paio) == 3
    assert (paio["flags"] & events.Flag.NOT_OBSERVED).all() and (paio["end_ns"] == 0).all()
    assert t.footer is not None
    assert t.footer["not_observed"] == {"aio": 5, "uring": 0, "posix_aio": 3}
