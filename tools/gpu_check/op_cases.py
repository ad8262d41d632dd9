#!/usr/bin/env python
"""Small KDA and MSDA forward+backward calls on every kernel path, for compute-sanitizer.

    compute-sanitizer --tool memcheck python tools/gpu_check/op_cases.py --device cuda
    python tools/gpu_check/op_cases.py --device cuda --gradcheck      # float64 gradcheck as well

The CUDA kernels have fast paths for head dims 32 and 64 (shared or separate key,
each dtype) and a generic path for other dims; each case here runs one of them
on a few queries, with locations inside, on the borders and outside the maps,
and checks it against the PyTorch reference. Exit status 1 on a mismatch.
"""
import argparse
import json
import sys

import torch

from lite_detr_plugin import ops

SHAPES = [(6, 7), (3, 4), (2, 2), (1, 1)]
TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def cases(quick=False):
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    for dim in (32, 64, 30):  # 32, 64: fast paths; 30: the generic path
        for shared_key in (True, False):
            for value_heads in ("per-head", "shared"):
                for dtype in dtypes[:1] if quick else dtypes:
                    yield dict(dim=dim, shared_key=shared_key, value_heads=value_heads, dtype=dtype)


def make(case, device, batch=2, num_query=5, heads=4, points=3, requires_grad=True):
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor(SHAPES, dtype=torch.int64)
    areas = shapes.prod(1)
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S, L, dtype = int(areas.sum()), len(SHAPES), case["dtype"]
    Mv = heads if case["value_heads"] == "per-head" else 1

    def rand(*size, scale=1.0, shift=0.0):
        t = (torch.rand(*size, generator=g, dtype=torch.float64) * scale + shift)
        return t.to(device=device, dtype=dtype).requires_grad_(requires_grad)

    locations = torch.rand(batch, num_query, heads, L, points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    locations[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # borders
    loc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return dict(
        query=rand(batch, num_query, heads, case["dim"], scale=2, shift=-1),
        key=None if case["shared_key"] else rand(batch, S, Mv, case["dim"], scale=2, shift=-1),
        value=rand(batch, S, Mv, case["dim"], scale=2, shift=-1),
        spatial_shapes=shapes.to(device), level_start_index=starts.to(device),
        sampling_locations=locations.to(device=device, dtype=loc_dtype).requires_grad_(requires_grad),
        attention_weights=rand(batch, num_query, heads, L, points).softmax(-1).detach().requires_grad_(requires_grad),
    )


def run_case(case, device):
    x = make(case, device)
    common = (x["spatial_shapes"], x["level_start_index"], x["sampling_locations"])
    results = {}
    for name, fn, ref in (
        ("kda", lambda: ops.kda(x["query"], x["key"], x["value"], *common),
         lambda: ops.kda_reference(x["query"], x["key"], x["value"], *common)),
        ("msda", lambda: ops.msda(x["value"], *common, x["attention_weights"]),
         lambda: ops.msda_reference(x["value"], *common, x["attention_weights"])),
    ):
        out = fn()
        out.float().square().sum().backward()  # the backward kernels run too
        expected = ref().detach()
        error = float((out.detach().double() - expected.double()).abs().max())
        results[name] = dict(max_error=error, ok=error <= TOL[case["dtype"]] * (1 + float(expected.abs().max())))
    return results


def gradcheck(device):
    results = {}
    for dim in (32, 30):
        case = dict(dim=dim, shared_key=False, value_heads="per-head", dtype=torch.float64)
        x = make(case, device, batch=1, num_query=2, heads=2, points=2)
        common = (x["spatial_shapes"], x["level_start_index"])
        results[f"kda_d{dim}"] = torch.autograd.gradcheck(
            lambda q, k, v, loc: ops.kda(q, k, v, *common, loc),
            (x["query"], x["key"], x["value"], x["sampling_locations"]), eps=1e-6, atol=1e-6, rtol=1e-4)
        results[f"msda_d{dim}"] = torch.autograd.gradcheck(
            lambda v, loc, w: ops.msda(v, *common, loc, w),
            (x["value"], x["sampling_locations"], x["attention_weights"]), eps=1e-6, atol=1e-6, rtol=1e-4)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="float32 only (racecheck is slow)")
    parser.add_argument("--gradcheck", action="store_true", help="float64 gradcheck of kda and msda too")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if not ops.has_kernel(args.device):
        print(f"the compiled op has no {args.device} kernel: {ops.build_info()}", file=sys.stderr)
        return 2
    report = {"cases": []}
    for case in cases(args.quick):
        results = run_case(case, args.device)
        report["cases"].append(dict(case, dtype=str(case["dtype"]).replace("torch.", ""), **results))
        print(report["cases"][-1])
    if args.gradcheck:
        report["gradcheck"] = gradcheck(args.device)
        print("gradcheck:", report["gradcheck"])
    if args.device == "cuda":
        torch.cuda.synchronize()
    ok = all(c[op]["ok"] for c in report["cases"] for op in ("kda", "msda"))
    ok = ok and all(report.get("gradcheck", {}).values())
    report["ok"] = ok
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    print("op cases:", "all match the reference" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
