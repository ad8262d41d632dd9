"""What Lite DETR changes in a detrex DINO config (imported by the configs next door).

* the encoder: detrex's 6-layer deformable encoder becomes a :class:`LiteEncoder`
  of the given variant (``attention="kda"``: key-aware deformable attention;
  ``"msda"``: Lite without KDA, the "skipscale" encoder);
* the decoder's deformable cross-attention becomes KDA too when ``decoder_kda``,
  as in the released Lite-DINO;
* the detector and its criterion become :class:`LiteDINO` /
  :class:`LiteDINOCriterion`: detrex's DINO, whose denoising code follows the
  model's device instead of hard-coding CUDA (so it also trains on a CPU).

Everything else (backbone, neck, decoder, losses, schedule, data) is detrex's.
"""
from lite_detr_plugin.config import swap_encoder


def lite_dino(cfg, variant: str, attention: str = "kda", decoder_kda: bool = True):
    """Edits a loaded detrex DINO config (with ``cfg.model``) in place and returns it."""
    # imported here: detrex's DINO project is importable once load_detrex_config has run
    from lite_detr_plugin.modeling.dino import LiteDINO, LiteDINOCriterion

    cfg.model._target_ = LiteDINO
    cfg.model.criterion._target_ = LiteDINOCriterion
    swap_encoder(cfg, variant, attention=attention, decoder_kda=decoder_kda)
    return cfg
