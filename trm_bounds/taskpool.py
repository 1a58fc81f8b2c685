"""Independent seeded tasks: run in-process, on a local process pool, or on a Ray cluster.

    results = run_tasks(fn, tasks, cache_dir=..., workers=1, ray=None, progress=True)

- `fn(task) -> dict` must be a module-level function (picklable) whose result is JSON-ready
  and depends only on the task (seeds inside the task; torch runs on one thread inside it, so
  the numbers do not depend on where it runs: local and Ray runs give identical JSON).
- Each task is a JSON-ready dict with a unique string "key". With `cache_dir`, every finished
  task is written to `cache_dir/<key>.json` as {"task": task, "result": result} (atomically, via
  a temporary file) as soon as it is done, and tasks whose file exists are loaded instead of
  run: an interrupted sweep resumes. A file written for a different task under the same key
  (another configuration in the same folder) is refused with a ValueError, never reused.
- `ray`: None (default, no Ray), "auto" (the cluster `ray start` made on this machine, or a
  local instance) or an address ("ray://host:10001", "host:6379"); Ray is the optional extra
  `trm-bounds[ray]`, imported only here and only when asked for.
- One tqdm progress bar counts finished tasks across all of them (cached ones included).
Results come back in the order of `tasks`, whatever order they finished in.

`start_background(name, fn, tasks, workers=...)` starts the same work on worker processes and
returns at once; `collect_background(name)` waits for it and returns what `run_tasks` would
(`trm-bounds figures` starts a long job's tasks first and runs the other jobs meanwhile);
`cancel_background()` stops every started pool (its workers are terminated);
`background_done(name)` says whether a started run has finished, without waiting.
`add_arguments` gives a sweep script the matching --workers / --ray / --cache options.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

__all__ = [
    "run_tasks",
    "task_file",
    "add_arguments",
    "start_background",
    "has_background",
    "background_done",
    "collect_background",
    "cancel_background",
]

_KEY = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def task_file(cache_dir: Path, key: str) -> Path:
    """Where a finished task's result lives: cache_dir/<key>.json."""
    return Path(cache_dir) / f"{key}.json"


def _checked(tasks: list[dict]) -> list[str]:
    keys = []
    for t in tasks:
        key = t.get("key") if isinstance(t, dict) else None
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"every task must be a dict with a 'key' of [A-Za-z0-9_.=+-], got {key!r}")
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    return keys


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def _write(cache_dir: Path | None, task: dict, result: dict) -> None:
    if cache_dir is None:
        return
    path = task_file(cache_dir, task["key"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(_canonical({"task": task, "result": result}))
    os.replace(tmp, path)


def _load(path: Path, task: dict) -> dict:
    """The cached result of `task`; ValueError when the file holds another task's result."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cache_dir: {path} cannot be read ({exc}); delete it to rerun that task") from exc
    if not isinstance(saved, dict) or _canonical(saved.get("task")) != _canonical(task):
        raise ValueError(
            f"cache_dir: {path} holds the result of a different task under key {task['key']!r} "
            "(another configuration?): use another cache folder or delete it"
        )
    return saved["result"]


def run_tasks(
    fn: Callable[[dict], dict],
    tasks: list[dict],
    *,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = True,
    desc: str = "tasks",
    processes: bool = False,
    preload: tuple[str, ...] = (),
) -> list[dict]:
    """Run fn on every task (module docstring); results in the order of `tasks`.

    workers > 1 (or processes=True, even with one worker) runs them on worker processes
    (`_context`); preload: further modules the workers should have imported before their
    first task (e.g. one a library imports lazily on first use), beside fn's own module.
    """
    keys = _checked(tasks)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cache = None if cache_dir is None else Path(cache_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    tasks = [json.loads(_canonical(t)) for t in tasks]  # JSON-ready: the same task on any worker
    results: dict[str, dict] = {}
    pool = _pool_slot()
    for t in tasks:
        if cache is not None and task_file(cache, t["key"]).exists():
            results[t["key"]] = _load(task_file(cache, t["key"]), t)
    todo = [t for t in tasks if t["key"] not in results]
    by_key = {t["key"]: t for t in tasks}
    with tqdm(total=len(tasks), initial=len(results), desc=desc, unit="task", disable=not progress) as bar:

        def done(key: str, res: dict) -> None:
            res = json.loads(_canonical(res))  # the same JSON whichever way it ran
            _write(cache, by_key[key], res)
            results[key] = res
            bar.update(1)

        if ray is not None:
            _run_ray(fn, todo, ray, done)
        elif todo and (processes or (workers > 1 and len(todo) > 1)):
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=workers, mp_context=_context(fn, preload)) as ex:
                pool.append(ex)
                futs = {ex.submit(fn, t): t["key"] for t in todo}
                for f in as_completed(futs):
                    done(futs[f], f.result())
        else:
            for t in todo:
                done(t["key"], fn(t))
    return [results[k] for k in keys]


def _context(fn: Callable, preload: tuple[str, ...]):
    """The multiprocessing context of the local pools: "forkserver" where there is one, else "spawn".

    Not plain fork: a forked child of a process that already ran a numba parallel kernel or
    torch's thread pool can hang. The fork server is a fresh single-threaded process that
    imports fn's module and `preload` once (`set_forkserver_preload`, which takes effect when
    the server starts: the first pool of the process); each worker is forked from it with those
    imports done, instead of paying them again (~2-4 s of CPU per spawned worker).
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([fn.__module__, *preload])
    return ctx


def prestart(modules: tuple[str, ...]) -> None:
    """Start the fork server of `_context` now, importing `modules`, and return at once.

    The server imports them while the caller goes on (a CLI importing its own modules, say), so
    the first pool's workers start without that wait. Without a fork server (not POSIX), or when
    one already runs, this does nothing.
    """
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(modules))
    forkserver.ensure_running()


def _run_ray(fn, todo: list[dict], address: str, done) -> None:
    try:
        import ray as ray_mod  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise ValueError("ray is not installed: pip install 'trm-bounds[ray]' (or pip install ray)") from exc
    started = False
    if not ray_mod.is_initialized():
        ray_mod.init(address=None if address == "local" else address, ignore_reinit_error=True)
        started = True
    try:
        remote = ray_mod.remote(num_cpus=1)(fn)
        refs = {remote.remote(t): t["key"] for t in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray_mod.wait(pending, num_returns=1)
            for r in ready:
                done(refs[r], ray_mod.get(r))
    finally:
        if started:
            ray_mod.shutdown()


def add_arguments(ap: argparse.ArgumentParser, default_cache: str) -> None:
    """--workers, --ray and --cache (default OUT/<default_cache>) for a sweep script's parser."""
    ap.add_argument("--workers", type=int, default=1, help="local processes (default 1: in-process)")
    ap.add_argument(
        "--ray",
        default=None,
        help="'auto' (the cluster `ray start` made on this node, else a local instance), 'local', "
        "or the address of an existing cluster (ray://HEAD:10001 or HEAD:6379)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"folder of finished tasks, so a rerun resumes (default OUT/{default_cache})",
    )


# --------------------------------------------------------------------------- background runs
_local = threading.local()  # the pool a background thread's run_tasks made (for cancel_background)
_background: dict[str, tuple[threading.Thread, dict, list]] = {}


def _pool_slot() -> list:
    return getattr(_local, "pool", [])


def start_background(
    name: str, fn: Callable[[dict], dict], tasks: list[dict], *, workers: int, preload: tuple[str, ...] = ()
) -> None:
    """Start `run_tasks(fn, tasks, workers=workers, progress=False, preload=preload)` in a thread;
    returns at once.

    The tasks run on `workers` worker processes while the caller goes on; `collect_background(name)`
    returns the results (or raises what the run raised). Starting a name twice is a ValueError.
    """
    _checked(tasks)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if name in _background:
        raise ValueError(f"background run {name!r} already started")
    box: dict = {}
    pools: list = []

    def target() -> None:
        _local.pool = pools
        try:
            box["results"] = run_tasks(
                fn, tasks, workers=workers, progress=False, processes=True, preload=preload
            )
        except BaseException as exc:  # handed to collect_background
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"trm-bounds background {name}", daemon=True)
    _background[name] = (thread, box, pools)
    thread.start()


def has_background(name: str) -> bool:
    """True when `start_background(name, ...)` ran and its results were not collected yet."""
    return name in _background


def background_done(name: str) -> bool:
    """True when the background run `name` has finished (its results wait for `collect_background`),
    or is not running (never started, or collected)."""
    entry = _background.get(name)
    return entry is None or not entry[0].is_alive()


def collect_background(name: str) -> list[dict]:
    """Wait for the background run `name`; its results in task order (KeyError if never started)."""
    thread, box, _ = _background.pop(name)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["results"]


def cancel_background() -> None:
    """Stop every background run not collected yet: pending tasks dropped, worker processes terminated."""
    while _background:
        _, (thread, _box, pools) = _background.popitem()
        for ex in pools:
            # a pool that already finished has _processes = None (ProcessPoolExecutor.shutdown)
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
        thread.join(timeout=5)
