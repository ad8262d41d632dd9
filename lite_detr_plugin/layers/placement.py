"""Where a deformable attention applies its value projection: the cost model behind ``value_placement="auto"``.

Pure functions of sizes (no module, no tensor). The placements (see
:mod:`lite_detr_plugin.layers.deformable_attention` for what each computes):

* ``"tokens"``: ``value_proj`` over the S value tokens, then sampling of D = C/M
  channels per head (KDA with a separate key projection samples keys too);
* ``"samples"``: sampling of the raw ``[x, 1]`` (C + 1 channels per head), then each
  head's ``[W_m | b_m]``; KDA also folds its query into the input space. The same
  function as "tokens" up to float rounding;
* ``"output"``: the released code's ``value_proj_after``, a different function; "auto"
  never picks it.

"auto" picks the cheaper of "tokens" and "samples" for each call. Cost = GEMM
multiply-adds + ``κ`` × bilinear sample-channel reads (:func:`sampling_cost`, counted as
fvcore counts ``grid_sample``). ``κ`` is the cost model's one parameter:

* ``cost="measured"`` (what the modules use): ``κ`` from :data:`SAMPLE_COST_FACTOR`, fitted to
  timings of both placements (``lite-detr-benchmark-placement``);
* ``cost="flops"``: ``κ = 1``, fvcore's count, so that a FLOP count does not depend on the
  machine. The FLOP tools ask for it (:func:`choosing_by`, :func:`choose_placement`);
* ``cost="exported"``: :data:`EXPORTED_SAMPLE_COST_FACTOR`, for graphs whose sampling is
  decomposed into standard ops (the ONNX export traces under it).

Sampling 257 channels per head is far slower than a GEMM multiply-add, so on the CPU
"samples" only wins when the queries are few next to the tokens (a decoder's 900 queries
on 22k tokens).
"""
import contextlib
from typing import Dict, Iterator, Optional, Tuple

import torch

VALUE_PLACEMENTS = ("tokens", "samples", "auto", "output")
PLACEMENT_COSTS = ("measured", "flops", "exported")
ATTENTION_KINDS = ("kda", "msda")

#: ``κ``: the time of one :func:`sampling_cost` unit over one GEMM multiply-add, per device
#: type and attention. CPU: least-squares fit of ``lite-detr-benchmark-placement`` (both
#: placements at 900, 5,523 and 16,700 queries on 22,223 tokens, one thread, AVX-512).
#: CUDA: not measured (no GPU was available); estimated from the throughput of tensor-core
#: GEMMs against a gather-bound kernel, which makes "tokens" win at detrex's shapes.
#: Other device types use the CUDA factors.
SAMPLE_COST_FACTOR = {
    "cpu": {"kda": 10.0, "msda": 5.0},
    "cuda": {"kda": 100.0, "msda": 100.0},
}
#: ``κ`` of ``cost="exported"``: an exported graph samples with decomposed standard ops (GridSample,
#: products and sums), far slower per channel than the fused kernels, so "tokens" wins there. Lite-DINO
#: R50 at 800×1333 in ONNX Runtime (CPU, 2 threads): 3.19 s with the CPU factors ("samples" in the
#: decoder), 2.59 s with "tokens" everywhere.
EXPORTED_SAMPLE_COST_FACTOR = 100.0

# The cost model "auto" uses inside a forward; the FLOP tools switch it for the duration of a count
# (:func:`choosing_by`). A plain module global rather than a ContextVar, so that torch.compile
# guards on it instead of breaking the graph.
_ACTIVE_COST = {"cost": "measured"}


def check_choice(name: str, value, choices) -> None:
    """ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def sampling_cost(num_query: int, num_heads: int, num_levels: int, num_points: int, channels: int) -> int:
    """Multiply-adds of bilinear sampling, counted as fvcore counts grid_sample (4 per output)."""
    return 4 * num_query * num_heads * num_levels * num_points * channels


def placement_terms(attention: str, num_query: int, num_value: int, embed_dim: int, num_heads: int, num_levels: int,
                    num_points: int, separate_key: bool = False) -> Dict[str, Tuple[int, int]]:
    """``{"tokens": (gemm, sampling), "samples": (gemm, sampling)}``: each placement's GEMM
    multiply-adds and :func:`sampling_cost` units for one call of Nq queries on S values.

    Args:
        attention: "kda" or "msda".
        separate_key: KDA with its own ``key_proj`` (keys are then projected and sampled too
            under "tokens"; "samples" folds the query through ``key_proj`` instead of ``value_proj``).
    """
    check_choice("attention", attention, ATTENTION_KINDS)
    C, M, L, P = embed_dim, num_heads, num_levels, num_points
    key = attention == "kda" and separate_key
    tokens_gemm = num_value * C * C + (num_value * C * C if key else 0)
    tokens_sampling = sampling_cost(num_query, M, L, P, C // M) * (2 if key else 1)
    fold = num_query * C * (C + 1) if attention == "kda" else 0  # the query folded into the input space
    samples_gemm = num_query * C * (C + 1) + fold
    samples_sampling = sampling_cost(num_query, M, L, P, C + 1)
    return {"tokens": (tokens_gemm, tokens_sampling), "samples": (samples_gemm, samples_sampling)}


def sample_cost_factor(attention: str, device_type: str = "cpu", cost: str = "measured") -> float:
    """``κ`` of the cost model ``cost`` for this attention on this device type."""
    check_choice("cost", cost, PLACEMENT_COSTS)
    check_choice("attention", attention, ATTENTION_KINDS)
    if cost == "flops":
        return 1.0
    if cost == "exported":
        return EXPORTED_SAMPLE_COST_FACTOR
    return SAMPLE_COST_FACTOR.get(device_type, SAMPLE_COST_FACTOR["cuda"])[attention]


def active_cost() -> str:
    """The cost model "auto" uses now: "measured", or "flops" inside :func:`choosing_by`."""
    return _ACTIVE_COST["cost"]


@contextlib.contextmanager
def choosing_by(cost: str) -> Iterator[None]:
    """Inside, ``value_placement="auto"`` attentions choose by ``cost`` ("flops": fvcore's count,
    so that a FLOP count does not depend on the machine it runs on; "exported": for a graph with
    decomposed sampling). Process-wide: "tokens" and
    "samples" compute the same function, so other threads only see a different speed."""
    check_choice("cost", cost, PLACEMENT_COSTS)
    saved = _ACTIVE_COST["cost"]
    _ACTIVE_COST["cost"] = cost
    try:
        yield
    finally:
        _ACTIVE_COST["cost"] = saved


def choose_placement(value_placement: str, attention: str, num_query: int, num_value: int, embed_dim: int,
                     num_heads: int, num_levels: int, num_points: int, separate_key: bool = False,
                     device_type: str = "cpu", cost: Optional[str] = None) -> str:
    """Where a call applies its value projection: "tokens", "samples" or "output".

    ``value_placement`` other than "auto" is returned as it is; "auto" gives "samples" when
    its cost (:func:`placement_terms` weighted by :func:`sample_cost_factor`) is strictly
    below that of "tokens". ``cost`` defaults to :func:`active_cost`.
    """
    check_choice("value_placement", value_placement, VALUE_PLACEMENTS)
    if value_placement != "auto":
        return value_placement
    kappa = sample_cost_factor(attention, device_type, active_cost() if cost is None else cost)
    terms = placement_terms(attention, num_query, num_value, embed_dim, num_heads, num_levels, num_points,
                            separate_key)
    tokens_gemm, tokens_sampling = terms["tokens"]
    samples_gemm, samples_sampling = terms["samples"]
    cheaper = samples_gemm + kappa * samples_sampling < tokens_gemm + kappa * tokens_sampling
    return "samples" if _known_true(cheaper) else "tokens"


def _known_true(condition) -> bool:
    """``condition`` as a bool. Under torch.compile/torch.export the encoder's low/high split is an
    unbacked size; a comparison of such sizes gives False instead of a data-dependent guard (both
    placements compute the same function). Eagerly, ``condition`` is a bool, or a 0-dim tensor
    under torch.jit.trace (fvcore)."""
    if not torch.compiler.is_compiling():
        return bool(condition)
    # Imported here: the module is heavy and only needed while tracing (dynamo loaded it already).
    from torch.fx.experimental.symbolic_shapes import guard_or_false

    return guard_or_false(condition)
