"""The exact engine on pairs larger than memory: the inputs are produced block by block.

`exact.exact_quantities` takes the whole pair as arrays (at V = 2: 32 bytes of log-probs and
8 bytes of reward per leaf). Here a *pair source* hands the engine

- the small top of the tree: P, V, T, prompt_probs (P,) and the levels 0..s-1 above the
  engine's split level s (level k: (P, V**k, V) log-probs, k = t - 1), and
- for each block of consecutive rows [a, b) of level s (rows in the pair layout of
  `trm_bounds.pair`: row r = p V**s + digits of y_1..y_s, prompt-major), the levels s..T-1 of
  the subtrees below those rows, level k as ((b - a) V**(k-s), V) rows in order, and the
  ((b - a) V**(T-s),) rewards of their leaves.

The fused kernel (`trm_bounds._tree_kernel`) runs on each block as it would on that part of
the materialised tree; its per-task sums are carried from block to block in task order, and
the level-s values (V_{s+1}, W, E) go through the same backward pass over the top levels, so
the result equals `exact_quantities` on the same pair bit for bit, whatever the block size.
Peak memory: one block of inputs (about 40 block_leaves bytes at V = 2) plus O(P V**s) for
the top levels and the level-s values (s: rows of <= 4096 leaves, so about 50 bytes per 4096
leaves), independent of V**T.

Sources: `ArrayPairSource` (arrays in memory: the reference route), `SyntheticPairSource`
(a seeded random pair generated per row, never materialised: any size). Any object with the
`PairSource` attributes and methods works.
"""

from __future__ import annotations

import abc
import contextlib
import math

import numpy as np
import torch

from . import _tree_kernel
from ._compute import check_device as _check_device
from ._compute import engine_threads, kernel_threads
from .exact import (
    _Acc,
    _assemble,
    _check_baseline,
    _check_mask,
    _Engine,
    _kernel_split,
    _kernel_top,
    _KernelBlocks,
    _raise_bad_level,
    _t,
)
from .pair import check_level_values, check_prompt_probs, validate_pair_arrays

__all__ = [
    "exact_quantities_streamed",
    "PairSource",
    "ArrayPairSource",
    "SyntheticPairSource",
    "DEFAULT_BLOCK_LEAVES",
]

DEFAULT_BLOCK_LEAVES = 2**20  # about 40 MB of inputs per block at V = 2
_PROGRESS_MIN_BLOCKS = 8  # a progress bar only when there are at least this many blocks


class PairSource(abc.ABC):
    """What `exact_quantities_streamed` reads: a policy pair described, not stored.

    Attributes: P, V, T (ints >= 1), prompt_probs ((P,) floats >= 0 summing to 1).
    Methods (k = t - 1 is the 0-based level; level k has P V**k context rows of V tokens):
      top(s) -> (logp_roll, logp_theta): two lists of the s levels k = 0..s-1, level k of
        shape (P, V**k, V), float log-probs (-inf = zero probability).
      block(s, a, b) -> (logp_roll, logp_theta, reward) for rows [a, b) of level s
        (0 <= a < b <= P V**s): two lists of the T - s levels k = s..T-1, level k of shape
        ((b - a) V**(k-s), V) (the rows below [a, b), in order), and reward of shape
        ((b - a) V**(T-s),) in [0, 1] (their leaves, in order).
    The engine asks for each row of level s exactly once, blocks in increasing order.
    """

    P: int
    V: int
    T: int
    prompt_probs: np.ndarray

    @abc.abstractmethod
    def top(self, s: int):
        """(logp_roll, logp_theta): the s levels above the split level (class docstring)."""

    @abc.abstractmethod
    def block(self, s: int, a: int, b: int):
        """(logp_roll, logp_theta, reward) of rows [a, b) of level s (class docstring)."""


class ArrayPairSource(PairSource):
    """A pair held in memory (the `exact_quantities` arguments), handed out block by block.

    Shapes, the reward and prompt_probs are checked here (`validate_pair_arrays`, the same
    messages); the level values are checked by the engine, block by block.
    """

    def __init__(self, logp_roll, logp_theta, reward, prompt_probs):
        self.P, self.V, self.T = validate_pair_arrays(
            logp_roll, logp_theta, reward, prompt_probs, level_values=False
        )
        self._lr = [_numpy(x).reshape(-1, self.V) for x in logp_roll]  # level k: (P V**k, V)
        self._lt = [_numpy(x).reshape(-1, self.V) for x in logp_theta]
        self._R = _numpy(reward).reshape(-1)  # (P V**T,)
        self.prompt_probs = _numpy(prompt_probs)

    def top(self, s: int):
        shape = lambda k: (self.P, self.V**k, self.V)
        return [x.reshape(shape(k)) for k, x in enumerate(self._lr[:s])], [
            x.reshape(shape(k)) for k, x in enumerate(self._lt[:s])
        ]

    def block(self, s: int, a: int, b: int):
        V, T = self.V, self.T
        rows = lambda k: slice(a * V ** (k - s), b * V ** (k - s))
        lr = [self._lr[k][rows(k)] for k in range(s, T)]
        lt = [self._lt[k][rows(k)] for k in range(s, T)]
        return lr, lt, self._R[rows(T)]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


class SyntheticPairSource(PairSource):
    """A seeded random pair of any size, generated row by row on request (needs numba).

    Every row of every level is a function of (seed, level, row) only, so the pair does not
    depend on the blocks asked for:
      pi_theta(.|c) = softmax(x),  pi_roll(.|c) = softmax(x + noise z),  x_v, z_v iid, mean 0, variance 1;
      R(x, y) ~ U(0, 1];  P(x) = 1/P,
    the family of `experiments/bench_exact.py`'s make_tree (there x, z ~ N(0, 1) from one torch
    stream); here x_v, z_v are Irwin-Hall sums of four uniforms (close to N(0, 1), bounded by
    sqrt 12: no transcendental call) from a counter-based hash (splitmix64 of the seed, level,
    stream and index), so a 2**28-leaf pair is evaluated without ever existing in memory.
    `to_arrays()` materialises it (small pairs: the reference for the streamed result).
    """

    def __init__(self, P: int, V: int, T: int, *, seed: int = 0, noise: float = 0.1):
        for name, v in (("P", P), ("V", V), ("T", T)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        if _tree_kernel.numba is None:
            raise ValueError("SyntheticPairSource needs numba: pip install 'trm-bounds[fast]'")
        self.P, self.V, self.T, self.seed, self.noise = int(P), int(V), int(T), int(seed), float(noise)
        self.prompt_probs = np.full(self.P, 1.0 / self.P)

    def _level(self, k: int, r0: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows r0..r0+n-1 of level k: (log pi_roll, log pi_theta), each (n, V)."""
        out_r, out_t = np.empty((n, self.V)), np.empty((n, self.V))
        keys = np.array([_key(self.seed, k, c) for c in range(2)], dtype=np.uint64)
        with _threads():
            _gen_level(keys, r0, n, self.V, self.noise, out_r, out_t)
        return out_r, out_t

    def _reward(self, l0: int, n: int) -> np.ndarray:
        out = np.empty(n)
        with _threads():
            _gen_uniform(np.uint64(_key(self.seed, self.T, 4)), l0, out)
        return out

    def top(self, s: int):
        levels = [self._level(k, 0, self.P * self.V**k) for k in range(s)]
        shape = lambda k: (self.P, self.V**k, self.V)
        return [x[0].reshape(shape(k)) for k, x in enumerate(levels)], [
            x[1].reshape(shape(k)) for k, x in enumerate(levels)
        ]

    def block(self, s: int, a: int, b: int):
        V = self.V
        levels = [self._level(k, a * V ** (k - s), (b - a) * V ** (k - s)) for k in range(s, self.T)]
        per = V ** (self.T - s)
        return [x[0] for x in levels], [x[1] for x in levels], self._reward(a * per, (b - a) * per)

    def to_arrays(self):
        """(logp_roll, logp_theta, reward, prompt_probs) in the pair layout (materialised)."""
        lr, lt = self.top(self.T)
        return lr, lt, self._reward(0, self.P * self.V**self.T).reshape(self.P, -1), self.prompt_probs.copy()


_M64 = (1 << 64) - 1


def _splitmix(z: int) -> int:
    """splitmix64's finaliser on a Python int (the stream keys)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _key(seed: int, k: int, stream: int) -> int:
    """Key of one random stream: level k, stream 0 the logits x, 1 the noise z, 4 the rewards (k = T)."""
    return _splitmix((seed * 0x9E3779B97F4A7C15 + (k << 3) + stream + 1) & _M64)


@contextlib.contextmanager
def _threads():
    """numba's pool held to the engine's thread policy (`_compute.kernel_threads`) while generating."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(kernel_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


if _tree_kernel.numba is not None:
    from numba import njit, prange

    @njit(cache=True, inline="always")
    def _hash(key, i):
        """splitmix64(key + i * golden): 64 random bits for index i of the stream `key`."""
        z = key + np.uint64(i) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    @njit(cache=True, inline="always")
    def _uniform(key, i):
        """U(0, 1] from the top 53 bits of `_hash`."""
        return ((_hash(key, i) >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740992.0)

    @njit(cache=True, inline="always")
    def _std_logit(key, i):
        """Mean 0, variance 1, in [-sqrt 12, sqrt 12]: sqrt(3) (u_1 + .. + u_4 - 2) (Irwin-Hall, close to
        N(0, 1)), u_j = (16-bit lane j of `_hash` + 1/2) / 2**16; no transcendental call."""
        z = _hash(key, i)
        m = np.uint64(0xFFFF)
        lanes = (z & m) + ((z >> np.uint64(16)) & m) + ((z >> np.uint64(32)) & m) + (z >> np.uint64(48))
        return 1.7320508075688772 * ((float(lanes) + 2.0) * (1.0 / 65536.0) - 2.0)

    @njit(cache=True, parallel=True)
    def _gen_level(keys, r0, n, V, noise, out_r, out_t):
        """Rows r0..r0+n-1 of one level: log-softmax of x and of x + noise z, x_v and z_v `_std_logit`s
        of index (row V + v) of streams keys[0], keys[1]."""
        for i in prange(n):
            base = (r0 + i) * V
            mr, mt = -np.inf, -np.inf
            for v in range(V):
                x = _std_logit(keys[0], base + v)
                y = x + noise * _std_logit(keys[1], base + v)
                out_t[i, v], out_r[i, v] = x, y
                mt, mr = max(mt, x), max(mr, y)
            st, sr = 0.0, 0.0
            for v in range(V):
                st += math.exp(out_t[i, v] - mt)
                sr += math.exp(out_r[i, v] - mr)
            lt, lr = mt + math.log(st), mr + math.log(sr)
            for v in range(V):
                out_t[i, v] -= lt
                out_r[i, v] -= lr

    @njit(cache=True, parallel=True)
    def _gen_uniform(key, i0, out):
        for i in prange(out.shape[0]):
            out[i] = _uniform(key, i0 + i)


def exact_quantities_streamed(
    source: PairSource,
    *,
    block_leaves: int = DEFAULT_BLOCK_LEAVES,
    baseline: float | None = None,
    mask: dict | None = None,
    future_tv: bool = False,
    device="cpu",
    progress: bool = False,
) -> dict:
    """`exact.exact_quantities` of the pair a `PairSource` describes, its inputs read block by block.

    The same quantities (docs/theory.md sections 2-5, 7: J, L', Error = J_theta - J_roll - L',
    the ratio identity, eps, delta, Dbar_t, context TV, g_inf, dtv_seq, the bounds, the
    second-order bound, baseline and mask extras) and the same dict (docs/formats.md keys),
    equal to `exact_quantities` on the materialised pair bit for bit.

    Args:
      source: a `PairSource` (P, V, T, prompt_probs, top(s), block(s, a, b)). s is the
        kernel's split level: 0 when V**T <= 4096 leaves, else the first level whose rows
        carry <= 4096 leaves (at most T - 1).
      block_leaves: leaves per block (>= 1); a block holds whole kernel tasks (at least one
        row of level s, <= 4096 leaves), so the block's input arrays take about
        (2 * 2 V / (V - 1) * 8 + 8) * max(block_leaves, 4096) bytes (40 B per leaf at V = 2).
      baseline, mask: as `exact_quantities`. future_tv: not streamable (it needs whole-prompt
        suffix laws of V**T leaves): True raises ValueError.
      device: "cpu" only (the fused numba kernel; any other device raises ValueError).
      progress: a tqdm bar over the blocks (when there are at least 8).

    Validation: the top levels as `validate_pair_arrays` does; each block's level shapes and
    dtypes (float), level values (no NaN, no +inf, no log-prob > 0, rows summing to 1 within
    1e-8, checked inside the kernel's pass) and rewards (NaN, [0, 1]), with the messages of
    `exact_quantities` naming the array and the level (logp_roll_t, logp_theta_t, reward);
    the first bad block raises, before anything is returned.
    Memory: O(block + P V**s), independent of V**T.
    """
    device = _check_device(device)
    if device.type != "cpu" or not _tree_kernel.available():
        kernel = "available" if _tree_kernel.available() else "not available"
        raise ValueError(
            f"device: exact_quantities_streamed runs on the fused CPU kernel (numba, device='cpu'); got "
            f"device={str(device)!r}, numba kernel {kernel} "
            "(pip install 'trm-bounds[fast]'; TRM_BOUNDS_JIT=0 switches it off)"
        )
    if future_tv:
        raise ValueError(
            "future_tv cannot be streamed (it needs the V**T suffix laws of each prompt at once); "
            "use exact_quantities(..., future_tv=True) on a pair that fits in memory"
        )
    if not isinstance(block_leaves, (int, np.integer)) or isinstance(block_leaves, bool) or block_leaves < 1:
        raise ValueError(f"block_leaves must be an integer >= 1, got {block_leaves!r}")
    P, V, T = _source_shape(source)
    pp = check_prompt_probs(source.prompt_probs, P)
    mask, baseline = _check_mask(mask), _check_baseline(baseline)
    s = _kernel_split(P, V, T)
    top_r, top_t = _check_top(source, s, P, V)
    with torch.no_grad(), engine_threads() as n_threads:
        lr, lt = [_t(x, "cpu").reshape(-1, V) for x in top_r], [_t(x, "cpu").reshape(-1, V) for x in top_t]
        pp_t = _t(pp, "cpu")
        K = 3 if mask else 1
        acc = _Acc(T, P, "cpu", K)
        eng = _Engine(lr, lt, None, P, V, T, K, mask, acc)
        eng.need_h = baseline is not None
        acc.any_roll_zero = any(bool(torch.isneginf(x).any()) for x in lr)
        eng.full_support = (
            bool((pp_t > 0).all())
            and not acc.any_roll_zero
            and not any(bool(torch.isneginf(x).any()) for x in lt)
        )
        ld0 = torch.log(pp_t)
        top, start = _kernel_top(eng, s, ld0, torch.zeros(P, dtype=torch.float64))
        run = _KernelBlocks(eng, s, start, n_threads)
        _run_blocks(source, run, s, V, T, int(block_leaves), progress)
        Vr1, Vt1, WE1 = run.finish(top)
        return _assemble(acc, eng, pp_t, Vr1, Vt1, WE1, P, V, T, baseline, mask)


def _run_blocks(
    source, run: _KernelBlocks, s: int, V: int, T: int, block_leaves: int, progress: bool
) -> None:
    """Ask the source for every block of level-s rows in order, check it and run the kernel on it."""
    from tqdm.auto import tqdm

    rows = run.block_rows(block_leaves)
    starts = range(0, run.n, rows)
    skip = [np.empty((0, V))] * s  # levels above s: never read by the kernel
    bar = tqdm(
        starts,
        desc="exact (streamed)",
        unit="block",
        disable=not progress or len(starts) < _PROGRESS_MIN_BLOCKS,
    )
    for a in bar:
        b = min(run.n, a + rows)
        lr, lt, R = _check_block(source.block(s, a, b), s, a, b, V, T)
        gaps = run.block(a, b, skip + lr, skip + lt, R)
        _raise_bad_level(skip + lr, skip + lt, s, gaps, above=False)


def _source_shape(source) -> tuple[int, int, int]:
    out = []
    for name in ("P", "V", "T"):
        v = getattr(source, name, None)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"source.{name} must be an integer >= 1, got {v!r}")
        out.append(int(v))
    for name in ("top", "block"):
        if not callable(getattr(source, name, None)):
            raise ValueError(
                f"source must have a {name}() method (see PairSource), got {type(source).__name__}"
            )
    return tuple(out)


def _level_array(name: str, x) -> np.ndarray:
    """x as a C-contiguous float64 numpy array; ValueError naming it when not a float array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: dtype {x.dtype}, expected float64")
    return np.ascontiguousarray(x, dtype=np.float64)


def _levels_pair(got, n: int, what: str) -> tuple[list, list]:
    if (
        not isinstance(got, (tuple, list))
        or len(got) < 2
        or any(not isinstance(x, (tuple, list)) or len(x) != n for x in got[:2])
    ):
        raise ValueError(f"source.{what} must return two lists of {n} levels (logp_roll, logp_theta)")
    return got[0], got[1]


def _check_top(source, s: int, P: int, V: int) -> tuple[list, list]:
    """The s levels above the split level: shapes (P, V**k, V), values (`check_level_values`)."""
    lr, lt = _levels_pair(source.top(s), s, f"top({s})")
    out = ([], [])
    for side, name, levels in ((0, "logp_roll", lr), (1, "logp_theta", lt)):
        for k, x in enumerate(levels):
            x = _level_array(f"{name}_{k + 1}", x)
            if x.shape != (P, V**k, V):
                raise ValueError(f"{name}_{k + 1}: wrong shape {x.shape}, expected {(P, V**k, V)}")
            check_level_values(f"{name}_{k + 1}", x)
            out[side].append(x)
    return out


def _check_block(got, s: int, a: int, b: int, V: int, T: int) -> tuple[list, list, np.ndarray]:
    """One block's levels (shapes ((b-a) V**(k-s), V), float) and rewards ((b-a) V**(T-s),) in [0, 1];
    the level values are checked in the kernel's pass."""
    lr, lt = _levels_pair(got, T - s, f"block({s}, {a}, {b})")
    if len(got) != 3:
        raise ValueError(f"source.block({s}, {a}, {b}) must return (logp_roll, logp_theta, reward)")
    out = ([], [])
    for side, name, levels in ((0, "logp_roll", lr), (1, "logp_theta", lt)):
        for j, x in enumerate(levels):
            x = _level_array(f"{name}_{s + j + 1}", x)
            shape = ((b - a) * V**j, V)
            if x.shape != shape:
                where = f"rows [{a}, {b}) of level {s + 1}"
                raise ValueError(f"{name}_{s + j + 1}: wrong shape {x.shape} for {where}, expected {shape}")
            out[side].append(x)
    R = _level_array("reward", got[2])
    if R.shape != ((b - a) * V ** (T - s),):
        raise ValueError(f"reward: wrong shape {R.shape} for rows [{a}, {b}) of level {s + 1}, "
                         f"expected {((b - a) * V ** (T - s),)}")  # fmt: skip
    if np.isnan(R).any():
        raise ValueError("reward contains NaN")
    if R.size and (R.min() < 0 or R.max() > 1):
        raise ValueError(f"reward must lie in [0, 1], got min {R.min():g}, max {R.max():g}")
    return out[0], out[1], R
