#!/usr/bin/env python
"""Value projection over the tokens vs after sampling: timings and the fit of ``κ``
(same as ``lite-detr-benchmark-placement``; see :mod:`lite_detr_plugin.benchmarks.placement`).

    python tools/benchmark_placement.py --threads 1 --json placement.json
"""
import sys

from lite_detr_plugin.benchmarks.placement import main

if __name__ == "__main__":
    sys.exit(main())
