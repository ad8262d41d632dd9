"""Config edits that make a detrex DETR model small enough to train on a CPU in minutes.

Used by the projects' ``configs/tiny_cpu`` configs. detectron2 is imported inside
the functions.
"""

__all__ = ["tiny_resnet_backbone", "tiny_transformer"]


def tiny_resnet_backbone(model, depth: int = 18, norm: str = "GN"):
    """Replaces ``model.backbone`` (a LazyCall config) with a randomly initialised
    detectron2 ResNet-``depth`` (18 or 34: basic blocks), trainable from the stem
    (``freeze_at=0``), with GroupNorm (batch statistics are useless at batch 2-4),
    and adapts the ChannelMapper neck's input channels (res3/res4/res5: 128/256/512).
    Returns ``model``.
    """
    from detectron2.config import LazyCall as L
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import BasicStem, ResNet

    if depth not in (18, 34):
        raise ValueError(f"tiny_resnet_backbone builds ResNet-18 or -34, got depth={depth}")
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
