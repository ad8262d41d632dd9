#!/usr/bin/env python
"""Encoder latency and memory, standard vs Lite (same as ``lite-detr-benchmark-encoder``;
see :mod:`lite_detr_plugin.benchmarks.encoder`).

    python tools/benchmark_encoder.py --device cpu --repeats 3 --threads 2 --json encoder.json
"""
import sys

from lite_detr_plugin.benchmarks.encoder import main

if __name__ == "__main__":
    sys.exit(main())
