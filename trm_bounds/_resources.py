"""Up-front memory checks: estimate the bytes a computation needs, compare with what is free.

Every entry point whose memory grows with its input (the exact tree, V**T leaves; a chain,
T S V; per-t bound arrays, T) calls `check_memory` with an estimate BEFORE allocating, so an
input too large for this machine is refused in milliseconds with the estimate in the message
instead of running for minutes and dying in the allocator.

Available memory (no psutil): the smallest of
  - MemAvailable of /proc/meminfo (Linux), else os.sysconf free pages x page size;
  - a cgroup limit minus its usage (containers: cgroup v2 memory.max, v1 limit_in_bytes);
  - the address-space rlimit (RLIMIT_AS) minus what this process already maps.
TRM_BOUNDS_MAX_BYTES=N overrides all of them (tests, shared machines). Unknown: no check.
A reading of the system is reused for half a second (one engine call checks many times).
A computation may use at most `FRACTION` of the available bytes (the rest: this process's
own arrays, the OS, other jobs on the machine).
"""

from __future__ import annotations

import os
import time

__all__ = ["available_bytes", "check_memory", "format_bytes", "FRACTION"]

FRACTION = 0.8  # of the available bytes one computation may take
SMALL = 32 * 2**20  # estimates below this pass without reading /proc (hot loops call check_memory)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to EiB (beyond: the same unit, a larger number)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024.0:
            return f"{n:.3g} {unit}"
        n /= 1024.0
    return f"{n:.3g} EiB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_free() -> int | None:
    for limit_p, usage_p in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_p)
        if limit is not None and limit < 2**60:  # "no limit" is a huge number in cgroup v1
            return max(0, limit - (_read_int(usage_p) or 0))
    return None


def _rlimit_free() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return max(0, soft - used)


def available_bytes() -> int | None:
    """Bytes this process may still allocate (see the module docstring); None when unknown."""
    env = os.environ.get("TRM_BOUNDS_MAX_BYTES")
    if env:
        try:
            n = int(float(env))
        except ValueError:
            raise ValueError(f"TRM_BOUNDS_MAX_BYTES must be a number of bytes, got {env!r}") from None
        if n < 0:
            raise ValueError(f"TRM_BOUNDS_MAX_BYTES must be >= 0, got {env!r}")
        return n
    now = time.monotonic()
    if now - _SYSTEM[0] > _SYSTEM_TTL:  # the files are re-read at most every _SYSTEM_TTL seconds
        known = [b for b in (_meminfo_available(), _cgroup_free(), _rlimit_free()) if b is not None]
        _SYSTEM[:] = [now, min(known) if known else None]
    return _SYSTEM[1]


_SYSTEM_TTL = 0.5  # seconds a reading of the free memory is reused (an engine call checks ~20 times)
_SYSTEM: list = [-1e9, None]  # [monotonic time of the reading, bytes]


def check_memory(name: str, nbytes: float, what: str, hint: str = "") -> None:
    """ValueError naming `name` when `what` needs an estimated `nbytes` > FRACTION of the free memory.

    The message carries the estimate and the free memory, e.g.
    "T: the exact tree of P V**T = 2**26 leaves needs about 13 GiB; 9.5 GiB are available ...".
    Estimates below `SMALL` (32 MiB) pass unchecked unless TRM_BOUNDS_MAX_BYTES is set: reading
    the free memory costs more than such a computation (the trainer evaluates bounds every step).
    """
    if nbytes < SMALL and not os.environ.get("TRM_BOUNDS_MAX_BYTES"):
        return
    avail = available_bytes()
    if avail is None or nbytes <= FRACTION * avail:
        return
    raise ValueError(
        f"{name}: {what} needs about {format_bytes(nbytes)} of memory, more than {FRACTION:.0%} of the "
        f"{format_bytes(avail)} available now" + (f"; {hint}" if hint else "")
    )
