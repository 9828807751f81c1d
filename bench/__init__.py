"""Benchmarks (``make bench``): measured figures, printed, never asserted by tests."""
