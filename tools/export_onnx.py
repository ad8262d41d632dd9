#!/usr/bin/env python
"""Export a detrex / Lite detector to ONNX (same as ``lite-detr-export``).

    python tools/export_onnx.py --config-file CFG [--weights PTH] --output model.onnx --size 800x1333
        [--opset 16|17|18] [--deformable decompose|trt_plugin] [--sampler grid_sample|gather]
        [--dynamic-batch] [--simplify] [--fp16] [--trt-engine PATH] [key=value ...]

See ``lite-detr-export --help``.
"""
import sys

from lite_detr_plugin.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
