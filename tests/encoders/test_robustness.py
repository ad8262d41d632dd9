"""autocast, torch.compile, deepcopy / pickle, and use_checkpoint."""
import copy
import io
import logging
import os
import pickle
from collections import Counter

import pytest
import torch

from lite_detr_plugin import LiteEncoder

from ..helpers.fake_detrex import hide_detrex
from ..helpers.modules import missing_gradients
from .helpers import load_shared, make_encoder, make_inputs
from .oracles import paper_encoder, released_encoder

AUTOCAST_CASES = [("H3L1-(2+1)x3", "released", "kda"), ("H3L1-(2+1)x3", "paper", "kda"),
                  ("H3L1-(2+1)x3", "paper", "msda"), ("standard", "released", "msda")]
# |autocast - float32| on outputs of unit scale (LayerNorm'd) after 9 layers: max and mean
TOLERANCE = {torch.bfloat16: (0.2, 0.02), torch.float16: (0.03, 0.003)}


def detrex_output_dtype(query, device_type, dtype):
    """What detrex's encoder returns under this autocast: its layers end with
    ``LayerNorm(x + Linear(x))`` (FFN with identity, then norm), x in the query's dtype."""
    linear = torch.nn.Linear(query.shape[-1], query.shape[-1]).to(query.device)
    norm = torch.nn.LayerNorm(query.shape[-1]).to(query.device)
    with torch.no_grad(), torch.autocast(device_type, dtype=dtype):
        return norm(query + linear(query)).dtype


def cpu_autocast_supports(dtype):
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2))
    except Exception:  # older PyTorch: CPU autocast is bfloat16 only
        return False
    return True


def _check_autocast(device, dtype, variant, mode, attention, half_query):
    encoder = make_encoder(variant, low_query_mode=mode, attention=attention, dtype=torch.float32).to(device)
    inputs = make_inputs(4, dtype=torch.float32, device=device)
    with torch.no_grad():
        reference = encoder(**inputs)
    if half_query:  # under AMP the neck's output (the query) is already half precision; pos stays float32
        inputs["query"] = inputs["query"].to(dtype)
    expected_dtype = detrex_output_dtype(inputs["query"], device, dtype)
    encoder.train()
    with torch.autocast(device, dtype=dtype):
        out = encoder(**inputs)
    assert out.dtype == expected_dtype
    assert out.shape == reference.shape
    assert torch.isfinite(out).all()
    max_tol, mean_tol = TOLERANCE[dtype]
    diff = (out.float() - reference).abs()
    assert diff.max() < max_tol and diff.mean() < mean_tol, (diff.max().item(), diff.mean().item())
    out.float().square().sum().backward()
    assert missing_gradients(encoder) == []
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize("half_query", [False, True], ids=["fp32-query", "half-query"])
@pytest.mark.parametrize("variant,mode,attention", AUTOCAST_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cpu_autocast(dtype, variant, mode, attention, half_query):
    if not cpu_autocast_supports(dtype):
        pytest.skip(f"CPU autocast does not support {dtype} in this PyTorch")
    _check_autocast("cpu", dtype, variant, mode, attention, half_query)


@pytest.mark.cuda
@pytest.mark.parametrize("half_query", [False, True], ids=["fp32-query", "half-query"])
@pytest.mark.parametrize("variant,mode,attention", AUTOCAST_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cuda_autocast(dtype, variant, mode, attention, half_query):
    _check_autocast("cuda", dtype, variant, mode, attention, half_query)


@pytest.mark.cuda
@pytest.mark.parametrize("attention", ["kda", "msda"])
@pytest.mark.parametrize("mode", ["released", "paper"])
def test_cuda_matches_oracle(mode, attention):
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode=mode, attention=attention)
    inputs = make_inputs(4)
    lite = encoder.lite
    with torch.no_grad():
        if mode == "released":
            expected = released_encoder(encoder, inputs["query"], inputs["query_pos"], inputs["query_key_padding_mask"],
                                        inputs["spatial_shapes"], inputs["valid_ratios"], 3, lite.num_blocks)
        else:
            expected = paper_encoder(encoder, inputs["query"], inputs["query_pos"], inputs["query_key_padding_mask"],
                                     inputs["spatial_shapes"], inputs["reference_points"], 3, 2, 3)
        encoder.float().cuda()
        out = encoder(**make_inputs(4, dtype=torch.float32, device="cuda"))
    assert out.is_cuda
    torch.testing.assert_close(out.double().cpu(), expected, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ torch.compile


def _compare_compiled(backend, variant, mode, attention, placement="auto"):
    torch._logging.set_logs(dynamo=logging.ERROR)  # the graph break at level_start_index.item() is expected
    torch._dynamo.reset()
    encoder = make_encoder(variant, low_query_mode=mode, attention=attention, value_placement=placement,
                           dtype=torch.float32)
    inputs = make_inputs(4, dtype=torch.float32, requires_grad=True)
    weights = torch.randn(2, 128, 32, generator=torch.Generator().manual_seed(1))
    eager = encoder(**inputs)
    (eager * weights).sum().backward()
    eager_grads = {n: p.grad.clone() for n, p in encoder.named_parameters()}
    eager_query_grad = inputs["query"].grad.clone()
    encoder.zero_grad()
    inputs["query"].grad = None
    compiled = torch.compile(encoder, backend=backend)
    out = compiled(**inputs)
    (out * weights).sum().backward()
    torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inputs["query"].grad, eager_query_grad, atol=1e-5, rtol=1e-4)
    for name, parameter in encoder.named_parameters():
        torch.testing.assert_close(parameter.grad, eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    torch._dynamo.reset()


@pytest.mark.parametrize("variant,mode,attention,placement", [
    ("H3L1-(1+1)x2", "paper", "kda", "samples"),
    ("H3L1-(1+1)x2", "released", "msda", "tokens"),
])
def test_torch_compile_matches_eager(variant, mode, attention, placement):
    """Dynamo + AOTAutograd through the registered fake kernels and autograd formulas
    (the aot_eager backend: the inductor codegen itself costs ~1 min on this CPU)."""
    _compare_compiled("aot_eager", variant, mode, attention, placement)


@pytest.mark.skipif(os.environ.get("LITE_DETR_TEST_INDUCTOR") != "1",
                    reason="inductor compilation takes minutes on a 2-core CPU; set LITE_DETR_TEST_INDUCTOR=1")
@pytest.mark.parametrize("mode", ["released", "paper"])
def test_torch_compile_inductor_matches_eager(mode):
    _compare_compiled("inductor", "H3L1-(1+1)x1", mode, "kda")


# ------------------------------------------------------------------ copies


def test_deepcopy_is_equal_and_independent():
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode="paper")
    clone = copy.deepcopy(encoder)
    inputs = make_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(clone(**inputs), encoder(**inputs), atol=0, rtol=0)
        originals = {n: p.clone() for n, p in encoder.named_parameters()}
        for parameter in clone.parameters():
            parameter.add_(1.0)
    for name, parameter in encoder.named_parameters():
        assert torch.equal(parameter, originals[name]), name
    shared = {p.data_ptr() for p in encoder.parameters()} & {p.data_ptr() for p in clone.parameters()}
    assert not shared
    assert type(clone.layers[0].self_attn) is type(encoder.layers[0].self_attn)


@pytest.mark.parametrize("attention", ["kda", "msda"])
def test_pickle_round_trip(attention, monkeypatch):
    hide_detrex(monkeypatch)  # with detrex imported pickling fails: see tests/layers/test_detrex_reinit.py
    encoder = make_encoder("H3L2-(2+1)x2", attention=attention, low_query_mode="released")
    restored = pickle.loads(pickle.dumps(encoder))
    assert isinstance(restored, LiteEncoder) and restored.variant == "H3L2-(2+1)x2"
    buffer = io.BytesIO()
    torch.save(encoder, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    inputs = make_inputs(5)
    with torch.no_grad():
        expected = encoder(**inputs)
        torch.testing.assert_close(restored(**inputs), expected, atol=0, rtol=0)
        torch.testing.assert_close(loaded(**inputs), expected, atol=0, rtol=0)


def test_state_dict_round_trip():
    encoder = make_encoder("H3L1-(2+1)x3")
    fresh = make_encoder("H3L1-(2+1)x3", seed=1)
    fresh.load_state_dict(encoder.state_dict(), strict=True)
    inputs = make_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs), encoder(**inputs), atol=0, rtol=0)


# ------------------------------------------------------------------ use_checkpoint


def _count_layer_calls(encoder):
    """Counts each layer's calls with a *pre*-hook: non-reentrant checkpointing stops the
    recomputation as soon as the saved tensors are rebuilt, so post-hooks may not run."""
    counts = Counter()
    handles = [layer.register_forward_pre_hook(lambda m, a, i=i: counts.update([i]))
               for i, layer in enumerate(encoder.layers)]
    return counts, handles


def _saved_bytes(fn):
    """Bytes of the tensors autograd saves for backward while ``fn`` runs."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, total[0]


@pytest.mark.parametrize("mode", ["released", "paper"])
def test_use_checkpoint_recomputes_and_matches(mode):
    """Training mode with dropout: the checkpointed encoder recomputes every layer once
    during backward, saves less for backward, and gives the same outputs and gradients
    (the recomputation replays the same dropout masks)."""
    options = dict(low_query_mode=mode, attn_dropout=0.1, ffn_dropout=0.1, train=True)
    checkpointed = make_encoder("H3L1-(2+1)x2", use_checkpoint=True, **options)
    plain = load_shared(make_encoder("H3L1-(2+1)x2", use_checkpoint=False, **options), checkpointed)
    num_layers = len(checkpointed.layers)
    results = {}
    for name, encoder in (("checkpointed", checkpointed), ("plain", plain)):
        counts, handles = _count_layer_calls(encoder)
        inputs = make_inputs(4, requires_grad=True)
        torch.manual_seed(1)
        out, saved = _saved_bytes(lambda: encoder(**inputs))
        forward_calls = sum(counts.values())
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results[name] = dict(out=out.detach(), saved=saved, forward=forward_calls, total=sum(counts.values()),
                             per_layer=dict(counts), grads={n: p.grad for n, p in encoder.named_parameters()},
                             query_grad=inputs["query"].grad)
        for handle in handles:
            handle.remove()
    ckpt, ref = results["checkpointed"], results["plain"]
    assert ckpt["forward"] == ref["forward"] == num_layers
    assert ref["total"] == num_layers  # no recomputation without checkpointing
    assert ckpt["per_layer"] == {i: 2 for i in range(num_layers)}  # each layer recomputed once in backward
    assert ckpt["saved"] < ref["saved"] / 4, (ckpt["saved"], ref["saved"])
    torch.testing.assert_close(ckpt["out"], ref["out"], atol=1e-12, rtol=0)
    torch.testing.assert_close(ckpt["query_grad"], ref["query_grad"], atol=1e-10, rtol=0)
    for name, grad in ref["grads"].items():
        torch.testing.assert_close(ckpt["grads"][name], grad, atol=1e-10, rtol=0, msg=name)


def test_use_checkpoint_is_inactive_in_eval():
    encoder = make_encoder("H3L1-(2+1)x2", use_checkpoint=True)
    counts, _ = _count_layer_calls(encoder)
    inputs = make_inputs(4, requires_grad=True)
    encoder(**inputs).sum().backward()
    assert sum(counts.values()) == len(encoder.layers)
