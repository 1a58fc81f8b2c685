"""`python -m trm_bounds ...` runs the `trm-bounds` command line (same subcommands)."""

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process imports this module
    raise SystemExit(main())
