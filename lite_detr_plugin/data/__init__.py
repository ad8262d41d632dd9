"""Datasets for trying the projects without COCO (numpy + Pillow; detectron2 only to register)."""
from .synthetic import (
    CATEGORIES,
    DATASET_NAME,
    default_synthetic_root,
    generate_synthetic_coco,
    register_synthetic_dataset,
    synthetic_dataset_exists,
)
from .tiny import synthetic_dataloader

__all__ = [
    "synthetic_dataloader",
    "CATEGORIES",
    "DATASET_NAME",
    "default_synthetic_root",
    "generate_synthetic_coco",
    "register_synthetic_dataset",
    "synthetic_dataset_exists",
]
