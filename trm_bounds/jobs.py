"""The jobs of `trm-bounds figures`, in the order they run: the one list.

A job makes some outputs in a directory and returns one record per output::

    def job(out_dir: pathlib.Path, quick: bool) -> list[dict]:
        # each dict: {"path": <relative to out_dir>, "shows": "what it shows",
        #             "inputs": {...parameters...}}

To add a figure, write its job beside its computation (a module of `trm_bounds.studies`, say)
and add one line below. The names are what `trm-bounds figures --only` and the manifest's
"job" field use ("experiments/..." for the studies also runnable as experiments/*.py).
"paper_tables" (tables and audit) runs last: the audit reads the measurements that the
studies wrote earlier in the same run (`trm_bounds.audit.outputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import report
from .audit import claims
from .studies import coverage, error_vs_horizon, tightness, training

__all__ = ["Job", "JOBS", "BACKGROUND", "PREPARE"]

Job = Callable[[Path, bool], list[dict]]

JOBS: dict[str, Job] = {
    "scaling": report.figures_job,
    "experiments/error_vs_horizon": error_vs_horizon.figures_job,
    "experiments/train_figures": training.figures_job,
    "experiments/certify_coverage": coverage.figures_job,
    "experiments/tightness_sweep": tightness.figures_job,
    "paper_tables": claims.figures_job,
}

# Jobs whose long part can start on worker processes before the jobs run (a `start(quick)` that
# returns at once with the run's `taskpool` name; the job itself then collects the results).
# `trm-bounds figures` starts them first, runs the other jobs meanwhile and runs these jobs after
# them, a finished one before one still running ("paper_tables" stays last).
BACKGROUND: dict[str, Callable[[bool], str | None]] = {
    "experiments/train_figures": training.start_background,
    "experiments/tightness_sweep": tightness.start_background,
}

# Work a job can do ahead, before the measurements it reads exist (a `prepare(quick)` that caches
# its results in the process): `trm-bounds figures` runs it while it waits for background jobs,
# instead of leaving a core idle. It must not change the job's outputs.
PREPARE: dict[str, Callable[[bool], None]] = {
    "paper_tables": claims.prepare,
}
