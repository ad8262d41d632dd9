"""``lite-detr-export``: a detrex / Lite LazyConfig (+ checkpoint) to ONNX, optionally a TensorRT engine.

    lite-detr-export --config-file projects/lite_dino/configs/lite_dino_r50/lite_dino_r50_h3l1_2x3_36ep.py \\
        --weights lite_dino_r50_h3l1_2x3_36ep.pth --output lite_dino.onnx --size 800x1333

Prints the graph's node counts by type, the file size and the ONNX Runtime
check's max |Δ| against eager. Bad input and failed exports end with one line
on stderr (exit status 2), never the exporter's traceback.
"""
import argparse
import sys
from typing import List, Optional, Sequence

from ..flops.encoder import size_argument
from .translations import DEFORMABLE_MODES, SAMPLERS, SUPPORTED_OPSETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lite-detr-export",
        description="Export a detrex DINO / H-DETR / Deformable DETR (standard or Lite) to ONNX.",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="detrex or Lite LazyConfig")
    parser.add_argument("--weights", metavar="PTH", help="detectron2 checkpoint (default: random init, with a warning)")
    parser.add_argument("--output", default="model.onnx", metavar="PATH", help="ONNX file (default model.onnx)")
    parser.add_argument("--size", type=size_argument, default=(800, 1333), metavar="HxW",
                        help="input size after resizing and padding (default 800x1333)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch dimension")
    parser.add_argument("--opset", type=int, choices=SUPPORTED_OPSETS, default=18)
    parser.add_argument("--deformable", choices=DEFORMABLE_MODES, default="decompose",
                        help="standard ONNX ops, or TensorRT's MultiscaleDeformableAttnPlugin_TRT")
    parser.add_argument("--sampler", choices=SAMPLERS, default="grid_sample",
                        help="with --deformable decompose: GridSample nodes or a gather-based bilinear")
    parser.add_argument("--simplify", action="store_true", help="run onnxsim (where installed)")
    parser.add_argument("--fp16", action="store_true", help="float16 graph; softmaxes and KDA logits stay float32")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs eager check")
    parser.add_argument("--trt-engine", metavar="PATH", help="also build a TensorRT engine (needs tensorrt and a GPU)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value (after the options)")
    return parser


def _load_model(config_file: str, weights: Optional[str], opts: Sequence[str]):
    try:
        import detectron2  # noqa: F401
        import detrex  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"--config-file needs detectron2 and detrex installed ({exc})") from None
    from ..flops.model import load_detrex_model

    _, model = load_detrex_model(config_file, opts=opts)
    if weights:
        from detectron2.checkpoint import DetectionCheckpointer

        DetectionCheckpointer(model).load(weights)
    else:
        print("WARNING: no --weights given: exporting a RANDOMLY INITIALISED model (its detections mean nothing)",
              file=sys.stderr)
    return model.eval()


def _format_counts(counts) -> str:
    from tabulate import tabulate

    return tabulate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), headers=["node", "count"])


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .onnx_export import ExportError, export_onnx
    from .tensorrt import build_trt_engine, tensorrt_unavailable_reason

    opts = [opt for opt in args.opts if opt != "--"]
    try:
        if args.trt_engine:  # refuse before minutes of export, not after
            reason = tensorrt_unavailable_reason()
            if reason is not None:
                raise ExportError(f"--trt-engine: cannot build a TensorRT engine: {reason}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        model = _load_model(args.config_file, args.weights, opts)
        result = export_onnx(
            model, args.output, args.size, batch_size=args.batch_size, dynamic_batch=args.dynamic_batch,
            opset=args.opset, deformable=args.deformable, sampler=args.sampler, check=not args.no_check,
            fp16=args.fp16, simplify=args.simplify,
        )
        print(_format_counts(result.node_counts))
        print(f"wrote {args.output}: {result.file_bytes / 2**20:.1f} MiB, {sum(result.node_counts.values())} nodes, "
              f"opset {args.opset}")
        if result.simplified:
            print(f"--simplify: {result.simplified}")
        if result.max_abs_diff:
            diff = result.max_abs_diff
            print(f"ONNX Runtime vs eager (fresh input): max |Δ| scores {diff['scores']:.3g}, "
                  f"boxes {diff['boxes']:.3g} px")
            if diff.get("reordered"):
                print(f"  query selection: {diff['reordered']} ranks ordered differently by the two runtimes "
                      "(near-ties); eager followed ONNX Runtime's order")
        elif args.deformable == "trt_plugin":
            print("check skipped: ONNX Runtime cannot run TensorRT's plugin node")
        if args.trt_engine:
            build_trt_engine(args.output, args.trt_engine, fp16=args.fp16)
            print(f"wrote TensorRT engine {args.trt_engine}")
    except (ValueError, ExportError, FileNotFoundError, KeyError) as exc:
        print(f"lite-detr-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
