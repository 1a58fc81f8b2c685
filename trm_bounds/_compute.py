"""Where the exact engines run: the device check and the thread policy.

Device: `check_device` turns "cuda" on a torch without CUDA (or a bogus name) into one
ValueError naming `device`, before any work.

Threads: never more threads than free cores.

torch's default intra-op pool (one thread per core) spins at barriers after every small
op; when another process holds a core, each barrier waits for a descheduled thread and the
level-by-level engines ran 25-50x slower. The engines therefore run their torch work on
ONE thread and give the fused kernel (`_tree_kernel`, one parallel region per call) only
the cores that are free right now:

    threads = clamp(cores we may run on - other runnable tasks, 1, cores)

from `os.sched_getaffinity` and the instantaneous runnable count of /proc/loadavg
(field 4, "running/total"; ourselves excluded). TRM_BOUNDS_THREADS=N overrides both.
"""

from __future__ import annotations

import contextlib
import os

import torch


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _busy_others() -> float:
    """Runnable tasks other than this one, now (Linux /proc/loadavg), else the 1-minute load."""
    try:
        with open("/proc/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        return max(0, running - 1)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def cores() -> int:
    """The cores this process may run on (its CPU affinity), busy or not."""
    return _affinity()


def kernel_threads() -> int:
    """Threads for a parallel kernel call: TRM_BOUNDS_THREADS, else the free cores (>= 1)."""
    env = os.environ.get("TRM_BOUNDS_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TRM_BOUNDS_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"TRM_BOUNDS_THREADS must be a positive integer, got {env!r}")
        return n
    cores = _affinity()
    return int(max(1, min(cores, round(cores - _busy_others()))))


@contextlib.contextmanager
def engine_threads():
    """Run the enclosed engine work with torch on 1 thread (or TRM_BOUNDS_THREADS); restores it after.

    Yields the thread count for parallel kernels (`kernel_threads()`, measured once on entry).
    """
    env = os.environ.get("TRM_BOUNDS_THREADS")
    n_kernel = kernel_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(int(env) if env else 1)
    try:
        yield n_kernel
    finally:
        torch.set_num_threads(before)


def check_device(device) -> torch.device:
    """torch.device of `device`; ValueError naming the argument when unknown or not available here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device: unknown torch device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device: {device!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; "
            "use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        avail = getattr(getattr(torch, dev.type, None), "is_available", None)
        if avail is None or not avail():
            raise ValueError(f"device: {device!r} is not available in this torch ({torch.__version__})")
    return dev
