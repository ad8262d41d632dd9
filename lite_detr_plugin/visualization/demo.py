"""``lite-detr-demo``: detections of a Lite DETR (or any detrex) model on your images.

    lite-detr-demo --config-file projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py \\
        --input images/ --output out/ train.init_checkpoint=output/tiny_cpu/lite_dino/model_final.pth

Each image goes through the config's test-time resize, the model (eval mode,
``--device``, CPU by default), and detectron2's ``Visualizer`` with the test
dataset's class names; boxes scoring below ``--confidence-threshold`` are not
drawn. The time per image is printed. Without a checkpoint the demo refuses to
run unless ``--allow-random-weights``.
"""
import argparse
import time
from typing import List, Optional, Sequence

import numpy as np
import torch

from .predictor import (
    add_model_arguments,
    dataset_metadata,
    expand_inputs,
    load_model,
    output_path,
    parse_args,
    prepare_image,
    read_rgb,
)

__all__ = ["draw_detections", "main"]


def draw_detections(image_rgb: np.ndarray, instances, metadata, confidence_threshold: float) -> np.ndarray:
    """detectron2's Visualizer drawing of the instances scoring at least ``confidence_threshold``."""
    from detectron2.utils.visualizer import Visualizer

    instances = instances.to("cpu")
    instances = instances[instances.scores >= confidence_threshold]
    visualizer = Visualizer(image_rgb, metadata=metadata)
    return visualizer.draw_instance_predictions(instances).get_image()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lite-detr-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="lowest score drawn (default 0.5)")
    return add_model_arguments(parser)


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Runs the demo; returns the paths written."""
    from PIL import Image

    args = parse_args(build_parser(), argv)
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    paths = expand_inputs(args.input)
    cfg, model = load_model(args.config_file, args.opts, args.device, args.allow_random_weights)
    metadata = dataset_metadata(cfg)
    written = []
    for path in paths:
        image = read_rgb(path)
        prepared = prepare_image(cfg, image)
        start = time.perf_counter()
        with torch.no_grad():
            instances = model(prepared.inputs)[0]["instances"]
        seconds = time.perf_counter() - start
        kept = int((instances.scores >= args.confidence_threshold).sum())
        print(f"{path}: {kept} detections ≥ {args.confidence_threshold:g} in {seconds * 1e3:.0f} ms "
              f"({prepared.input_size[1]}×{prepared.input_size[0]} input, {args.device})")
        drawing = draw_detections(image, instances, metadata, args.confidence_threshold)
        target = output_path(args.output, path, len(paths))
        Image.fromarray(drawing).save(target)
        written.append(target)
    return written


if __name__ == "__main__":
    main()
