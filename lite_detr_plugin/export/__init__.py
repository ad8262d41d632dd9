"""Deployment: ONNX / ONNX Runtime / TensorRT export and per-module latency.

The layer above ops, layers and encoders (nothing below imports it). Importing
it needs neither detrex nor the deploy extras (onnx, onnxscript, onnxruntime):
they are imported by the functions that use them.

* :func:`export_onnx` / :func:`export_module`: ``torch.onnx.export(dynamo=True)``
  with translations of the ``lite_detr::`` ops (:func:`translation_table`).
* :class:`ExportWrapper`: a detrex DINO / H-DETR / Deformable DETR as
  ``images -> (scores, labels, boxes)``.
* :func:`swap_detrex_attention`: detrex's MSDA modules -> this package's (same weights).
* :func:`build_trt_engine`: a TensorRT engine from an exported graph.
"""
from .detrex_modules import is_detrex_msda, lite_msda_from_detrex, swap_detrex_attention
from .fp16 import convert_float16
from .onnx_export import ExportError, ExportResult, export_module, export_onnx, node_counts
from .opsets import convert_opset
from .tensorrt import build_trt_engine
from .translations import DEFORMABLE_MODES, SAMPLERS, SUPPORTED_OPSETS, translation_table
from .trt_plugin import TRT_DOMAIN, TRT_PLUGIN
from .wrapper import FAMILIES, ExportWrapper, detector_family

__all__ = [
    "ExportWrapper",
    "ExportError",
    "ExportResult",
    "export_onnx",
    "export_module",
    "translation_table",
    "convert_float16",
    "convert_opset",
    "node_counts",
    "swap_detrex_attention",
    "lite_msda_from_detrex",
    "is_detrex_msda",
    "build_trt_engine",
    "detector_family",
    "FAMILIES",
    "DEFORMABLE_MODES",
    "SAMPLERS",
    "SUPPORTED_OPSETS",
    "TRT_DOMAIN",
    "TRT_PLUGIN",
]
