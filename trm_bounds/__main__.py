"""`python -m trm_bounds ...` runs the `trm-bounds` command line (same subcommands)."""

from .cli import main

raise SystemExit(main())
