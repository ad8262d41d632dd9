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
import contextlib
import errno
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

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
MAX_OBJECTS = 100  # placement tries 50 boxes per wanted shape: more would only be slow
MAX_IMAGES = 1_000_000  # per split; a larger count is a typo, not hours of PNG writing


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
    non-empty folder that is not such a dataset raises ``FileExistsError``.
    Several processes may call this at once (the ranks of a multi-process
    training): a lock file beside ``root`` lets one generate while the others
    wait and then find its dataset. The files are written into a temporary
    sibling folder and renamed into place, so no reader ever sees a half-written
    set, and where the lock is unavailable every outcome of the race (root
    appearing, disappearing or replaced meanwhile) ends in one complete dataset.

    Raises:
        ValueError: a parameter out of range (the message names it).
    """
    root = os.path.abspath(root or default_synthetic_root())
    _check_parameters(num_train, num_val, image_size, seed, max_objects, min_size)
    height, width = (int(s) for s in image_size)
    parameters = _parameters(num_train, num_val, (height, width), seed, max_objects, min_size)
    if _matches(root, parameters):
        return root
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with _exclusive(os.path.join(parent, f".{os.path.basename(root)}.lock")):
        if _matches(root, parameters):  # another process generated it while we waited
            return root
        _refuse_foreign(root)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
        try:
            _write_dataset(staging, parameters)
            _move_into_place(staging, root, parameters)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def _check_parameters(num_train, num_val, image_size, seed, max_objects, min_size) -> None:
    for name, value in (("num_train", num_train), ("num_val", num_val), ("max_objects", max_objects),
                        ("min_size", min_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if not 1 <= value <= MAX_IMAGES:
            raise ValueError(f"{name} must be in [1, {MAX_IMAGES:,}], got {value}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects must be in [1, {MAX_OBJECTS}], got {max_objects}")
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (H, W), got {image_size!r}") from None
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or not 8 <= side <= 4096:
            raise ValueError(f"image_size must be two integers in [8, 4096], got {image_size!r}")
    if min_size < 2 or min_size >= min(height, width):
        raise ValueError(f"min_size must be in [2, min(image_size)), got {min_size} for {image_size}")


def _matches(root: str, parameters: Dict) -> bool:
    manifest = _read_manifest(root)
    return manifest is not None and manifest.get("parameters") == parameters


def _refuse_foreign(root: str) -> None:
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise FileExistsError(f"{root} exists and is a file, not a synthetic_shapes dataset") from None
    if entries and _read_manifest(root) is None:
        raise FileExistsError(
            f"{root} exists and is not a synthetic_shapes dataset (no manifest.json); "
            "choose another root or remove it"
        )


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    """An advisory lock across processes (POSIX ``flock``); a no-op where there is none."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the rename logic alone keeps it safe
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_dataset(folder: str, parameters: Dict) -> None:
    rng = np.random.default_rng(parameters["seed"])
    # One independent stream per split, so the val split does not depend on num_train.
    streams = dict(zip(SPLITS, rng.spawn(len(SPLITS))))
    for split in SPLITS:
        _write_split(folder, split, parameters[f"num_{split}"], streams[split], parameters)
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"parameters": parameters}, f, sort_keys=True, indent=1)
    os.chmod(folder, 0o755)


def _move_into_place(staging: str, root: str, parameters: Dict) -> None:
    """Renames the complete ``staging`` folder to ``root``, whatever another process did meanwhile."""
    for _attempt in range(5):
        if _matches(root, parameters):
            return  # someone else's identical dataset is already in place
        # Move an old dataset (ours, other parameters) or an empty folder out of the way atomically.
        if os.path.isdir(root):
            _refuse_foreign(root)
            trash = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.old-", dir=os.path.dirname(root))
            try:
                os.rename(root, os.path.join(trash, "dataset"))
            except FileNotFoundError:
                pass  # removed by another process: fine
            finally:
                shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(staging, root)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # root reappeared between our move and our rename: look again
    if not _matches(root, parameters):
        raise RuntimeError(f"could not move the synthetic dataset into {root}: it keeps being replaced")


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
