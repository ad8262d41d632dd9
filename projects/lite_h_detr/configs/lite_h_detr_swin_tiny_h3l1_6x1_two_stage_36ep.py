"""Lite-H-DETR Swin-T, H3L1-(6+1)x1, two-stage + box refinement, 36 epochs. KDA in the encoder.

Derived from detrex's projects/h_deformable_detr/configs/h_deformable_detr_swin_tiny_two_stage_36ep.py:
only the encoder changes (see models/lite_h_detr.py).
"""
from lite_detr_plugin.config import load_detrex_config

from .models.lite_h_detr import lite_h_detr

_base = load_detrex_config("projects/h_deformable_detr/configs/h_deformable_detr_swin_tiny_two_stage_36ep.py")
lite_h_detr(_base, variant="H3L1-(6+1)x1", attention="kda")

model = _base.model
dataloader = _base.dataloader
optimizer = _base.optimizer
lr_multiplier = _base.lr_multiplier
train = _base.train

train.output_dir = "./output/lite_h_detr_swin_tiny_h3l1_6x1_two_stage_36ep"
dataloader.evaluator.output_dir = "${...train.output_dir}"  # follows train.output_dir overrides
