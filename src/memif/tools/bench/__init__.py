"""Benchmarks against DPDK testpmd: ``memif bench`` and ``memif bench-switch``."""
