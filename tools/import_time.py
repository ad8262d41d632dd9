"""How long ``import lite_detr_plugin`` takes on top of ``import torch``.

Each of ``--runs`` fresh interpreters times ``import torch`` and then
``import lite_detr_plugin``; the table gives the median of each and of the
difference, the figure the target (<= 0.5 s) is about. Writes JSON with --json.

    python tools/import_time.py [--runs 5] [--json import_time.json]
"""
import argparse
import json
import statistics
import subprocess
import sys

from tabulate import tabulate

PROBE = (
    "import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
    "import lite_detr_plugin; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
)


def measure(runs: int):
    """Seconds (torch, lite_detr_plugin) per fresh interpreter."""
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        torch_s, package_s = map(float, out.stdout.split()[-2:])
        samples.append((torch_s, package_s))
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the samples and medians here")
    args = parser.parse_args(argv)
    samples = measure(args.runs)
    torch_s = statistics.median(s[0] for s in samples)
    package_s = statistics.median(s[1] for s in samples)
    rows = [["import torch", f"{torch_s:.3f}"], ["+ import lite_detr_plugin", f"{package_s:.3f}"]]
    print(tabulate(rows, headers=[f"median of {args.runs} fresh processes", "seconds"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(runs=args.runs, samples=samples, torch_s=torch_s, package_s=package_s), f, indent=1)
    return package_s


if __name__ == "__main__":
    main()
