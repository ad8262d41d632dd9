"""``lite-detr-flops``: encoder GFLOPs of the paper's tables, or a whole detrex model's split.

Without ``--config-file`` (no detectron2/detrex needed) it builds the standard
DINO-size encoder and every Lite variant of the paper's Tables 4-6, counts them
with fvcore at one input size in three encoder modes (--modes; "paper": eq. (2)
with value_placement="output"; "paper_exact": eq. (2) with "auto"; "released":
the released code's layout with "tokens") and prints the comparison with the paper.
--counting picks the FLOP counting conventions ("paper": fvcore's; "full").

With ``--config-file`` (needs detectron2 and detrex) it counts a whole detector,
split into backbone / neck / encoder / decoder / other, at a fixed size or
averaged over the first images of a registered dataset.
"""
import argparse
import json
import sys
import warnings
from collections import Counter
from typing import List, Optional

from .encoder import size_argument
from .handles import COUNTINGS
from .specs import REPORT_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lite-detr-flops",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  lite-detr-flops                                   # the paper's table at 850x1040\n"
            "  lite-detr-flops --size 800x1333 --json rows.json --png chart.png\n"
            "  lite-detr-flops --modes paper                     # only the paper's accounting (faster)\n"
            "  lite-detr-flops --config-file projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py\n"
            "  lite-detr-flops --config-file \\\n"
            "      projects/lite_dino/configs/lite_dino_r50/lite_dino_r50_h3l1_2x3_12ep.py \\\n"
            "      model.transformer.encoder.low_query_mode=paper\n"
            "  lite-detr-flops --config-file CFG --swap-encoder 'H3L1-(2+1)x3' --dataset coco_2017_val -n 100\n"
        ),
    )
    parser.add_argument("--size", type=size_argument, default="850x1040",
                        help="input height x width (default 850x1040, the size Sparse/Lite DETR count COCO at)")
    parser.add_argument("--counting", choices=COUNTINGS, default="paper",
                        help="FLOP counting conventions. paper: fvcore's (sampling as grid_sample, element-wise "
                             "free); full: also q·k, softmax and weighted sum")
    parser.add_argument("--mode", dest="counting", choices=COUNTINGS, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # --counting's former name, still accepted
    parser.add_argument("--modes", nargs="+", choices=tuple(REPORT_MODES), default=list(REPORT_MODES),
                        metavar="MODE",
                        help="the report's encoder modes, among paper (eq. (2), value_placement=output), "
                             "paper_exact (eq. (2), auto), released (released layout, tokens); default all three "
                             "(the per-layer breakdown needs all three)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--png", metavar="PATH", help="write a chart of GFLOPs per variant (paper's values marked)")
    parser.add_argument("--rows", nargs="+", metavar="KEY",
                        help="only these paper rows (keys of lite_detr_plugin.flops.paper); default all")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-layer breakdown")
    parser.add_argument("--exact", action="store_true",
                        help="trace every layer of every encoder (same counts as the default, which traces one "
                             "repeating layer/block and multiplies; several times slower)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    group = parser.add_argument_group("whole model (needs detectron2 and detrex)")
    group.add_argument("--config-file", metavar="FILE",
                       help="a detrex or Lite LazyConfig: a path, or relative to detrex's root or this repository "
                            "(projects/dino/configs/..., projects/lite_dino/configs/...)")
    group.add_argument("--swap-encoder", metavar="VARIANT",
                       help="replace the config's encoder with LiteEncoder(variant=VARIANT) first")
    group.add_argument("--attention", choices=("kda", "msda"), default="kda", help="with --swap-encoder")
    group.add_argument("--low-query-mode", choices=("paper", "released"), default=None,
                       help="with --swap-encoder (default: LiteEncoder's)")
    group.add_argument("--value-placement", choices=("tokens", "samples", "auto", "output"), default=None,
                       help="with --swap-encoder (default: LiteEncoder's); output is the released code's "
                            "value_proj_after, a different model (the paper's GFLOPs)")
    group.add_argument("--dataset", metavar="NAME",
                       help="average over images of this registered detectron2 dataset (the config's test mapper)")
    group.add_argument("-n", "--num-images", type=int, default=100, help="with --dataset (default 100)")
    group.add_argument("--device", default="cpu", help="model device (default cpu)")
    group.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value (after the options)")
    return parser


def _progress(quiet: bool):
    if quiet:
        return None

    def show(label: str) -> None:
        print(f"  counting {label}", file=sys.stderr, flush=True)

    return show


def run_encoder_report(args) -> int:
    from .chart import write_png
    from .rendering import format_report, write_json
    from .rows import build_report

    size = args.size
    if not args.quiet:
        print(f"lite-detr-flops: tracing encoders at {size[0]}x{size[1]} with fvcore ...", file=sys.stderr)
    report = build_report(size, counting=args.counting, keys=args.rows, breakdown=not args.no_breakdown,
                          progress=_progress(args.quiet), exact=args.exact, modes=args.modes)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"\nwrote {args.json}")
    if args.png:
        write_png(report, args.png)
        print(f"wrote {args.png}")
    return 0


def run_model_report(args) -> int:
    from tabulate import tabulate

    from .model import averaged_gflops, dataset_inputs, fixed_size_inputs, load_detrex_model, model_gflops

    try:
        import detectron2  # noqa: F401
    except ImportError:
        print("lite-detr-flops: --config-file needs detectron2 and detrex installed", file=sys.stderr)
        return 2
    swap = None
    if args.swap_encoder:
        swap = dict(variant=args.swap_encoder, attention=args.attention)
        if args.low_query_mode:
            swap["low_query_mode"] = args.low_query_mode
        if args.value_placement:
            swap["value_placement"] = args.value_placement
    opts = [o for o in (args.opts or []) if o != "--"]
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):  # detrex's and timm's import-time notices
            warnings.simplefilter("ignore", category)
        cfg, model = load_detrex_model(args.config_file, opts, swap_encoder=swap, device=args.device)
    if args.dataset:
        result = averaged_gflops(model, dataset_inputs(cfg, args.dataset, args.num_images),
                                 counting=args.counting,
                                 progress=not args.quiet, total=args.num_images)
        sizes = Counter(f"{h}x{w}" for h, w in result["image_sizes"])
        listed = ", ".join(f"{size} ({n})" for size, n in sizes.most_common(5)) + (", ..." if len(sizes) > 5 else "")
        where = f"mean ± std over {result['num_images']} images of {args.dataset} (input sizes: {listed})"
        cells = lambda k: f"{result[k]:.1f} ± {result[k + '_std']:.1f}"  # noqa: E731
    else:
        height, width = args.size
        inputs = fixed_size_inputs(height, width)
        for item in inputs:
            item["image"] = item["image"].to(args.device)
        result = model_gflops(model, inputs, counting=args.counting)
        where = f"one {height}x{width} image"
        cells = lambda k: f"{result[k]:.1f}"  # noqa: E731
    keys = ("backbone", "neck", "encoder", "decoder", "other", "total")
    print(f"## GFLOPs of {args.config_file}" + (f" with LiteEncoder {args.swap_encoder}" if swap else ""))
    print()
    print(f"detectron2's FlopCountAnalysis (fvcore) + lite_detr_plugin.flops handles, {args.counting} counting; "
          f"{where}; device {args.device}.")
    print()
    print(tabulate([[cells(k) for k in keys]], headers=list(keys), tablefmt="github", disable_numparse=True))
    print()
    modules = ", ".join(f"{k} = {v}" for k, v in result["modules"].items())
    print(f"Parts: {modules}; other = the rest (two-stage proposal head, class/box heads, denoising queries, "
          "post-processing).")
    if result["unsupported_ops"]:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(result["unsupported_ops"].items()))
        print(f"Uncounted (no handle, none of them deformable attention): {listed}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(config_file=args.config_file, swap_encoder=swap, counting=args.counting, where=where,
                           **{k: v for k, v in result.items()}), f, indent=2, default=str)
            f.write("\n")
        print(f"\nwrote {args.json}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config_file:
        return run_model_report(args)
    if args.swap_encoder or args.dataset:
        build_parser().error("--swap-encoder and --dataset need --config-file")
    return run_encoder_report(args)


if __name__ == "__main__":
    sys.exit(main())
