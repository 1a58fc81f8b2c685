"""Tests of trm_bounds._compute: the device check and the engines' thread policy."""

from __future__ import annotations

import os

import pytest
import torch

from trm_bounds import _compute


def test_kernel_threads_env_override_and_its_errors(monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_THREADS", "3")
    assert _compute.kernel_threads() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("TRM_BOUNDS_THREADS", bad)
        with pytest.raises(ValueError, match="TRM_BOUNDS_THREADS must be a positive integer"):
            _compute.kernel_threads()


@pytest.mark.parametrize("cores,busy,want", [(2, 0, 2), (2, 1, 1), (2, 5, 1), (8, 2.6, 5), (4, 0.4, 4)])
def test_kernel_threads_takes_only_the_free_cores(monkeypatch, cores, busy, want):
    monkeypatch.delenv("TRM_BOUNDS_THREADS", raising=False)
    monkeypatch.setattr(_compute, "_affinity", lambda: cores)
    monkeypatch.setattr(_compute, "_busy_others", lambda: busy)
    assert _compute.kernel_threads() == want


def test_busy_others_reads_a_nonnegative_count():
    n = _compute._busy_others()
    assert n >= 0 and n == int(n) or isinstance(n, float)


@pytest.mark.parametrize("running,own,want", [(1, 1, 0), (3, 3, 0), (3, 1, 2), (4, 2, 2), (1, 2, 0)])
def test_busy_others_does_not_count_our_own_threads(monkeypatch, running, own, want):
    """Our own runnable threads (a kernel's OpenMP workers spinning after the call) are not
    another process's load: the policy once gave back-to-back calls one thread of two."""
    monkeypatch.setattr(_compute, "_running_now", lambda: running)
    monkeypatch.setattr(_compute, "_own_running", lambda: own)
    assert _compute._busy_others() == want


def test_busy_others_falls_back_without_proc(monkeypatch):
    def missing():
        raise OSError("no /proc")

    monkeypatch.setattr(_compute, "_running_now", lambda: 3)
    monkeypatch.setattr(_compute, "_own_running", missing)
    assert _compute._busy_others() == 2  # only ourselves subtracted
    monkeypatch.setattr(_compute, "_running_now", missing)
    monkeypatch.setattr(_compute.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert _compute._busy_others() == 1.5


@pytest.mark.parametrize(
    "stat,want",
    [
        (b"123 (python3) R 1 2 3", "R"),
        (b"77 (a b) c) (d) S 1 2", "S"),  # a thread name with spaces and parentheses
        (b"9 ()) D 0", "D"),
    ],
)
def test_thread_state_parses_the_field_after_the_name(stat, want):
    assert _compute._thread_state(stat) == want


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc only")
def test_own_running_sees_a_busy_thread_of_ours():
    """A thread of ours busy outside the GIL (hashing releases it) is counted as runnable."""
    import hashlib
    import threading

    data = b"x" * (64 << 20)
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            hashlib.sha256(data).digest()

    worker = threading.Thread(target=burn)
    worker.start()
    try:
        seen = max(_compute._own_running() for _ in range(200))
    finally:
        stop.set()
        worker.join()
    assert seen >= 2


def test_engine_threads_runs_torch_on_one_thread_and_restores(monkeypatch):
    monkeypatch.delenv("TRM_BOUNDS_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _compute.engine_threads() as n:
            assert torch.get_num_threads() == 1 and n >= 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"), _compute.engine_threads():
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2  # restored on error too
        monkeypatch.setenv("TRM_BOUNDS_THREADS", "2")
        with _compute.engine_threads() as n:
            assert torch.get_num_threads() == 2 and n == 2
    finally:
        torch.set_num_threads(before)


def test_check_device():
    assert _compute.check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="^device: unknown torch device 'bogus'"):
        _compute.check_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device: 'cuda' requested but this torch"):
            _compute.check_device("cuda")


def test_own_running_counts_at_least_the_caller(monkeypatch):
    """A snapshot that catches no thread in state R (the caller is running, so it is one) gives 1."""
    monkeypatch.setattr(_compute.os, "listdir", lambda path: [])
    assert _compute._own_running() == 1
