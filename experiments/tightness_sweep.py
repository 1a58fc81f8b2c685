"""Are the bounds tight in T? The worst |Error| and |Error| / bound, searched (trm_bounds.studies.tightness).

    python experiments/tightness_sweep.py [--quick | --heavy] [--workers N] [--ray auto|local|ADDRESS]
                                          [--out paper_figures] [--cache DIR]

Default: the configuration of `trm-bounds figures` (trees T = 2 .. 10, chains 16 .. 4096; 15 s measured
on a 2-core machine); --heavy: the long search (trees to T = 14, 9 chain horizons to 4096, 5 chain
structures, 4 seeds, 150 steps; use --workers or --ray).
Writes OUT/tightness/ (tightness.json, instances/, tightness.png/.pdf, tightness_exponents.*);
finished tasks are kept in --cache (default OUT/tightness_cache, untracked) so a rerun resumes.
"""

from trm_bounds.studies.tightness import main

if __name__ == "__main__":
    raise SystemExit(main())
