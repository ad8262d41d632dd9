#!/usr/bin/env python
"""Encoder GFLOPs of Lite DETR's tables, or a detrex model's split (same as ``lite-detr-flops``).

    python tools/analyze_flops.py [--size 850x1040] [--json rows.json] [--png chart.png]
                                  [--modes paper paper_exact released] [--exact]
    python tools/analyze_flops.py --config-file CFG [--swap-encoder 'H3L1-(2+1)x3'] [--dataset NAME -n 100]

See ``lite-detr-flops --help``.
"""
import sys

from lite_detr_plugin.flops.cli import main

if __name__ == "__main__":
    sys.exit(main())
