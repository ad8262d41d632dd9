"""Lite-DINO R50, H3L1-(6+1)x1, 12 epochs. KDA in the encoder only; the decoder keeps detrex's deformable cross-attention.

Derived from detrex's projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py:
only the encoder change (see ../models/lite_dino.py).
"""
from lite_detr_plugin.config import load_detrex_config

from ..models.lite_dino import lite_dino

_base = load_detrex_config("projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py")
lite_dino(_base, variant="H3L1-(6+1)x1", attention="kda", decoder_kda=False)

model = _base.model
dataloader = _base.dataloader
optimizer = _base.optimizer
lr_multiplier = _base.lr_multiplier
train = _base.train

train.output_dir = "./output/lite_dino_r50_h3l1_6x1_12ep_no_dec_kda"
dataloader.evaluator.output_dir = "${...train.output_dir}"  # follows train.output_dir overrides
