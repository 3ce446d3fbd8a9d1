"""Benchmarks of the fleet against this machine's own limits (``make bench``)."""
