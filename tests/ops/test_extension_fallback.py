"""Loading of the compiled library, and the PyTorch fallback when it cannot load.

The fallback runs in a fresh interpreter in which the library ``lite_detr_plugin/_C*.so``
is missing or cannot be loaded with ``torch.ops.load_library``; its results are compared with the compiled op's in this
process, on the same inputs.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from lite_detr_plugin import ops

from .helpers import MSDA_GRAD_NAMES, call_kda, call_msda, forward_backward, kda_grad_names, make_inputs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_compiled_library_is_loaded():
    """This environment has the built extension; every compiled-vs-reference test relies on it."""
    assert ops.is_loaded(), ops.load_error()
    assert ops.load_error() is None
    assert ops.has_kernel("cpu")
    assert "cpu" in ops.build_info().split(";")
    assert ops.has_kernel("cuda") == ("cuda" in ops.build_info().split(";"))
    for name in ("kda_forward", "_kda_backward", "msda_forward", "_msda_backward"):
        assert hasattr(torch.ops.lite_detr, name), name


def test_compiled_path_does_not_warn(recwarn):
    x = make_inputs(key=True, dtype=torch.float32)
    ops.kda(*x.kda_args())
    ops.msda(*x.msda_args())
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# Makes the library unavailable before the package is imported, one way or another.
BLOCKERS = {
    # No library file: the package runs from a copy of its sources without _C*.so (see below).
    "ImportError": "",
    # A library that exists but fails to load (missing symbol, wrong torch) raises OSError.
    "OSError": textwrap.dedent(
        """
        def _broken(path):
            raise OSError(path + ': undefined symbol: _ZN3c104impl8GPUTrace')
        torch.ops.load_library = _broken
        """
    ),
}

FALLBACK_SCRIPT = """
import json, sys, warnings
import torch
{blocker}
import lite_detr_plugin
from lite_detr_plugin import ops
from tests.ops.helpers import MSDA_GRAD_NAMES, call_kda, call_msda, forward_backward

inputs = torch.load(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kda_out, kda_grads = forward_backward(call_kda(), inputs, {kda_names!r})
    kda_again = ops.kda(inputs["query"], inputs["key"], inputs["value"], inputs["spatial_shapes"],
                        inputs["level_start_index"], inputs["sampling_locations"])
    msda_out, msda_grads = forward_backward(call_msda, inputs, MSDA_GRAD_NAMES)
torch.save(dict(kda=kda_out, kda_again=kda_again, kda_grads=kda_grads, msda=msda_out, msda_grads=msda_grads),
           sys.argv[2])
print(json.dumps(dict(
    is_loaded=ops.is_loaded(),
    load_error=ops.load_error(),
    has_cpu_kernel=ops.has_kernel("cpu"),
    build_info=ops.build_info(),
    has_ops=hasattr(torch.ops.lite_detr, "kda_forward"),
    warnings=[(w.category.__name__, str(w.message)) for w in caught],
)))
"""


@pytest.mark.parametrize("error", list(BLOCKERS))
def test_fallback_without_compiled_library(error, tmp_path):
    x = make_inputs(shapes=((5, 4), (2, 3)), heads=2, points=3, num_query=4, batch=2, key=True, key_dim=6,
                    value_dim=5, pad=True)
    names = kda_grad_names(x)
    torch.save(x.tensors, tmp_path / "inputs.pt")
    script = FALLBACK_SCRIPT.format(blocker=BLOCKERS[error], kda_names=names)
    env, cwd = dict(os.environ), REPO_ROOT
    if error == "ImportError":
        # The package's sources without the built library, ahead of the repository on the path.
        shutil.copytree(os.path.join(REPO_ROOT, "lite_detr_plugin"), tmp_path / "pkg" / "lite_detr_plugin",
                        ignore=shutil.ignore_patterns("_C*", "__pycache__"))
        cwd = str(tmp_path / "pkg")
        env["PYTHONPATH"] = os.pathsep.join([cwd, REPO_ROOT, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["is_loaded"] is False
    # load_error() says what failed and why: "<exception type>: <message>".
    prefixes = ("ImportError: ", "ModuleNotFoundError: ") if error == "ImportError" else ("OSError: ",)
    assert report["load_error"].startswith(prefixes), report["load_error"]
    why = "lite_detr_plugin._C" if error == "ImportError" else "undefined symbol"
    assert why in report["load_error"], report["load_error"]
    assert report["has_cpu_kernel"] is False
    assert report["build_info"].startswith("not loaded"), report["build_info"]
    assert report["has_ops"] is False
    runtime_warnings = [msg for category, msg in report["warnings"] if category == "RuntimeWarning"]
    assert len(runtime_warnings) == 1, report["warnings"]  # kda twice and msda once: one warning in all
    assert report["load_error"] in runtime_warnings[0] and "reference" in runtime_warnings[0]

    # The fallback equals the compiled op of this process, forward and backward.
    got = torch.load(tmp_path / "outputs.pt")
    out, grads = forward_backward(call_kda(), x.tensors, names)
    torch.testing.assert_close(got["kda"], out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got["kda_again"], out, rtol=1e-9, atol=1e-10)
    for name in names:
        torch.testing.assert_close(got["kda_grads"][name], grads[name], rtol=1e-9, atol=1e-10)
    out, grads = forward_backward(call_msda, x.tensors, MSDA_GRAD_NAMES)
    torch.testing.assert_close(got["msda"], out, rtol=1e-9, atol=1e-10)
    for name in MSDA_GRAD_NAMES:
        torch.testing.assert_close(got["msda_grads"][name], grads[name], rtol=1e-9, atol=1e-10)
