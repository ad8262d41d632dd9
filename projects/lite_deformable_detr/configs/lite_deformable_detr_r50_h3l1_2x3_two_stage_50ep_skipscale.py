"""Lite-Deformable-DETR R50, H3L1-(2+1)x3, two-stage + box refinement, 50 epochs. Lite without KDA ("skipscale"): deformable attention with query-predicted weights everywhere.

Derived from detrex's projects/deformable_detr/configs/deformable_detr_r50_two_stage_50ep.py
(see the project README for why this base): only the encoder changes (see
models/lite_deformable_detr.py).
"""
from lite_detr_plugin.config import load_detrex_config

from .models.lite_deformable_detr import lite_deformable_detr

_base = load_detrex_config("projects/deformable_detr/configs/deformable_detr_r50_two_stage_50ep.py")
lite_deformable_detr(_base, variant="H3L1-(2+1)x3", attention="msda")

model = _base.model
dataloader = _base.dataloader
optimizer = _base.optimizer
lr_multiplier = _base.lr_multiplier
train = _base.train

train.output_dir = "./output/lite_deformable_detr_r50_h3l1_2x3_two_stage_50ep_skipscale"
dataloader.evaluator.output_dir = "${...train.output_dir}"  # follows train.output_dir overrides
