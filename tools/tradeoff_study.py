#!/usr/bin/env python
"""Trains and measures the tiny configs of the trade-off study; writes a JSON and an AP-vs-GFLOPs chart.

    OMP_NUM_THREADS=1 python tools/tradeoff_study.py --max-iter 300 --seeds 0 1 --resolutions 128 96

See lite_detr_plugin/study/tradeoff.py and the README's "Trade-off study".
"""
from lite_detr_plugin.study.tradeoff import main

if __name__ == "__main__":
    main()
