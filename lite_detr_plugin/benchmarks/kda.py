"""Benchmark of the KDA / MSDA op: compiled kernels vs the PyTorch reference vs detrex's MSDA.

Shapes (DINO at 800x1333, maps 100x167, 50x84, 25x42, 13x21; M=8, L=4, P=4, D=32):
  encoder layer: B=1, S = Nq = 22,223;  decoder layer: B=1, S = 22,223, Nq = 900.

For each device (CPU always, CUDA when available) and dtype (float32; bfloat16
too on CUDA) it measures forward and forward+backward median time and the
extra peak memory of one call, each in a fresh subprocess. Rows compare an
implementation with the PyTorch reference of the same op (KDA: grid_sample
keys and values, softmax(q·k); MSDA: grid_sample values with given weights)
and, for MSDA, with detrex's op where detrex is importable.

    lite-detr-benchmark-kda                 # Markdown table
    lite-detr-benchmark-kda --json out.json # also write the rows
    (or ``python tools/benchmark_kda.py ...`` in a source checkout)
"""
import argparse
import json
import subprocess
import sys

import torch
from tabulate import tabulate
from tqdm import tqdm

SPATIAL_SHAPES = ((100, 167), (50, 84), (25, 42), (13, 21))
SHAPES = {"encoder": None, "decoder": 900}  # Nq; None = every token queries
HEADS, POINTS, HEAD_DIM = 8, 4, 32


def make_inputs(shape: str, device: str, dtype: torch.dtype, requires_grad: bool, seed: int = 0):
    """Random op inputs with sampling locations around each query's reference point."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(SPATIAL_SHAPES, dtype=torch.long)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_value = int(sizes.sum())
    num_query = SHAPES[shape] or num_value
    L = len(SPATIAL_SHAPES)
    reference = torch.rand(1, num_query, 1, L, 1, 2, generator=generator)
    offsets = torch.randn(1, num_query, HEADS, L, POINTS, 2, generator=generator) * 0.03
    inputs = {
        "query": torch.randn(1, num_query, HEADS, HEAD_DIM, generator=generator),
        "value": torch.randn(1, num_value, HEADS, HEAD_DIM, generator=generator),
        "sampling_locations": reference + offsets,
        "attention_weights": torch.randn(1, num_query, HEADS, L, POINTS, generator=generator)
        .flatten(3)
        .softmax(-1)
        .view(1, num_query, HEADS, L, POINTS),
    }
    for name in ("query", "value"):
        inputs[name] = inputs[name].to(device=device, dtype=dtype)
    for name in ("sampling_locations", "attention_weights"):
        inputs[name] = inputs[name].to(device=device)
    for tensor in inputs.values():
        tensor.requires_grad_(requires_grad)
    inputs["spatial_shapes"] = spatial_shapes.to(device)
    inputs["level_start_index"] = level_start_index.to(device)
    return inputs


def op_call(op: str, impl: str, inputs):
    """A closure computing one forward of (op, impl) on ``inputs``."""
    from .. import ops

    x = inputs
    common = (x["spatial_shapes"], x["level_start_index"], x["sampling_locations"])
    if op == "kda":
        fn = {"compiled": ops.kda, "reference": ops.kda_reference}[impl]
        return lambda: fn(x["query"], None, x["value"], *common)
    if impl == "detrex" and x["value"].is_cuda and not _detrex_importable():
        from .detrex_msda import detrex_msda  # a detrex snapshot ($LITE_DETR_DETREX_SRC), built here

        fn = detrex_msda()
        value = x["value"].float() if x["value"].dtype != torch.float64 else x["value"]
        return lambda: fn(value, *common, x["attention_weights"])
    if impl == "detrex":
        from detrex.layers.multi_scale_deform_attn import (
            MultiScaleDeformableAttnFunction,
            multi_scale_deformable_attn_pytorch,
        )

        if x["value"].is_cuda:
            value = x["value"].float() if x["value"].dtype != torch.float64 else x["value"]
            return lambda: MultiScaleDeformableAttnFunction.apply(
                value, x["spatial_shapes"], x["level_start_index"], x["sampling_locations"],
                x["attention_weights"], 64,
            )
        return lambda: multi_scale_deformable_attn_pytorch(
            x["value"], x["spatial_shapes"], x["sampling_locations"], x["attention_weights"]
        )
    fn = {"compiled": ops.msda, "reference": ops.msda_reference}[impl]
    return lambda: fn(x["value"], *common, x["attention_weights"])


def run_one(spec):
    """Measures one configuration in this process; returns the row."""
    from .timing import measure

    torch.set_num_threads(spec["threads"]) if spec["threads"] else None
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    backward = spec["pass"] == "forward+backward"
    inputs = make_inputs(spec["shape"], spec["device"], dtype, requires_grad=backward)
    forward = op_call(spec["op"], spec["impl"], inputs)
    if backward:
        def fn():
            out = forward()
            out.backward(torch.ones_like(out))
    else:
        def fn():
            with torch.no_grad():
                forward()
    return dict(spec, **measure(fn, device, warmup=spec["warmup"], repeats=spec["repeats"]))


def _detrex_importable() -> bool:
    try:
        from detrex.layers.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch  # noqa: F401
    except Exception:
        return False
    return True


def detrex_available() -> bool:
    """detrex is importable, or a detrex snapshot is named by $LITE_DETR_DETREX_SRC (CUDA only)."""
    from .detrex_msda import snapshot_available

    return _detrex_importable() or snapshot_available()


def plan(args):
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    impls = {"kda": ["compiled", "reference"], "msda": ["compiled", "reference"]}
    if detrex_available():
        impls["msda"].append("detrex")
    for device in devices:
        dtypes = args.dtype or (["float32", "bfloat16"] if device == "cuda" else ["float32"])
        for dtype, shape, op, pass_ in (
            (d, s, o, p) for d in dtypes for s in args.shapes for o in args.ops for p in args.passes
        ):
            for impl in impls[op]:
                if impl == "detrex" and device == "cuda" and dtype != "float32":
                    continue  # detrex's CUDA op is fp32/fp64 only
                if impl == "detrex" and device == "cpu" and not _detrex_importable():
                    continue  # a detrex snapshot only builds detrex's CUDA op
                yield dict(
                    device=device, dtype=dtype, shape=shape, op=op, impl=impl, **{"pass": pass_},
                    warmup=args.warmup, repeats=args.repeats, threads=args.threads,
                )


def add_ratios(rows):
    reference = {
        (r["device"], r["dtype"], r["shape"], r["op"], r["pass"]): r for r in rows if r["impl"] == "reference"
    }
    detrex = {(r["device"], r["dtype"], r["shape"], r["pass"]): r for r in rows if r["impl"] == "detrex"}
    for row in rows:
        ref = reference.get((row["device"], row["dtype"], row["shape"], row["op"], row["pass"]))
        row["speedup_vs_reference"] = ref["median_ms"] / row["median_ms"] if ref else None
        row["peak_vs_reference"] = row["peak_mb"] / ref["peak_mb"] if ref and ref["peak_mb"] > 0 else None
        other = detrex.get((row["device"], "float32", row["shape"], row["pass"]))
        row["time_vs_detrex"] = (
            row["median_ms"] / other["median_ms"] if other and row["op"] == "msda" and row["impl"] == "compiled" else None
        )
    return rows


def table(rows):
    def fmt(value, spec):
        return "–" if value is None else format(value, spec)

    headers = ["device", "dtype", "shape", "op", "impl", "pass", "median ms", "× faster than ref",
               "extra peak MiB", "peak / ref", "time / detrex"]
    body = [
        [r["device"], r["dtype"], r["shape"], r["op"], r["impl"], r["pass"], fmt(r["median_ms"], ".1f"),
         fmt(r["speedup_vs_reference"], ".2f"), fmt(r["peak_mb"], ".0f"), fmt(r["peak_vs_reference"], ".3f"),
         fmt(r["time_vs_detrex"], ".2f")]
        for r in rows
    ]
    return tabulate(body, headers=headers, tablefmt="github")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"], help="default: cpu and cuda if present")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16", "float16", "float64"],
                        help="default: float32 on CPU, float32 and bfloat16 on CUDA")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--ops", nargs="+", default=["kda", "msda"], choices=["kda", "msda"])
    parser.add_argument("--passes", nargs="+", default=["forward", "forward+backward"],
                        choices=["forward", "forward+backward"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return 0

    from .. import ops

    if not ops.is_loaded():
        print(f"warning: the compiled op is not loaded ({ops.load_error()}); 'compiled' rows use the reference",
              file=sys.stderr)
    rows = []
    specs = list(plan(args))
    for spec in tqdm(specs, desc="benchmark_kda", unit="run"):
        result = subprocess.run(
            [sys.executable, "-m", f"{__package__}.kda", "--worker", json.dumps(spec)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"measurement {spec} failed:\n{result.stderr}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    rows = add_ratios(rows)
    print(f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"op build: {ops.build_info()}, cpu kernels: {ops.cpu_capability()}")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
