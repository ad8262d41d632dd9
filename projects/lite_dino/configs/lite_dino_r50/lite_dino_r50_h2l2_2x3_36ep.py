"""Lite-DINO R50, H2L2-(2+1)x3, 36 epochs. KDA in the encoder and in the decoder's cross-attention, as released.

Derived from detrex's projects/dino/configs/dino-resnet/dino_r50_4scale_24ep.py,
which uses DINO's original position embedding (temperature 20, offset 0) and
torchvision's R-50 as the released Lite-DINO checkpoints do, with detrex's
36-epoch COCO schedule (270k iterations at batch 16, lr decay at epoch 30).
Only the encoder and the decoder's cross-attention change (see ../models/lite_dino.py).
"""
from lite_detr_plugin.config import get_detrex_config, load_detrex_config

from ..models.lite_dino import lite_dino

_base = load_detrex_config("projects/dino/configs/dino-resnet/dino_r50_4scale_24ep.py")
lite_dino(_base, variant="H2L2-(2+1)x3", attention="kda", decoder_kda=True)

model = _base.model
dataloader = _base.dataloader
optimizer = _base.optimizer
lr_multiplier = get_detrex_config("common/coco_schedule.py").lr_multiplier_36ep
train = _base.train

train.max_iter = 270000
train.output_dir = "./output/lite_dino_r50_h2l2_2x3_36ep"
dataloader.evaluator.output_dir = "${...train.output_dir}"  # follows train.output_dir overrides
