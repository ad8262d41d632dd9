"""Lite-H-DETR H3L1-(2+1)x3 (KDA encoder), tiny, trained on a CPU in minutes.

The R50 two-stage 36-epoch config made small: a randomly initialised ResNet-18,
FFNs of width 512, 3 decoder layers, 50 one-to-one + 150 one-to-many queries,
the synthetic shapes dataset (generated under ./datasets on first use,
$LITE_DETR_DATASETS to move it) at ~128 px, batch 4, 300 iterations, then
detectron2's COCOEvaluator on the 50 validation images. Only for trying the
pipeline: the encoder, hybrid matching and losses are the full Lite-H-DETR ones.
"""
from lite_detr_plugin.config.tiny import tiny_cpu

from ..lite_h_detr_r50_h3l1_2x3_two_stage_36ep import dataloader, model, optimizer, train

lr_multiplier = tiny_cpu(model, dataloader, optimizer, train, output_dir="./output/tiny_cpu/lite_h_detr")

# the detector's own query counts, made small
model.num_queries_one2one = 50
model.num_queries_one2many = 150
model.transformer.two_stage_num_proposals = 200  # one-to-one + one-to-many
model.select_box_nums_for_evaluation = 100
