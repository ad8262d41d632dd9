"""Bad inputs: ValueError / RuntimeError naming the argument, never a crash.

Each case mutates a valid set of inputs. The Python API (ops.kda / ops.msda)
must raise ValueError; a direct torch.ops.lite_detr.* call must raise
RuntimeError (or ValueError) from the C++ checks. Direct calls run in a
subprocess (``python -m tests.ops.test_op_checks <case ids>``) so that a
segfault fails one test instead of killing the run.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch

from lite_detr_plugin import ops

from .helpers import level_layout, make_inputs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class BadCase:
    id: str
    op: str  # kda | msda | kda_backward | msda_backward
    mutate: Callable[[dict], None]
    names: str  # regex that the message must match: the offending argument
    api: bool = True  # also checked through the Python API (forward ops only)
    direct: bool = True
    device: str = "cpu"
    direct_xfail: Optional[str] = None


def base_args(op: str, device: str = "cpu") -> dict:
    """Valid float32 inputs: B=2, Nq=3, M=4, L=2, P=2, Dk=Dv=8, key given."""
    x = make_inputs(batch=2, num_query=3, heads=4, key_dim=8, shapes=((4, 5), (2, 3)), points=2, key=True,
                    dtype=torch.float32, device=device)
    t = x.tensors
    if op.startswith("kda"):
        return dict(query=t["query"], key=t["key"], value=t["value"], spatial_shapes=t["spatial_shapes"],
                    level_start_index=t["level_start_index"], sampling_locations=t["sampling_locations"])
    return dict(value=t["value"], spatial_shapes=t["spatial_shapes"], level_start_index=t["level_start_index"],
                sampling_locations=t["sampling_locations"], attention_weights=t["attention_weights"])


def _set(**updates):
    """A mutation that replaces arguments by functions of the current ones."""
    def mutate(a):
        for name, fn in updates.items():
            a[name] = fn(a)
    return mutate


def _huge_level(a):
    # H * W = 2**64 wraps to 0 in int64, so a layout check computed in int64
    # sees level 1 start at 0 and S = 1; a sample at pixel row 2**24 of level 0
    # then reads row ~2**48 of a one-row tensor. (Python ints do not wrap.)
    a["spatial_shapes"], a["level_start_index"] = torch.tensor([[2**40, 2**24], [1, 1]]), torch.tensor([0, 0])
    a["value"] = a["value"][:, :1].contiguous()
    if a.get("key") is not None:
        a["key"] = a["key"][:, :1].contiguous()
    loc = a["sampling_locations"].clone()
    loc[..., 0, :, 0], loc[..., 0, :, 1] = 0.0, 2.0**-16
    a["sampling_locations"] = loc


def _kda_cases():
    c = []
    add = lambda *args, **kw: c.append(BadCase(*args, **kw))  # noqa: E731
    # wrong rank of each argument
    add("query-rank3", "kda", _set(query=lambda a: a["query"][0]), "query")
    add("key-rank3", "kda", _set(key=lambda a: a["key"][0]), "key")
    add("value-rank5", "kda", _set(value=lambda a: a["value"][..., None]), "value")
    add("spatial_shapes-rank1", "kda", _set(spatial_shapes=lambda a: a["spatial_shapes"].flatten()), "spatial_shapes")
    add("spatial_shapes-one-column", "kda", _set(spatial_shapes=lambda a: a["spatial_shapes"][:, :1].contiguous()),
        "spatial_shapes")
    add("level_start_index-rank2", "kda", _set(level_start_index=lambda a: a["level_start_index"][None]),
        "level_start_index")
    add("sampling_locations-rank5", "kda",
        _set(sampling_locations=lambda a: a["sampling_locations"][..., 0, :].contiguous()), "sampling_locations")
    add("sampling_locations-3-coords", "kda",
        _set(sampling_locations=lambda a: torch.cat([a["sampling_locations"], a["sampling_locations"][..., :1]], -1)),
        "sampling_locations")
    # level layout
    add("L-spatial_shapes-has-fewer", "kda",
        _set(spatial_shapes=lambda a: a["spatial_shapes"][:1], level_start_index=lambda a: a["level_start_index"][:1]),
        "spatial_shapes")
    add("L-sampling_locations-has-more", "kda",
        _set(sampling_locations=lambda a: torch.cat([a["sampling_locations"]] * 2, 3)), "spatial_shapes")
    add("level_start_index-length", "kda", _set(level_start_index=lambda a: a["level_start_index"][:1]),
        "level_start_index")
    add("level_start_index-inconsistent", "kda", _set(level_start_index=lambda a: a["level_start_index"] + 1),
        "level_start_index")
    add("sum-HW-ne-S", "kda", _set(value=lambda a: a["value"][:, :-1].contiguous(),
                                   key=lambda a: a["key"][:, :-1].contiguous()), "spatial_shapes")
    add("H-zero", "kda", _set(spatial_shapes=lambda a: torch.tensor([[4, 5], [0, 3]])), "spatial_shapes")
    add("W-negative", "kda", _set(spatial_shapes=lambda a: torch.tensor([[4, -5], [2, 3]])), "spatial_shapes")
    add("H*W-int64-overflow", "kda", _huge_level, "spatial_shapes|level_start_index")
    # dtypes
    add("sampling_locations-int64", "kda",
        _set(sampling_locations=lambda a: a["sampling_locations"].long()), "sampling_locations")
    add("sampling_locations-float64-direct", "kda",
        _set(sampling_locations=lambda a: a["sampling_locations"].double()), "sampling_locations", api=False)
    add("query-float64-value-float32", "kda", _set(query=lambda a: a["query"].double()), "query")
    add("key-float64-value-float32", "kda", _set(key=lambda a: a["key"].double()), "key")
    add("value-int64", "kda", _set(value=lambda a: a["value"].long()), "value")
    add("spatial_shapes-int32", "kda", _set(spatial_shapes=lambda a: a["spatial_shapes"].int()), "spatial_shapes")
    add("level_start_index-int32", "kda", _set(level_start_index=lambda a: a["level_start_index"].int()),
        "level_start_index")
    # (non-contiguous inputs are accepted: test_noncontiguous_inputs_match_contiguous)
    # shapes
    add("Mv-2-of-M-4", "kda", _set(value=lambda a: a["value"][:, :, :2].contiguous(),
                                   key=lambda a: a["key"][:, :, :2].contiguous()), "value")
    add("key-S-short", "kda", _set(key=lambda a: a["key"][:, :-1].contiguous()), "key")
    add("key-Mv-differs", "kda", _set(key=lambda a: a["key"][:, :, :1].contiguous()), "key")
    add("key-Dk-differs-from-query", "kda", _set(key=lambda a: a["key"][..., :5].contiguous()), "key")
    add("key-None-Dk-ne-Dv", "kda", _set(key=lambda a: None, query=lambda a: a["query"][..., :5].contiguous()),
        "key=None|Dk")
    add("query-Nq-differs", "kda", _set(query=lambda a: a["query"][:, :2].contiguous()), "query")
    add("query-batch-differs", "kda", _set(query=lambda a: a["query"][:1].contiguous()), "query")
    add("sampling_locations-batch-differs", "kda",
        _set(sampling_locations=lambda a: a["sampling_locations"][:1].contiguous()), "sampling_locations")
    # devices: a meta tensor mixed with CPU tensors
    add("query-on-meta", "kda", _set(query=lambda a: a["query"].to("meta")), "query")
    add("sampling_locations-on-meta", "kda",
        _set(sampling_locations=lambda a: a["sampling_locations"].to("meta")), "sampling_locations",
        )
    # devices on a GPU machine: one CPU tensor among CUDA tensors
    for name in ("query", "key", "sampling_locations", "spatial_shapes", "level_start_index"):
        add(f"cuda-{name}-on-cpu", "kda", _set(**{name: lambda a, n=name: a[n].cpu()}), name, device="cuda")
    return c


def _msda_cases():
    c = []
    add = lambda *args, **kw: c.append(BadCase(*args, **kw))  # noqa: E731
    add("msda-value-rank3", "msda", _set(value=lambda a: a["value"][0]), "value")
    add("msda-sampling_locations-rank7", "msda",
        _set(sampling_locations=lambda a: a["sampling_locations"][None]), "sampling_locations")
    add("msda-attention_weights-rank4", "msda",
        _set(attention_weights=lambda a: a["attention_weights"][..., 0].contiguous()), "attention_weights")
    add("msda-attention_weights-P-differs", "msda",
        _set(attention_weights=lambda a: a["attention_weights"][..., :1].contiguous()), "attention_weights")
    add("msda-attention_weights-int64", "msda",
        _set(attention_weights=lambda a: a["attention_weights"].long()), "attention_weights")
    add("msda-attention_weights-float64-direct", "msda",
        _set(attention_weights=lambda a: a["attention_weights"].double()), "attention_weights", api=False)
    add("msda-level_start_index-inconsistent", "msda",
        _set(level_start_index=lambda a: torch.tensor([0, 7])), "level_start_index")
    add("msda-Mv-3-of-M-4", "msda", _set(value=lambda a: a["value"][:, :, :3].contiguous()), "value")
    add("msda-H*W-int64-overflow", "msda", _huge_level, "spatial_shapes|level_start_index",
        )
    add("msda-attention_weights-on-meta", "msda",
        _set(attention_weights=lambda a: a["attention_weights"].to("meta")), "attention_weights",
        )
    add("cuda-msda-attention_weights-on-cpu", "msda",
        _set(attention_weights=lambda a: a["attention_weights"].cpu()), "attention_weights", device="cuda")
    return c


def _backward_cases():
    """Direct calls of the backward ops with inconsistent saved tensors."""
    c = []
    add = lambda *args, **kw: c.append(BadCase(*args, api=False, **kw))  # noqa: E731
    add("kda_backward-grad_output-shape", "kda_backward",
        _set(grad_output=lambda a: a["grad_output"][:, :-1]), "grad_output")
    add("kda_backward-output-shape", "kda_backward", _set(output=lambda a: a["output"][..., :-1]), "output")
    add("kda_backward-logsumexp-shape", "kda_backward", _set(logsumexp=lambda a: a["logsumexp"][0]), "logsumexp")
    add("kda_backward-level_start_index-inconsistent", "kda_backward",
        _set(level_start_index=lambda a: a["level_start_index"] + 1), "level_start_index")
    add("msda_backward-grad_output-shape", "msda_backward",
        _set(grad_output=lambda a: a["grad_output"][..., :-1]), "grad_output")
    add("msda_backward-attention_weights-shape", "msda_backward",
        _set(attention_weights=lambda a: a["attention_weights"][:, :1].contiguous()), "attention_weights")
    return c


CASES = {case.id: case for case in _kda_cases() + _msda_cases() + _backward_cases()}


def build_args(case: BadCase) -> dict:
    forward = case.op.split("_")[0]
    a = base_args(forward, case.device)
    if case.op == "kda_backward":
        out, lse = torch.ops.lite_detr.kda_forward(*a.values(), 0.5)
        a.update(grad_output=torch.ones_like(out), output=out, logsumexp=lse)
    elif case.op == "msda_backward":
        a.update(grad_output=torch.ones_like(torch.ops.lite_detr.msda_forward(*a.values())))
    case.mutate(a)
    return a


def call_direct(case: BadCase, a: dict):
    lib = torch.ops.lite_detr
    loc_keys = ("spatial_shapes", "level_start_index", "sampling_locations")
    if case.op == "kda":
        return lib.kda_forward(a["query"], a["key"], a["value"], *(a[k] for k in loc_keys), 0.5)
    if case.op == "msda":
        return lib.msda_forward(a["value"], *(a[k] for k in loc_keys), a["attention_weights"])
    if case.op == "kda_backward":
        return lib._kda_backward(a["grad_output"], a["query"], a["key"], a["value"], *(a[k] for k in loc_keys),
                                a["output"], a["logsumexp"], 0.5)
    return lib._msda_backward(a["grad_output"], a["value"], *(a[k] for k in loc_keys), a["attention_weights"])


def call_api(case: BadCase, a: dict):
    if case.op == "kda":
        return ops.kda(**a)
    return ops.msda(**a)


def _params(select, xfail_attr=None):
    params = []
    for case in CASES.values():
        if not select(case):
            continue
        marks = [pytest.mark.cuda] if case.device == "cuda" else []
        if xfail_attr and getattr(case, xfail_attr):
            marks.append(pytest.mark.xfail(strict=True, reason=getattr(case, xfail_attr)))
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


# ---------------------------------------------------------------- Python API


@pytest.mark.parametrize("case", _params(lambda c: c.api))
def test_api_raises_value_error_naming_argument(case):
    a = build_args(case)
    with pytest.raises(ValueError, match=case.names):
        call_api(case, a)


# ---------------------------------------------------------------- direct calls, in a subprocess


def _worker(case_ids):
    """Runs direct calls; prints one JSON line per case ("start" first, so a crash is attributable)."""
    for case_id in case_ids:
        print(json.dumps({"start": case_id}), flush=True)
        case = CASES[case_id]
        try:
            result = call_direct(case, build_args(case))
            outcome = {"outcome": "returned", "devices": [str(t.device) for t in
                                                        (result if isinstance(result, tuple) else (result,))]}
        except Exception as exc:  # noqa: BLE001  (the test inspects the type)
            outcome = {"outcome": "raised", "type": type(exc).__name__, "message": str(exc)}
        print(json.dumps({"id": case_id, **outcome}), flush=True)


@pytest.fixture(scope="module")
def direct_results():
    """Results of every direct-call case this machine can run, restarting the worker after a crash."""
    pending = [c.id for c in CASES.values() if c.direct and (c.device == "cpu" or torch.cuda.is_available())]
    results = {}
    while pending:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.ops.test_op_checks", *pending],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["id"]] = record
                started = None
        if proc.returncode == 0:
            break
        crash = {"outcome": "crashed", "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
        if started is None:  # died outside any case (e.g. on import): every remaining case fails with it
            results.update({i: {"id": i, **crash} for i in pending if i not in results})
            break
        results[started] = {"id": started, **crash}
        pending = [i for i in pending if i not in results]
    return results


@pytest.mark.parametrize("case", _params(lambda c: c.direct, "direct_xfail"))
def test_direct_call_raises_naming_argument(case, direct_results):
    result = direct_results[case.id]
    assert result["outcome"] != "crashed", f"process died with return code {result['returncode']}: {result['stderr']}"
    assert result["outcome"] == "raised", f"no error: the op returned tensors on {result['devices']}"
    assert result["type"] in ("RuntimeError", "ValueError"), result
    assert re.search(case.names, result["message"]), result["message"]


def test_worker_reports_a_valid_call_as_returned():
    """The subprocess harness itself: a valid call comes back as 'returned', not as an error."""
    proc = subprocess.run([sys.executable, "-m", "tests.ops.test_op_checks", "__valid__"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LITE_DETR_TEST_VALID_CASE": "1"})
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert records[-1] == {"id": "__valid__", "outcome": "returned", "devices": ["cpu", "cpu"]}


# ---------------------------------------------------------------- values that are not errors


def test_non_finite_locations_do_not_raise():
    a = base_args("kda")
    loc = a["sampling_locations"].clone()
    loc[0, 0, 0, 0, 0] = float("nan")
    loc[1, 2, 3, 1, 1] = float("inf")
    a["sampling_locations"] = loc
    out = ops.kda(**a)
    assert torch.isfinite(out).all()


def test_checks_accept_the_valid_base_inputs():
    """The base inputs of every case are valid, so each failure above is due to its mutation."""
    for op in ("kda", "msda"):
        a = base_args(op)
        assert torch.isfinite(call_api(BadCase("valid", op, None, ""), a)).all()
        assert call_direct(BadCase("valid", op, None, ""), a) is not None
    ss, lsi = level_layout([(4, 5), (2, 3)])
    assert lsi.tolist() == [0, 20] and ss.tolist() == [[4, 5], [2, 3]]


if __name__ == "__main__":
    if os.environ.get("LITE_DETR_TEST_VALID_CASE"):
        CASES["__valid__"] = BadCase("__valid__", "kda", lambda a: None, "")
    _worker(sys.argv[1:])
