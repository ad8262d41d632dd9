#!/usr/bin/env python
"""Lite DETR's Fig. 5 (where KDA looks) for a model and an image (the ``lite-detr-visualize`` command).

    python tools/visualize_attention.py --config-file CFG --input image.png --output fig5.png train.init_checkpoint=model.pth
"""
from lite_detr_plugin.visualization.visualize import main

if __name__ == "__main__":
    main()
