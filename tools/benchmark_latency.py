#!/usr/bin/env python
"""Latency per module of detrex / Lite detectors (same as ``lite-detr-benchmark``).

    python tools/benchmark_latency.py --config-file CFG [CFG ...] --sizes 640x640 768x768 857x1045
        [--backend eager|onnxruntime|tensorrt] [--repeats 3] [--threads N] [--json out.json] [--png out.png]

See ``lite-detr-benchmark --help``.
"""
import sys

from lite_detr_plugin.export.benchmark_cli import main

if __name__ == "__main__":
    sys.exit(main())
