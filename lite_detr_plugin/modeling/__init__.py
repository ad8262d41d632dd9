"""Model-side helpers for the projects.

Only the detrex-free parts are imported here. ``lite_detr_plugin.modeling.dino``
(``LiteDINO``, ``LiteDINOCriterion``) subclasses detrex's DINO project, which is
importable once detrex's source root is on ``sys.path``
(:func:`lite_detr_plugin.config.setup_projects_path`, which ``load_detrex_config``
calls); configs and tools import it explicitly, after that.
"""
from .device import is_redirecting, redirect_cuda

__all__ = ["redirect_cuda", "is_redirecting"]
