#!/usr/bin/env python
"""KDA / MSDA op benchmark (same as ``lite-detr-benchmark-kda``; see :mod:`lite_detr_plugin.benchmarks.kda`).

    python tools/benchmark_kda.py --json kda.json
"""
import sys

from lite_detr_plugin.benchmarks.kda import main

if __name__ == "__main__":
    sys.exit(main())
