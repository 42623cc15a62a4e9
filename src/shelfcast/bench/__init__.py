"""Benchmarks reachable from the CLI (`shelfcast bench ...`)."""
