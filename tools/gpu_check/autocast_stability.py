#!/usr/bin/env python
"""Trains a tiny Lite encoder N steps in float32 and under bf16 / fp16 autocast, from the same start.

    python tools/gpu_check/autocast_stability.py --device cuda --steps 500 --json autocast.json

Each run regresses a fixed random target from detrex-shaped inputs (AdamW, the
same data in every run). Passes when no loss or parameter is ever NaN/inf and the
mean loss of the last 10% of steps is within --rtol of float32's (fp16 uses a
GradScaler, as detectron2's AMPTrainer does). Exit status 1 otherwise.
"""
import argparse
import json
import math
import sys

import torch

from lite_detr_plugin.encoders import LiteEncoder
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs

NUM_BATCHES = 4  # the training cycles through this many fixed batches
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def train(device, precision, steps, variant, image_sizes, embed_dim, seed=0):
    torch.manual_seed(seed)
    encoder = LiteEncoder(embed_dim=embed_dim, num_heads=4, feedforward_dim=2 * embed_dim, variant=variant,
                          attn_dropout=0.0, ffn_dropout=0.0).to(device).train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device, enabled=precision == "float16")
    batches = [detrex_encoder_kwargs(image_sizes, embed_dim=embed_dim, seed=seed + i, device=device)
               for i in range(NUM_BATCHES)]
    targets = [torch.randn(b["query"].shape, generator=torch.Generator().manual_seed(100 + i)).to(device)
               for i, b in enumerate(batches)]
    losses, finite = [], True
    for step in range(steps):
        inputs, target = batches[step % len(batches)], targets[step % len(targets)]
        with torch.autocast(device, dtype=DTYPES[precision], enabled=DTYPES[precision] is not None):
            out = encoder(**inputs)
        loss = torch.nn.functional.mse_loss(out.float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss))
        finite = finite and math.isfinite(losses[-1])
    finite = finite and all(torch.isfinite(p).all() for p in encoder.parameters())
    return losses, finite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--precisions", nargs="+", default=["bfloat16", "float16"], choices=["bfloat16", "float16"])
    parser.add_argument("--variant", default="H3L1-(2+1)x3")
    parser.add_argument("--size", default="128x160", help="image size HxW of the two images (the second 3/4 of it)")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--rtol", type=float, default=0.1, help="allowed relative gap of the final loss to float32")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.steps < 10:
        parser.error("--steps must be at least 10")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be HxW, got {args.size!r}")
    sizes = [(h, w), (3 * h // 4, 3 * w // 4)]
    # Means over whole cycles of the 4 batches, so that the first and final losses see the same data.
    cycle = NUM_BATCHES
    tail = max(cycle, args.steps // 10 // cycle * cycle)
    report = {"steps": args.steps, "variant": args.variant, "device": args.device, "runs": {}}
    for precision in ["float32"] + args.precisions:
        losses, finite = train(args.device, precision, args.steps, args.variant, sizes, args.embed_dim)
        report["runs"][precision] = dict(first_loss=sum(losses[:cycle]) / cycle, final_loss=sum(losses[-tail:]) / tail,
                                        finite=finite)
    reference = report["runs"]["float32"]["final_loss"]
    ok = report["runs"]["float32"]["finite"]
    for precision in args.precisions:
        run = report["runs"][precision]
        run["relative_gap"] = abs(run["final_loss"] - reference) / max(abs(reference), 1e-12)
        run["ok"] = run["finite"] and run["relative_gap"] <= args.rtol
        ok = ok and run["ok"]
    report["ok"] = ok
    for precision, run in report["runs"].items():
        print(f"{precision:9s} loss {run['first_loss']:.4f} -> {run['final_loss']:.4f}  finite={run['finite']}"
              + (f"  gap to float32 {run['relative_gap']:.3%}" if "relative_gap" in run else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print("autocast stability:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
