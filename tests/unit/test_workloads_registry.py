"""The workload registry: what the tracer and `iotrace run` rely on."""

from __future__ import annotations

import importlib

import pytest
from iotrace.workloads import registry

from iotrace.errors import UsageError
from iotrace.events import MODELS, SYSCALL_BY_NAME


def test_names_are_unique_and_every_model_is_covered() -> None:
    specs = registry.all_specs()
    assert len({s.name for s in specs}) == len(specs)
    assert {s.model for s in specs} == set(MODELS)


def test_specs_name_real_syscalls_and_modules() -> None:
    for s in registry.all_specs():
        assert s.expected_syscalls and all(n in SYSCALL_BY_NAME for n in s.expected_syscalls)
        assert s.description and "\n" not in s.description
        module = importlib.import_module(f"iotrace.workloads.{s.module}")
        assert callable(module.prepare)


def test_the_listed_workloads_exist() -> None:
    for name in (
        "sync-blocking",
        "sync-nonblocking",
        "select",
        "poll",
        "epoll",
        "libaio",
        "io_uring",
        "io_uring-buffered",
        "io_uring-socket",
        "posix-aio",
    ):
        assert registry.get(name).name == name


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError) as exc:
        registry.get("sync-bloking")
    assert "sync-blocking" in str(exc.value) and "posix-aio" in str(exc.value)
    assert exc.value.exit_code == 2


def test_default_set_is_one_workload_per_model() -> None:
    models = [registry.get(n).model for n in registry.default_set()]
    assert sorted(models) == sorted(MODELS)
