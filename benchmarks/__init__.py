"""The benchmark (`python -m benchmarks.benchmark`); README.md beside it explains its method and output."""
