"""One module per `trm-bounds` subcommand (see `trm_bounds.cli`)."""
