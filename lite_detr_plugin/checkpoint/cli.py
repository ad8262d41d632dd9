"""Command line of ``lite-detr-convert`` (and ``tools/convert_checkpoint.py``)."""
import argparse
import json
import sys
from typing import Optional, Sequence

from .conversion import convert, layout_of, save_detectron2_checkpoint
from .released import extract_state_dict, infer_variant, variant_from_name
from .rules import CLASS_MAPS, ConversionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a released Lite-DETR checkpoint (IDEA-Research/Lite-DETR: r50_s2ex3, r50_s3ex1, "
        "r50_s3ex3) into a detrex Lite-DINO checkpoint usable as train.init_checkpoint.",
    )
    parser.add_argument("--input", required=True, help="the released .pth (its ['model'] state dict)")
    parser.add_argument("--output", help="where to write {'model': state_dict}; omit with --dry-run")
    parser.add_argument(
        "--variant", default="auto",
        help="'auto' (A and B from the weights, H from --num-high-levels or an s<H>ex<B> file name) or e.g. "
        "'H3L1-(2+1)x3'",
    )
    parser.add_argument("--num-high-levels", type=int, help="H (Lite-DETR's enc_scale) for --variant auto")
    parser.add_argument(
        "--config-file",
        help="a Lite-DINO LazyConfig: build its model (needs detrex), check its encoder against the checkpoint, "
        "convert to its exact state-dict layout and load the result with strict=True",
    )
    parser.add_argument("--opts", nargs="*", default=[], help="key=value overrides for --config-file")
    parser.add_argument("--target-keys", help="a JSON {name: shape} of the target model, instead of a config")
    parser.add_argument(
        "--class-map", choices=CLASS_MAPS, default="coco80",
        help="coco80 (default): keep the rows of the 80 COCO categories (detrex's COCO, num_classes=80); "
        "none: keep the class rows as they are (a model with num_classes=91)",
    )
    parser.add_argument("--checkpoint-key", default="auto", help="the checkpoint entry holding the model (auto)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="write what converted even if keys are unmapped, missing or mis-shaped (listed)")
    parser.add_argument("--dry-run", action="store_true", help="convert and report, write nothing")
    parser.add_argument("--verbose", action="store_true", help="print every source -> target pair")
    return parser


def _variant(state_dict, args, model):
    """The checkpoint's variant; H from --variant, --num-high-levels, the file name, or else the config."""
    num_high_levels = args.num_high_levels
    how_h = None
    if (model is not None and args.variant in (None, "auto") and num_high_levels is None
            and variant_from_name(args.input) is None):
        from .detrex_target import find_lite_encoder

        encoder = find_lite_encoder(model)
        if encoder is not None and encoder.lite is not None:
            num_high_levels, how_h = encoder.lite.num_high_levels, "the config"
    variant, how = infer_variant(state_dict, args.variant, num_high_levels=num_high_levels, name_hint=args.input)
    if how_h is not None:
        how = how.replace("H from num_high_levels", f"H from {how_h}")
    return variant, how


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.output and not args.dry_run:
        print("error: --output is required (or --dry-run)", file=sys.stderr)
        return 2
    if args.config_file and args.target_keys:
        print("error: give --config-file or --target-keys, not both", file=sys.stderr)
        return 2

    import torch

    checkpoint = torch.load(args.input, map_location="cpu", weights_only=False)
    state_dict = extract_state_dict(checkpoint, args.checkpoint_key)

    model, target, target_source = None, None, None
    if args.config_file:
        from .detrex_target import build_model_from_config

        model = build_model_from_config(args.config_file, args.opts)
        target, target_source = layout_of(model.state_dict()), f"model built from {args.config_file}"
    elif args.target_keys:
        with open(args.target_keys) as f:
            target, target_source = json.load(f), args.target_keys

    try:
        variant, how = _variant(state_dict, args, model)
        if model is not None:
            from .detrex_target import check_model

            problems = check_model(model, variant.name)
            if problems:
                kind = "WARNING (--allow-partial)" if args.allow_partial else "error"
                print(f"{kind}: the config's model does not compute what the checkpoint's does:\n  "
                      + "\n  ".join(problems), file=sys.stderr)
                if not args.allow_partial:
                    return 1
        converted, report = convert(
            state_dict, variant, target=target, target_source=target_source, class_map=args.class_map,
            allow_partial=args.allow_partial,
        )
        report.variant_source = how
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if model is not None:
        from .detrex_target import position_embedding_warnings

        for warning in position_embedding_warnings(model):
            print(f"WARNING: {warning}", file=sys.stderr)
        incompatible = model.load_state_dict(converted, strict=not args.allow_partial)
        report.notes.append(
            "loaded into the config's model with strict=True" if report.ok and not args.allow_partial
            else f"loaded into the config's model: {len(incompatible.missing_keys)} missing, "
            f"{len(incompatible.unexpected_keys)} unexpected"
        )

    print(report.format() if not report.ok or args.verbose else report.summary())
    if args.verbose:
        for source, new in report.mapped:
            print(f"  {source} -> {new}")
    if not report.ok:
        print(f"WARNING: partial conversion (--allow-partial): {len(converted)} keys written, problems above",
              file=sys.stderr)
    if args.dry_run:
        return 0
    save_detectron2_checkpoint(converted, args.output, report, source=args.input)
    print(f"wrote {args.output} ({len(converted)} tensors)")
    return 0
