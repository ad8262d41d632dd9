"""``lite-detr-visualize``: Lite DETR's Fig. 5 (where KDA looks) for any model and image, as a PNG.

    lite-detr-visualize --config-file projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py \\
        --input image.png --output fig5.png train.init_checkpoint=model_final.pth \\
        [--point X,Y] [--compare SKIPSCALE_CFG_OR_PTH] [--compare-config-file CFG --compare-checkpoint PTH]

The weights come from the model's own forward (:class:`AttentionRecorder`). The
query of panel (a) is the S1 token under ``--point`` (image pixels) or, by
default, under the centre of the highest-scoring detection. ``--compare`` adds a
second model (another config or checkpoint; ``--compare-config-file`` and
``--compare-checkpoint`` for both): the rows are ordered MSDA (deformable) above
KDA, as in the paper.
"""
import argparse
import os
from typing import List, Optional, Sequence, Tuple

import torch

from .attention_figure import KIND_NAMES, FigureRow, ImageGeometry, draw_figure, query_for_point, select_record
from .predictor import add_model_arguments, expand_inputs, load_model, output_path, parse_args, prepare_image, read_rgb
from .recorder import AttentionRecorder

__all__ = ["record_attention", "main"]


def record_attention(model, inputs, include="encoder"):
    """Runs ``model(inputs)`` once with an :class:`AttentionRecorder`.

    Returns ``(outputs, records, padded_size)``: the model's outputs, the recorded calls and the
    ``(H, W)`` of the tensor the backbone saw (the input size when the model has no ``backbone``).
    """
    padded = {}

    def remember_size(module, args):
        padded.setdefault("size", tuple(args[0].shape[-2:]))  # returns None: the input is unchanged

    handle = model.backbone.register_forward_pre_hook(remember_size) if hasattr(model, "backbone") else None
    try:
        with torch.no_grad(), AttentionRecorder(model, include) as recorder:
            outputs = model(inputs)
    finally:
        if handle is not None:
            handle.remove()
    return outputs, recorder.records, padded.get("size")


def _top_detection_centre(outputs) -> Optional[Tuple[float, float]]:
    instances = outputs[0].get("instances") if isinstance(outputs, list) and isinstance(outputs[0], dict) else None
    if instances is None or len(instances) == 0:
        return None
    box = instances.pred_boxes.tensor[instances.scores.argmax()].tolist()
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _parse_point(text: Optional[str]) -> Optional[Tuple[float, float]]:
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--point must be X,Y in image pixels (e.g. 120,64), got {text!r}") from None
    return x, y


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lite-detr-visualize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--point", help="X,Y in image pixels: the query of panel (a) (default: top detection's centre)")
    parser.add_argument("--layer", type=int, help="which recorded encoder attention call (default: the last one "
                                                   "whose queries include the S1 tokens)")
    parser.add_argument("--compare", metavar="FILE",
                        help="a second model: its config (.py/.yaml) or its checkpoint (.pth/.pkl, same config); "
                             "shorthand for --compare-config-file / --compare-checkpoint")
    parser.add_argument("--compare-config-file", help="a second model's config (default: --config-file)")
    parser.add_argument("--compare-checkpoint", help="a second model's weights (train.init_checkpoint)")
    parser.add_argument("--compare-opts", nargs="*", default=[], help="key=value overrides of the second model")
    parser.add_argument("--top-query", type=int, default=100, help="points in panel (a) (paper: 100)")
    parser.add_argument("--top-scale", type=int, default=200, help="points in panels (b), (c) (paper: 200)")
    return add_model_arguments(parser)


def _rows_for(cfg, model, image, point, layer, name) -> Tuple[List[FigureRow], ImageGeometry]:
    prepared = prepare_image(cfg, image)
    outputs, records, padded = record_attention(model, prepared.inputs)
    geometry = ImageGeometry(prepared.original_size, prepared.input_size, padded or prepared.input_size)
    if point is None:
        point = _top_detection_centre(outputs)
    if point is None:
        point = (prepared.original_size[1] / 2, prepared.original_size[0] / 2)
    token, query_xy = query_for_point(records[-1], geometry, point)
    rows = []
    for kind in ("msda", "kda"):  # the paper's order: deformable attention above KDA
        of_kind = [r for r in records if r.kind == kind]
        if of_kind:
            record = select_record(of_kind, token, layer)
            rows.append(FigureRow(f"{name}: {KIND_NAMES[kind]}", record, token, query_xy))
    return rows, geometry


def _split_compare(args: argparse.Namespace) -> None:
    """``--compare FILE`` -> ``compare_config_file`` or ``compare_checkpoint``, by the file's extension."""
    extension = os.path.splitext(args.compare)[1].lower()
    if extension in (".py", ".yaml", ".yml"):
        target = "compare_config_file"
    elif extension in (".pth", ".pkl", ".pt"):
        target = "compare_checkpoint"
    else:
        raise ValueError(f"--compare {args.compare!r}: give a config (.py/.yaml) or a checkpoint (.pth/.pkl)")
    if getattr(args, target):
        raise ValueError(f"--compare {args.compare!r} and --{target.replace('_', '-')} both name the second model's "
                         f"{'config' if target == 'compare_config_file' else 'checkpoint'}; give one")
    setattr(args, target, args.compare)


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Draws the figure for every input; returns the paths written."""
    args = parse_args(build_parser(), argv)
    if args.compare:
        _split_compare(args)
    point = _parse_point(args.point)
    paths = expand_inputs(args.input)
    models = [("model", *load_model(args.config_file, args.opts, args.device, args.allow_random_weights))]
    if args.compare_config_file or args.compare_checkpoint or args.compare_opts:
        opts = list(args.opts) + list(args.compare_opts)
        if args.compare_checkpoint:
            opts.append(f"train.init_checkpoint={args.compare_checkpoint}")
        models.append(("compared", *load_model(args.compare_config_file or args.config_file, opts, args.device,
                                               args.allow_random_weights)))
    written = []
    for path in paths:
        image = read_rgb(path)
        rows, geometry = [], None
        for name, cfg, model in models:
            model_rows, geometry = _rows_for(cfg, model, image, point, args.layer, name)
            rows += model_rows
        rows.sort(key=lambda row: 0 if row.record.kind == "msda" else 1)
        target = output_path(args.output, path, len(paths))
        draw_figure(image, rows, geometry, target, args.top_query, args.top_scale)
        print(f"{path}: {len(rows)} row(s) ({', '.join(r.label for r in rows)}) -> {target}")
        written.append(target)
    return written


if __name__ == "__main__":
    main()
