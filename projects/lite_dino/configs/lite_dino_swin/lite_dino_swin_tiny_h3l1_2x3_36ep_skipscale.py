"""Lite-DINO Swin-T, H3L1-(2+1)x3, 36 epochs. Lite without KDA ("skipscale"): deformable attention with query-predicted weights everywhere.

The 12-epoch config with detrex's 36-epoch COCO schedule (270k iterations at
batch 16, lr decay at epoch 30), as detrex's own 36-epoch DINO configs do.
"""
from lite_detr_plugin.config import get_detrex_config

from .lite_dino_swin_tiny_h3l1_2x3_12ep_skipscale import dataloader, model, optimizer, train

lr_multiplier = get_detrex_config("common/coco_schedule.py").lr_multiplier_36ep
train.max_iter = 270000
train.output_dir = "./output/lite_dino_swin_tiny_h3l1_2x3_36ep_skipscale"
dataloader.evaluator.output_dir = "${...train.output_dir}"  # follows train.output_dir overrides
