"""Input validation for the KDA / MSDA ops: one ValueError that names the argument."""
from typing import Optional

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_symbolic(t: torch.Tensor) -> bool:
    """True while tracing (torch.compile, export, meta tensors): values are unknown."""
    if torch.compiler.is_compiling() or t.device.type == "meta":
        return True
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def reads_layout_values(t: torch.Tensor) -> bool:
    """Whether the checks may read the values of the level layout tensor ``t``.

    Only for real CPU tensors, where a read is no device sync. On CUDA a read would be a
    device->host copy in every attention call; there the kernels validate the layout
    themselves (every sample row is bounded by [0, S)), and a caller that holds a host copy
    (LiteEncoder) checks it once per forward.
    """
    return t.device.type == "cpu" and not _is_symbolic(t)


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _require_tensor(op: str, name: str, t, dim: int, layout: str, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a tensor {layout}, got {type(t).__name__}")
    if t.dim() != dim:
        raise ValueError(f"{op}: {name} must be a {dim}-D tensor {layout}, got shape {_shape(t)}")
    if t.device != device:
        raise ValueError(f"{op}: {name} must be on the same device as value ({device}), got {t.device}")


def check_sampling_args(
    op: str,
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
) -> dict:
    """Checks what KDA and MSDA share and returns the sizes B, S, Mv, Dv, Nq, M, L, P."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{op}: value must be a tensor [B, S, Mv, Dv], got {type(value).__name__}")
    device = value.device
    _require_tensor(op, "value", value, 4, "[B, S, Mv, Dv]", device)
    if value.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: value must be float16, bfloat16, float32 or float64, got {value.dtype}")
    _require_tensor(op, "spatial_shapes", spatial_shapes, 2, "[L, 2] (H, W)", device)
    _require_tensor(op, "level_start_index", level_start_index, 1, "[L]", device)
    _require_tensor(op, "sampling_locations", sampling_locations, 6, "[B, Nq, M, L, P, 2]", device)
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.dtype != torch.int64:
            raise ValueError(f"{op}: {name} must be int64, got {t.dtype}")
    if spatial_shapes.shape[1] != 2:
        raise ValueError(f"{op}: spatial_shapes must be [L, 2] (H, W), got shape {_shape(spatial_shapes)}")
    if not sampling_locations.is_floating_point():
        raise ValueError(f"{op}: sampling_locations must be a floating tensor, got {sampling_locations.dtype}")

    B, S, Mv, Dv = value.shape
    _, Nq, M, L, P, two = sampling_locations.shape
    if sampling_locations.shape[0] != B or two != 2:
        raise ValueError(
            f"{op}: sampling_locations must be [B={B}, Nq, M, L, P, 2], got shape {_shape(sampling_locations)}"
        )
    if spatial_shapes.shape[0] != L or level_start_index.shape[0] != L:
        raise ValueError(
            f"{op}: sampling_locations has L={L} levels but spatial_shapes has {spatial_shapes.shape[0]} "
            f"and level_start_index has {level_start_index.shape[0]}"
        )
    if L < 1 or P < 1:
        raise ValueError(f"{op}: need at least one level and one point, got L={L}, P={P}")
    if Mv not in (1, M):
        raise ValueError(
            f"{op}: value has {Mv} heads; expected M={M} (one per query head) or 1 (shared by all heads)"
        )
    if Dv < 1:
        raise ValueError(f"{op}: value must have at least one channel, got shape {_shape(value)}")

    if reads_layout_values(spatial_shapes):
        check_level_layout(op, spatial_shapes.tolist(), level_start_index.tolist(), S)
    return dict(B=B, S=S, Mv=Mv, Dv=Dv, Nq=Nq, M=M, L=L, P=P)


def check_level_layout(op: str, shapes, starts, num_value: int) -> None:
    """ValueError unless the host lists ``shapes`` [[H, W], ...] and ``starts`` describe ``num_value``
    tokens level after level: positive sizes, starts the running sum of H*W, sum of H*W = S."""
    total = 0
    for level, ((h, w), start) in enumerate(zip(shapes, starts)):
        if h < 1 or w < 1:
            raise ValueError(f"{op}: spatial_shapes[{level}] must be positive (H, W), got ({h}, {w})")
        if start != total:
            raise ValueError(
                f"{op}: level_start_index[{level}] must be {total} (the sum of H*W of the levels before), "
                f"got {start}"
            )
        total += h * w
    if total != num_value:
        raise ValueError(f"{op}: sum of H*W over spatial_shapes is {total} but value has S={num_value} tokens")


def check_kda_args(
    query: torch.Tensor,
    key: Optional[torch.Tensor],
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
) -> dict:
    sizes = check_sampling_args("kda", value, spatial_shapes, level_start_index, sampling_locations)
    B, S, Mv, Dv, Nq, M = (sizes[k] for k in ("B", "S", "Mv", "Dv", "Nq", "M"))
    _require_tensor("kda", "query", query, 4, "[B, Nq, M, Dk]", value.device)
    if query.dtype != value.dtype:
        raise ValueError(f"kda: query dtype {query.dtype} must match value dtype {value.dtype}")
    if tuple(query.shape[:3]) != (B, Nq, M):
        raise ValueError(f"kda: query must be [B={B}, Nq={Nq}, M={M}, Dk], got shape {_shape(query)}")
    Dk = query.shape[3]
    if key is None:
        if Dk != Dv:
            raise ValueError(
                f"kda: with key=None (key shared with value) query must have Dk == Dv={Dv}, got Dk={Dk}"
            )
    else:
        _require_tensor("kda", "key", key, 4, "[B, S, Mv, Dk]", value.device)
        if key.dtype != value.dtype:
            raise ValueError(f"kda: key dtype {key.dtype} must match value dtype {value.dtype}")
        if tuple(key.shape) != (B, S, Mv, Dk):
            raise ValueError(f"kda: key must be [B={B}, S={S}, Mv={Mv}, Dk={Dk}], got shape {_shape(key)}")
    sizes["Dk"] = Dk
    return sizes


def check_msda_args(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> dict:
    sizes = check_sampling_args("msda", value, spatial_shapes, level_start_index, sampling_locations)
    _require_tensor("msda", "attention_weights", attention_weights, 5, "[B, Nq, M, L, P]", value.device)
    if not attention_weights.is_floating_point():
        raise ValueError(f"msda: attention_weights must be a floating tensor, got {attention_weights.dtype}")
    expected = tuple(sizes[k] for k in ("B", "Nq", "M", "L", "P"))
    if tuple(attention_weights.shape) != expected:
        raise ValueError(
            "msda: attention_weights must be [B={}, Nq={}, M={}, L={}, P={}], got shape {}".format(
                *expected, _shape(attention_weights)
            )
        )
    return sizes
