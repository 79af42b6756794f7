"""Benchmarks: loader throughput against batch diversity, and training cells/s."""
