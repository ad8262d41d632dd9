"""What the demo and the attention figure share: a model from a LazyConfig, image inputs, metadata.

Follows detectron2/detrex's demo conventions (``--config-file``, ``--input`` files,
globs or folders, ``--output`` folder or file, ``--device``, ``key=value``
overrides). detectron2 is imported inside the functions.
"""
import argparse
import glob
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["Prepared", "add_model_arguments", "expand_inputs", "parse_args", "load_model", "output_path", "prepare_image",
           "read_rgb", "dataset_metadata"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options ``lite-detr-demo`` and ``lite-detr-visualize`` share."""
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="a Lite DETR project config or any detrex LazyConfig (path, or relative to this "
                             "repository or detrex's root)")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files, glob patterns ('images/*.jpg') or folders")
    parser.add_argument("--output", required=True,
                        help="a folder (one image per input, same name) or, for one input, a .png/.jpg file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="run without a checkpoint (train.init_checkpoint empty): the output is meaningless")
    parser.add_argument("opts", nargs="*", default=[],
                        help="key=value config overrides, e.g. train.init_checkpoint=output/model_final.pth "
                             "(anywhere on the line)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``parser.parse_intermixed_args`` (overrides may come before, between or after the options), with
    ``key=value`` overrides that followed ``--input`` moved to ``opts``."""
    args = parser.parse_intermixed_args(argv)
    inputs = [i for i in args.input if os.path.exists(i) or "=" not in i]
    args.opts = [i for i in args.input if i not in inputs] + list(args.opts or [])
    if not inputs:
        parser.error("--input: no image, folder or glob given")
    args.input = inputs
    return args


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Files, glob patterns and folders (their images, sorted) -> a list of image paths."""
    paths: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item) if n.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(p for p in glob.glob(os.path.expanduser(item)) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"--input {item!r}: no such image, folder with images, or matching glob")
        paths += found
    return paths


def output_path(output: str, input_path: str, num_inputs: int) -> str:
    """Where the drawing of ``input_path`` goes: ``output`` itself if it names a file, else a file in it."""
    if os.path.splitext(output)[1].lower() in IMAGE_EXTENSIONS and not os.path.isdir(output):
        if num_inputs != 1:
            raise ValueError(f"--output {output!r} is a file but there are {num_inputs} inputs; give a folder")
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return output
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, os.path.splitext(os.path.basename(input_path))[0] + ".png")


def load_model(config_file: str, opts: Sequence[str] = (), device: str = "cpu", allow_random_weights: bool = False):
    """``(cfg, model)``: the config with overrides, its model in eval mode with ``train.init_checkpoint`` loaded.

    Raises ValueError when the config names no checkpoint, unless ``allow_random_weights``.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    from ..flops.model import load_detrex_config

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")
    cfg = load_detrex_config(config_file, opts, device=device)
    checkpoint = cfg.train.get("init_checkpoint", "") if "train" in cfg else ""
    if not checkpoint and not allow_random_weights:
        raise ValueError(
            f"{config_file} sets no weights (train.init_checkpoint is empty): pass "
            "train.init_checkpoint=/path/to/model_final.pth, or --allow-random-weights to draw an untrained model"
        )
    model = instantiate(cfg.model).to(device).eval()
    if checkpoint:
        if not os.path.isfile(checkpoint) and "://" not in checkpoint:
            raise FileNotFoundError(f"train.init_checkpoint={checkpoint!r}: no such file")
        DetectionCheckpointer(model).load(checkpoint)
    return cfg, model


def read_rgb(path: str) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB (EXIF orientation applied)."""
    from detectron2.data.detection_utils import read_image

    return read_image(path, format="RGB")


@dataclass
class Prepared:
    """One image through the config's test-time resize: the model input and the geometry to draw back."""

    inputs: List[Dict[str, Any]]  # detectron2's batched inputs (one image)
    original_size: tuple  # (H, W) of the file
    input_size: tuple  # (H, W) after the test resize


def prepare_image(cfg, image_rgb: np.ndarray) -> Prepared:
    """Applies ``cfg.dataloader.test.mapper.augmentation`` (the resize) and the mapper's colour format."""
    import detectron2.data.transforms as T
    from detectron2.config import instantiate

    mapper = cfg.dataloader.test.mapper
    augmentations = [instantiate(a) for a in mapper.get("augmentation", [])]
    image = image_rgb[:, :, ::-1] if str(mapper.get("img_format", "RGB")).upper() == "BGR" else image_rgb
    aug_input = T.AugInput(np.ascontiguousarray(image))
    T.AugmentationList(augmentations)(aug_input)
    resized = aug_input.image
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    h, w = image_rgb.shape[:2]
    return Prepared([{"image": tensor, "height": h, "width": w}], (h, w), tuple(resized.shape[:2]))


def dataset_metadata(cfg, name: Optional[str] = None):
    """detectron2 metadata of the config's test dataset (class names), loading it once if needed."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name is None:
        names = cfg.dataloader.test.dataset.names if "dataloader" in cfg else None
        name = names if isinstance(names, str) else (names[0] if names else None)
    if name is None:
        return MetadataCatalog.get("__unused")
    metadata = MetadataCatalog.get(name)
    if not hasattr(metadata, "thing_classes") and name in DatasetCatalog.list():
        DatasetCatalog.get(name)  # a COCO-format registration sets thing_classes when loaded
    return metadata
