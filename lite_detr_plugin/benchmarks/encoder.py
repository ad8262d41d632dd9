"""Encoder forward latency and peak memory: detrex's standard 6-layer encoder vs Lite variants.

Inputs are what detrex's DINO transformer passes to its encoder for one image of
800x1333 (feature maps 100x167, 50x84, 25x42, 13x21: 22,223 tokens; see
``lite_detr_plugin.encoders.inputs.detrex_encoder_kwargs``). Encoders have DINO's sizes
(C=256, 8 heads, 4 points, FFN 2048, dropout 0). Rows:

* ``standard`` — 6 all-token layers with deformable attention (MSDA): the
  computation of detrex's DINO encoder, the reference of the ratios; and the same
  with KDA;
* every Lite variant (``--variants``) in the "paper" and "released" modes with
  KDA, and with MSDA for ``--msda-variants``.

Each configuration runs in a fresh subprocess, so CPU peak memory is meaningful:
the extra peak resident set (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, minus the resident set before the first forward); on
CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before. The
first forward is measured for memory and doubles as warm-up; latency is the
median of ``--repeats`` timed forwards (``torch.inference_mode``, eval mode).
bfloat16 runs under ``torch.autocast`` with the query (the neck's output under
AMP) in bfloat16, as detrex would run under AMP.

On a shared machine the load drifts over the minutes between rows; ``--paired``
also times the standard encoder inside each configuration's process, alternating
forwards with it, and reports that paired ratio (``× std paired``) beside the
ratio of the row medians.

Encoder GFLOPs come from ``lite_detr_plugin.flops`` when it is available (fvcore's
conventions, counted once per configuration on the CPU in float32).

Example:
    lite-detr-benchmark-encoder --device cpu --repeats 3 --threads 2 --json bench.json
    (or ``python tools/benchmark_encoder.py ...`` in a source checkout)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Optional

PAPER_VARIANTS = ["H2L2-(2+1)x3", "H3L1-(6+1)x1", "H3L1-(3+1)x2", "H3L1-(2+1)x3"]
TARGET_VARIANT, TARGET_RATIO = "H3L1-(2+1)x3", 0.45
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


# ----------------------------------------------------------------------- configurations


def configurations(variants: List[str], msda_variants: List[str]) -> List[Dict]:
    rows = [dict(variant="standard", mode="-", attention="msda"), dict(variant="standard", mode="-", attention="kda")]
    for variant in variants:
        for mode in ("paper", "released"):
            rows.append(dict(variant=variant, mode=mode, attention="kda"))
            if variant in msda_variants:
                rows.append(dict(variant=variant, mode=mode, attention="msda"))
    return rows


def build_encoder(config: Dict, embed_dim: int, num_heads: int, feedforward_dim: int, num_levels: int):
    import torch

    from .. import LiteEncoder

    torch.manual_seed(0)
    kwargs = dict(embed_dim=embed_dim, num_heads=num_heads, feedforward_dim=feedforward_dim, attn_dropout=0.0,
                  ffn_dropout=0.0, num_feature_levels=num_levels, variant=config["variant"],
                  attention=config["attention"], value_placement=config.get("value_placement", "auto"))
    if config["variant"] == "standard":
        kwargs["num_layers"] = 6
    else:
        kwargs["low_query_mode"] = config["mode"]
    return LiteEncoder(**kwargs).eval()


# ----------------------------------------------------------------------- child process


def run_child(spec: Dict) -> Dict:
    """Measures one configuration on one device and dtype (in its own process)."""
    import gc

    import torch

    from ..encoders.inputs import detrex_encoder_kwargs, feature_shapes
    from .timing import first_call, times_ms

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    height, width = spec["size"]
    encoder = build_encoder(spec["config"], spec["embed_dim"], spec["num_heads"], spec["feedforward_dim"],
                            spec["num_levels"]).to(device)
    inputs = detrex_encoder_kwargs(canvas=(height, width), batch_size=spec["batch_size"],
                                   num_levels=spec["num_levels"], embed_dim=spec["embed_dim"], device=device)
    if dtype != torch.float32:
        inputs["query"] = inputs["query"].to(dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def forward():
        with torch.inference_mode(), autocast:
            return encoder(**inputs)

    result = dict(threads=torch.get_num_threads(), num_layers=len(encoder.layers),
                  num_tokens=int(inputs["query"].shape[1]),
                  params_m=sum(p.numel() for p in encoder.parameters()) / 1e6)
    # memory, on the first forward (also the first warm-up)
    gc.collect()
    first = first_call(forward, device)
    result["first_ms"], result["peak_mb"] = first.ms, first.peak_mb
    out = first.result
    result["output_ok"] = bool(torch.isfinite(out).all()) and tuple(out.shape) == tuple(inputs["query"].shape)
    del out, first
    times = times_ms(forward, device, warmup=max(0, spec["warmup"] - 1), repeats=spec["repeats"])
    result["times_ms"] = times
    result["latency_ms"] = statistics.median(times)
    if spec.get("paired"):
        result["paired_ratio"] = paired_ratio(spec, encoder, forward, inputs, autocast)
    if spec.get("flops"):
        result["gflops"] = count_gflops(spec, feature_shapes(height, width, spec["num_levels"]))
    return result


def paired_ratio(spec: Dict, encoder, forward, inputs, autocast) -> float:
    """Median over ``repeats`` of (this encoder's time / the standard encoder's time), the
    two forwards run back to back in alternating order, so slow load drift cancels."""
    import torch

    from .timing import elapsed_ms

    device = encoder_device(encoder)
    reference = build_encoder(dict(variant="standard", mode="-", attention="msda"), spec["embed_dim"],
                              spec["num_heads"], spec["feedforward_dim"], spec["num_levels"]).to(device)

    def reference_forward():
        with torch.inference_mode(), autocast:
            return reference(**inputs)

    reference_forward()  # warm-up
    ratios = []
    for index in range(spec["repeats"]):
        if index % 2:
            mine, standard = elapsed_ms(forward, device), elapsed_ms(reference_forward, device)
        else:
            standard, mine = elapsed_ms(reference_forward, device), elapsed_ms(forward, device)
        ratios.append(mine / standard)
    return statistics.median(ratios)


def encoder_device(encoder):
    return next(encoder.parameters()).device


def count_gflops(spec: Dict, shapes) -> Optional[float]:
    """Encoder GFLOPs with lite_detr_plugin.flops (optional), on a CPU float32 copy."""
    try:
        from .. import flops
    except ImportError:
        return None
    try:
        from ..encoders.inputs import detrex_encoder_kwargs

        height, width = spec["size"]
        encoder = build_encoder(spec["config"], spec["embed_dim"], spec["num_heads"], spec["feedforward_dim"],
                                spec["num_levels"])
        inputs = detrex_encoder_kwargs(canvas=(height, width), batch_size=spec["batch_size"],
                                       num_levels=spec["num_levels"], embed_dim=spec["embed_dim"])
        return float(flops.count_encoder(encoder, shapes, inputs=inputs).gflops)
    except Exception as exc:  # an optional column: report why it is missing, do not fail the row
        print(f"GFLOPs unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


# ----------------------------------------------------------------------- parent process


def measure(spec: Dict, timeout: float) -> Dict:
    command = [sys.executable, "-m", f"{__package__}.encoder", "--child", json.dumps(spec)]
    env = dict(os.environ)
    if spec.get("threads"):
        env.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return dict(error=f"exit {done.returncode}: {' | '.join(tail)}")


def label(config: Dict) -> str:
    if config["variant"] == "standard":
        return "standard 6-layer"
    return config["variant"]


def add_ratios(rows: List[Dict]) -> None:
    for row in rows:
        reference = next((r for r in rows if r["device"] == row["device"] and r["dtype"] == row["dtype"]
                          and r["variant"] == "standard" and r["attention"] == "msda" and "error" not in r), None)
        ok = reference is not None and "error" not in row
        row["latency_ratio"] = row["latency_ms"] / reference["latency_ms"] if ok else None
        row["memory_ratio"] = (row["peak_mb"] / reference["peak_mb"]
                               if ok and reference["peak_mb"] > 0 else None)


def _fmt(value, digits=2):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown_table(rows: List[Dict]) -> str:
    from tabulate import tabulate

    show_flops = any(r.get("gflops") is not None for r in rows)
    show_paired = any(r.get("paired_ratio") is not None for r in rows)
    headers = ["device", "dtype", "encoder", "mode", "attn", "layers", "latency ms (median)", "× standard"]
    if show_paired:
        headers.append("× std paired")
    headers += ["peak MB", "× standard"]
    if show_flops:
        headers.append("GFLOPs")
    table = []
    for r in rows:
        if "error" in r:
            line = [r["device"], r["dtype"], label(r), r["mode"], r["attention"], "–", "error: " + r["error"][:60],
                    "–"] + ["–"] * show_paired + ["–", "–"]
        else:
            line = [r["device"], r["dtype"], label(r), r["mode"], r["attention"], r["num_layers"],
                    _fmt(r["latency_ms"], 0), _fmt(r["latency_ratio"])]
            if show_paired:
                line.append(_fmt(r.get("paired_ratio")))
            line += [_fmt(r["peak_mb"], 0), _fmt(r["memory_ratio"])]
        if show_flops:
            line.append(_fmt(r.get("gflops"), 1))
        table.append(line)
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def target_lines(rows: List[Dict]) -> List[str]:
    lines = []
    for row in rows:
        if row["variant"] == TARGET_VARIANT and row["attention"] == "kda" and "error" not in row:
            if row["latency_ratio"] is None:
                continue
            memory_ok = row["memory_ratio"] is not None and row["memory_ratio"] <= 1.0
            verdict = "meets" if row["latency_ratio"] <= TARGET_RATIO and memory_ok else "misses"
            paired = row.get("paired_ratio")
            lines.append(f"{row['device']} {row['dtype']} {TARGET_VARIANT} {row['mode']}: "
                         f"{row['latency_ratio']:.2f}× latency"
                         + (f" ({paired:.2f}× paired)" if paired is not None else "")
                         + f", {_fmt(row['memory_ratio'])}× memory "
                         f"-> {verdict} the target (≤ {TARGET_RATIO}× latency, ≤ 1× memory)"
                         + ("" if row["mode"] == "paper" else " [reported beside it]"))
    return lines


def parse_args(argv=None):
    from ..flops.encoder import size_argument

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", nargs="+", choices=["cpu", "cuda"],
                        help="devices (default: cpu, plus cuda if available)")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES),
                        help="dtypes (default: float32 bfloat16)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per configuration (median)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="warm-up forwards before timing (the first also measures memory)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each run (CPU)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--variants", nargs="+", default=PAPER_VARIANTS, help="Lite variants (HxLy-(A+1)xB)")
    parser.add_argument("--msda-variants", nargs="*", default=[TARGET_VARIANT],
                        help="variants also measured with MSDA instead of KDA")
    parser.add_argument("--size", type=size_argument, default=(800, 1333), metavar="HxW",
                        help="image size HxW (default 800x1333)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-levels", type=int, default=4)
    parser.add_argument("--paired", action="store_true",
                        help="also time the standard encoder in each run, alternating, for a drift-free ratio")
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs column")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first forward measures memory)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0

    import torch
    from tqdm import tqdm

    from ..encoders import parse_variant

    for variant in args.variants:
        parse_variant(variant)  # fail early on a bad variant string
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA is not available: measuring CPU only", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    dtypes = list(dict.fromkeys(DTYPES[d] for d in args.dtype))
    height, width = args.size
    configs = configurations(args.variants, args.msda_variants)
    jobs = [(device, dtype, config) for device in devices for dtype in dtypes for config in configs]
    counted = set()
    rows = []
    for device, dtype, config in tqdm(jobs, desc="encoder benchmark", unit="config"):
        key = (config["variant"], config["mode"], config["attention"])
        spec = dict(device=device, dtype=dtype, config=config, size=[height, width], batch_size=args.batch_size,
                    num_levels=args.num_levels, embed_dim=256, num_heads=8, feedforward_dim=2048,
                    repeats=args.repeats, warmup=args.warmup, threads=args.threads, paired=args.paired,
                    flops=not args.no_flops and key not in counted)
        counted.add(key)
        result = measure(spec, args.timeout)
        rows.append(dict(device=device, dtype=dtype, **config, **result))
    gflops = {(r["variant"], r["mode"], r["attention"]): r["gflops"] for r in rows if r.get("gflops") is not None}
    for row in rows:
        row.setdefault("gflops", gflops.get((row["variant"], row["mode"], row["attention"])))
    add_ratios(rows)

    from ..encoders.inputs import feature_shapes

    shapes = feature_shapes(height, width, args.num_levels)
    print(f"\nEncoder forward, {height}x{width} (maps {', '.join(f'{h}x{w}' for h, w in shapes)}: "
          f"{sum(h * w for h, w in shapes):,} tokens), batch {args.batch_size}, C=256, 8 heads, 4 points, "
          f"FFN 2048; median of {args.repeats}; torch {torch.__version__}, threads "
          f"{args.threads or torch.get_num_threads()}\n")
    print(markdown_table(rows))
    print()
    for line in target_lines(rows):
        print(line)
    if args.json:
        meta = dict(size=[height, width], shapes=shapes, batch_size=args.batch_size, repeats=args.repeats,
                    warmup=args.warmup, threads=args.threads, paired=args.paired, torch=torch.__version__)
        with open(args.json, "w") as handle:
            json.dump(dict(meta=meta, rows=rows), handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
