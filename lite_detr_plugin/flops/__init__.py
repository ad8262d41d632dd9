"""FLOP counting for deformable-attention encoders with fvcore, and the paper's table reproduced.

* :func:`register_handles` gives fvcore a count for every deformable-attention op
  (this plugin's ``lite_detr::kda_forward`` / ``lite_detr::msda_forward``, detrex's
  ``MultiScaleDeformableAttnFunction``, ``MSDeformAttnFunction``, ``grid_sample``),
  with ``counting="paper"`` (fvcore's conventions) or ``"full"`` (:data:`COUNTINGS`).
* :func:`check_deformable_ops_counted` fails when one is left in ``unsupported_ops()``.
* :func:`count_encoder` counts an encoder on detrex-shaped inputs;
  :func:`model_gflops` splits a whole detector into backbone / neck / encoder / decoder.
* :func:`build_report` reproduces the paper's encoder GFLOPs (``lite-detr-flops``) with three
  encoder modes (``modes``, :data:`REPORT_MODES`): "paper" (eq. (2), ``value_placement="output"``),
  "paper_exact" (eq. (2), "auto") and "released" (the released layout, "tokens").
  Its modules, by job: :mod:`.specs` (what is built), :mod:`.traces` (the trace cache),
  :mod:`.rows` (the report as data), :mod:`.rendering` / :mod:`.explanation` / :mod:`.chart`
  (Markdown, JSON, PNG).

Counting needs ``value_placement="auto"`` to choose by FLOPs, not by measured time: the
counts do that through :func:`lite_detr_plugin.layers.placement.choosing_by`.

Importing this package needs neither detectron2 nor detrex.
"""
from .chart import write_png
from .encoder import AttentionCall, EncoderFlops, count_encoder, encoder_inputs, layer_terms, level_shapes, parse_size
from .handles import (
    COUNTINGS,
    DEFORMABLE_OP_NAMES,
    ELEMENTWISE_OPS,
    SAMPLING_FLOPS,
    SOFTMAX_FLOPS,
    UncountedDeformableOpError,
    check_deformable_ops_counted,
    handles,
    register_handles,
)
from .model import flop_count_analysis, model_gflops
from .paper import PAPER_ENCODER_GFLOPS, paper_row
from .rendering import format_report, write_json
from .rows import build_report
from .specs import REPORT_MODES

__all__ = [
    "register_handles",
    "handles",
    "check_deformable_ops_counted",
    "UncountedDeformableOpError",
    "DEFORMABLE_OP_NAMES",
    "ELEMENTWISE_OPS",
    "COUNTINGS",
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
