"""Benchmarks against the local services (``make bench``)."""
