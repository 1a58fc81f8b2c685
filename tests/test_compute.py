"""Tests of trm_bounds._compute: the device check and the engines' thread policy."""

from __future__ import annotations

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
