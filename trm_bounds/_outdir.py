"""Output folders: check them before any work, stage, publish atomically, clean up after a kill.

Every command that writes a folder (`figures`, `train --out`, `plot-scaling`, `table/audit --out`)
goes through here, so that one rule holds everywhere:

- `check_target(path)` raises ValueError naming the option before any work when the path can
  never be written (it, or a parent, is a file; not writable; a read-only filesystem);
- `refuse_existing(...)` raises ValueError when earlier results would be overwritten and the user
  did not pass --force;
- a run writes into a staging folder beside its target (`staging_dir`), named
  ``.<name>.staging-<pid>-<unix time>-<random>``; `publish_dir` then swaps it in with one atomic rename
  (Linux ``renameat2(RENAME_EXCHANGE)``, or a plain rename when the target does not exist yet),
  so an interrupt at any moment, SIGKILL included, leaves the target either as it was or
  complete. Where the exchange is not supported the target is moved aside to
  ``.<name>.old-<pid>-<time>`` and the staging folder renamed in: SIGINT is held back for those
  two renames, and after a SIGKILL between them the next run puts the old folder back;
- `clean_stale(path)` removes staging and old folders whose process is gone (or older than a day,
  in case the pid was reused), and restores a moved-aside target that was never replaced;
- `publish_files` moves single files into a folder that holds other things (`table --out DIR`),
  each with an atomic `os.replace`.

Test hook: with the environment variable TRM_BOUNDS_PAUSE_AT=<step> the process prints
``paused at <step>`` on stderr and sleeps at that step of publishing (steps: "staged",
"swapped", "moved-aside"), so that a test can kill it exactly there.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "check_target",
    "refuse_existing",
    "staging_dir",
    "publish_dir",
    "publish_files",
    "clean_stale",
    "staged_output",
    "STALE_AFTER_S",
]

STALE_AFTER_S = 24 * 3600  # a staging folder older than this is stale even if its pid is alive
PAUSE_ENV = "TRM_BOUNDS_PAUSE_AT"


def check_target(path: Path, name: str = "out", *, parent_only: bool = False) -> None:
    """Raise ValueError naming `name` unless `path` can be (or already is) a writable directory.

    Walks up to the first existing ancestor: a file there, a folder that cannot be written
    (permissions or a read-only filesystem: probed by creating and deleting a temporary file)
    are reported now, before any work. With `parent_only` only the folder that will hold
    `path` is probed (a folder replaced by rename needs its parent writable, not itself).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} exists and is not a directory")
    probe = path.parent if parent_only or not path.exists() else path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{name}: {path} cannot be created: {probe} is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        why = "a read-only filesystem" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
        raise ValueError(f"{name}: cannot write into {probe} ({why})") from None


def refuse_existing(existing: Iterable[Path], force: bool, name: str = "out", hint: str = "") -> None:
    """Raise ValueError naming `name` when `existing` (paths that a run would replace) is not
    empty and `force` is False: earlier results are never overwritten silently."""
    existing = sorted(Path(p) for p in existing)
    if existing and not force:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        shown = ", ".join(str(p) for p in existing[:3]) + more
        raise ValueError(f"{name}: would overwrite {shown}; pass --force to replace{hint}")


_STAGE_RE = r"^\.{name}\.(staging|old)-(\d+)-(\d+)-\w+$"


def _sibling(out: Path, kind: str) -> Path:
    """A new, unique folder name beside `out`: .<name>.<kind>-<pid>-<unix time>-<random>."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{int(time.time())}-{os.urandom(4).hex()}"


def staging_dir(out: Path) -> Path:
    """A new empty staging folder beside `out` (stale ones of earlier killed runs removed first)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    stage = _sibling(out, "staging")
    stage.mkdir()
    return stage


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(out: Path, now: float | None = None) -> list[Path]:
    """Remove staging / moved-aside folders of `out` left by runs that are gone; return them.

    A folder counts as stale when its pid (in the name) is not running, or its timestamp is more
    than STALE_AFTER_S old. A moved-aside ``.old-`` folder is renamed back to `out` when `out`
    does not exist (a kill between the two renames of the fallback publish), else removed.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    now = time.time() if now is None else now
    pattern = re.compile(_STAGE_RE.format(name=re.escape(out.name)))
    removed = []
    for sib in sorted(out.parent.iterdir()):
        m = pattern.match(sib.name)
        if not m or not sib.is_dir():
            continue
        kind, pid, t = m.group(1), int(m.group(2)), int(m.group(3))
        if _pid_alive(pid) and now - t < STALE_AFTER_S:
            continue  # a run in progress
        if kind == "old" and not out.exists():
            os.rename(sib, out)
            continue
        shutil.rmtree(sib, ignore_errors=True)
        removed.append(sib)
    return removed


def _pause_point(step: str) -> None:
    """Test hook (TRM_BOUNDS_PAUSE_AT, see the module doc)."""
    if os.environ.get(PAUSE_ENV) == step:
        sys.stderr.write(f"paused at {step}\n")
        sys.stderr.flush()
        time.sleep(600)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT back for the few renames of a publish, then deliver it (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            raise KeyboardInterrupt


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_dir(stage: Path, out: Path) -> None:
    """Make the complete folder `stage` be `out`, atomically; the old `out` is deleted after.

    `stage` must be a sibling of `out` (same filesystem). See the module doc for what an
    interrupt leaves behind at each step.
    """
    stage, out = Path(stage), Path(out)
    _pause_point("staged")
    with _sigint_held():
        if not out.exists():
            os.rename(stage, out)
            return
        if _exchange(stage, out):
            old = stage  # the swap left the previous folder under the staging name
        else:
            old = _sibling(out, "old")
            os.rename(out, old)
            _pause_point("moved-aside")
            os.rename(stage, out)
    _pause_point("swapped")
    shutil.rmtree(old, ignore_errors=True)


def publish_files(stage: Path, out: Path) -> list[Path]:
    """Move every file of `stage` to the same relative path under `out` (each an atomic
    os.replace; `stage` must be on the same filesystem), then remove `stage`."""
    stage, out = Path(stage), Path(out)
    moved = []
    with _sigint_held():
        for src in sorted(p for p in stage.rglob("*") if p.is_file()):
            dst = out / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(dst)
    shutil.rmtree(stage, ignore_errors=True)
    return moved


@contextlib.contextmanager
def staged_output(out: Path, names: Iterable[str] | None, force: bool, name: str = "out") -> Iterator[Path]:
    """Check `out` now, yield a staging folder to write into, publish it when the block succeeds.

    names: the files (relative paths) the block will write into a folder that may hold other
    things: only those are checked against overwriting and moved in one by one. None: the
    folder is the run (a training run): an existing non-empty `out` is refused without `force`
    and replaced as a whole (nothing of the old run stays beside the new one). On an exception
    the staging folder is removed and `out` is untouched.
    """
    out = Path(out)
    out = out.resolve() if out.is_symlink() else out  # replace the folder, not the link to it
    check_target(out, name)
    check_target(out, name, parent_only=True)  # the staging folder sits beside `out`
    if names is None:
        if out.is_dir() and any(out.iterdir()):
            refuse_existing([out], force, name, " the whole folder")
    else:
        refuse_existing([out / n for n in names if (out / n).exists()], force, name)
    stage = staging_dir(out)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if names is None or not out.exists():
        publish_dir(stage, out)
    else:
        publish_files(stage, out)
