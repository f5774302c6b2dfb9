"""Workload options: fio's vocabulary, units, and refusing what a workload ignores."""

from __future__ import annotations

import argparse

import pytest
from iotrace.workloads import engine, options
from iotrace.workloads.options import parse, parse_duration, parse_size

from iotrace.errors import UsageError


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("4k", 4096), ("4K", 4096), ("4KiB", 4096), ("256m", 256 << 20),
     ("1g", 1 << 30), ("512b", 512)],
)  # fmt: skip
def test_sizes_take_fio_suffixes_in_powers_of_1024(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "4x", "-1k", "0", "k4"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("2.5s", 2.5), ("20ms", 0.02), ("100us", 1e-4), ("2m", 120.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_zero_duration_only_where_it_means_something() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("0")
    opts, _ = parse(["--backoff", "0", "--jitter", "0"])
    assert opts.backoff == 0 and opts.jitter == 0


def test_fio_underscore_spellings_are_accepted() -> None:
    opts, _ = parse(["--number_ios=7", "--iodepth_batch_complete_min", "4", "--force_async=2"])
    assert (opts.number_ios, opts.iodepth_batch_complete_min, opts.force_async) == (7, 4, 2)
    assert opts.given == {"number_ios", "iodepth_batch_complete_min", "force_async"}


def test_submit_batch_takes_both_of_fios_names() -> None:
    for argv in (
        ["--iodepth_batch_submit", "1"],
        ["--iodepth_batch=1"],
        ["--iodepth-batch-submit", "1"],
    ):
        opts, _ = parse(argv)
        assert opts.iodepth_batch_submit == 1 and opts.given == {"iodepth_batch_submit"}
    with pytest.raises(UsageError):
        parse(["--iodepth-batch-submit", "0"])
    for name in ("libaio", "io_uring", "io_uring-buffered"):
        engine.parse_for(name, ["--iodepth-batch-submit", "4"])
    with pytest.raises(UsageError, match=r"--iodepth-batch-submit does not apply to posix-aio"):
        engine.parse_for("posix-aio", ["--iodepth-batch-submit", "4"])


def test_the_sync_blocking_contract_options() -> None:
    opts, _ = parse(["--pipe-reads", "23", "--file-reads", "29", "--delay", "20ms", "--bs", "4k"])
    assert (opts.pipe_reads, opts.file_reads, opts.delay, opts.bs) == (23, 29, 0.02, 4096)


def test_malformed_options_are_usage_errors() -> None:
    for argv in (
        ["--iodepth", "0"],
        ["--bs", "1000"],
        ["--rw", "randwrite"],
        ["--nope"],
        ["--direct", "2"],
        ["--filesize", "4k", "--bs", "8k"],
    ):
        with pytest.raises(UsageError):
            parse(argv)


def test_an_option_the_workload_ignores_is_refused_with_what_it_takes() -> None:
    with pytest.raises(UsageError, match=r"--iodepth does not apply to sync-blocking"):
        engine.parse_for("sync-blocking", ["--iodepth", "8"])
    spec, opts, _ = engine.parse_for("libaio", ["--iodepth", "8"])
    assert opts.iodepth == 8 and spec.name == "libaio"


def test_runtime_defaults_unless_a_count_bounds_the_run() -> None:
    spec, opts, _ = engine.parse_for("libaio", [])
    assert engine.effective_runtime(opts, spec) == engine.DEFAULT_RUNTIME_S
    spec, opts, _ = engine.parse_for("libaio", ["--number-ios", "5"])
    assert engine.effective_runtime(opts, spec) is None
    spec, opts, _ = engine.parse_for("libaio", ["--number-ios", "5", "--runtime", "2s"])
    assert engine.effective_runtime(opts, spec) == 2.0


def test_help_names_every_option() -> None:
    text = options.help_text()
    for name in (
        "--bs",
        "--filesize",
        "--size",
        "--number-ios",
        "--runtime",
        "--iodepth",
        "--iodepth-batch-complete-min",
        "--iodepth-batch-submit",
        "--rw",
        "--direct",
        "--fds",
        "--transport",
        "--delay",
        "--jitter",
        "--backoff",
        "--pipe-reads",
        "--socket-reads",
        "--file-reads",
        "--force-async",
        "--seed",
        "--directory",
        "--clean",
        "--output-format",
    ):
        assert name in text
