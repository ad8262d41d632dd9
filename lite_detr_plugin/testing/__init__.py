"""Helpers for tests and benchmarks: detrex-shaped encoder inputs and module utilities.

Nothing here needs detectron2 or detrex; the inputs are written out from detrex's code.
"""
from .detrex_inputs import (
    COCO_800x1333_SHAPES,
    detrex_encoder_kwargs,
    encoder_reference_points,
    feature_shapes,
    image_masks,
    level_layout,
    level_masks,
    num_tokens,
    sine_position_embedding,
    valid_ratios,
)
from .fake_detrex import FakeDetrexMSDA, detrex_transformer_init, hide_detrex, install_fake_detrex
from .modules import missing_gradients, perturb_parameters_

__all__ = [
    "COCO_800x1333_SHAPES",
    "detrex_encoder_kwargs",
    "encoder_reference_points",
    "feature_shapes",
    "image_masks",
    "level_layout",
    "level_masks",
    "num_tokens",
    "sine_position_embedding",
    "valid_ratios",
    "FakeDetrexMSDA",
    "detrex_transformer_init",
    "hide_detrex",
    "install_fake_detrex",
    "missing_gradients",
    "perturb_parameters_",
]
