"""The classifier on every model's pattern, on mixes, and on the cases that fool a
naive rule (a lone EAGAIN, busy epoll servers, POSIX AIO without uprobes)."""

from __future__ import annotations

import pytest
from report_fixtures import TraceBuilder, all_models

from iotrace import analysis, session
from iotrace.classify import Activity, classify, combine


@pytest.fixture(scope="module")
def every_model(tmp_path_factory: pytest.TempPathFactory) -> analysis.Analysis:
    b = TraceBuilder()
    all_models(b)
    path = b.write(tmp_path_factory.mktemp("cls") / "all.trace")
    return analysis.analyze(session.load(path))


EXPECTED = {
    "sync-blocking": ("sync-blocking", "pread64"),
    "sync-nonblocking": ("sync-nonblocking", "read"),
    "select": ("async-blocking", "select"),
    "poll": ("async-blocking", "poll"),
    "epoll_wait": ("async-blocking", "epoll"),
    "libaio": ("async-nonblocking", "libaio"),
    "io_uring": ("async-nonblocking", "io_uring"),
    "posix-aio": ("async-nonblocking", "posix-aio"),
}


@pytest.mark.parametrize("workload", sorted(EXPECTED))
def test_each_model_pattern_is_labelled(every_model: analysis.Analysis, workload: str) -> None:
    (p,) = [p for p in every_model.processes if p.workload == workload]
    assert (p.label.model, p.label.api) == EXPECTED[workload]
    assert p.label.evidence
    # The workload's declared model agrees (the report flags any disagreement).
    assert p.label.model == p.expected_model


def test_evidence_quotes_the_numbers(every_model: analysis.Analysis) -> None:
    by = {p.workload: p.label.evidence for p in every_model.processes}
    assert "85 of 102 data calls returned EAGAIN" in by["sync-nonblocking"]
    assert "19 epoll_wait calls" in by["epoll_wait"]
    assert "return at once" in by["epoll_wait"]
    assert "28 requests through libaio in 14 calls" in by["libaio"]
    assert "helper thread" in by["posix-aio"]


def test_idle() -> None:
    assert classify(Activity(wall_ns=10)).model == "idle"


def test_one_stray_eagain_in_many_blocking_reads_stays_blocking() -> None:
    a = Activity(
        wall_ns=10**9, syscalls={"read": 1000}, eagain={"read": 1}, off_cpu_ns={"read": 9 * 10**8}
    )
    assert classify(a).model == "sync-blocking"


def test_busy_epoll_server_reading_many_fds_per_wakeup_is_async_blocking() -> None:
    # 64 ready fds per epoll_wait, so data calls outnumber the waits 64:1.
    a = Activity(
        wall_ns=10**9,
        syscalls={"epoll_wait": 100, "recvfrom": 6400},
        syscall_ns={"epoll_wait": 5 * 10**8},
        off_cpu_ns={"epoll_wait": 4 * 10**8},
    )
    label = classify(a)
    assert (label.model, label.api) == ("async-blocking", "epoll")
    assert label.breakdown == {"async-blocking": 1.0}


def test_libaio_without_request_records_is_still_libaio() -> None:
    a = Activity(wall_ns=10**9, syscalls={"io_submit": 50, "io_getevents": 50})
    assert (classify(a).model, classify(a).api) == ("async-nonblocking", "libaio")


def test_mixed_program_gets_primary_label_and_breakdown() -> None:
    a = Activity(
        wall_ns=10**9, syscalls={"io_uring_enter": 10, "read": 100}, requests={"io_uring": 300}
    )
    label = classify(a)
    assert label.model == "async-nonblocking" and label.api == "io_uring"
    assert label.breakdown["async-nonblocking"] == pytest.approx(0.75)
    assert label.breakdown["sync-blocking"] == pytest.approx(0.25)


def test_worker_threads_doing_plain_reads_are_not_posix_aio() -> None:
    # Helper threads that use read() (not pread) are an ordinary thread pool.
    a = Activity(
        wall_ns=10**9, syscalls={"read": 50}, threads=3, helper_threads=2, helper_calls={"read": 50}
    )
    assert classify(a).model == "sync-blocking"


def test_main_thread_doing_io_is_not_posix_aio() -> None:
    a = Activity(
        wall_ns=10**9,
        syscalls={"pread64": 60},
        threads=2,
        helper_threads=1,
        main_data_calls=30,
        helper_calls={"pread64": 30},
    )
    assert classify(a).model == "sync-blocking"


def test_dd_pattern_is_sync_blocking() -> None:
    # dd: read a block, write a block, on one thread.
    a = Activity(
        wall_ns=10**9,
        syscalls={"read": 23, "write": 23},
        off_cpu_ns={"read": 10**8, "write": 2 * 10**8},
    )
    label = classify(a)
    assert label.model == "sync-blocking"
    assert "23 read" in label.evidence and "23 write" in label.evidence


def test_posix_aio_main_thread_may_read_a_config_file_at_start() -> None:
    # fio --ioengine=posixaio: one read() on the main thread, the helper's pread64s.
    a = Activity(
        wall_ns=10**9,
        syscalls={"read": 1, "pread64": 5726},
        threads=2,
        helper_threads=1,
        main_data_calls=1,
        helper_calls={"pread64": 5726},
    )
    label = classify(a)
    assert (label.model, label.api) == ("async-nonblocking", "posix-aio")
    assert label.breakdown["async-nonblocking"] > 0.99


def test_waits_that_time_out_are_idle_not_multiplexing() -> None:
    # PostgreSQL's checkpointer: file writes between latch waits that time out
    a = Activity(
        wall_ns=10**10,
        syscalls={"pwrite64": 1500, "epoll_wait": 40},
        off_cpu_ns={"pwrite64": 10**8, "epoll_wait": 9 * 10**9},
        mux_timeouts={"epoll_wait": 36},
        mux_idle_ns={"epoll_wait": 8 * 10**9},
        waited_data_calls=0,
    )
    label = classify(a)
    assert (label.model, label.api) == ("sync-blocking", "pwrite64")
    assert "36 more waits timed out" in label.evidence
    assert label.breakdown["async-blocking"] < 0.01


def test_only_timeouts_is_idle() -> None:
    a = Activity(wall_ns=10**9, syscalls={"epoll_wait": 5}, mux_timeouts={"epoll_wait": 5})
    assert classify(a).model == "idle"


def test_positional_calls_beside_an_epoll_loop_are_blocking_ones() -> None:
    # a PostgreSQL backend: the client socket through epoll, relation files by pread64
    a = Activity(
        wall_ns=10**9,
        syscalls={"epoll_wait": 400, "recvfrom": 450, "sendto": 450, "pread64": 120},
        off_cpu_ns={"epoll_wait": 6 * 10**8},
        waited_data_calls=900,
    )
    label = classify(a)
    assert label.model == "async-blocking"
    assert 0.08 < label.breakdown["sync-blocking"] < 0.1


def test_calls_on_fds_no_wait_was_for_are_blocking() -> None:
    a = Activity(
        wall_ns=10**9,
        syscalls={"epoll_wait": 7, "write": 37, "read": 8},
        waited_data_calls=7,
    )
    label = classify(a)
    assert label.model == "sync-blocking"
    assert label.breakdown["async-blocking"] == pytest.approx(14 / 52)


def test_process_weighs_its_threads_own_models() -> None:
    main = classify(
        Activity(wall_ns=10**9, syscalls={"epoll_wait": 40, "recvfrom": 40}, waited_data_calls=40)
    )
    pool = classify(Activity(wall_ns=10**9, syscalls={"read": 106}))
    whole = classify(
        Activity(
            wall_ns=3 * 10**9, syscalls={"epoll_wait": 40, "recvfrom": 40, "read": 212}, threads=3
        )
    )
    assert whole.model == "async-blocking"  # the calls pooled together look like one loop
    mixed = combine(whole, [(main, 80), (pool, 106), (pool, 106)])
    assert mixed.model == "sync-blocking"
    assert mixed.breakdown["sync-blocking"] == pytest.approx(212 / 292)
    assert "2 of 3 threads" in mixed.evidence
    # one thread, or threads that agree: the process keeps its label
    assert combine(whole, [(main, 80)]) is whole


def test_major_faults_are_memory_mapped_io() -> None:
    a = Activity(wall_ns=10**9, syscalls={"page_fault": 16384, "read": 5})
    label = classify(a)
    assert (label.model, label.api) == ("memory-mapped", "mmap")
    assert "16384 major page faults" in label.evidence
