"""Validates the oracle: kda_reference / msda_reference (grid_sample based) against plain Python loops.

The loops are written straight from the equations (Lite DETR eqs. 3-4):
pixel x = loc_x * W - 0.5, y = loc_y * H - 0.5, bilinear weights of the four
neighbouring pixels, zero for pixels outside the map; KDA weights the sampled
values by softmax(scale * q . k) over the L*P samples, MSDA by the given
weights. The compiled op is checked against the same loops, independently of
the reference.
"""
import math

import pytest
import torch

from lite_detr_plugin import ops

from .helpers import make_inputs, require_kernel


def loop_sample(rows, level_start, H, W, head, x, y):
    """Bilinear sample of ``rows[token][head]`` (lists of floats) at normalised (x, y); zero outside."""
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    dim = len(rows[0][head])
    out = [0.0] * dim
    for yy, xx, weight in (
        (y0, x0, (1 - fy) * (1 - fx)),
        (y0, x0 + 1, (1 - fy) * fx),
        (y0 + 1, x0, fy * (1 - fx)),
        (y0 + 1, x0 + 1, fy * fx),
    ):
        if 0 <= yy < H and 0 <= xx < W:
            row = rows[level_start + yy * W + xx][head]
            for d in range(dim):
                out[d] += weight * row[d]
    return out


def loop_attention(x, mode, scale=None):
    """[B][Nq][M * Dv] nested lists; mode "kda" or "msda"."""
    value = x.value.tolist()
    key = x.key.tolist() if x.key is not None else value
    query = x.query.tolist()
    loc = x.sampling_locations.tolist()
    weights = x.attention_weights.tolist()
    shapes = x.spatial_shapes.tolist()
    starts = x.level_start_index.tolist()
    B, Nq, M, L, P, _ = x.sampling_locations.shape
    Mv = x.value.shape[2]
    Dk = x.query.shape[3]
    scale = Dk**-0.5 if scale is None else scale
    result = []
    for b in range(B):
        per_query = []
        for q in range(Nq):
            row = []
            for m in range(M):
                head = 0 if Mv == 1 else m
                logits, values, given = [], [], []
                for l in range(L):
                    H, W = shapes[l]
                    for p in range(P):
                        lx, ly = loc[b][q][m][l][p]
                        v = loop_sample(value[b], starts[l], H, W, head, lx, ly)
                        values.append(v)
                        given.append(weights[b][q][m][l][p])
                        if mode == "kda":
                            k = loop_sample(key[b], starts[l], H, W, head, lx, ly)
                            logits.append(scale * sum(a * c for a, c in zip(query[b][q][m], k)))
                if mode == "kda":
                    top = max(logits)
                    exps = [math.exp(z - top) for z in logits]
                    attention = [e / sum(exps) for e in exps]
                else:
                    attention = given
                dim = len(values[0])
                row += [sum(a * v[d] for a, v in zip(attention, values)) for d in range(dim)]
            per_query.append(row)
        result.append(per_query)
    return torch.tensor(result, dtype=torch.float64)


ORACLE_CASES = [
    pytest.param(dict(key=False), id="shared"),
    pytest.param(dict(key=True, value_dim=2), id="key-Dk3-Dv2"),
    pytest.param(dict(key=False, value_heads=1), id="shared-Mv1"),
    pytest.param(dict(key=True, value_heads=1, locations="far"), id="key-Mv1-far"),
    pytest.param(dict(key=False, locations="borders", shapes=((4, 2), (2, 4))), id="shared-borders"),
    pytest.param(dict(key=True, pad=True, batch=2), id="key-pad-B2"),
]


def _tiny(**overrides):
    params = dict(batch=1, num_query=2, heads=2, key_dim=3, shapes=((3, 4), (2, 3)), points=3)
    params.update(overrides)
    return make_inputs(**params)


@pytest.mark.parametrize("scale", [None, 0.7], ids=["default-scale", "scale0.7"])
@pytest.mark.parametrize("overrides", ORACLE_CASES)
def test_kda_reference_matches_loops(overrides, scale):
    x = _tiny(**overrides)
    expected = loop_attention(x, "kda", scale)
    actual = ops.kda_reference(*x.kda_args(), scale=scale)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("overrides", ORACLE_CASES)
def test_msda_reference_matches_loops(overrides):
    x = _tiny(**overrides)
    expected = loop_attention(x, "msda")
    actual = ops.msda_reference(*x.msda_args())
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("overrides", ORACLE_CASES)
def test_compiled_ops_match_loops(overrides):
    require_kernel("cpu")
    x = _tiny(**overrides)
    torch.testing.assert_close(ops.kda(*x.kda_args()), loop_attention(x, "kda"), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ops.msda(*x.msda_args()), loop_attention(x, "msda"), rtol=1e-12, atol=1e-12)


def test_loop_sampler_hand_values():
    """The loop sampler itself, on values worked out by hand (2x2 map, one channel: 1, 2 / 3, 4)."""
    rows = [[[1.0]], [[2.0]], [[3.0]], [[4.0]]]
    sample = lambda x, y: loop_sample(rows, 0, 2, 2, 0, x, y)[0]  # noqa: E731
    assert sample(0.25, 0.25) == 1.0  # pixel centre (0, 0)
    assert sample(0.75, 0.75) == 4.0  # pixel centre (1, 1)
    assert sample(0.5, 0.5) == 2.5  # the middle: mean of the four
    assert sample(0.5, 0.25) == 1.5  # between (0, 0) and (0, 1)
    assert sample(0.0, 0.25) == 0.5  # half of pixel (0, 0), half of a zero outside
    assert sample(-0.25, 0.25) == 0.0  # pixel x = -1: only outside neighbours contribute
    assert sample(1.5, 0.5) == 0.0
