"""Benchmark of the exact engine (trm_bounds.exact): leaves per second, ratios, memory, busy machines.

Measures, in one run and interleaved (median of --repeat runs each, so machine noise hits
every route alike):
1. the engine (`exact_quantities`, every quantity, future_tv off) at V = 2, T in --sizes,
   on ONE thread (TRM_BOUNDS_THREADS=1: per-core speed), on TWO threads
   (TRM_BOUNDS_THREADS=2) and with its own thread policy (the free cores);
2. `numpy_reference`: an independent single-threaded level-by-level numpy implementation
   computing the same quantities to the same accuracy (log-space KL / TV and context
   differences, Dbar_t, context TV, g_inf, J, L', Error, dtv_seq) up to --ref-max-T;
   the ratios reference / engine, and the largest difference on the shared keys;
3. peak memory per leaf (a child process per size: total peak RSS and the engine's own
   peak above its inputs, with validate=False and, in a second child, with the input
   checks on: engine_extra_validated_B_per_leaf);
4. --busy: the same engine call quiet and beside a CPU-burning process, interleaved, for
   the engine's thread policy and for torch's default threads on the level-by-level path
   (TRM_BOUNDS_JIT=0, TRM_BOUNDS_THREADS=2): slowdown ratios;
5. --device cuda: leaves/s on the GPU and the largest V**T that fits in its memory;
6. --stream: the streamed engine (`trm_bounds.exact_stream.exact_quantities_streamed`) on the
   seeded synthetic pair (`SyntheticPairSource`, V = 2, P = 1, generated block by block) at
   T in --stream-sizes, one child process per size: seconds (and those spent generating the
   pair), leaves/s, peak RSS growth per leaf (the source included); beside it, up to
   --stream-materialised-max-T, `exact_quantities` on the same pair materialised first
   (`to_arrays`: inputs + engine), with a check that both give the same error, bit for bit.
   Runs only these rows.

    python experiments/bench_exact.py [--sizes 16,20,22,24] [--busy] [--device cuda] [--out table.md]
    python experiments/bench_exact.py --stream [--stream-sizes 24,26,28] [--stream-materialised-max-T 24]

Run from the repository root with the checkout first on the path (PYTHONPATH=. when the
installed package points elsewhere). Prints a table; writes nothing unless --out (Markdown
if it ends in .md, else CSV) or --json. Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from trm_bounds.exact import exact_quantities


def make_tree(P: int, V: int, T: int, seed: int = 0):
    """A dense-noise pair (float64 torch): pi_theta logits ~ N(0, 1), pi_roll = + N(0, 0.1^2)."""
    gen = torch.Generator().manual_seed(seed)
    lt = [
        torch.log_softmax(torch.randn((P, V**k, V), generator=gen, dtype=torch.float64), -1) for k in range(T)
    ]
    lr = [
        torch.log_softmax(x + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64), -1) for x in lt
    ]
    R = torch.rand((P, V**T), generator=gen, dtype=torch.float64)
    return lr, lt, R, torch.full((P,), 1.0 / P, dtype=torch.float64)


def numpy_reference(lr, lt, R, pp) -> dict:
    """Plain numpy, one thread, level by level, the same quantities to the same accuracy.

    Token KL(roll||theta) = sum_v p (e^d - 1 - d) (d = log q - log p; series for |d| < 0.1,
    (q - p) - p d for d > 1), TV = 1/2 sum |e^a - e^b| = 1/2 sum e^max (1 - e^-|a-b|);
    context laws in log space, d^theta - d^roll = sign e^max (1 - e^-gap); backward
    Q / g; L' = sum E_roll[g_t], Error = sum (d^theta - d^roll) g_t; eps, delta, Dbar_t,
    context TV, g_inf, D_KL^seq, joint TV. Full-support trees (no -inf) only.
    """
    lr = [x.numpy().reshape(-1, x.shape[-1]) for x in lr]
    lt = [x.numpy().reshape(-1, x.shape[-1]) for x in lt]
    R, pp = R.numpy().reshape(-1), pp.numpy()
    T, V = len(lr), lr[0].shape[-1]

    def diff(b, a):  # e^b - e^a, no cancellation
        return np.sign(b - a) * np.exp(np.maximum(a, b)) * -np.expm1(-np.abs(b - a))

    def kl_terms(a, b):
        p, q, d = np.exp(a), np.exp(b), b - a
        small = np.abs(d) < 0.1
        ds = np.where(small, d, 0.0)
        series = np.full_like(ds, 2.0 / math.factorial(11))
        for c in (2.0 / math.factorial(k + 2) for k in range(8, -1, -1)):
            series = series * ds + c
        series = 0.5 * ds * ds * series
        out = np.where(small, series, np.expm1(np.minimum(d, 1.0)) - d)
        return np.where(d > 1.0, (q - p) - p * d, p * out)

    ld_r, ld_t, stash = np.log(pp), np.log(pp), []
    eps = delta = dkl = 0.0
    dbar, ctx = np.zeros(T), np.zeros(T)
    for k in range(T):
        kl = kl_terms(lr[k], lt[k]).sum(-1)
        tv = 0.5 * np.abs(diff(lt[k], lr[k])).sum(-1)
        d_r = np.exp(ld_r)
        dd = diff(ld_t, ld_r)
        eps, delta, dkl = max(eps, tv.max()), max(delta, kl.max()), dkl + d_r @ kl
        dbar[k], ctx[k] = d_r @ tv, 0.5 * np.abs(dd).sum()
        stash.append((k, d_r, dd))
        ld_r = (ld_r[:, None] + lr[k]).reshape(-1)
        ld_t = (ld_t[:, None] + lt[k]).reshape(-1)
    J_r, J_t = np.exp(ld_r) @ R, np.exp(ld_t) @ R
    dtv = 0.5 * np.abs(diff(ld_t, ld_r)).sum()
    Q, Lp, err, g_inf = R, 0.0, 0.0, np.zeros(T)
    for k, d_r, dd in reversed(stash):
        Q = Q.reshape(-1, V)
        g = (diff(lt[k], lr[k]) * Q).sum(-1)
        Lp, err, g_inf[k] = Lp + d_r @ g, err + dd @ g, np.abs(g).max()
        Q = (np.exp(lr[k]) * Q).sum(-1)
    return {
        "J_roll": J_r, "J_theta": J_t, "surrogate": Lp, "error": err, "eps": eps, "delta": delta,
        "dkl_seq": dkl, "dtv_seq": dtv, "dbar": dbar, "context_tv": ctx, "g_inf": g_inf,
    }  # fmt: skip


@contextlib.contextmanager
def _env(**kv):
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update({k: str(v) for k, v in kv.items() if v is not None})
    for k, v in kv.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _interleaved(routes: dict, repeat: int) -> dict:
    """Median seconds per route, the routes run in turn `repeat` times (noise hits all alike)."""
    times = {k: [] for k in routes}
    for _ in range(repeat):
        for name, fn in routes.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _max_rel(out: dict, ref: dict) -> float:
    worst = 0.0
    for k, r in ref.items():
        a, b = np.asarray(out[k], dtype=float), np.asarray(r, dtype=float)
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300 + 1e-15))))
    return worst


def _engine(tree, threads: int | None, jit: bool = True, device="cpu"):
    def call():
        with _env(TRM_BOUNDS_THREADS=threads, TRM_BOUNDS_JIT=None if jit else 0):
            return exact_quantities(*tree, validate=False, device=device)

    return call


def _memory_child(T: int, validate: bool = False) -> None:
    """(child process) memory of one engine call on a 2**T-leaf tree loaded from a file:
    RSS after imports (and the kernel's compilation), after loading, and the peak."""
    import tempfile

    exact_quantities(*make_tree(1, 2, 4), validate=False)  # numba compiled / loaded
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tree.npz")
        subprocess.run([sys.executable, __file__, "--write-tree", str(T), path], check=True)
        rss0 = _status_kib("VmRSS") * 1024
        with np.load(path) as z:
            lr = [z[f"r{k}"] for k in range(T)]
            lt = [z[f"t{k}"] for k in range(T)]
            R, pp = z["R"], z["pp"]
    rss1 = _status_kib("VmRSS") * 1024
    exact_quantities(lr, lt, R, pp, validate=validate)
    peak = _status_kib("VmHWM") * 1024
    inputs = sum(x.nbytes for x in lr + lt) + R.nbytes
    print(json.dumps({"peak_rss": peak - rss0, "rss_before_engine": rss1 - rss0, "input_bytes": inputs}))


def _write_tree(T: int, path: str) -> None:
    lr, lt, R, pp = make_tree(1, 2, T)
    arrays = {f"r{k}": x.numpy() for k, x in enumerate(lr)} | {f"t{k}": x.numpy() for k, x in enumerate(lt)}
    np.savez(path, R=R.numpy(), pp=pp.numpy(), **arrays)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def memory_per_leaf(T: int) -> dict:
    def child(*extra):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(T), *extra],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    m, mv = child(), child("--memory-validate")
    leaves = 2**T
    return {
        "T": T,
        "peak_B_per_leaf_inputs_plus_engine": m["peak_rss"] / leaves,
        "inputs_B_per_leaf": m["input_bytes"] / leaves,
        "engine_extra_B_per_leaf": (m["peak_rss"] - m["rss_before_engine"]) / leaves,
        "engine_extra_validated_B_per_leaf": (mv["peak_rss"] - mv["rss_before_engine"]) / leaves,
    }


def _stream_child(T: int, mode: str, block_leaves: int) -> None:
    """(child process) one call on the 2**T-leaf synthetic pair, V = 2: mode "stream" reads it block
    by block, "materialised" builds the arrays first; RSS after imports and a small warm-up call
    (kernels compiled / loaded), the peak, seconds, seconds in the source."""
    from trm_bounds.exact_stream import SyntheticPairSource, exact_quantities_streamed

    exact_quantities_streamed(SyntheticPairSource(1, 2, 14), block_leaves=2**12)
    exact_quantities(*SyntheticPairSource(1, 2, 14).to_arrays())
    rss0 = _status_kib("VmRSS") * 1024
    src = SyntheticPairSource(1, 2, T)
    spent = [0.0]
    t0 = time.perf_counter()
    if mode == "stream":
        block = src.block

        def timed(*a):
            t = time.perf_counter()
            out = block(*a)
            spent[0] += time.perf_counter() - t
            return out

        src.block = timed
        out = exact_quantities_streamed(src, block_leaves=block_leaves)
    else:
        arrays = src.to_arrays()
        spent[0] = time.perf_counter() - t0
        out = exact_quantities(*arrays)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") * 1024 - rss0
    print(json.dumps({"seconds": seconds, "source_seconds": spent[0], "peak_rss_growth": peak,
                      "error": repr(out["error"]), "threads_policy": _policy_threads()}))  # fmt: skip


def stream_rows(sizes, materialised_max_T: int, block_leaves: int) -> list[dict]:
    """Streamed vs materialised engine on the synthetic pair (see the module docstring, item 6)."""

    def child(T, mode):
        out = subprocess.run([sys.executable, __file__, "--stream-child", str(T), mode, str(block_leaves)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for T in sizes:
        leaves = 2**T
        modes = ["stream"] + (["materialised"] if T <= materialised_max_T else [])
        for mode in modes:
            m = child(T, mode)
            rows.append({"T": T, "leaves": leaves, "engine": mode, "seconds": m["seconds"],
                         "source_seconds": m["source_seconds"], "leaves_per_s": leaves / m["seconds"],
                         "peak_rss_B_per_leaf": m["peak_rss_growth"] / leaves, "error": m["error"],
                         "threads_policy_at_end": m["threads_policy"],
                         "loadavg_1min": os.getloadavg()[0]})  # fmt: skip
        if len(modes) == 2:
            rows[-1]["same_error_as_stream"] = rows[-1]["error"] == rows[-2]["error"]
    return rows


def _burner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def busy_ratios(T: int, repeat: int) -> list[dict]:
    """Quiet vs beside one CPU-burning process, interleaved: engine policy vs torch default threads."""
    from trm_bounds.chain import chain_quantities, random_automaton_transition, random_chain_pair

    tree = make_tree(1, 2, T)
    tr = random_automaton_transition(64, 8, np.random.default_rng(0))
    chain = random_chain_pair(tr, "dense", 0.05, 512, seed=0)
    routes = {
        f"tree 2^{T}, engine policy": _engine(tree, None),
        f"tree 2^{T}, level-by-level torch, 2 threads (no policy)": _engine(tree, 2, jit=False),
        f"tree 2^{T}, level-by-level torch, policy (1 thread)": _engine(tree, None, jit=False),
        "chain S=64 V=8 T=512, engine policy": lambda: chain_quantities(chain),
        "chain S=64 V=8 T=512, torch backend 2 threads (no policy)": lambda: _with_env_chain(chain, "2"),
    }
    for fn in routes.values():
        fn()  # warm
    quiet, busy = {k: [] for k in routes}, {k: [] for k in routes}
    for _ in range(repeat):
        for k, v in _interleaved(routes, 1).items():
            quiet[k].append(v)
        burner = _burner()
        try:
            time.sleep(0.2)
            for k, v in _interleaved(routes, 1).items():
                busy[k].append(v)
        finally:
            burner.kill()
            burner.wait()
    rows = []
    for k in routes:
        q, b = statistics.median(quiet[k]), statistics.median(busy[k])
        rows.append({"route": k, "quiet_s": q, "busy_s": b, "busy_over_quiet": b / q})
    return rows


def _with_env_chain(chain, threads):
    from trm_bounds.chain import chain_quantities

    with _env(TRM_BOUNDS_THREADS=threads):
        return chain_quantities(chain, backend="torch")


def _cuda_rows(sizes, repeat) -> list[dict]:
    rows = []
    for T in sizes:
        tree = make_tree(1, 2, T)
        gpu = _engine(tree, None, device="cuda")
        gpu()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = _interleaved({"gpu": gpu}, repeat)["gpu"]
        per_leaf = torch.cuda.max_memory_allocated() / 2**T
        free, total = torch.cuda.mem_get_info()
        fit = 2 ** int(math.floor(math.log2(total / per_leaf)))
        rows.append({"T": T, "leaves": 2**T, "gpu_s": t, "gpu_leaves_per_s": 2**T / t,
                     "gpu_peak_B_per_leaf": per_leaf, "largest_leaves_in_gpu_memory": fit})  # fmt: skip
    return rows


def _write_table(rows: list[dict], path: str) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    if path.endswith(".md"):
        lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    else:
        lines = [",".join(keys)] + [",".join(fmt(r.get(k)) for k in keys) for r in rows]
    if os.path.exists(path):
        raise SystemExit(f"bench_exact: --out {path} exists; choose a new path")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,20,22,24", help="comma-separated T (V = 2, P = 1)")
    ap.add_argument("--ref-max-T", type=int, default=22, help="largest T for the numpy reference")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs per route (median)")
    ap.add_argument("--busy", action="store_true", help="also quiet vs beside a CPU-burning process")
    ap.add_argument("--busy-T", type=int, default=20)
    ap.add_argument("--memory", action="store_true", help="also peak memory per leaf (child processes)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows")
    ap.add_argument(
        "--out", action="append", default=[], help="table file (.md: Markdown, else CSV); repeatable"
    )
    ap.add_argument("--json", default=None, help="write every measurement to this JSON file")
    ap.add_argument("--stream", action="store_true", help="only the streamed-engine rows (item 6)")
    ap.add_argument(
        "--stream-sizes", default="24,26,28", help="comma-separated T for --stream (V = 2, P = 1)"
    )
    ap.add_argument("--stream-materialised-max-T", type=int, default=24,
                    help="largest T also run materialised beside the streamed engine")  # fmt: skip
    ap.add_argument("--block-leaves", type=int, default=None, help="block_leaves of the streamed engine")
    ap.add_argument("--stream-child", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory-validate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--write-tree", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.write_tree is not None:
        _write_tree(int(args.write_tree[0]), args.write_tree[1])
        return 0
    if args.stream_child is not None:
        _stream_child(int(args.stream_child[0]), args.stream_child[1], int(args.stream_child[2]))
        return 0
    if args.memory_child is not None:
        _memory_child(args.memory_child, args.memory_validate)
        return 0
    for path in (*args.out, args.json):
        if path and os.path.exists(path):
            print(f"bench_exact: {path} exists; choose a new path", file=sys.stderr)
            return 2
    if args.device != "cpu":
        from trm_bounds._compute import check_device

        try:
            check_device(args.device)
        except ValueError as exc:
            print(f"bench_exact: {exc}", file=sys.stderr)
            return 2
    if args.stream:
        from trm_bounds.exact_stream import DEFAULT_BLOCK_LEAVES

        rows = stream_rows([int(x) for x in args.stream_sizes.split(",")], args.stream_materialised_max_T,
                           args.block_leaves or DEFAULT_BLOCK_LEAVES)  # fmt: skip
        for r in rows:
            _print_row(r)
        _report(rows, {}, args)
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    exact_quantities(*make_tree(1, 2, 4), validate=False)  # compile / load the kernel once
    rows = []
    for T in sizes:
        tree = make_tree(1, 2, T)
        routes = {"engine_1thread": _engine(tree, 1), "engine_policy": _engine(tree, None),
                  "engine_2threads": _engine(tree, 2)}  # fmt: skip
        if T <= args.ref_max_T:
            routes["numpy_reference_1thread"] = lambda tree=tree: numpy_reference(*tree)
        with _env(OMP_NUM_THREADS=1):
            t = _interleaved(routes, args.repeat)
        row = {"T": T, "leaves": 2**T, **{f"{k}_s": v for k, v in t.items()}}
        row["leaves_per_s_policy"] = 2**T / t["engine_policy"]
        if "numpy_reference_1thread" in t:
            ref, out = numpy_reference(*tree), _engine(tree, None)()
            row["ref_over_engine_1thread"] = t["numpy_reference_1thread"] / t["engine_1thread"]
            row["ref_over_engine_policy"] = t["numpy_reference_1thread"] / t["engine_policy"]
            row["ref_over_engine_2threads"] = t["numpy_reference_1thread"] / t["engine_2threads"]
            row["max_rel_diff_vs_ref"] = _max_rel(out, ref)
        row["threads_policy"] = _policy_threads()
        row["loadavg_1min"] = os.getloadavg()[0]
        rows.append(row)
        del tree
    for r in rows:
        _print_row(r)
    extra = {}
    if args.memory:
        extra["memory"] = [memory_per_leaf(T) for T in sizes[-1:]]
        for m in extra["memory"]:
            _print_row(m)
    if args.busy:
        extra["busy"] = busy_ratios(args.busy_T, args.repeat)
        for b in extra["busy"]:
            print(
                f"{b['route']}: quiet {b['quiet_s']:.3f} s, busy {b['busy_s']:.3f} s, "
                f"ratio {b['busy_over_quiet']:.2f}"
            )
    if args.device != "cpu":
        extra["cuda"] = _cuda_rows(sizes, args.repeat)
        for r in extra["cuda"]:
            _print_row(r)
    _report(rows, extra, args)
    return 0


def _print_row(r: dict) -> None:
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


def _report(rows: list[dict], extra: dict, args) -> None:
    """--out tables and --json file of the measured rows."""
    if args.out:
        table = rows + [
            {"route": b["route"], **{k: v for k, v in b.items() if k != "route"}}
            for b in extra.get("busy", [])
        ]
        for path in args.out:
            _write_table(table + extra.get("memory", []) + extra.get("cuda", []), path)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, **extra, "cpu_count": os.cpu_count()}, fh, indent=2)


def _policy_threads() -> int:
    from trm_bounds._compute import kernel_threads

    return kernel_threads()


if __name__ == "__main__":
    raise SystemExit(main())
