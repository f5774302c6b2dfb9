"""The generated BPF program (what `--ebpf` prints) for a given set of options."""

import re

import pytest
from iotrace.tracer import program


def test_every_syscall_gets_one_enter_and_one_exit_probe():
    text = program.build(program.ProgramOptions())
    for s in program.PROBED:
        assert text.count(f"TRACEPOINT_PROBE(syscalls, sys_enter_{s.name})") == 1
        assert text.count(f"TRACEPOINT_PROBE(syscalls, sys_exit_{s.name})") == 1
        assert f"iot_enter({s.op}," in text
    # page faults are a SYSCALLS row for the analysis, traced by their own probes
    assert "sys_enter_page_fault" not in text
    assert "TRACEPOINT_PROBE(exceptions, page_fault_user)" in text


def test_page_faults_need_their_tracepoint():
    available = set(program.TRACEPOINTS) - {"exceptions:page_fault_user"}
    text = program.build(program.ProgramOptions(available=frozenset(available)))
    assert "#define IOT_FAULTS 0" in text
    assert "iot_major_fault" not in text


def test_only_asked_syscalls_are_probed():
    text = program.build(program.ProgramOptions(syscalls=("read", "pread64", "readv")))
    probed = set(re.findall(r"TRACEPOINT_PROBE\(syscalls, sys_enter_(\w+)\)", text))
    # the fd-table probes are not timed calls: they name the files of those asked for
    assert probed - set(program.FD_PROBES) == {"read", "pread64", "readv"}


def test_fd_table_probes_only_on_calls_that_change_it():
    text = program.build(program.ProgramOptions())
    assert "sys_exit_openat) {\n    IOT_GUARD;\n    return iot_fd_exit_path(IOT_FD_OPEN" in text
    # the path is read only by the open family and chdir, never on a data call
    head = r"sys_exit_(\w+)\) \{\n    IOT_GUARD;\n    return iot_fd_exit_path"
    reads_path = re.findall(head, text)
    assert set(reads_path) == {"openat", "open", "openat2", "creat", "chdir"}
    off = program.build(program.ProgramOptions(fd_paths=False))
    assert "iot_fd_enter" not in off and "sys_enter_openat" not in off


def test_missing_tracepoints_are_left_out_not_fatal():
    available = set(program.TRACEPOINTS) - {
        "syscalls:sys_enter_epoll_pwait2",
        "io_uring:io_uring_submit_req",
    }
    opts = program.ProgramOptions(available=frozenset(available))
    text = program.build(opts)
    assert "sys_enter_epoll_pwait2" not in text
    assert "io_uring_submit_req" not in text  # the whole io_uring part needs all four
    assert "sys_enter_read)" in text
    assert "epoll_pwait2" not in [s.name for s in program.traced_syscalls(opts)]


def test_iovec_syscalls_sum_the_iovec_and_aio_reads_user_arrays():
    text = program.build(program.ProgramOptions())
    assert "iot_iov_bytes((const void *)args->vec, args->vlen)" in text
    assert "(__u64)args->iocbpp" in text and "iot_exit_io_submit(31" in text
    assert "iot_exit_io_getevents(32" in text and "iot_exit_io_getevents(33" in text


def test_configuration_defines():
    opts = program.ProgramOptions(
        ringbuf_bytes=8 << 20, page_size=4096, trace_all=True, self_tgid=42
    )
    text = program.build(opts)
    assert "#define IOT_RINGBUF_PAGES 2048" in text
    assert "#define IOT_TRACE_ALL 1" in text and "#define IOT_SELF_TGID 42" in text


def test_ring_buffer_must_be_power_of_two_pages():
    with pytest.raises(ValueError):
        program.build(program.ProgramOptions(ringbuf_bytes=3 * 4096))


def test_unknown_syscall_is_refused():
    with pytest.raises(ValueError, match="unknown syscalls"):
        program.build(program.ProgramOptions(syscalls=("read", "frobnicate")))


def test_available_tracepoints_reads_tracefs_layout(tmp_path):
    (tmp_path / "events" / "syscalls" / "sys_enter_read").mkdir(parents=True)
    (tmp_path / "events" / "sched" / "sched_switch").mkdir(parents=True)
    assert program.available_tracepoints(tmp_path) == {
        "syscalls:sys_enter_read",
        "sched:sched_switch",
    }


def test_every_probe_starts_with_the_off_switch():
    """The recording ends by setting the off switch (bcc_source.BpfProgram.stop),
    not by waiting seconds for the kernel to take the probes down: a probe that
    does not check it first would go on recording, and changing state being read,
    after the end. Every attached function, generated or hand-written, checks it."""
    text = program.build(program.ProgramOptions(page_faults=True, posix_aio_uprobes=True))
    heads = re.findall(
        r"^(TRACEPOINT_PROBE\([^)]*\)|int iot_\w+\([^)]*\)) \{\s*(\S+)", text, flags=re.M
    )
    assert len(heads) > 50, "the probe pattern no longer matches the program text"
    unguarded = [head for head, first in heads if first != "IOT_GUARD;"]
    assert not unguarded, unguarded


def test_block_requests_are_probed_by_default_and_can_be_left_out():
    text = program.build(program.ProgramOptions())
    for tp in ("block_rq_insert", "block_rq_issue", "block_rq_complete"):
        assert f"TRACEPOINT_PROBE(block, {tp})" in text
    assert "#define IOT_BLOCK 1" in text
    off = program.build(program.ProgramOptions(block=False))
    assert "TRACEPOINT_PROBE(block," not in off
    # a kernel without block_rq_issue: no block probes at all
    avail = frozenset(program.TRACEPOINTS) - {"block:block_rq_issue"}
    assert "TRACEPOINT_PROBE(block," not in program.build(program.ProgramOptions(available=avail))
