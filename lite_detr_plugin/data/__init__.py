"""Datasets for trying the projects without COCO (numpy + Pillow; detectron2 only to register)."""
from .synthetic import (
    CATEGORIES,
    DATASET_NAME,
    default_synthetic_root,
    generate_synthetic_coco,
    register_synthetic_dataset,
    synthetic_dataset_exists,
)

__all__ = [
    "CATEGORIES",
    "DATASET_NAME",
    "default_synthetic_root",
    "generate_synthetic_coco",
    "register_synthetic_dataset",
    "synthetic_dataset_exists",
]
