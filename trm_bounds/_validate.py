"""Argument checks and file readers shared by every public entry point.

Each check raises ``ValueError`` whose message starts with the argument's name, so that
the CLI can print it as its one-line error. Checks return float64 / int64 numpy arrays.
Torch tensors are read through ``.detach()`` (duck-typed: this module never imports torch),
so a tensor that requires grad gives its value, never a RuntimeError.

Readers (`read_npz`, `read_npy`) turn every way a file can be unreadable (missing, a
directory, truncated, not a zip, a ``.npy`` under a ``.npz`` name, pickled objects) into
one ValueError naming the argument, and refuse a file whose arrays would not fit in memory
before reading it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from . import _npz
from ._resources import check_memory

MAX_HORIZON = 2**53  # the largest T whose every integer t <= T is exact in float64


def _plain(value):
    """`value` with a torch tensor detached and moved to the host (duck-typed, no torch import)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def check_finite_or_inf(name: str, value: ArrayLike) -> np.ndarray:
    """float64 array of `value`; NaN is refused (inf is allowed)."""
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be numeric, got {value!r}")
    try:
        x = np.asarray(_plain(value), dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def number_arg(text: str) -> int | float:
    """argparse type of a horizon-like option: an integer literal stays an exact int (so 2**53 + 1
    is not rounded to 2**53 before `check_horizon` sees it), anything else is a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)  # argparse turns a ValueError here into a one-line usage error


def check_horizon(T: ArrayLike, name: str = "T") -> np.ndarray:
    """Horizon(s) T: integers in [1, 2**53], finite. Returns int64 array.

    Integers are compared before any float conversion, so 2**53 + 1 is refused, not rounded.
    """
    raw = _plain(T)
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool) and int(raw) > MAX_HORIZON:
        raise ValueError(f"{name} must be <= 2**53 (integers exact in float64), got {int(raw)}")
    if isinstance(raw, (list, tuple, np.ndarray)):
        a = np.asarray(raw)
        big = (
            (a > MAX_HORIZON).any()
            if a.dtype.kind in "iu"
            else a.dtype == object
            and any(isinstance(v, int) and v > MAX_HORIZON for v in a.reshape(-1).tolist())
        )
        if big:
            raise ValueError(f"{name} must be <= 2**53 (integers exact in float64), got {a.max()}")
    x = check_finite_or_inf(name, raw)
    if np.isinf(x).any():
        raise ValueError(f"{name} must be finite, got {x[np.isinf(x)].flat[0]:g}")
    if (x < 1).any():
        raise ValueError(f"{name} must be >= 1, got min {x.min():g}")
    if (x > MAX_HORIZON).any():
        raise ValueError(f"{name} must be <= 2**53 (integers exact in float64), got {x.max():g}")
    if (x != np.floor(x)).any():
        raise ValueError(f"{name} must be an integer, got {x[x != np.floor(x)].flat[0]:g}")
    return x.astype(np.int64)


def scalar(name: str, x: np.ndarray):
    """The one value of a checked array (0-d, or any shape of size 1); ValueError otherwise."""
    if x.size != 1:
        raise ValueError(f"{name} must be a single number, got shape {x.shape}")
    return x.reshape(()).item()


def check_divergence(name: str, value: ArrayLike) -> np.ndarray:
    """A KL-type divergence: >= 0, may be +inf (disjoint supports), never NaN."""
    x = check_finite_or_inf(name, value)
    if (x < 0).any():
        raise ValueError(f"{name} must be >= 0, got min {x.min():g}")
    return x


def check_tv(name: str, value: ArrayLike) -> np.ndarray:
    """A total-variation distance: in [0, 1], never NaN."""
    x = check_divergence(name, value)
    if (x > 1).any():
        raise ValueError(f"{name} is a total variation and must be <= 1, got max {x.max():g}")
    return x


def check_nonneg_finite(name: str, value: ArrayLike) -> np.ndarray:
    """A threshold or weight: finite and >= 0."""
    x = check_divergence(name, value)
    if np.isinf(x).any():
        raise ValueError(f"{name} must be finite, got inf")
    return x


# --------------------------------------------------------------------------- files
def _file(path, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a file path, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{name}: cannot read {p}: no such file")
    if not p.is_file():
        raise ValueError(f"{name}: cannot read {p}: not a file")
    return p


def _unreadable(name: str, p: Path, exc: BaseException) -> ValueError:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return ValueError(f"{name}: cannot read {p} ({type(exc).__name__}: {msg})")


def read_npz(path, name: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read now (no lazy handle is left open).

    ValueError naming `name` when the file is missing, not an ``.npz`` archive (a ``.npy``
    under that name included), truncated or corrupt, holds pickled objects, or would need
    more memory than is available (estimated from the archive's uncompressed sizes).
    """
    p = _file(path, name)
    try:
        with zipfile.ZipFile(p) as zf:
            size = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        hint = "; it is a .npy array, not an .npz archive" if _is_npy(p) else ""
        raise ValueError(f"{name}: cannot read {p}: not a valid .npz archive{hint} ({exc})") from None
    check_memory(name, size, f"reading {p.name}")
    try:
        return _npz.read_npz(p)  # read-only arrays owning their memory (the fast reader)
    except Exception as exc:  # zlib.error, BadZipFile, EOFError, ValueError (pickle), KeyError, ...
        raise _unreadable(name, p, exc) from None


def read_npy(path, name: str) -> np.ndarray:
    """The array of a ``.npy`` file; ValueError naming `name` as `read_npz` (memory: the file size)."""
    p = _file(path, name)
    if not _is_npy(p):
        what = "an .npz archive" if zipfile.is_zipfile(p) else "not a .npy file"
        raise ValueError(f"{name}: cannot read {p}: {what} (expected one array saved with numpy.save)")
    check_memory(name, p.stat().st_size, f"reading {p.name}")
    try:
        return np.asarray(np.load(p, allow_pickle=False))
    except Exception as exc:  # truncated data, pickled objects, ...
        raise _unreadable(name, p, exc) from None


def _probe_dir(d: Path, name: str, target: Path) -> None:
    """Create and remove a temporary file in existing directory `d` (catches read-only mounts)."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".trm-bounds-probe-", dir=d)
    except OSError as exc:
        why = exc.strerror or exc
        raise ValueError(f"{name}: cannot write {target}: {d} is not writable ({why})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path, name: str) -> Path:
    """An output file that can be written: its directory exists and is writable (checked, not created)."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"{name} must be a file path, got {path!r}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a directory, not a file")
    d = p.parent if str(p.parent) else Path(".")
    if not d.exists():
        raise ValueError(f"{name}: cannot write {p}: directory {d} does not exist")
    if not d.is_dir():
        raise ValueError(f"{name}: cannot write {p}: {d} is a file, not a directory")
    _probe_dir(d, name, p)
    return p


def _is_npy(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(6) == b"\x93NUMPY"
    except OSError:
        return False
