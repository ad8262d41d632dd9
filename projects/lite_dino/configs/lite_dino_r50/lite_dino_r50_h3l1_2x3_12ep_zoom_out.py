"""lite_dino_r50_h3l1_2x3_12ep.py trained with random zoom-out (seed 003, Table 2).

Before the resize (in both of detrex's branches: with and without the random
crop), half of the training images are placed on a canvas up to 4× their size,
filled with the pixel mean, as SSD's zoom-out (seed 003's reference [16]).
"""
from detectron2.config import LazyCall as L

from lite_detr_plugin.data.augmentation import RandomZoomOut

from .lite_dino_r50_h3l1_2x3_12ep import dataloader, lr_multiplier, model, optimizer, train

for _branch in (dataloader.train.mapper.augmentation, dataloader.train.mapper.augmentation_with_crop):
    _branch.insert(0, L(RandomZoomOut)(p=0.5, max_ratio=4.0, fill=list(model.pixel_mean)))

train.output_dir = "./output/lite_dino_r50_h3l1_2x3_12ep_zoom_out"
dataloader.evaluator.output_dir = "${...train.output_dir}"
