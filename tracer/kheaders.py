"""Find or prepare kernel headers for bcc (pure Python: never imports bcc).

bcc compiles every BPF program with clang against kernel headers. In order:

1. `BCC_KERNEL_SOURCE` already points at a usable tree (the user knows best);
2. `/lib/modules/$(uname -r)/build`: headers of the running kernel (bcc's default);
3. `/sys/kernel/kheaders.tar.xz`: the kernel's built-in headers, which bcc unpacks itself;
4. a private merged tree of the distribution's generic headers. Debian splits headers into
   `linux-headers-<abi>-common` and `linux-headers-<abi>-<flavour>` under /usr/src, and bcc
   wants one tree, so we build a symlink farm of both (flavour applied after common) under
   /var/cache/iotrace/kheaders/<name> and point `BCC_KERNEL_SOURCE` at it.

A tree from another kernel version is only safe for tracepoints: their argument structs
are generated from tracefs format files, while kernel structs (`task_struct` & co.) may be
laid out differently. Hence "tracepoint-only". We never write /lib/modules: that belongs to
the distribution's packages.

`python -m iotrace.tracer.kheaders prepare` builds the merged tree (setup.sh runs it);
`... show` prints what would be used.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "BCC_KERNEL_SOURCE"
CACHE_DIR = Path("/var/cache/iotrace/kheaders")
SRC_DIR = Path("/usr/src")
MODULES_DIR = Path("/lib/modules")
KHEADERS_ARCHIVE = Path("/sys/kernel/kheaders.tar.xz")

FINGERPRINT = ".iotrace-fingerprint"
"""File at the top of a merged tree naming the package trees (and their mtimes) it mirrors,
so an upgraded or removed headers package makes us rebuild instead of using dangling links."""

HOW_RUNNING = "running kernel headers"
HOW_ENV = "BCC_KERNEL_SOURCE from the environment"
HOW_BUILTIN = "kernel's built-in headers (/sys/kernel/kheaders.tar.xz)"
HOW_NONE = "none"

# Kernel arch directory names for `uname -m` values we may meet.
_KERNEL_ARCH = {
    "x86_64": "x86",
    "i686": "x86",
    "i386": "x86",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "powerpc",
    "s390x": "s390",
    "riscv64": "riscv",
}
# Flavour names preferred for each `uname -m`: Debian names flavours after the dpkg
# architecture, Ubuntu calls its default one "generic".
_PREFERRED_FLAVOURS = {
    "x86_64": ("amd64", "generic"),
    "aarch64": ("arm64", "generic"),
}


@dataclass(frozen=True)
class KernelSource:
    """Which kernel headers bcc will compile against."""

    path: Path | None
    """The header tree (or the kheaders archive); None when there is none."""
    how: str
    """Where the headers come from, for humans (`iotrace doctor` prints it)."""
    problem: str = ""
    """One-line fix when no headers were found (empty otherwise)."""
    exact: bool = False
    """True when the headers belong to the running kernel (safe for kernel structs)."""

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class HeaderPackage:
    """One flavour of a distribution's kernel headers, e.g. linux-headers-6.1.0-56-amd64."""

    flavour_dir: Path
    common_dir: Path | None
    version: str
    """The ABI version without flavour, e.g. 6.1.0-56."""
    flavour: str

    @property
    def name(self) -> str:
        return self.flavour_dir.name

    @property
    def short_version(self) -> str:
        """Major.minor, e.g. 6.1."""
        return ".".join(self.version.split("-")[0].split(".")[:2])

    def sources(self) -> list[Path]:
        """Trees to merge, in order: later ones win."""
        return [p for p in (self.common_dir, self.flavour_dir) if p is not None]


def is_header_tree(path: Path) -> bool:
    """True when `path` looks like a configured kernel header tree bcc can use."""
    return (path / "include/linux/kconfig.h").is_file() and (
        (path / "include/generated/autoconf.h").is_file() or (path / ".config").is_file()
    )


def _version_key(text: str) -> tuple[tuple[int, int | str], ...]:
    # "6.1.0-56" sorts after "6.1.0-9": compare digit runs as numbers.
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.findall(r"\d+|[^\d.-]+", text))


def find_packages(src_dir: Path = SRC_DIR, machine: str | None = None) -> list[HeaderPackage]:
    """Distribution header trees for this architecture under `src_dir`, best first.

    Best = newest version, then the flavour named after the architecture.
    """
    machine = machine or platform.machine()
    karch = _KERNEL_ARCH.get(machine, machine)
    preferred = _PREFERRED_FLAVOURS.get(machine, ())
    found: list[HeaderPackage] = []
    try:
        entries = sorted(src_dir.iterdir())
    except OSError:
        return []
    for d in entries:
        name = d.name
        if not name.startswith("linux-headers-") or name.endswith("-common"):
            continue
        if not (d / ".config").is_file() or not (d / "arch" / karch).is_dir():
            continue
        rest = name[len("linux-headers-") :]
        version, _, flavour = rest.rpartition("-")
        if not version:
            continue
        # Debian: linux-headers-<abi>-common; Ubuntu: linux-headers-<abi>.
        common = next(
            (
                c
                for c in (
                    src_dir / f"linux-headers-{version}-common",
                    src_dir / f"linux-headers-{version}",
                )
                if c.is_dir()
            ),
            None,
        )
        if common is None and not (d / "include/linux/kconfig.h").is_file():
            continue  # a flavour tree whose common part is not installed
        found.append(HeaderPackage(d, common, version, flavour))

    def rank(p: HeaderPackage) -> tuple[object, ...]:
        flavour_rank = preferred.index(p.flavour) if p.flavour in preferred else len(preferred)
        return (_version_key(p.version), -flavour_rank)

    return sorted(found, key=rank, reverse=True)


def _fingerprint(pkg: HeaderPackage) -> str:
    lines = []
    for src in pkg.sources():
        marker = src / "Makefile"
        try:
            mtime = marker.stat().st_mtime_ns
        except OSError:
            mtime = -1
        lines.append(f"{src.resolve()} {mtime}")
    return "\n".join(lines) + "\n"


def merged_tree_valid(tree: Path, pkg: HeaderPackage) -> bool:
    """True when `tree` is a complete merged tree of `pkg` as installed now."""
    try:
        stamp = (tree / FINGERPRINT).read_text()
    except OSError:
        return False
    return stamp == _fingerprint(pkg) and is_header_tree(tree)


def build_merged_tree(pkg: HeaderPackage, dest: Path) -> Path:
    """Build (or rebuild) the symlink farm of `pkg` at `dest`; returns `dest`.

    Built in a temporary sibling directory and renamed into place, so a concurrent reader
    sees either no tree or a complete one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for src in pkg.sources():
            # followlinks: Debian's flavour tree links scripts/ and tools/ into linux-kbuild.
            for root, _dirs, files in os.walk(src, followlinks=True):
                rel = os.path.relpath(root, src)
                out = tmp / rel
                out.mkdir(parents=True, exist_ok=True)
                for f in files:
                    target = os.path.realpath(os.path.join(root, f))
                    if not os.path.exists(target):
                        continue  # dangling link in the package: nothing to offer
                    link = out / f
                    if os.path.lexists(link):
                        link.unlink()  # the flavour's file replaces the common one
                    os.symlink(target, link)
        (tmp / FINGERPRINT).write_text(_fingerprint(pkg))
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700; bcc may run as another root-ish user
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
            os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another process (a parallel `iotrace run`) put its tree there first: use it.
            if not merged_tree_valid(dest, pkg):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _distribution(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "ID":
                value = value.strip().strip('"')
                return {"debian": "Debian", "ubuntu": "Ubuntu"}.get(value, value.capitalize())
    except OSError:
        pass
    return "distribution"


def merged_how(pkg: HeaderPackage) -> str:
    return f"merged tree of {_distribution()} {pkg.short_version} headers (tracepoint-only)"


def find(
    *,
    release: str | None = None,
    env: Mapping[str, str] | None = None,
    modules_dir: Path = MODULES_DIR,
    src_dir: Path = SRC_DIR,
    cache_dir: Path = CACHE_DIR,
    kheaders_archive: Path = KHEADERS_ARCHIVE,
    build: bool = False,
) -> KernelSource:
    """Decide which headers bcc should use; builds the merged tree only when `build`."""
    env = os.environ if env is None else env
    release = release or platform.release()

    given = env.get(ENV_VAR)
    # Our own merged tree in the environment (set by an earlier configure()) is not the
    # user's choice: fall through so it is reported, and re-checked, as the merged tree.
    if given and not Path(given).is_relative_to(cache_dir) and is_header_tree(Path(given)):
        return KernelSource(Path(given), HOW_ENV, exact=False)

    running = modules_dir / release / "build"
    if is_header_tree(running):
        return KernelSource(running, HOW_RUNNING, exact=True)

    if kheaders_archive.is_file():
        return KernelSource(kheaders_archive, HOW_BUILTIN, exact=True)

    packages = find_packages(src_dir)
    if not packages:
        return KernelSource(
            None,
            HOW_NONE,
            f"no kernel headers for {release}: run 'sudo ./setup.sh' "
            f"(installs {generic_headers_package()} and prepares them)",
        )
    pkg = packages[0]
    tree = cache_dir / pkg.name
    if merged_tree_valid(tree, pkg):
        return KernelSource(tree, merged_how(pkg))
    if build:
        try:
            build_merged_tree(pkg, tree)
        except OSError as exc:
            return KernelSource(
                None, HOW_NONE, f"cannot prepare kernel headers in {cache_dir}: {exc.strerror}"
            )
        return KernelSource(tree, merged_how(pkg))
    return KernelSource(
        None,
        HOW_NONE,
        f"{pkg.name} not prepared for bcc: run 'sudo {_module_command()} prepare'",
    )


def _module_command() -> str:
    return f"{sys.executable} -m iotrace.tracer.kheaders"


def generic_headers_package() -> str:
    """The distribution's always-current headers metapackage for this machine."""
    if _distribution() == "Ubuntu":
        return "linux-headers-generic"
    machine = platform.machine()
    return {"x86_64": "linux-headers-amd64", "aarch64": "linux-headers-arm64"}.get(
        machine, "linux-headers-<arch>"
    )


def _can_write(cache_dir: Path) -> bool:
    # The nearest existing ancestor decides whether we may create the cache.
    p = cache_dir
    while not p.exists() and p != p.parent:
        p = p.parent
    return os.access(p, os.W_OK)


def configure(environ: MutableMapping[str, str] | None = None) -> KernelSource:
    """Make bcc find usable headers; call before `import bcc`.

    Builds the merged tree when it is missing and we may write the cache (root), and sets
    `BCC_KERNEL_SOURCE` when a tree other than bcc's default must be used.
    """
    environ = os.environ if environ is None else environ
    source = find(
        env=environ,
        modules_dir=MODULES_DIR,
        src_dir=SRC_DIR,
        cache_dir=CACHE_DIR,
        kheaders_archive=KHEADERS_ARCHIVE,
        build=_can_write(CACHE_DIR),
    )
    if source.how == HOW_ENV:
        return source
    given = environ.get(ENV_VAR)
    if source.how in (HOW_RUNNING, HOW_BUILTIN):
        if given:
            # A stale BCC_KERNEL_SOURCE would win over the good default inside bcc.
            del environ[ENV_VAR]
    elif source.path is not None:
        environ[ENV_VAR] = str(source.path)
    return source


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in (["prepare"], ["show"]):
        print(f"usage: {_module_command()} {{prepare|show}}", file=sys.stderr)
        return 2
    source = find(build=args == ["prepare"])
    if not source.found:
        print(f"kernel headers: {source.problem}", file=sys.stderr)
        return 1
    print(f"kernel headers: {source.how}: {source.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
