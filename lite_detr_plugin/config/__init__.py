"""Config helpers (detectron2 only inside functions).

* :mod:`.swap`: turn a detrex DETR LazyConfig into its Lite counterpart.
* :mod:`.detrex`: find detrex's source tree and load its project configs.
* :mod:`.optimizer`: the deformable-attention learning-rate rule.
* :mod:`.tiny`: make a config tiny enough to train on a CPU (the ``tiny_cpu`` configs).

The registries live in :mod:`lite_detr_plugin.registry` and are re-exported here.
"""
from ..registry import ATTENTION_REGISTRY, ENCODER_REGISTRY
from .detrex import (
    DetrexNotFoundError,
    detrex_root,
    get_detrex_config,
    load_detrex_config,
    plugin_root,
    setup_projects_path,
)
from .optimizer import DEFORMABLE_LR_FACTOR, DeformableLRFactor, add_deformable_lr_factor
from .swap import swap_encoder, use_kda_cross_attention

__all__ = [
    "ATTENTION_REGISTRY",
    "ENCODER_REGISTRY",
    "swap_encoder",
    "use_kda_cross_attention",
    "detrex_root",
    "plugin_root",
    "setup_projects_path",
    "load_detrex_config",
    "get_detrex_config",
    "DetrexNotFoundError",
    "DEFORMABLE_LR_FACTOR",
    "add_deformable_lr_factor",
    "DeformableLRFactor",
]
