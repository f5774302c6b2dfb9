"""`iotrace doctor` checks against fake /proc, /sys and tracefs roots (no root needed)."""

from __future__ import annotations

import argparse
import errno
import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from iotrace import doctor
from iotrace.doctor import (
    BPF_MAP_CREATE,
    BPF_MAP_TYPE_RINGBUF,
    BPF_PROG_LOAD,
    Check,
    Host,
    render_json,
    render_text,
    required_failed,
    run_checks,
)
from iotrace.errors import BpfError

ROOT_CAPS = "000001ffffffffff"
TPS = {
    "syscalls:sys_enter_read": "read timing",
    "syscalls:sys_exit_read": "read timing",
    "sched:sched_switch": "off-CPU time inside calls",
    "io_uring:io_uring_complete": "io_uring per-request timing",
}
REQUIRED = frozenset({"syscalls:sys_enter_read", "syscalls:sys_exit_read", "sched:sched_switch"})


class FakeHeaders:
    def __init__(self, path: Path | None, how: str, problem: str = "") -> None:
        self.path, self.how, self.problem = path, how, problem


def _machine(
    tmp_path: Path,
    *,
    euid: int = 0,
    caps: str = ROOT_CAPS,
    tracefs: bool = True,
    tracepoints: Iterable[str] = TPS,
    btf: bool = True,
    io_uring_disabled: str | None = "0",
    bpf_errno: dict[int, int] | None = None,
) -> Host:
    """A fake host: everything works unless told otherwise."""
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    (proc / "self").mkdir(parents=True)
    (proc / "self/status").write_text(f"Name:\tpython\nCapPrm:\t{caps}\nCapEff:\t{caps}\n")
    mounts = "sysfs /sys sysfs rw 0 0\n"
    tfs = tmp_path / "tracing"
    if tracefs:
        mounts += f"tracefs {tfs} tracefs rw,relatime 0 0\n"
        for tp in tracepoints:
            group, _, name = tp.partition(":")
            (tfs / "events" / group / name).mkdir(parents=True)
            (tfs / "events" / group / name / "format").write_text("name: x\n")
    (proc / "self/mounts").write_text(mounts)
    if btf:
        (sys_ / "kernel/btf").mkdir(parents=True)
        (sys_ / "kernel/btf/vmlinux").write_bytes(b"\x9f\xeb")
    if io_uring_disabled is not None:
        (proc / "sys/kernel").mkdir(parents=True)
        (proc / "sys/kernel/io_uring_disabled").write_text(io_uring_disabled + "\n")
    calls: list[tuple[int, bytes]] = []

    def bpf(cmd: int, attr: bytes) -> int:
        calls.append((cmd, attr))
        map_type = int.from_bytes(attr[:4], "little")
        key = BPF_MAP_TYPE_RINGBUF if cmd == BPF_MAP_CREATE and map_type == 27 else cmd
        return (bpf_errno or {}).get(key, 0)

    data = tmp_path / "data"
    data.mkdir()
    host = Host(
        proc=proc,
        sys=sys_,
        euid=euid,
        bpf=bpf,
        bcc_version=lambda: "0.26.0",
        check_compile=lambda: "tracepoint program compiled and loaded in 0.9 s",
        kernel_headers=lambda: FakeHeaders(Path("/h"), "running kernel headers"),
        tracepoints=lambda: (TPS, REQUIRED),
        data_dirs=lambda: [data / "iotrace"],
        fs_type=lambda path: "ext4",
    )
    host.bpf_calls = calls  # type: ignore[attr-defined]
    return host


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_healthy_machine_is_all_ok(tmp_path: Path) -> None:
    checks = run_checks(_machine(tmp_path))
    assert [c.status for c in checks] == ["ok"] * len(checks), render_text(checks)
    assert not required_failed(checks)
    names = [c.name for c in checks]
    for expected in (
        "privileges",
        "bpf()",
        "ring buffer",
        "tracefs",
        "BTF",
        "tracepoints",
        "bcc",
        "kernel headers",
        "BPF compile+load",
        "io_uring",
        "O_DIRECT",
    ):
        assert expected in names
    by = _by_name(checks)
    assert by["tracefs"].summary == f"mounted at {tmp_path / 'tracing'}"
    assert by["bcc"].summary == "version 0.26.0"
    assert by["kernel headers"].summary == "running kernel headers"


def test_bpf_probe_really_loads_a_program_and_creates_a_ringbuf(tmp_path: Path) -> None:
    host = _machine(tmp_path)
    run_checks(host)
    cmds = [cmd for cmd, _ in host.bpf_calls]  # type: ignore[attr-defined]
    assert BPF_PROG_LOAD in cmds
    ring = [a for c, a in host.bpf_calls if c == BPF_MAP_CREATE and a[0] == 27]  # type: ignore[attr-defined]
    assert ring, "ring buffer map type never tried"
    # ring buffer size: a page-multiple power of two in max_entries
    entries = int.from_bytes(ring[0][12:16], "little")
    assert entries >= 4096 and entries & (entries - 1) == 0


def test_non_root_fails_privileges_but_doctor_still_reports_everything(tmp_path: Path) -> None:
    host = _machine(
        tmp_path,
        euid=1000,
        caps="0000000000000000",
        bpf_errno={BPF_MAP_CREATE: errno.EPERM, BPF_MAP_TYPE_RINGBUF: errno.EPERM},
    )
    checks = run_checks(host)
    by = _by_name(checks)
    assert by["privileges"].status == "fail" and "sudo" in by["privileges"].fix
    assert by["bpf()"].status == "fail" and "EPERM" in by["bpf()"].summary
    assert by["ring buffer"].status == "warn"  # unknown, not known-bad
    assert by["BPF compile+load"].status == "warn"
    assert by["BPF compile+load"].summary == "not tried: needs root"
    assert by["O_DIRECT"].status == "ok"
    assert required_failed(checks)


def test_cap_bpf_and_perfmon_are_enough(tmp_path: Path) -> None:
    caps = 1 << doctor.CAP_BPF | 1 << doctor.CAP_PERFMON
    check = doctor.check_privileges(_machine(tmp_path, euid=1000, caps=f"{caps:016x}"))
    assert check.status == "ok" and "CAP_BPF" in check.summary


def test_unmounted_tracefs_gives_the_mount_command(tmp_path: Path) -> None:
    checks = run_checks(_machine(tmp_path, tracefs=False))
    by = _by_name(checks)
    assert by["tracefs"].status == "fail"
    assert by["tracefs"].fix == "sudo mount -t tracefs nodev /sys/kernel/tracing"
    assert by["tracepoints"].status == "fail"
    assert by["BPF compile+load"].summary == "not tried until tracefs ok"
    assert required_failed(checks)


def test_missing_optional_tracepoints_are_listed_with_what_they_disable(tmp_path: Path) -> None:
    present = [tp for tp in TPS if not tp.startswith("io_uring")]
    check = doctor.check_tracepoints(_machine(tmp_path, tracepoints=present))
    assert check.status == "warn" and not check.required
    assert check.details == ["missing io_uring:io_uring_complete: no io_uring per-request timing"]


def test_missing_core_tracepoint_is_a_failure(tmp_path: Path) -> None:
    present = [tp for tp in TPS if tp != "sched:sched_switch"]
    check = doctor.check_tracepoints(_machine(tmp_path, tracepoints=present))
    assert check.status == "fail" and check.required
    assert "sched:sched_switch" in check.summary


def test_no_btf_is_a_warning_only(tmp_path: Path) -> None:
    checks = run_checks(_machine(tmp_path, btf=False))
    assert _by_name(checks)["BTF"].status == "warn"
    assert not required_failed(checks)


@pytest.mark.parametrize(
    ("value", "status"), [("0", "ok"), ("1", "warn"), ("2", "warn"), (None, "ok")]
)
def test_io_uring_knob(tmp_path: Path, value: str | None, status: str) -> None:
    check = doctor.check_io_uring(_machine(tmp_path, io_uring_disabled=value))
    assert check.status == status
    if status == "warn":
        assert check.fix == "sudo sysctl kernel.io_uring_disabled=0"


def test_bcc_missing_and_headers_missing_block_the_compile(tmp_path: Path) -> None:
    host = _machine(tmp_path)

    def no_bcc() -> str:
        raise ImportError("No module named 'bcc'")

    host.bcc_version = no_bcc
    host.kernel_headers = lambda: FakeHeaders(None, "none", "run 'sudo ./setup.sh'")
    by = _by_name(run_checks(host))
    assert by["bcc"].status == "fail" and "python3-bpfcc" in by["bcc"].fix
    assert by["kernel headers"].status == "fail"
    assert by["kernel headers"].fix == "run 'sudo ./setup.sh'"
    assert by["BPF compile+load"].status == "fail"
    assert "bcc, kernel headers" in by["BPF compile+load"].summary


def test_compile_failure_is_reported_as_one_line(tmp_path: Path) -> None:
    host = _machine(tmp_path)

    def broken() -> str:
        raise BpfError("BPF program failed to compile: unknown type name 'u64'")

    host.check_compile = broken
    check = _by_name(run_checks(host))["BPF compile+load"]
    assert check.status == "fail" and "unknown type name" in check.summary


def test_o_direct_failure_names_the_directory(tmp_path: Path) -> None:
    host = _machine(tmp_path)
    host.data_dirs = lambda: [Path("/proc/iotrace-data")]  # procfs: no regular files
    check = doctor.check_o_direct(host)
    assert check.status == "fail" and check.summary.startswith("/proc")
    assert not list(tmp_path.glob("**/.iotrace-doctor-*"))


def test_o_direct_skips_tmpfs_like_the_workloads_and_falls_back(tmp_path: Path) -> None:
    host = _machine(tmp_path)
    home, var = tmp_path / "home/.cache/iotrace", tmp_path / "data/iotrace"
    (tmp_path / "home").mkdir()
    host.data_dirs = lambda: [home, var]
    host.fs_type = lambda path: "tmpfs" if "home" in str(path) else "ext4"
    check = doctor.check_o_direct(host)
    assert check.status == "ok"
    assert check.summary == f"works in {tmp_path / 'data'}"
    assert check.details == [f"{home}: on tmpfs"]
    host.fs_type = lambda path: "tmpfs"
    check = doctor.check_o_direct(host)
    assert check.status == "fail" and check.summary == "no usable data directory (2 tried)"


def test_o_direct_leaves_nothing_behind(tmp_path: Path) -> None:
    host = _machine(tmp_path)
    check = doctor.check_o_direct(host)
    assert check.status == "ok"
    assert list((tmp_path / "data").iterdir()) == []  # tested in place, data dir not created


def test_text_output_fits_80_columns_and_ends_with_a_verdict(tmp_path: Path) -> None:
    host = _machine(tmp_path, euid=1000, caps="0" * 16, tracefs=False)
    text = render_text(run_checks(host))
    # only a single unbreakable word (a long path) may overflow
    assert all(len(line) < 80 or " " not in line.strip() for line in text.splitlines()), text
    assert "fix: sudo mount -t tracefs nodev /sys/kernel/tracing" in text
    assert text.splitlines()[-1].endswith("— cannot trace")
    healthy = render_text(run_checks(_machine(tmp_path / "2")))
    assert healthy.splitlines()[-1] == "11 checks: 11 ok, 0 warnings, 0 failed — ready to trace"


def test_json_output_is_the_documented_object(tmp_path: Path) -> None:
    checks = run_checks(_machine(tmp_path, btf=False))
    obj = json.loads(render_json(checks))
    assert obj["ok"] is True
    assert {"kernel", "iotrace"} <= obj.keys()
    assert obj["summary"] == {"ok": 10, "warn": 1, "fail": 0}
    assert {tuple(sorted(c)) for c in obj["checks"]} == {
        ("details", "fix", "name", "required", "status", "summary")
    }


def test_cmd_doctor_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _machine(tmp_path, tracefs=False)
    monkeypatch.setattr(doctor, "Host", lambda: bad)
    assert doctor.cmd_doctor(argparse.Namespace(json=True)) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    good = _machine(tmp_path / "2")
    monkeypatch.setattr(doctor, "Host", lambda: good)
    assert doctor.cmd_doctor(argparse.Namespace(json=False)) == 0
    assert "ready to trace" in capsys.readouterr().out


def test_real_bpf_syscall_wrapper_reports_errno_not_exceptions() -> None:
    # bpf() with an invalid command must come back as an errno, never raise.
    err = doctor.bpf_syscall(9999, b"\0" * 128)
    assert err in (errno.EINVAL, errno.EPERM, errno.ENOSYS)
