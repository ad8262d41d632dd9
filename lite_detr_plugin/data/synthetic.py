"""A small synthetic COCO-format detection dataset: coloured shapes on noise.

Each image is Gaussian noise (grey levels kept within [50, 205]) with 1 to
``max_objects`` non-overlapping filled shapes (rectangle, ellipse, triangle) of
random size, position and colour. Every colour has at least one channel outside
[50, 205], so no background pixel ever has exactly a shape's colour.
Annotations are exact: each box is the extent of the pixels drawn for its shape
(COCO ``[x, y, w, h]``, pixel ``i`` covering ``[i, i + 1)``), ``area`` their
count, ``iscrowd`` 0; each annotation also records its ``color``.

Layout under ``root``::

    train/000000.png ...            val/000000.png ...
    annotations/instances_train.json  annotations/instances_val.json
    manifest.json                   (the generation parameters; written last)

Generation is deterministic (same seed and parameters, same bytes) and
idempotent (an existing dataset with the same parameters is kept). Only numpy,
Pillow and json are needed; :func:`register_synthetic_dataset` imports detectron2.
"""
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "CATEGORIES",
    "DATASET_NAME",
    "default_synthetic_root",
    "generate_synthetic_coco",
    "register_synthetic_dataset",
    "synthetic_dataset_exists",
]

FORMAT_VERSION = 1
DATASET_NAME = "synthetic_shapes"
CATEGORIES = (
    {"id": 1, "name": "rectangle", "supercategory": "shape"},
    {"id": 2, "name": "ellipse", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
)
BACKGROUND_RANGE = (50, 205)  # background grey levels; shape colours leave it in one channel
SPLITS = ("train", "val")


def default_synthetic_root() -> str:
    """``$LITE_DETR_DATASETS/synthetic_shapes``, by default ``./datasets/synthetic_shapes``."""
    return os.path.join(os.environ.get("LITE_DETR_DATASETS", "./datasets"), DATASET_NAME)


def _parameters(num_train, num_val, image_size, seed, max_objects, min_size) -> Dict:
    return {
        "format_version": FORMAT_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
        "max_objects": int(max_objects),
        "min_size": int(min_size),
    }


def _read_manifest(root: str) -> Optional[Dict]:
    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def synthetic_dataset_exists(root: str, **parameters) -> bool:
    """Whether ``root`` holds a complete dataset generated with these parameters
    (keywords of :func:`generate_synthetic_coco`, defaults filled in)."""
    manifest = _read_manifest(root)
    return manifest is not None and manifest.get("parameters") == _parameters(**_with_defaults(parameters))


def _with_defaults(parameters: Dict) -> Dict:
    merged = dict(num_train=300, num_val=50, image_size=(128, 160), seed=0, max_objects=4, min_size=16)
    unknown = set(parameters) - set(merged)
    if unknown:
        raise TypeError(f"unknown dataset parameters: {sorted(unknown)}")
    merged.update(parameters)
    return merged


def _random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    colour = rng.integers(0, 256, size=3)
    channel = int(rng.integers(0, 3))
    low, high = BACKGROUND_RANGE
    colour[channel] = int(rng.integers(0, low)) if rng.random() < 0.5 else int(rng.integers(high + 1, 256))
    return tuple(int(c) for c in colour)


def _overlaps(box: Sequence[int], boxes: List[Sequence[int]], margin: int = 2) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if x0 <= a1 + margin and a0 <= x1 + margin and y0 <= b1 + margin and b0 <= y1 + margin:
            return True
    return False


def _draw_shape(draw: ImageDraw.ImageDraw, category: int, box: Sequence[int], fill, rng: np.random.Generator):
    x0, y0, x1, y1 = box  # inclusive pixel corners
    if category == 1:
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif category == 2:
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    else:
        apex = x0 + int(rng.integers(0, x1 - x0 + 1))
        draw.polygon([(apex, y0), (x1, y1), (x0, y1)], fill=fill)


def _make_image(rng: np.random.Generator, height: int, width: int, max_objects: int, min_size: int):
    low, high = BACKGROUND_RANGE
    mean = rng.uniform(low + 30, high - 30, size=3)
    noise = rng.normal(mean, 25.0, size=(height, width, 3))
    image = Image.fromarray(np.clip(np.rint(noise), low, high).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    max_size = max(min_size + 1, int(0.6 * min(height, width)))
    wanted = int(rng.integers(1, max_objects + 1))
    boxes: List[Tuple[int, int, int, int]] = []
    objects = []
    for _ in range(wanted):
        for _attempt in range(50):
            w = int(rng.integers(min_size, max_size + 1))
            h = int(rng.integers(min_size, max_size + 1))
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            box = (x0, y0, x0 + w - 1, y0 + h - 1)
            if not _overlaps(box, boxes):
                break
        else:
            continue
        category = int(rng.integers(1, len(CATEGORIES) + 1))
        colour = _random_colour(rng)
        # Draw the shape alone into a mask to get its exact extent and area.
        mask = Image.new("L", (width, height), 0)
        shape_rng_state = rng.bit_generator.state
        _draw_shape(ImageDraw.Draw(mask), category, box, 255, rng)
        rng.bit_generator.state = shape_rng_state  # the same random apex for the real drawing
        _draw_shape(draw, category, box, colour, rng)
        pixels = np.asarray(mask) > 0
        ys, xs = np.nonzero(pixels)
        if len(xs) == 0:
            continue
        boxes.append(box)
        objects.append(
            {
                "category_id": category,
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                "area": int(pixels.sum()),
                "iscrowd": 0,
                "color": list(colour),
            }
        )
    return image, objects


def _write_split(root: str, split: str, count: int, rng: np.random.Generator, parameters: Dict) -> None:
    height, width = parameters["image_size"]
    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image, objects = _make_image(rng, height, width, parameters["max_objects"], parameters["min_size"])
        file_name = f"{index:06d}.png"
        image.save(os.path.join(root, split, file_name), format="PNG", optimize=False)
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **obj})
    coco = {
        "info": {"description": "lite_detr_plugin synthetic shapes", "version": str(FORMAT_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as f:
        json.dump(coco, f, sort_keys=True, separators=(",", ":"))


def generate_synthetic_coco(
    root: Optional[str] = None,
    num_train: int = 300,
    num_val: int = 50,
    image_size: Tuple[int, int] = (128, 160),
    seed: int = 0,
    max_objects: int = 4,
    min_size: int = 16,
) -> str:
    """Writes the dataset under ``root`` (default :func:`default_synthetic_root`) unless
    it is already there with the same parameters. Returns the absolute root.

    Args:
        num_train, num_val: images per split.
        image_size: (H, W) of every image.
        seed: the only source of randomness; the same seed gives the same bytes.
        max_objects: at most this many shapes per image (at least one).
        min_size: smallest box side in pixels (the largest is 60% of the shorter side).

    A dataset generated with other parameters by this function is replaced; a
    non-empty folder that is not such a dataset raises ``FileExistsError``. The
    files are written into a temporary sibling folder and moved into place, so
    concurrent callers (several training processes) never see a half-written set.
    """
    root = os.path.abspath(root or default_synthetic_root())
    height, width = (int(s) for s in image_size)
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if min_size < 2 or min_size >= min(height, width):
        raise ValueError(f"min_size must be in [2, min(image_size)), got {min_size} for {image_size}")
    parameters = _parameters(num_train, num_val, (height, width), seed, max_objects, min_size)
    manifest = _read_manifest(root)
    if manifest is not None and manifest.get("parameters") == parameters:
        return root
    if os.path.isdir(root) and os.listdir(root) and manifest is None:
        raise FileExistsError(
            f"{root} exists and is not a synthetic_shapes dataset (no manifest.json); "
            "choose another root or remove it"
        )

    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        rng = np.random.default_rng(seed)
        # One independent stream per split, so the val split does not depend on num_train.
        streams = dict(zip(SPLITS, rng.spawn(len(SPLITS))))
        for split, count in (("train", num_train), ("val", num_val)):
            _write_split(staging, split, count, streams[split], parameters)
        with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump({"parameters": parameters}, f, sort_keys=True, indent=1)
        os.chmod(staging, 0o755)
        if manifest is not None:  # ours, with other parameters: replace it
            shutil.rmtree(root, ignore_errors=True)
        elif os.path.isdir(root):
            os.rmdir(root)  # empty
        try:
            os.rename(staging, root)
        except OSError:
            # Someone else finished first; keep theirs if it matches.
            if not synthetic_dataset_exists(root, **_public(parameters)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _public(parameters: Dict) -> Dict:
    return dict(
        num_train=parameters["num_train"],
        num_val=parameters["num_val"],
        image_size=tuple(parameters["image_size"]),
        seed=parameters["seed"],
        max_objects=parameters["max_objects"],
        min_size=parameters["min_size"],
    )


def register_synthetic_dataset(
    root: Optional[str] = None, name: str = DATASET_NAME, generate: bool = True, **generate_kwargs
) -> Tuple[str, str]:
    """Registers ``<name>_train`` and ``<name>_val`` with detectron2 (COCO instances).

    Generates the dataset first when ``generate`` (the default) and it is missing
    (keywords of :func:`generate_synthetic_coco`). Registering again with the same
    files is a no-op; with other files the names are re-registered. Returns the two
    dataset names.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    root = os.path.abspath(root or default_synthetic_root())
    if generate:
        generate_synthetic_coco(root, **generate_kwargs)
    names = []
    for split in SPLITS:
        dataset = f"{name}_{split}"
        json_file = os.path.join(root, "annotations", f"instances_{split}.json")
        image_root = os.path.join(root, split)
        if dataset in DatasetCatalog.list():
            metadata = MetadataCatalog.get(dataset)
            if getattr(metadata, "json_file", None) == json_file and getattr(metadata, "image_root", None) == image_root:
                names.append(dataset)
                continue
            DatasetCatalog.remove(dataset)
            MetadataCatalog.remove(dataset)
        register_coco_instances(dataset, {}, json_file, image_root)
        names.append(dataset)
    return names[0], names[1]
