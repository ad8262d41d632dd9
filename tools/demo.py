#!/usr/bin/env python
"""Detections of a Lite DETR model on your images (the ``lite-detr-demo`` command).

    python tools/demo.py --config-file CFG --input images/ --output out/ train.init_checkpoint=model_final.pth
"""
from lite_detr_plugin.visualization.demo import main

if __name__ == "__main__":
    main()
