"""Studies: measurements that produce figures and tables (run by `trm-bounds figures` jobs)."""
