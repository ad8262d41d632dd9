"""Value projection over the tokens vs after sampling: measured time, and the fit of ``κ``.

For KDA and MSDA attention modules of DINO size (C=256, 8 heads, 4 levels, 4 points) on
the 22,223 tokens of an 800x1333 image, it times one attention call with
``value_placement="tokens"`` and with ``"samples"`` (the same function) at several query
counts: a decoder's 900 queries, a Lite high-level update (the 5,523 tokens of the three
smallest maps) and a low-level update (the 16,700 tokens of the largest). Then it fits,
by least squares over the differences between the two placements,

    time = a · (GEMM multiply-adds) + b · (bilinear sample-channel reads, ``sampling_cost``)

(both counted by :func:`lite_detr_plugin.layers.placement.placement_terms`) and prints
``κ = b / a``: the factor ``value_placement="auto"`` uses
(``lite_detr_plugin.layers.placement.SAMPLE_COST_FACTOR``), and what "auto" picks with it.
Medians of ``--repeats`` calls, inference mode.

Example:
    lite-detr-benchmark-placement --threads 1 --json placement.json
    (or ``python tools/benchmark_placement.py ...`` in a source checkout)
"""
import argparse
import json
import sys

import torch
from tabulate import tabulate

from ..encoders.inputs import detrex_encoder_kwargs
from ..layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from ..layers.placement import placement_terms, sample_cost_factor
from .timing import median_time_ms

C, M, L, P = 256, 8, 4, 4
QUERY_COUNTS = {"decoder (900)": 900, "high-level update": 5523, "low-level update": 16700}
ATTENTIONS = {"kda": KeyAwareDeformableAttention, "msda": MultiScaleDeformableAttention}


def costs(kind: str, num_query: int, num_value: int):
    """(GEMM multiply-adds, sampling units) of "tokens" and of "samples", as "auto" counts them."""
    terms = placement_terms(kind, num_query, num_value, C, M, L, P)
    return terms["tokens"], terms["samples"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a query count must be a positive integer, got {text!r}")
    return value


def fit_kappa(rows):
    """Least squares of ``Δtime = a·ΔGEMM + b·Δsampling`` through the origin; returns (a, b)."""
    x = torch.tensor([[r["d_gemm"], r["d_sampling"]] for r in rows], dtype=torch.float64)
    y = torch.tensor([r["samples_ms"] - r["tokens_ms"] for r in rows], dtype=torch.float64)
    a, b = torch.linalg.lstsq(x, y[:, None]).solution.view(-1).tolist()
    return a, b


def main(argv=None) -> int:
    from ..flops.encoder import size_argument

    parser = argparse.ArgumentParser(prog="lite-detr-benchmark-placement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=size_argument, default=(800, 1333), metavar="HxW",
                        help="input image whose feature maps give the value tokens (default 800x1333: 22,223)")
    parser.add_argument("--queries", type=_positive, nargs="+", metavar="NQ",
                        help="query counts to time (default: 900, 5,523 and 16,700, see the description)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the fit as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = detrex_encoder_kwargs(canvas=args.size, batch_size=1, num_levels=L, embed_dim=C, device=device)
    query_counts = {f"{n:,} queries": n for n in args.queries} if args.queries else QUERY_COUNTS
    tokens, num_value = inputs["query"], inputs["query"].shape[1]
    generator = torch.Generator().manual_seed(0)

    rows, fits = [], {}
    for kind, cls in ATTENTIONS.items():
        kind_rows = []
        for label, num_query in query_counts.items():
            query = torch.randn(1, num_query, C, generator=generator).to(device)
            reference = torch.rand(1, num_query, L, 2, generator=generator).to(device)
            times = {}
            for placement in ("tokens", "samples"):
                torch.manual_seed(0)
                module = cls(C, M, L, P, dropout=0.0, batch_first=True, value_placement=placement).to(device).eval()

                def call():
                    with torch.inference_mode():
                        module(query, value=tokens, reference_points=reference,
                               spatial_shapes=inputs["spatial_shapes"], level_start_index=inputs["level_start_index"])

                times[placement] = median_time_ms(call, device, warmup=1, repeats=args.repeats)
            (tg, ts), (sg, ss) = costs(kind, num_query, num_value)
            kind_rows.append(dict(attention=kind, shape=label, num_query=num_query, num_value=num_value,
                                  tokens_ms=times["tokens"], samples_ms=times["samples"],
                                  d_gemm=sg - tg, d_sampling=ss - ts))
        a, b = fit_kappa(kind_rows)
        fits[kind] = dict(ms_per_gemm_mac=a, ms_per_sampling_unit=b, kappa=b / a,
                          kappa_in_use=sample_cost_factor(kind, device.type))
        auto = cls(C, M, L, P, value_placement="auto")
        for row in kind_rows:
            row["faster"] = "samples" if row["samples_ms"] < row["tokens_ms"] else "tokens"
            row["auto"] = auto.placement(row["num_query"], num_value, device.type)
        rows += kind_rows

    print(f"device: {device.type}, threads: {torch.get_num_threads()}, tokens: {num_value:,}\n")
    print(tabulate([[r["attention"], r["shape"], f"{r['num_query']:,}", f"{r['tokens_ms']:.1f}",
                     f"{r['samples_ms']:.1f}", r["faster"], r["auto"]] for r in rows],
                   headers=["attention", "queries", "Nq", "tokens (ms)", "samples (ms)", "faster", "auto picks"],
                   tablefmt="github"))
    print()
    for kind, fit in fits.items():
        print(f"{kind}: fitted κ = {fit['kappa']:.1f} (in use: {fit['kappa_in_use']})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(device=device.type, threads=torch.get_num_threads(), rows=rows, fits=fits), out, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
