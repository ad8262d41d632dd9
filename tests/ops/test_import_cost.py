"""``import lite_detr_plugin`` stays cheap: it must not pull in torch._dynamo (what made it
cost ~2 s: ``@torch.compiler.disable`` at import), sympy, matplotlib or detectron2.

A behavioural check in a fresh interpreter, not a timing (tools/import_time.py times it).
"""
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "matplotlib", "detectron2", "detrex")


def test_package_import_does_not_import_heavy_modules():
    script = (
        "import json, sys; import torch; before = set(sys.modules); import lite_detr_plugin; "
        "from lite_detr_plugin import ops; "
        "print(json.dumps(dict(loaded=ops.is_loaded(), new=sorted(set(sys.modules) - before))))"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["loaded"], "the compiled library must load, or this test checks the fallback path only"
    heavy = [m for m in report["new"] if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert not heavy, f"import lite_detr_plugin imported {heavy}"
