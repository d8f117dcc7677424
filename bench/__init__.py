"""Benchmark harnesses: Tessera against peer servers, on loopback only."""
