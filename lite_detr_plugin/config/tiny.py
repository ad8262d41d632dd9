"""Config edits that make a detrex DETR config small enough to train on a CPU in minutes.

The projects' ``configs/tiny_cpu`` configs are a base config plus
:func:`tiny_cpu` (and the model's own query counts). The pieces are usable alone:
:func:`tiny_resnet_backbone`, :func:`tiny_transformer` (model),
:func:`synthetic_dataloader` (data), :func:`tiny_schedule` (optimizer, schedule,
``train``). detectron2 is imported inside the functions.
"""
from typing import Optional, Sequence

from ..data.synthetic import DATASET_NAME, register_synthetic_dataset

__all__ = ["tiny_cpu", "tiny_resnet_backbone", "tiny_transformer", "synthetic_dataloader", "tiny_schedule"]


def tiny_cpu(model, dataloader, optimizer, train, *, output_dir: str, num_classes: int = 3, depth: int = 18,
             feedforward_dim: int = 512, num_decoder_layers: int = 3, batch_size: int = 4, num_workers: int = 1,
             max_iter: int = 300, lr: float = 2e-4):
    """Makes a loaded detrex DINO / H-DETR / Deformable DETR config tiny and CPU-bound, in place.

    * model: a random ResNet-``depth`` with GroupNorm (:func:`tiny_resnet_backbone`),
      FFNs of ``feedforward_dim`` and ``num_decoder_layers`` decoder layers
      (:func:`tiny_transformer`), ``num_classes`` classes (in the criterion too), CPU;
    * data: the synthetic shapes dataset at ~128 px (:func:`synthetic_dataloader`),
      evaluated into ``train.output_dir``;
    * optimisation: :func:`tiny_schedule` (warm-up over the first 1/15 of
      ``max_iter``, ×0.1 after 5/6 of it: 20 and 250 of 300).

    The query counts differ per detector, so the configs set them. Returns the
    ``lr_multiplier`` config the config file must export.
    """
    tiny_resnet_backbone(model, depth=depth)
    tiny_transformer(model, feedforward_dim=feedforward_dim, num_decoder_layers=num_decoder_layers)
    model.num_classes = num_classes
    criterion = model.get("criterion")
    if criterion is not None and "num_classes" in criterion and not _is_interpolation(criterion.num_classes):
        criterion.num_classes = num_classes  # DINO's follows model.num_classes through "${..num_classes}"
    model.device = "cpu"
    synthetic_dataloader(dataloader, batch_size=batch_size, num_workers=num_workers)
    dataloader.evaluator.output_dir = "${...train.output_dir}"
    return tiny_schedule(optimizer, train, output_dir=output_dir, max_iter=max_iter, lr=lr,
                         warmup_iters=max(1, max_iter // 15), decay_at=max_iter * 5 // 6)


def _is_interpolation(value) -> bool:
    return isinstance(value, str) and value.startswith("${")


def tiny_schedule(optimizer, train, *, output_dir: str, max_iter: int = 300, lr: float = 2e-4, warmup_iters: int = 20,
                  decay_at: int = 250, seed: int = 0, eval_period: Optional[int] = None, log_period: int = 20,
                  checkpoint_period: int = 1000):
    """A short schedule from scratch on the CPU, in place; returns the ``lr_multiplier`` config.

    The config's optimizer (detrex: AdamW) at ``lr`` for every parameter (the
    backbone trains from scratch: no backbone factor), linear warm-up over
    ``warmup_iters``, ×0.1 at ``decay_at``;
    ``train``: no initial checkpoint, CPU, ``seed``, evaluation at the end (every
    ``eval_period``, default ``max_iter``), a checkpoint every ``checkpoint_period``
    (more than ``max_iter``: only ``model_final.pth`` is written).
    """
    if not 0 < warmup_iters < decay_at < max_iter:
        raise ValueError(
            f"tiny_schedule needs 0 < warmup_iters < decay_at < max_iter, got {warmup_iters}, {decay_at}, {max_iter}"
        )
    from detectron2.config import LazyCall as L
    from detectron2.solver import WarmupParamScheduler
    from fvcore.common.param_scheduler import MultiStepParamScheduler

    optimizer.lr = lr
    optimizer.params.lr_factor_func = None  # 1 for every parameter
    train.max_iter = max_iter
    train.init_checkpoint = ""
    train.device = "cpu"
    train.seed = seed
    train.eval_period = max_iter if eval_period is None else eval_period
    train.log_period = log_period
    train.checkpointer.period = checkpoint_period
    train.output_dir = output_dir
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[decay_at, max_iter]),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=0.01,
    )


def tiny_resnet_backbone(model, depth: int = 18, norm: str = "GN"):
    """Replaces ``model.backbone`` (a LazyCall config) with a randomly initialised
    detectron2 ResNet-``depth`` (18 or 34: basic blocks), trainable from the stem
    (``freeze_at=0``), with GroupNorm (batch statistics are useless at batch 2-4),
    and adapts the ChannelMapper neck's input channels (res3/res4/res5: 128/256/512).
    Returns ``model``.
    """
    if depth not in (18, 34):
        raise ValueError(f"tiny_resnet_backbone builds ResNet-18 or -34, got depth={depth}")
    from detectron2.config import LazyCall as L
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import BasicStem, ResNet

    model.backbone = L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm=norm),
        stages=L(ResNet.make_default_stages)(depth=depth, norm=norm),
        out_features=["res3", "res4", "res5"],
        freeze_at=0,
    )
    model.neck.input_shapes = {
        "res3": ShapeSpec(channels=128),
        "res4": ShapeSpec(channels=256),
        "res5": ShapeSpec(channels=512),
    }
    model.neck.in_features = ["res3", "res4", "res5"]
    return model


def tiny_transformer(model, feedforward_dim: int = 512, num_decoder_layers=None):
    """Slims a detrex DINO / H-DETR / Deformable DETR model config, in place.

    Sets the FFN width of the encoder and the decoder and, optionally, the number
    of decoder layers (detrex's auxiliary-loss weights for the dropped layers are
    then simply unused). The width (256) stays: detrex's DINO decoder hard-codes
    it in its sine query embedding. Returns ``model``.
    """
    model.transformer.encoder.feedforward_dim = feedforward_dim
    decoder = model.transformer.decoder
    decoder.feedforward_dim = feedforward_dim
    if num_decoder_layers is not None:
        decoder.num_layers = num_decoder_layers
    return model


def synthetic_dataloader(
    dataloader,
    *,
    root: Optional[str] = None,
    name: str = DATASET_NAME,
    train_short_edges: Sequence[int] = (112, 128, 144),
    test_short_edge: int = 128,
    max_size: int = 192,
    batch_size: int = 4,
    num_workers: int = 1,
    **dataset_kwargs,
):
    """Edits a detrex ``dataloader`` config (``common/data/coco_detr.py`` layout) in place.

    Registers (and, when missing, generates) the synthetic dataset, then trains on
    ``<name>_train`` with random flips and a random short edge from
    ``train_short_edges`` (no cropping branch), and tests and evaluates with
    detectron2's COCOEvaluator on ``<name>_val`` at ``test_short_edge``.
    ``dataset_kwargs`` go to :func:`generate_synthetic_coco`. Returns ``dataloader``.
    """
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    train_name, val_name = register_synthetic_dataset(root, name=name, **dataset_kwargs)
    dataloader.train.dataset.names = train_name
    dataloader.train.mapper.augmentation = [
        L(T.RandomFlip)(),
        L(T.ResizeShortestEdge)(short_edge_length=tuple(train_short_edges), max_size=max_size, sample_style="choice"),
    ]
    dataloader.train.mapper.augmentation_with_crop = None
    dataloader.train.total_batch_size = batch_size
    dataloader.train.num_workers = num_workers
    dataloader.test.dataset.names = val_name
    dataloader.test.mapper.augmentation = [L(T.ResizeShortestEdge)(short_edge_length=test_short_edge, max_size=max_size)]
    dataloader.test.num_workers = num_workers
    dataloader.evaluator.dataset_name = val_name
    return dataloader
