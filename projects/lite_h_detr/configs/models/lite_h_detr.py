"""What Lite DETR changes in a detrex H-DETR (H-Deformable-DETR) config.

Only the encoder: detrex's 6-layer deformable encoder becomes a
:class:`LiteEncoder` of the given variant (``attention="kda"``: key-aware
deformable attention; ``"msda"``: Lite without KDA, the "skipscale" encoder).
The decoder keeps detrex's deformable cross-attention (Lite DETR released KDA in
the decoder for DINO only). Everything else is detrex's.
"""
from lite_detr_plugin.config import swap_encoder


def lite_h_detr(cfg, variant: str, attention: str = "kda"):
    """Edits a loaded detrex H-DETR config (with ``cfg.model``) in place and returns it."""
    swap_encoder(cfg, variant, attention=attention, decoder_kda=False)
    return cfg
