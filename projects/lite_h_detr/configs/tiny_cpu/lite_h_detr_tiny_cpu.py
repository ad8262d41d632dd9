"""Lite-H-DETR H3L1-(2+1)x3 (KDA encoder), tiny, trained on a CPU in minutes.

The R50 two-stage 36-epoch config made small: a randomly initialised ResNet-18,
FFNs of width 512, 3 decoder layers, 50 one-to-one + 150 one-to-many queries,
the synthetic shapes dataset (generated under ./datasets on first use,
$LITE_DETR_DATASETS to move it) at ~128 px, batch 4, 300 iterations, then
detectron2's COCOEvaluator on the 50 validation images. Only for trying the
pipeline: the encoder, hybrid matching and losses are the full Lite-H-DETR ones.
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from lite_detr_plugin.data import synthetic_dataloader
from lite_detr_plugin.modeling.tiny import tiny_resnet_backbone, tiny_transformer

from ..lite_h_detr_r50_h3l1_2x3_two_stage_36ep import dataloader, model, optimizer, train

# model: small backbone, narrower FFNs, 3 decoder layers, 3 classes, fewer queries
tiny_resnet_backbone(model, depth=18)
tiny_transformer(model, feedforward_dim=512, num_decoder_layers=3)
model.num_classes = 3
model.criterion.num_classes = 3
model.num_queries_one2one = 50
model.num_queries_one2many = 150
model.transformer.two_stage_num_proposals = 200  # one-to-one + one-to-many
model.select_box_nums_for_evaluation = 100
model.device = "cpu"

# data: the synthetic shapes dataset
synthetic_dataloader(dataloader, batch_size=4, num_workers=1)

# optimisation: the backbone trains from scratch, so at the full learning rate
optimizer.lr = 2e-4
optimizer.params.lr_factor_func = lambda name: 1.0
train.max_iter = 300
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[250, 300]),
    warmup_length=20 / 300,
    warmup_method="linear",
    warmup_factor=0.01,
)

train.init_checkpoint = ""
train.device = "cpu"
train.seed = 0
train.eval_period = 300
train.log_period = 20
train.checkpointer.period = 1000  # > max_iter: only model_final.pth is written
train.output_dir = "./output/tiny_cpu/lite_h_detr"
dataloader.evaluator.output_dir = "${...train.output_dir}"
