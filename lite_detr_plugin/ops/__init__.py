"""Compiled deformable-attention ops: key-aware (``kda``) and with given weights (``msda``)."""
from ._extension import build_details, build_info, cpu_capability, has_kernel, is_loaded, load_error
from .deformable import kda, msda
from .reference import kda_reference, msda_reference, sample_levels

__all__ = [
    "kda",
    "msda",
    "kda_reference",
    "msda_reference",
    "sample_levels",
    "build_info",
    "build_details",
    "cpu_capability",
    "has_kernel",
    "is_loaded",
    "load_error",
]
