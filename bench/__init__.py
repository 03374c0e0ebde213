"""Benchmarks for s3l-sweep (issue 5); run `python -m bench --help`. Results: docs/BENCHMARKS.md."""
