"""Benchmarks behind the ``lite-detr-benchmark-*`` console scripts, and the timing helper they share."""
