"""The learning-rate rule of deformable attention: a smaller factor for the offset Linears.

Deformable DETR, DINO and Lite DETR's released training scripts (and detrex's
DINO project trainer) give the Linears that predict sampling offsets and
reference points 0.1 times the learning rate ("lr_linear_proj_mult").
``tools/train_net.py`` applies it to every config through
:func:`add_deformable_lr_factor`.
"""
from typing import Optional

__all__ = ["DEFORMABLE_LR_FACTOR", "DEFORMABLE_LR_KEYWORDS", "DeformableLRFactor", "add_deformable_lr_factor"]

# Multiplier that Deformable DETR, DINO and Lite DETR's released code give to the
# learning rate of the offset/reference-point Linears ("lr_linear_proj_mult").
DEFORMABLE_LR_FACTOR = 0.1
DEFORMABLE_LR_KEYWORDS = ("sampling_offsets", "reference_points")


class DeformableLRFactor:
    """``optimizer.params.lr_factor_func`` with the deformable-attention rule added.

    ``factor`` (0.1) times the config's own factor for every parameter whose name
    contains one of ``keywords`` (``sampling_offsets``, ``reference_points``), as
    Deformable DETR's and DINO's training scripts do (detrex's DINO project
    trainer too). A plain callable class, so configs holding it can be pickled.
    """

    def __init__(self, base=None, factor: float = DEFORMABLE_LR_FACTOR, keywords=DEFORMABLE_LR_KEYWORDS):
        self.base = base
        self.factor = float(factor)
        self.keywords = tuple(keywords)

    def __call__(self, name: str) -> float:
        scale = 1.0 if self.base is None else self.base(name)
        if any(keyword in name for keyword in self.keywords):
            scale = scale * self.factor
        return scale

    def __repr__(self) -> str:
        return f"DeformableLRFactor(base={self.base!r}, factor={self.factor}, keywords={self.keywords})"


def add_deformable_lr_factor(cfg, factor: Optional[float] = DEFORMABLE_LR_FACTOR, keywords=DEFORMABLE_LR_KEYWORDS):
    """Wraps ``cfg.optimizer.params.lr_factor_func`` in :class:`DeformableLRFactor`, in place.

    The config's own factors (detrex: 0.1 for the backbone) are kept and
    multiplied. Idempotent: an already wrapped function is left alone. ``factor``
    None or 1 changes nothing. Returns ``cfg``.
    """
    if factor is None or float(factor) == 1.0:
        return cfg
    optimizer = cfg.get("optimizer") if hasattr(cfg, "get") else None
    params = optimizer.get("params") if optimizer is not None and hasattr(optimizer, "get") else None
    if params is None or not hasattr(params, "get"):
        return cfg
    base = params.get("lr_factor_func", None)
    if isinstance(base, DeformableLRFactor):
        return cfg
    params.lr_factor_func = DeformableLRFactor(base, factor, keywords)
    return cfg
