"""Config edits that point a detrex dataloader config at the synthetic dataset at a tiny size.

Used by the projects' ``configs/tiny_cpu`` configs. detectron2 is imported inside
the functions.
"""
from typing import Optional, Sequence

from .synthetic import DATASET_NAME, register_synthetic_dataset

__all__ = ["synthetic_dataloader"]


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
