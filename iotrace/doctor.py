"""`iotrace doctor`: can this machine trace, and if not, what one thing fixes it?

Each check looks at the kernel directly (bpf() through ctypes, tracefs files, /proc), so
doctor explains a failure before bcc would turn it into a compiler error. All host paths
and probes go through `Host`, so every check is testable against fake roots.

`--json` prints one object:

    {"ok": bool,                     # false when a required check failed
     "kernel": str, "iotrace": str,  # uname -r, iotrace version
     "summary": {"ok": n, "warn": n, "fail": n},
     "checks": [{"name": str, "status": "ok" | "warn" | "fail", "required": bool,
                 "summary": str, "fix": str, "details": [str, ...]}, ...]}
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import importlib
import json
import mmap
import os
import platform
import pwd
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from iotrace import __version__
from iotrace.errors import EXIT_FAILURE, EXIT_OK

Status = Literal["ok", "warn", "fail"]

# Capability bits (include/uapi/linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

# bpf(2) commands and map/program types (include/uapi/linux/bpf.h).
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27
BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

FIX_SUDO = "run as root: sudo iotrace ..."
FIX_SETUP = "run 'sudo ./setup.sh' from the iotrace checkout"
TRACEFS_DEFAULT = "/sys/kernel/tracing"

# Used when iotrace.tracer.program is unavailable (e.g. a partial install).
_SCHED_TRACEPOINTS = {
    "sched:sched_switch": "off-CPU time inside calls and per-thread CPU lanes",
    "sched:sched_wakeup": "splitting off-CPU time into asleep vs waiting to run",
    "sched:sched_process_fork": "following children of traced processes",
    "sched:sched_process_exec": "exec events of traced processes",
    "sched:sched_process_exit": "freeing per-thread state at exit",
    "io_uring:io_uring_submit_req": "io_uring per-request timing",
    "io_uring:io_uring_complete": "io_uring per-request timing",
    "io_uring:io_uring_queue_async_work": "io_uring: which requests went to io-wq workers",
}
_CORE_TRACEPOINTS = frozenset(
    {"sched:sched_switch", "syscalls:sys_enter_read", "syscalls:sys_exit_read"}
)


@dataclass
class Check:
    name: str
    status: Status
    summary: str
    fix: str = ""
    required: bool = True
    details: list[str] = field(default_factory=list)


def bpf_syscall(cmd: int, attr: bytes) -> int:
    """Call bpf(2); returns 0 on success (closing any fd it made) or the errno."""
    nr = _BPF_SYSCALL_NR.get(platform.machine())
    if nr is None:
        return errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0


def _bcc_version() -> str:
    """bcc's version, imported in a child so doctor itself stays bcc-free (and a crash in
    libbcc's loader becomes a failed check, not a dead doctor)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import bcc; print(bcc.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ImportError(lines[-1])
    return proc.stdout.strip()


def _check_compile() -> str:
    from iotrace.tracer import bcc_source

    return bcc_source.check_compile()


def _kernel_headers() -> object:
    from iotrace.tracer import kheaders

    return kheaders.configure()


def _tracepoints() -> tuple[dict[str, str], frozenset[str]]:
    try:
        from iotrace.tracer import program
    except ImportError:
        from iotrace.events import SYSCALLS

        tps = {
            f"syscalls:sys_{side}_{s.name}": f"{s.name} timing"
            for s in SYSCALLS
            for side in ("enter", "exit")
        }
        tps.update(_SCHED_TRACEPOINTS)
        return tps, _CORE_TRACEPOINTS
    required = getattr(program, "REQUIRED_TRACEPOINTS", _CORE_TRACEPOINTS)
    return dict(program.TRACEPOINTS), frozenset(required)


def _existing(path: Path) -> Path:
    # The workloads create their directory on first use; test where it will live.
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _default_data_dirs() -> list[Path]:
    """Where the workloads will keep their data files, best first.

    They run as the invoking user (SUDO_USER under sudo), so these are that user's."""
    user = os.environ.get("SUDO_USER")
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
        home, uid = pw.pw_dir, pw.pw_uid
    except KeyError:
        home, uid = None, os.getuid()
    try:
        datafile = importlib.import_module("iotrace.workloads.datafile")
    except ImportError:
        return [Path(f"/var/tmp/iotrace-{uid}")]
    return [Path(d) for d in datafile.candidate_dirs(home, uid)]


def _fs_type(path: Path) -> str:
    """Filesystem type holding `path` (longest mount point match in mountinfo)."""
    target = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mnt = parts[4].replace("\\040", " ")
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, fstype = mnt, parts[parts.index("-") + 1]
    except (OSError, ValueError, IndexError):
        return ""
    return fstype


@dataclass
class Host:
    """Where the checks look; the defaults are the real machine."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    euid: int = field(default_factory=os.geteuid)
    bpf: Callable[[int, bytes], int] = bpf_syscall
    bcc_version: Callable[[], str] = _bcc_version
    check_compile: Callable[[], str] = _check_compile
    kernel_headers: Callable[[], object] = _kernel_headers
    tracepoints: Callable[[], tuple[Mapping[str, str], frozenset[str]]] = _tracepoints
    data_dirs: Callable[[], list[Path]] = _default_data_dirs
    fs_type: Callable[[Path], str] = _fs_type
    page_size: int = mmap.PAGESIZE


# --- the checks ------------------------------------------------------------------------


def _cap_eff(host: Host) -> int | None:
    try:
        for line in (host.proc / "self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_privileges(host: Host) -> Check:
    caps = _cap_eff(host)
    have = set() if caps is None else {b for b in range(64) if caps >> b & 1}
    if host.euid == 0 and (caps is None or CAP_SYS_ADMIN in have):
        return Check("privileges", "ok", "root")
    if {CAP_BPF, CAP_PERFMON} <= have:
        return Check("privileges", "ok", "CAP_BPF and CAP_PERFMON")
    if CAP_SYS_ADMIN in have:
        return Check("privileges", "ok", "CAP_SYS_ADMIN")
    who = "root without CAP_SYS_ADMIN" if host.euid == 0 else f"uid {host.euid}"
    return Check(
        "privileges",
        "fail",
        f"{who}: tracing needs root or CAP_BPF+CAP_PERFMON",
        "sudo iotrace ... (doctor itself runs without root)",
    )


def _bpf_attr_map(map_type: int, key: int, value: int, entries: int) -> bytes:
    head = (map_type, key, value, entries, 0)
    return b"".join(v.to_bytes(4, sys.byteorder) for v in head).ljust(128, b"\0")


def _bpf_attr_trivial_prog(keep: list[object]) -> bytes:
    # r0 = 0; exit  — the smallest program the verifier accepts.
    insns = ctypes.create_string_buffer(bytes.fromhex("b7000000000000009500000000000000"), 16)
    license = ctypes.create_string_buffer(b"GPL")
    keep += [insns, license]  # the kernel reads them during the call: keep them alive
    words = [
        BPF_PROG_TYPE_SOCKET_FILTER.to_bytes(4, sys.byteorder),
        (2).to_bytes(4, sys.byteorder),
        ctypes.addressof(insns).to_bytes(8, sys.byteorder),
        ctypes.addressof(license).to_bytes(8, sys.byteorder),
    ]
    return b"".join(words).ljust(128, b"\0")


def _errno_text(err: int) -> str:
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def check_bpf(host: Host) -> Check:
    err = host.bpf(BPF_MAP_CREATE, _bpf_attr_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1))
    what = "BPF_MAP_CREATE"
    if err == 0:
        keep: list[object] = []
        err = host.bpf(BPF_PROG_LOAD, _bpf_attr_trivial_prog(keep))
        what = "BPF_PROG_LOAD"
    if err == 0:
        return Check("bpf()", "ok", "maps and programs load")
    if err in (errno.EPERM, errno.EACCES):
        fix = FIX_SUDO if host.euid != 0 else "check kernel lockdown / LSM policy for bpf()"
        return Check("bpf()", "fail", f"{what}: {_errno_text(err)}", fix)
    if err == errno.ENOSYS:
        return Check("bpf()", "fail", "bpf() not available", "use a kernel with CONFIG_BPF_SYSCALL")
    return Check("bpf()", "fail", f"{what}: {_errno_text(err)}", "use a kernel with eBPF support")


def check_ringbuf(host: Host) -> Check:
    # Size must be a power-of-two multiple of the page size.
    err = host.bpf(BPF_MAP_CREATE, _bpf_attr_map(BPF_MAP_TYPE_RINGBUF, 0, 0, host.page_size))
    if err == 0:
        return Check("ring buffer", "ok", "BPF_MAP_TYPE_RINGBUF supported")
    if err in (errno.EPERM, errno.EACCES) and host.euid != 0:
        return Check("ring buffer", "warn", "not checked: needs root", "sudo iotrace doctor")
    return Check(
        "ring buffer",
        "fail",
        f"BPF_MAP_TYPE_RINGBUF: {_errno_text(err)}",
        "needs Linux 5.8 or later",
    )


def find_tracefs(host: Host) -> Path | None:
    """The mount point of tracefs (preferring /sys/kernel/tracing), or None."""
    found = []
    try:
        text = (host.proc / "self/mounts").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            found.append(Path(parts[1].replace("\\040", " ")))
    found.sort(key=lambda p: (not str(p).endswith("/kernel/tracing"), str(p)))
    return found[0] if found else None


def check_tracefs(host: Host) -> Check:
    where = find_tracefs(host)
    if where is None:
        return Check(
            "tracefs",
            "fail",
            "not mounted",
            f"sudo mount -t tracefs nodev {TRACEFS_DEFAULT}",
        )
    return Check("tracefs", "ok", f"mounted at {where}")


def check_btf(host: Host) -> Check:
    if (host.sys / "kernel/btf/vmlinux").is_file():
        return Check("BTF", "ok", "/sys/kernel/btf/vmlinux", required=False)
    return Check(
        "BTF",
        "warn",
        "no kernel BTF: task-local storage maps unavailable",
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        required=False,
    )


def check_tracepoints(host: Host) -> Check:
    tracefs = find_tracefs(host)
    if tracefs is None:
        return Check(
            "tracepoints", "fail", "cannot look: tracefs not mounted", "mount tracefs (above)"
        )
    events = tracefs / "events"
    try:
        os.listdir(events)
    except OSError as exc:
        if host.euid != 0:
            return Check(
                "tracepoints", "warn", f"cannot read {events} without root", "sudo iotrace doctor"
            )
        return Check("tracepoints", "fail", f"cannot read {events}: {exc.strerror}", FIX_SETUP)
    tps, required = host.tracepoints()
    missing = {
        tp: what
        for tp, what in tps.items()
        if not (events / tp.partition(":")[0] / tp.partition(":")[2]).is_dir()
    }
    if not missing:
        return Check("tracepoints", "ok", f"all {len(tps)} present")
    details = [f"missing {tp}: no {what}" for tp, what in sorted(missing.items())]
    fatal = sorted(set(missing) & required)
    if fatal:
        return Check(
            "tracepoints",
            "fail",
            f"{len(missing)} of {len(tps)} missing, incl. {', '.join(fatal)}",
            "use a kernel with CONFIG_FTRACE_SYSCALLS and scheduler tracepoints",
            details=details,
        )
    return Check(
        "tracepoints",
        "warn",
        f"{len(missing)} of {len(tps)} missing (features below are off)",
        "a newer kernel has them",
        required=False,
        details=details,
    )


def check_bcc(host: Host) -> tuple[Check, bool]:
    try:
        version = host.bcc_version()
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        return (
            Check(
                "bcc",
                "fail",
                f"cannot import bcc: {exc}",
                "apt-get install python3-bpfcc; venv needs --system-site-packages (setup.sh)",
            ),
            False,
        )
    return Check("bcc", "ok", f"version {version}"), True


def check_headers(host: Host) -> tuple[Check, bool]:
    source = host.kernel_headers()
    path = getattr(source, "path", None)
    how = str(getattr(source, "how", "none"))
    if path is None:
        return Check(
            "kernel headers", "fail", "none found", str(getattr(source, "problem", ""))
        ), False
    return Check("kernel headers", "ok", how, details=[str(path)]), True


def check_compile(host: Host, prereqs: Mapping[str, bool]) -> Check:
    blocked = [name for name, ok in prereqs.items() if not ok]
    if blocked and host.euid != 0:
        return Check("BPF compile+load", "warn", "not tried: needs root", "sudo iotrace doctor")
    if blocked:
        return Check(
            "BPF compile+load",
            "fail",
            f"not tried until {', '.join(blocked)} ok",
            "fix the failed checks above",
        )
    from iotrace.errors import BpfError

    try:
        what = host.check_compile()
    except BpfError as exc:
        return Check("BPF compile+load", "fail", str(exc), FIX_SETUP)
    except (ImportError, AttributeError) as exc:
        return Check("BPF compile+load", "fail", f"tracer unavailable: {exc}", FIX_SETUP)
    return Check("BPF compile+load", "ok", what)


def check_io_uring(host: Host) -> Check:
    knob = host.proc / "sys/kernel/io_uring_disabled"
    try:
        value = int(knob.read_text().strip())
    except FileNotFoundError:
        return Check("io_uring", "ok", "allowed (no io_uring_disabled knob)", required=False)
    except (OSError, ValueError) as exc:
        return Check("io_uring", "warn", f"cannot read {knob}: {exc}", required=False)
    if value == 0:
        return Check("io_uring", "ok", "allowed (kernel.io_uring_disabled=0)", required=False)
    scope = "for unprivileged users" if value == 1 else "for everyone"
    return Check(
        "io_uring",
        "warn",
        f"disabled {scope} (kernel.io_uring_disabled={value}): no io_uring workloads",
        "sudo sysctl kernel.io_uring_disabled=0",
        required=False,
    )


def _o_direct_problem(where: Path) -> str:
    """'' when a 4 KiB O_DIRECT write and read-back work in `where`, else why not."""
    path = where / f".iotrace-doctor-{os.getpid()}"
    fd = -1
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
        block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
        block.write(b"iotrace" * 585)
        os.pwrite(fd, block, 0)
        back = mmap.mmap(-1, 4096)
        if os.preadv(fd, [back], 0) != 4096 or back[:] != block[:]:
            return f"{where}: O_DIRECT read back wrong data"
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return f"{where}: filesystem refuses O_DIRECT"
        return f"{where}: {exc.strerror}"
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.lexists(path):
            os.unlink(path)
    return ""


def check_o_direct(host: Host) -> Check:
    """The workloads take the first candidate directory that is not tmpfs and does
    O_DIRECT; so does this check, without creating the directory."""
    problems = []
    for data_dir in host.data_dirs():
        where = _existing(data_dir)
        fstype = host.fs_type(where)
        if fstype in ("tmpfs", "ramfs"):
            problems.append(f"{data_dir}: on {fstype}")
            continue
        problem = _o_direct_problem(where)
        if not problem:
            return Check("O_DIRECT", "ok", f"works in {where}", details=problems)
        problems.append(problem)
    return Check(
        "O_DIRECT",
        "fail",
        problems[0] if len(problems) == 1 else f"no usable data directory ({len(problems)} tried)",
        "give the workloads a data directory on ext4/xfs/btrfs",
        details=problems,
    )


def run_checks(host: Host | None = None) -> list[Check]:
    """Run every check in order; later checks only try what earlier ones allow."""
    host = host or Host()
    priv = check_privileges(host)
    bpf = check_bpf(host)
    tracefs = check_tracefs(host)
    checks = [priv, bpf, check_ringbuf(host), tracefs, check_btf(host)]
    checks.append(check_tracepoints(host))
    bcc, bcc_ok = check_bcc(host)
    headers, headers_ok = check_headers(host)
    checks += [bcc, headers]
    prereqs = {
        "privileges": priv.status == "ok",
        "bpf()": bpf.status == "ok",
        "tracefs": tracefs.status == "ok",
        "bcc": bcc_ok,
        "kernel headers": headers_ok,
    }
    checks.append(check_compile(host, prereqs))
    checks += [check_io_uring(host), check_o_direct(host)]
    return checks


# --- output ----------------------------------------------------------------------------

_LABEL = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
WIDTH = 79


def counts(checks: list[Check]) -> dict[str, int]:
    return {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}


def required_failed(checks: list[Check]) -> bool:
    return any(c.status == "fail" and c.required for c in checks)


def _wrap(text: str, first: str, rest: str) -> list[str]:
    # Paths and package names stay whole: a line a little long beats a path cut in two.
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [first.rstrip()]


def render_text(checks: list[Check]) -> str:
    lines = []
    indent = " " * 24
    for c in checks:
        lines += _wrap(c.summary, f"{_LABEL[c.status]:<5} {c.name:<17} ", indent)
        if c.status != "ok":
            for d in c.details:
                lines += _wrap(d, indent + "- ", indent + "  ")
            if c.fix:
                lines += _wrap(f"fix: {c.fix}", indent, indent + "     ")
    n = counts(checks)
    verdict = "cannot trace" if required_failed(checks) else "ready to trace"
    lines.append(
        f"{len(checks)} checks: {n['ok']} ok, {n['warn']} warnings, {n['fail']} failed — {verdict}"
    )
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    return json.dumps(
        {
            "ok": not required_failed(checks),
            "kernel": platform.release(),
            "iotrace": __version__,
            "summary": counts(checks),
            "checks": [asdict(c) for c in checks],
        },
        indent=2,
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks()
    print(render_json(checks) if args.json else render_text(checks))
    return EXIT_FAILURE if required_failed(checks) else EXIT_OK
