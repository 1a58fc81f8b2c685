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
(field 4, "running/total") less this process's own runnable threads (/proc/self/task/*/stat
state R): after a parallel kernel call, its OpenMP workers spin for a few milliseconds and
would otherwise count as another process's load, so back-to-back calls alternated between
all cores and one. TRM_BOUNDS_THREADS=N overrides both.
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


def _own_running() -> int:
    """Threads of this process in state R now (the caller included; >= 1), from /proc/self/task."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # the thread ended meanwhile
            continue
        n += _thread_state(stat) == "R"
    return max(n, 1)


def _thread_state(stat: bytes) -> str:
    """The state letter of a /proc/<pid>/task/<tid>/stat line: the field after "(comm)" (the
    name may hold spaces and parentheses, so split at the last ')')."""
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3].decode()


def _running_now() -> int:
    """Runnable tasks of the whole machine now: field 4 "running/total" of /proc/loadavg (Linux)."""
    with open("/proc/loadavg") as fh:
        return int(fh.read().split()[3].split("/")[0])


def _busy_others() -> float:
    """Runnable tasks of other processes, now (`_running_now` less `_own_running`), else the
    1-minute load (not Linux)."""
    try:
        running = _running_now()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    try:
        own = _own_running()
    except (OSError, ValueError):  # no /proc/self/task: count only ourselves
        own = 1
    return max(0, running - own)


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
