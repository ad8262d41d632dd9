"""Model-side helpers for the projects.

Only the detrex-free parts are imported here. ``lite_detr_plugin.modeling.dino``
(``LiteDINO``, ``LiteDINOCriterion``) imports detrex's DINO project when it is
imported, so configs and tools import it explicitly.
"""
from .device import is_redirecting, redirect_cuda

__all__ = ["redirect_cuda", "is_redirecting"]
