#!/usr/bin/env python
"""Convert a released Lite-DETR checkpoint into a detrex Lite-DINO checkpoint.

    python tools/convert_checkpoint.py --input r50_s3ex3_50.4.pth --output lite_dino_r50_h3l1_2x3.pth \
        [--variant auto|'H3L1-(2+1)x3'] [--config-file projects/lite_dino/configs/....py]

The output ({"model": state_dict}) is usable as ``train.init_checkpoint``. The
conversion refuses to write a partial checkpoint unless ``--allow-partial``.
See ``python tools/convert_checkpoint.py --help`` and ``lite_detr_plugin.checkpoint``.
"""
import os
import sys

# Run the package next to this script when it is a source checkout, else the installed one.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_ROOT, "lite_detr_plugin", "checkpoint")):
    sys.path.insert(0, _ROOT)

from lite_detr_plugin.checkpoint.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
