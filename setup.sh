#!/usr/bin/env bash
# Set up iotrace on a Debian or Ubuntu machine, then run it or its tests.
#
#   sudo ./setup.sh run [iotrace run args...]   set up, then start `iotrace run`
#   sudo ./setup.sh test [pytest args...]       set up, then `make check` (lint, types, tests)
#   sudo ./setup.sh bench [bench args...]       set up, add what the benchmarks compare
#                                               against (bpftrace, perf), run `python -m bench`
#   sudo ./setup.sh                             set up only
#
# Idempotent: a repeat run checks each step and takes seconds when nothing changed.
set -euo pipefail

# System packages iotrace needs from apt. Add new needs HERE (one place, one list).
APT_PACKAGES=(
    python3 python3-venv  # the system Python: bcc's Python bindings are built for it
    python3-bpfcc         # bcc (never from PyPI)
    make gcc libc6-dev    # `make check`; workloads compile small C helpers
    fio                   # workload fidelity comparisons
    tmux strace           # TUI tests in a real terminal; cross-checking syscall counts
    liburing-dev          # e2e: the C test program that submits io_uring requests
    chromium fonts-liberation  # e2e: the HTML report rendered in headless chromium
)
# Nice to have; set-up goes on without them.
OPTIONAL_APT_PACKAGES=(bpfcc-tools)
# What `setup.sh bench` compares iotrace against (strace and fio are above already).
BENCH_APT_PACKAGES=(bpftrace linux-perf)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
VENV=$REPO/.venv
STAMP=$VENV/.iotrace-setup-stamp
LINK=/usr/local/bin/iotrace
TRACEFS=/sys/kernel/tracing

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}
trap 'die "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

mode=setup
if (($#)); then
    case $1 in
    run | test | bench) mode=$1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
fi

if ((EUID != 0)); then
    printf 'setup: needs root (installs packages, mounts tracefs): sudo %s %s\n' \
        "$0" "$mode" >&2
    exit 77
fi
if [[ ! -r /etc/os-release ]] || ! grep -Eq '^(ID|ID_LIKE)=.*\b(debian|ubuntu)\b' /etc/os-release; then
    die "only Debian and Ubuntu are supported (apt, python3-bpfcc)"
fi
export DEBIAN_FRONTEND=noninteractive
if grep -q '^ID=ubuntu' /etc/os-release; then
    # Ubuntu ships chromium as chromium-browser
    APT_PACKAGES=("${APT_PACKAGES[@]/#chromium/chromium-browser}")
fi

# The checkout's owner keeps owning the venv and caches when we run under sudo.
OWNER=$(stat -c %U "$REPO")
OWNER_HOME=$(getent passwd "$OWNER" | cut -d: -f6)
as_owner() {
    if [[ $OWNER == root ]]; then
        "$@"
    else
        runuser -u "$OWNER" -- env HOME="$OWNER_HOME" "$@"
    fi
}

# --- system packages -------------------------------------------------------------------

not_installed() { # prints those of the packages "$@" that are not installed
    local pkg
    for pkg in "$@"; do
        [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null) == "ii " ]] || echo "$pkg"
    done
}

apt_updated=0
apt_update() {
    if ((!apt_updated)); then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
}

has_candidate() { # true when apt can install package $1
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $cand && $cand != "(none)" ]]
}

quiet_apt_install() {
    # debconf's note about apt-utils is noise on minimal systems; real errors still show.
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        2> >(grep -v '^debconf: delaying package configuration' >&2)
}

apt_install() {
    say "apt-get install $*"
    if ! quiet_apt_install "$@"; then
        if ((apt_updated)); then return 1; fi
        apt_update # stale package lists: refresh once and retry
        quiet_apt_install "$@"
    fi
}

# Kernel headers: the running kernel's own package if the distribution has it, else the
# generic metapackage (prepared below as a private merged tree, see tracer/kheaders.py).
kernel=$(uname -r)
headers_pkg=
if [[ ! -e /lib/modules/$kernel/build ]]; then
    if grep -q '^ID=ubuntu' /etc/os-release; then
        generic=linux-headers-generic
    else
        generic=linux-headers-$(dpkg --print-architecture)
    fi
    if [[ -z $(not_installed "linux-headers-$kernel") ]]; then
        headers_pkg=linux-headers-$kernel
    elif [[ -z $(not_installed "$generic") ]]; then
        headers_pkg=$generic
    else
        apt_update
        if has_candidate "linux-headers-$kernel"; then
            headers_pkg=linux-headers-$kernel
        else
            say "no headers package for kernel $kernel; using $generic"
            headers_pkg=$generic
        fi
    fi
fi

mapfile -t missing < <(not_installed "${APT_PACKAGES[@]}" ${headers_pkg:+"$headers_pkg"})
if ((${#missing[@]})); then
    apt_update
    apt_install "${missing[@]}" || die "could not install: ${missing[*]}"
fi
mapfile -t missing < <(not_installed "${OPTIONAL_APT_PACKAGES[@]}")
if ((${#missing[@]})); then
    apt_update
    apt_install "${missing[@]}" || say "warning: optional packages not installed: ${missing[*]}"
fi
if [[ $mode == bench ]]; then
    mapfile -t missing < <(not_installed "${BENCH_APT_PACKAGES[@]}")
    if ((${#missing[@]})); then
        apt_update
        # The benches print "not installed" in a row whose tool is missing.
        apt_install "${missing[@]}" || say "warning: not installed: ${missing[*]}"
    fi
fi
say "system packages ok"

# --- tracefs ---------------------------------------------------------------------------

if ! awk -v m="$TRACEFS" '$2 == m && $3 == "tracefs" {found=1} END {exit !found}' /proc/self/mounts; then
    say "mounting tracefs at $TRACEFS"
    mount -t tracefs nodev "$TRACEFS" || die "cannot mount tracefs at $TRACEFS"
fi

# --- the venv --------------------------------------------------------------------------

/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "iotrace needs Python >= 3.11 as /usr/bin/python3 (Debian 12, Ubuntu 24.04 or newer)"

venv_ok() {
    [[ -x $VENV/bin/python && -r $VENV/pyvenv.cfg ]] &&
        grep -Eq '^include-system-site-packages = true' "$VENV/pyvenv.cfg" &&
        grep -Eq '^home = /usr/bin$' "$VENV/pyvenv.cfg"
}
if ! venv_ok; then
    say "creating $VENV (system Python, --system-site-packages for bcc)"
    as_owner /usr/bin/python3 -m venv --clear --system-site-packages "$VENV"
fi

want_stamp=$(
    {
        cat "$REPO/pyproject.toml"
        printf '%s\n' "${APT_PACKAGES[@]}"
        "$VENV/bin/python" -V
    } | sha256sum | cut -d' ' -f1
)
if [[ -x $VENV/bin/iotrace && -r $STAMP && $(<"$STAMP") == "$want_stamp" ]]; then
    say "venv up to date"
else
    say "pip install -e '.[dev]' (a minute on first run)"
    (cd "$REPO" && as_owner "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -e '.[dev]') || die "pip install failed (network? see the lines above)"
    # shellcheck disable=SC2016  # $1/$2 expand in the inner shell
    as_owner sh -c 'printf "%s\n" "$1" > "$2"' sh "$want_stamp" "$STAMP"
fi
"$VENV/bin/python" -c 'import bcc' 2>/dev/null ||
    die "bcc is not importable from $VENV (is python3-bpfcc installed for /usr/bin/python3?)"

# --- kernel headers for bcc ------------------------------------------------------------

headers=$("$VENV/bin/python" -m iotrace.tracer.kheaders prepare 2>&1) || die "$headers"
say "$headers"

# --- `sudo iotrace` --------------------------------------------------------------------

# Only take the name when it is free, dangling, or already this checkout's.
if [[ ! -e $LINK && ! -L $LINK ]] || { [[ -L $LINK ]] &&
    { [[ ! -e $LINK ]] || [[ $(readlink -f "$LINK") == "$VENV/bin/iotrace" ]]; }; }; then
    ln -sfn "$VENV/bin/iotrace" "$LINK"
    say "$LINK -> $VENV/bin/iotrace"
else
    say "left $LINK alone (it is not ours: $(readlink -f "$LINK")); use $VENV/bin/iotrace"
fi

say "ready"

# --- then what was asked ---------------------------------------------------------------

cd "$REPO"
case $mode in
run)
    trap - ERR
    exec "$VENV/bin/iotrace" run "$@"
    ;;
bench)
    trap - ERR
    exec "$VENV/bin/python" -m bench "$@"
    ;;
test)
    trap - ERR
    status=0
    if (($#)); then
        make lint typecheck && "$VENV/bin/python" -m pytest "$@" || status=$?
    else
        make check || status=$?
    fi
    # Files the root-run tests left in a user's checkout go back to that user.
    if [[ $OWNER != root ]]; then
        find "$REPO" -xdev -path "$REPO/.git" -prune -o -user 0 -print0 |
            xargs -0r chown -h "$OWNER": || true
    fi
    exit "$status"
    ;;
esac
