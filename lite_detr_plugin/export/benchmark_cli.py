"""``lite-detr-benchmark``: latency per module of detrex / Lite detectors at several sizes (seed 003, Fig. 2).

    lite-detr-benchmark --config-file CFG [CFG ...] --sizes 640x640 768x768 857x1045 \\
        [--backend eager|onnxruntime|tensorrt ...] [--device cpu|cuda] [--dtype float32|bfloat16|float16] \\
        [--repeats 3] [--threads N] [--json out.json] [--png out.png] [key=value ...]

Batch 1, random weights unless ``train.init_checkpoint`` is given as an override
(latency does not depend on them). Prints one table row per model and size:
the median milliseconds per module (eager) or of the whole graph (ONNX Runtime,
TensorRT), the total, and the GFLOPs per module (``lite_detr_plugin.flops``).
"""
import argparse
import json
import os
import sys
import textwrap
from typing import Dict, List, Optional

import torch

from ..flops.encoder import size_argument
from .latency import PARTS

BACKENDS = ("eager", "onnxruntime", "tensorrt")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lite-detr-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", nargs="+", required=True, metavar="CFG")
    parser.add_argument("--sizes", nargs="+", type=size_argument, default=[(640, 640), (768, 768), (857, 1045)],
                        metavar="HxW")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=["eager"],
                        help="one or more; several are timed side by side on each model and size")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime)")
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs columns")
    parser.add_argument("--plugin-msda", action="store_true",
                        help="eager: detrex's MSDA modules replaced by this package's (its compiled kernels), "
                             "as the export does")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--png", metavar="PATH", help="stacked bars per model and size")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value, applied to every config")
    return parser


def _check_args(args) -> None:
    if args.repeats < 1:
        raise ValueError(f"--repeats must be positive, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available on this machine")
    if "tensorrt" in args.backend:
        from .tensorrt import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason is not None:
            raise ValueError(f"--backend tensorrt: {reason}")
    if "onnxruntime" in args.backend and (args.device != "cpu" or args.dtype != "float32"):
        raise ValueError("--backend onnxruntime runs the float32 graph on the CPU: use --device cpu --dtype float32")


def _gflops(model, size) -> Dict[str, float]:
    from ..flops.model import fixed_size_inputs, model_gflops

    counts = model_gflops(model, fixed_size_inputs(*size))
    return {part: counts[part] for part in ("backbone", "neck", "encoder", "decoder", "other", "total")}


def benchmark(args, progress) -> List[Dict]:
    from ..flops.model import load_detrex_model
    from . import latency
    from .check import fresh_images
    from .detrex_modules import swap_detrex_attention
    from .onnx_export import export_onnx
    from .tensorrt import build_trt_engine
    from .wrapper import ExportWrapper

    rows = []
    device = torch.device(args.device)
    opts = [opt for opt in args.opts if opt != "--"]
    for config_file in args.config_file:
        _, model = load_detrex_model(config_file, opts=opts, device=args.device)
        if args.plugin_msda:
            swap_detrex_attention(model)
        wrapper = ExportWrapper(model).eval()
        gflops = {}
        for size, backend in ((size, backend) for size in args.sizes for backend in args.backend):
            images = fresh_images(1, size, seed=0)
            row = {"config": config_file, "opts": opts, "plugin_msda": args.plugin_msda,
                   "size": f"{size[0]}x{size[1]}", "backend": backend, "device": args.device, "dtype": args.dtype,
                   "threads": torch.get_num_threads(), "repeats": args.repeats}
            if backend == "eager":
                wrapper.to(dtype=DTYPES[args.dtype])
                row["ms"] = latency.eager_parts(wrapper, images.to(device), args.repeats, progress)
                wrapper.float()
            else:
                result = export_onnx(model, None, size, check=False, fp16=args.dtype == "float16")
                if backend == "onnxruntime":
                    total = latency.onnxruntime_total(result.model, images, torch.get_num_threads(),
                                                      args.repeats, progress)
                else:
                    import onnx
                    import tempfile

                    with tempfile.TemporaryDirectory() as tmp:
                        onnx.save(result.model, os.path.join(tmp, "model.onnx"))
                        engine = build_trt_engine(os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model.plan"),
                                                  fp16=args.dtype == "float16")
                        total = latency.tensorrt_total(engine, images, args.repeats, progress)
                row["ms"] = {"total": total}
            if not args.no_flops:
                if size not in gflops:
                    gflops[size] = _gflops(model, size)
                row["gflops"] = gflops[size]
            rows.append(row)
    return rows


def row_label(row: Dict) -> str:
    """The config's name, with its overrides and "plugin MSDA" in parentheses where they apply."""
    label = os.path.splitext(os.path.basename(row["config"]))[0]
    extras = [".".join(opt.split(".")[-2:]) for opt in row.get("opts", ())]
    if row.get("plugin_msda"):
        extras.append("plugin MSDA")
    return f"{label} ({', '.join(extras)})" if extras else label


def format_rows(rows: List[Dict]) -> str:
    from tabulate import tabulate

    table = []
    for row in rows:
        ms, gflops = row["ms"], row.get("gflops", {})
        table.append(
            [row_label(row), row["size"], row["backend"]]
            + [f"{ms[p]:.1f}" if p in ms else "" for p in PARTS]
            + [f"{ms['total']:.1f}", f"{gflops['total']:.1f}" if gflops else ""]
            + [f"{gflops[p]:.1f}" if p in gflops else "" for p in ("backbone", "neck", "encoder", "decoder")]
        )
    headers = ["config", "size", "backend"] + [f"{p} ms" for p in PARTS] + ["total ms", "GFLOPs"] + [
        f"{p} GFLOPs" for p in ("backbone", "neck", "encoder", "decoder")]
    return tabulate(table, headers=headers)


def write_png(rows: List[Dict], path: str) -> None:
    """Stacked bars of milliseconds per module, one bar per model and size (total only for ORT/TensorRT)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # config names are long: wrapped at their underscores so that neighbouring labels do not overlap
    labels = [
        "\n".join(textwrap.wrap(row_label(r).replace("_", "_ "), 18)).replace("_ ", "_")
        + f"\n{r['size']} {r['backend']}" for r in rows
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(rows)), 5.0), dpi=80)
    bottoms = [0.0] * len(rows)
    for part in PARTS + ("total",):
        values = [r["ms"].get(part, 0.0) if (part != "total" or len(r["ms"]) == 1) else 0.0 for r in rows]
        if not any(values):
            continue
        ax.bar(range(len(rows)), values, bottom=bottoms, label=part if part != "total" else "whole graph")
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("latency, ms (median, batch 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from .onnx_export import ExportError

    try:
        _check_args(args)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        total_runs = len(args.config_file) * len(args.sizes) * len(args.backend) * args.repeats
        with tqdm(total=total_runs, desc="runs", file=sys.stderr) as bar:
            rows = benchmark(args, bar.update)
    except (ValueError, ExportError, FileNotFoundError, KeyError) as exc:
        print(f"lite-detr-benchmark: error: {str(exc).splitlines()[0] if str(exc) else exc!r}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    if args.png:
        write_png(rows, args.png)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
