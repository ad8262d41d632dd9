"""What Lite DETR changes in a detrex Deformable DETR config.

Only the encoder: detrex's 6-layer deformable encoder becomes a
:class:`LiteEncoder` of the given variant (``attention="kda"``: key-aware
deformable attention; ``"msda"``: Lite without KDA, the "skipscale" encoder),
keeping Deformable DETR's FFN width (1024) and dropouts (0.1). Everything else is
detrex's.
"""
from lite_detr_plugin.config import swap_encoder


def lite_deformable_detr(cfg, variant: str, attention: str = "kda"):
    """Edits a loaded detrex Deformable DETR config (with ``cfg.model``) in place and returns it."""
    swap_encoder(cfg, variant, attention=attention, decoder_kda=False)
    return cfg
