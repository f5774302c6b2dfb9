"""Kernel header discovery and the merged tree, on fake /usr/src and /lib/modules roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from iotrace.tracer import kheaders
from iotrace.tracer.kheaders import (
    ENV_VAR,
    HOW_ENV,
    HOW_NONE,
    HOW_RUNNING,
    find,
    find_packages,
    is_header_tree,
)

RELEASE = "6.18.44-test"


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _debian_headers(src: Path, abi: str = "6.1.0-56", flavour: str = "amd64") -> Path:
    """A miniature of Debian's split: -common holds sources, the flavour tree the config."""
    common = src / f"linux-headers-{abi}-common"
    _write(common / "include/linux/kconfig.h", "/* common kconfig */")
    _write(common / "include/linux/sched.h", "/* common sched */")
    _write(common / "arch/x86/include/asm/ptrace.h", "/* common ptrace */")
    _write(common / "Makefile", "# the real Makefile")
    kbuild = src.parent / "kbuild" / "scripts"
    _write(kbuild / "basic/fixdep", "binary")
    flav = src / f"linux-headers-{abi}-{flavour}"
    _write(flav / ".config", "CONFIG_BPF=y")
    _write(flav / "Makefile", f"include {common}/Makefile")
    _write(flav / "include/generated/autoconf.h", "#define CONFIG_BPF 1")
    _write(flav / "arch/x86/include/generated/asm/unistd_64_x32.h", "/* gen */")
    # Debian links scripts/ to linux-kbuild: the walk must follow it.
    (flav / "scripts").symlink_to(kbuild)
    return flav


def _find(tmp_path: Path, **kw: object) -> kheaders.KernelSource:
    args: dict[str, object] = {
        "release": RELEASE,
        "env": {},
        "modules_dir": tmp_path / "lib/modules",
        "src_dir": tmp_path / "usr/src",
        "cache_dir": tmp_path / "cache",
        "kheaders_archive": tmp_path / "no-kheaders.tar.xz",
    }
    args.update(kw)
    return find(**args)  # type: ignore[arg-type]


def test_no_headers_at_all_names_a_fix(tmp_path: Path) -> None:
    src = _find(tmp_path)
    assert src.path is None and src.how == HOW_NONE
    assert "setup.sh" in src.problem and "\n" not in src.problem


def test_running_kernel_headers_win_over_the_distribution_tree(tmp_path: Path) -> None:
    _debian_headers(tmp_path / "usr/src")
    build = tmp_path / "lib/modules" / RELEASE / "build"
    _write(build / "include/linux/kconfig.h")
    _write(build / ".config")
    src = _find(tmp_path, build=True)
    assert src.how == HOW_RUNNING and src.path == build and src.exact
    assert not (tmp_path / "cache").exists()


def test_valid_env_tree_is_respected_and_invalid_one_ignored(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    _write(mine / "include/linux/kconfig.h")
    _write(mine / ".config")
    assert _find(tmp_path, env={ENV_VAR: str(mine)}).how == HOW_ENV
    assert _find(tmp_path, env={ENV_VAR: str(tmp_path / "nowhere")}).how == HOW_NONE


def test_unprepared_tree_is_reported_not_built(tmp_path: Path) -> None:
    _debian_headers(tmp_path / "usr/src")
    src = _find(tmp_path)
    assert src.path is None
    assert "linux-headers-6.1.0-56-amd64" in src.problem and "prepare" in src.problem
    assert not (tmp_path / "cache").exists()


def test_merged_tree_overlays_flavour_on_common(tmp_path: Path) -> None:
    flav = _debian_headers(tmp_path / "usr/src")
    src = _find(tmp_path, build=True)
    tree = tmp_path / "cache" / flav.name
    assert src.path == tree
    assert src.how.startswith("merged tree of ")
    assert src.how.endswith(" 6.1 headers (tracepoint-only)")
    assert not src.exact
    assert is_header_tree(tree)
    # every file is a symlink to the package's real file, never a copy
    assert (tree / "include/linux/sched.h").readlink().is_absolute()
    assert (tree / "include/linux/sched.h").read_text() == "/* common sched */"
    assert (tree / "include/generated/autoconf.h").read_text() == "#define CONFIG_BPF 1"
    assert (tree / "arch/x86/include/asm/ptrace.h").is_symlink()
    assert (tree / "scripts/basic/fixdep").read_text() == "binary"
    # the flavour's stub Makefile wins over the common one, as in the package itself
    assert (tree / "Makefile").read_text().startswith("include ")
    # no temporary directories left behind
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [flav.name]


def test_found_again_without_rebuilding(tmp_path: Path) -> None:
    flav = _debian_headers(tmp_path / "usr/src")
    first = _find(tmp_path, build=True)
    marker = tmp_path / "cache" / flav.name / "include/linux/sched.h"
    inode = marker.lstat().st_ino
    again = _find(tmp_path)  # build=False: must not need to build
    assert again == first
    assert marker.lstat().st_ino == inode


def test_upgraded_package_makes_the_tree_stale_and_it_is_rebuilt(tmp_path: Path) -> None:
    flav = _debian_headers(tmp_path / "usr/src")
    _find(tmp_path, build=True)
    makefile = flav / "Makefile"
    st = makefile.stat()
    os.utime(makefile, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _find(tmp_path).path is None  # stale: not used as is
    rebuilt = _find(tmp_path, build=True)
    assert rebuilt.path == tmp_path / "cache" / flav.name
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [flav.name]


def test_our_own_tree_in_the_environment_is_reported_as_merged(tmp_path: Path) -> None:
    _debian_headers(tmp_path / "usr/src")
    first = _find(tmp_path, build=True)
    assert first.path is not None
    again = _find(tmp_path, env={ENV_VAR: str(first.path)})
    assert again.how == first.how


def test_newest_version_and_matching_flavour_are_preferred(tmp_path: Path) -> None:
    src = tmp_path / "usr/src"
    _debian_headers(src, abi="6.1.0-9")
    _debian_headers(src, abi="6.1.0-56")
    _debian_headers(src, abi="6.1.0-56", flavour="cloud-amd64")
    # an arm64 tree is useless on x86_64
    _write(src / "linux-headers-6.1.0-99-arm64/.config")
    (src / "linux-headers-6.1.0-99-arm64/arch/arm64").mkdir(parents=True)
    names = [p.name for p in find_packages(src, machine="x86_64")]
    assert names[0] == "linux-headers-6.1.0-56-amd64"
    assert "linux-headers-6.1.0-9-amd64" in names[1:]
    assert "linux-headers-6.1.0-99-arm64" not in names


def test_ubuntu_layout_common_tree_without_suffix(tmp_path: Path) -> None:
    src = tmp_path / "usr/src"
    common = src / "linux-headers-5.15.0-91"
    _write(common / "include/linux/kconfig.h")
    flav = src / "linux-headers-5.15.0-91-generic"
    _write(flav / ".config")
    (flav / "arch/x86").mkdir(parents=True)
    [pkg] = find_packages(src, machine="x86_64")
    assert pkg.common_dir == common and pkg.flavour == "generic"
    assert pkg.short_version == "5.15"


def test_configure_sets_and_clears_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flav = _debian_headers(tmp_path / "usr/src")
    monkeypatch.setattr(kheaders, "SRC_DIR", tmp_path / "usr/src")
    monkeypatch.setattr(kheaders, "MODULES_DIR", tmp_path / "lib/modules")
    monkeypatch.setattr(kheaders, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(kheaders, "KHEADERS_ARCHIVE", tmp_path / "none")
    monkeypatch.setattr(kheaders.platform, "release", lambda: RELEASE)
    env: dict[str, str] = {ENV_VAR: str(tmp_path / "stale")}
    src = kheaders.configure(env)
    assert src.path == tmp_path / "cache" / flav.name
    assert env[ENV_VAR] == str(src.path)
    # once running-kernel headers appear, the variable must go: it would override them
    build = tmp_path / "lib/modules" / RELEASE / "build"
    _write(build / "include/linux/kconfig.h")
    _write(build / ".config")
    assert kheaders.configure(env).how == HOW_RUNNING
    assert ENV_VAR not in env


def test_main_usage_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert kheaders.main(["bogus"]) == 2
    assert "prepare|show" in capsys.readouterr().err


def test_losing_a_build_race_uses_the_winners_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flav = _debian_headers(tmp_path / "usr/src")
    [pkg] = find_packages(tmp_path / "usr/src", machine="x86_64")
    dest = tmp_path / "cache" / flav.name
    real_rename = os.rename

    def rename_after_winner(src: object, dst: object) -> None:
        if Path(str(dst)) == dest and not dest.exists():
            monkeypatch.setattr(kheaders.os, "rename", real_rename)
            kheaders.build_merged_tree(pkg, dest)  # the other process wins
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(kheaders.os, "rename", rename_after_winner)
    assert kheaders.build_merged_tree(pkg, dest) == dest
    assert kheaders.merged_tree_valid(dest, pkg)
    assert sorted(p.name for p in dest.parent.iterdir()) == [flav.name]
