"""lite_dino_tiny_cpu.py trained with random zoom-out (seed 003, Table 2).

Before the resize, half of the training images are placed on a canvas up to 2×
their size (the tiny images are 128×160; the R50 config goes to 4×, as SSD),
filled with the pixel mean, so the model sees more small objects.
"""
from detectron2.config import LazyCall as L

from lite_detr_plugin.data.augmentation import RandomZoomOut

from .lite_dino_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

dataloader.train.mapper.augmentation.insert(0, L(RandomZoomOut)(p=0.5, max_ratio=2.0, fill=list(model.pixel_mean)))

train.output_dir = "./output/tiny_cpu/lite_dino_zoom_out"
