"""Lite-Deformable-DETR H3L1-(2+1)x3 (KDA encoder), tiny, trained on a CPU in minutes.

The R50 two-stage 50-epoch config made small: a randomly initialised ResNet-18,
FFNs of width 512, 3 decoder layers, 100 queries, the synthetic shapes dataset
(generated under ./datasets on first use, $LITE_DETR_DATASETS to move it) at
~128 px, batch 4, 300 iterations, then detectron2's COCOEvaluator on the 50
validation images. Only for trying the pipeline: the encoder and losses are the
full Lite-Deformable-DETR ones.
"""
from lite_detr_plugin.config.tiny import tiny_cpu

from ..lite_deformable_detr_r50_h3l1_2x3_two_stage_50ep import dataloader, model, optimizer, train

lr_multiplier = tiny_cpu(model, dataloader, optimizer, train, output_dir="./output/tiny_cpu/lite_deformable_detr")

# the detector's own query counts, made small
model.num_queries = 100
model.select_box_nums_for_evaluation = 100
