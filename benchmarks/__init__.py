"""Benchmarks of MultiFlexi: ``python benchmarks/run.py`` (see benchmarks/README.md)."""
