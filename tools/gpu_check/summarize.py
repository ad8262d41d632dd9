#!/usr/bin/env python
"""Writes gpu_check.json from the step records and result files of tools/gpu_check.sh.

    python tools/gpu_check/summarize.py OUT_DIR

Reads OUT_DIR/steps.tsv (name, status, seconds, log per line), op_cases.json,
autocast.json, kda.json and encoder.json where present, and checks issue 10's GPU
targets against the benchmark rows: KDA forward+backward >= 10x the reference,
<= 1.0x detrex's MSDA op (DINO encoder shape, fp32), extra peak <= 1/8 of the
reference's, and Lite H3L1-(2+1)x3 <= 0.45x the standard encoder (fp32, bf16).
A target whose rows are missing is reported as "not measured".
"""
import json
import os
import sys


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _rows(data):
    if isinstance(data, dict):
        data = data.get("rows", [])
    return data if isinstance(data, list) else []


def _target(name, value, limit, better):
    if value is None:
        return {"target": name, "value": None, "status": "not measured"}
    ok = value >= limit if better == "higher" else value <= limit
    return {"target": name, "value": round(value, 4), "limit": limit, "status": "met" if ok else "missed"}


def kda_targets(rows):
    def find(**match):
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)

    key = dict(device="cuda", dtype="float32", shape="encoder", op="kda", **{"pass": "forward+backward"})
    compiled, reference = find(impl="compiled", **key), find(impl="reference", **key)
    detrex = find(device="cuda", dtype="float32", shape="encoder", op="msda", impl="detrex", **{"pass": "forward+backward"})
    speedup = reference["median_ms"] / compiled["median_ms"] if compiled and reference else None
    peak = compiled["peak_mb"] / reference["peak_mb"] if compiled and reference and reference["peak_mb"] else None
    vs_detrex = compiled["median_ms"] / detrex["median_ms"] if compiled and detrex else None
    return [
        _target("KDA fwd+bwd speed-up over the reference (cuda fp32, encoder shape)", speedup, 10.0, "higher"),
        _target("KDA fwd+bwd time / detrex MSDA (cuda fp32, encoder shape)", vs_detrex, 1.0, "lower"),
        _target("KDA fwd+bwd extra peak / reference's (cuda fp32, encoder shape)", peak, 0.125, "lower"),
    ]


def encoder_targets(rows):
    out = []
    for dtype in ("float32", "bfloat16"):
        for row in rows:
            if (row.get("device"), row.get("dtype"), row.get("variant")) == ("cuda", dtype, "H3L1-(2+1)x3"):
                name = f"Lite H3L1-(2+1)x3 {row.get('mode')} {row.get('attention')} latency / standard (cuda {dtype})"
                out.append(_target(name, row.get("latency_ratio"), 0.45, "lower"))
        if not any(dtype in t["target"] for t in out):
            out.append(_target(f"Lite H3L1-(2+1)x3 latency / standard (cuda {dtype})", None, 0.45, "lower"))
    return out


def summarize(out_dir):
    steps = []
    path = os.path.join(out_dir, "steps.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4:
                    steps.append(dict(name=parts[0], status=parts[1], seconds=float(parts[2]), log=parts[3]))
    report = {
        "env": _load(os.path.join(out_dir, "env.json")),
        "steps": steps,
        "ok": bool(steps) and all(s["status"] in ("ok", "skipped") for s in steps),
        "op_cases": _load(os.path.join(out_dir, "op_cases.json")),
        "autocast": _load(os.path.join(out_dir, "autocast.json")),
        "targets": kda_targets(_rows(_load(os.path.join(out_dir, "kda.json"))))
        + encoder_targets(_rows(_load(os.path.join(out_dir, "encoder.json")))),
    }
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: summarize.py OUT_DIR (an existing folder)", file=sys.stderr)
        return 2
    report = summarize(argv[0])
    for step in report["steps"]:
        print(f"{step['name']:16s} {step['status']:10s} {step['seconds']:7.1f} s  {step['log']}")
    for target in report["targets"]:
        print(f"{target['status']:12s} {target['target']}: {target['value']}")
    print("gpu check:", "ok" if report["ok"] else "FAILED (see the steps above)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
