"""FLOP counting for deformable-attention encoders with fvcore, and the paper's table reproduced.

* :func:`register_handles` gives fvcore a count for every deformable-attention op
  (this plugin's ``lite_detr::kda_forward`` / ``lite_detr::msda_forward``, detrex's
  ``MultiScaleDeformableAttnFunction``, ``MSDeformAttnFunction``, ``grid_sample``),
  in the "paper" (fvcore's conventions) or "full" mode.
* :func:`check_deformable_ops_counted` fails when one is left in ``unsupported_ops()``.
* :func:`count_encoder` counts an encoder on detrex-shaped inputs;
  :func:`model_gflops` splits a whole detector into backbone / neck / encoder / decoder.
* :func:`build_report` reproduces the paper's encoder GFLOPs (``lite-detr-flops``) in three
  modes (:data:`REPORT_MODES`): "paper" (eq. (2), ``value_placement="output"``),
  "paper_exact" (eq. (2), "auto") and "released" (the released layout, "tokens").

Importing this package needs neither detectron2 nor detrex.
"""
from .encoder import AttentionCall, EncoderFlops, count_encoder, encoder_inputs, layer_terms, level_shapes, parse_size
from .handles import (
    DEFORMABLE_OP_NAMES,
    ELEMENTWISE_OPS,
    MODES,
    SAMPLING_FLOPS,
    SOFTMAX_FLOPS,
    UncountedDeformableOpError,
    check_deformable_ops_counted,
    handles,
    register_handles,
)
from .model import flop_count_analysis, model_gflops
from .paper import PAPER_ENCODER_GFLOPS, paper_row
from .report import REPORT_MODES, build_report, format_report, write_json, write_png

__all__ = [
    "register_handles",
    "handles",
    "check_deformable_ops_counted",
    "UncountedDeformableOpError",
    "DEFORMABLE_OP_NAMES",
    "ELEMENTWISE_OPS",
    "MODES",
    "SAMPLING_FLOPS",
    "SOFTMAX_FLOPS",
    "count_encoder",
    "encoder_inputs",
    "layer_terms",
    "level_shapes",
    "parse_size",
    "AttentionCall",
    "EncoderFlops",
    "flop_count_analysis",
    "model_gflops",
    "PAPER_ENCODER_GFLOPS",
    "paper_row",
    "REPORT_MODES",
    "build_report",
    "format_report",
    "write_json",
    "write_png",
]
