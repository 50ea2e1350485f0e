"""Benchmarks and measurements, run as files (`.venv/bin/python scripts/<name>.py`); a package so
that one can import another's helpers (`scripts.bench_throughput`)."""
