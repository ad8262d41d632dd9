#!/usr/bin/env python
"""Convert a released Lite-DETR checkpoint into a detrex Lite-DINO checkpoint (same as ``lite-detr-convert``).

    python tools/convert_checkpoint.py --input r50_s3ex3_50.4.pth --output lite_dino_r50_h3l1_2x3.pth \
        [--variant auto|'H3L1-(2+1)x3'] [--config-file projects/lite_dino/configs/....py]

The output ({"model": state_dict}) is usable as ``train.init_checkpoint``. The
conversion refuses to write a partial checkpoint unless ``--allow-partial``.
See ``lite-detr-convert --help`` and :mod:`lite_detr_plugin.checkpoint`.
"""
import sys

from lite_detr_plugin.checkpoint.cli import main

if __name__ == "__main__":
    sys.exit(main())
