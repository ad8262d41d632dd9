"""Fuzzing the released-checkpoint converter with damaged state dicts.

A random released-layout state dict (tests/checkpoint's layouts of the three
official checkpoints) is truncated, has keys renamed, tensors reshaped, dropped
or added, or non-tensor values. Contract: ``convert`` never crashes; it either
converts every key (only when nothing was damaged in a way that matters) or
raises ConversionError (a ValueError) that names a damaged key; with
``allow_partial=True`` it returns a report listing them instead.
"""
import torch
from hypothesis import given
from hypothesis import strategies as st

from lite_detr_plugin.checkpoint import ConversionError, convert

from ..checkpoint.helpers import CHECKPOINTS, load_layout, official_state_dict
from .budget import budget

_STATE_DICTS = {}


def released(name):
    if name not in _STATE_DICTS:
        _STATE_DICTS[name] = official_state_dict(load_layout("official", name), seed=0)
    return _STATE_DICTS[name]


DAMAGE = st.sampled_from(["truncate", "rename", "reshape", "drop", "add", "not_tensor", "transpose", "prefix"])


@st.composite
def damaged(draw):
    name = draw(st.sampled_from(sorted(CHECKPOINTS)))
    state = dict(released(name))
    keys = list(state)
    kinds = draw(st.lists(DAMAGE, min_size=1, max_size=3))
    touched = []
    for kind in kinds:
        key = keys[draw(st.integers(0, len(keys) - 1))]
        if key not in state or (kind in ("reshape", "transpose") and not isinstance(state[key], torch.Tensor)):
            continue  # gone, or already made a non-tensor by an earlier damage
        if kind == "truncate":
            cut = draw(st.integers(0, len(state) - 1))
            touched += list(state)[cut:]
            state = dict(list(state.items())[:cut])
        elif kind == "rename":
            state[key + draw(st.sampled_from(["_x", ".extra", "0"]))] = state.pop(key)
            touched.append(key)
        elif kind == "reshape":
            t = state[key]
            state[key] = torch.zeros(t.numel() + draw(st.integers(1, 3)))
            touched.append(key)
        elif kind == "drop":
            del state[key]
            touched.append(key)
        elif kind == "add":
            state[draw(st.sampled_from(["foo.bar", "transformer.encoder.layers.99.norm1.weight", "module"]))] = torch.ones(2)
        elif kind == "not_tensor":
            state[key] = draw(st.sampled_from([None, 3, "w", [1.0]]))
            touched.append(key)
        elif kind == "transpose":
            t = state[key]
            if t.dim() >= 2 and t.shape[0] != t.shape[1]:
                state[key] = t.transpose(0, 1)
                touched.append(key)
        elif kind == "prefix":
            state = {"module." + k: v for k, v in state.items()}  # DDP's prefix: converts fine
    return name, state, kinds


@budget(40)
@given(damaged(), st.booleans())
def test_converter_converts_fully_or_refuses_naming_keys(case, hint):
    name, state, kinds = case
    kwargs = {"name_hint": f"{name}.pth"} if hint else {}
    try:
        converted, report = convert(state, **kwargs)
    except ConversionError as exc:
        assert isinstance(exc, ValueError)
        message = str(exc)
        assert message.strip(), kinds
        assert any(word in message for word in ("key", "shape", "layers", "variant", "missing", "unmapped",
                                                "tensor", "level", "encoder", "checkpoint")), message
        return
    assert report.ok
    assert all(isinstance(v, torch.Tensor) for v in converted.values())


@budget(25)
@given(damaged())
def test_partial_conversion_reports_instead_of_raising(case):
    name, state, _ = case
    try:
        converted, report = convert(state, variant=CHECKPOINTS[name], allow_partial=True)
    except ConversionError as exc:  # not even partially convertible (e.g. not a tensor anywhere usable)
        assert str(exc)
        return
    assert all(isinstance(v, torch.Tensor) for v in converted.values())
    if not report.ok:
        assert report.format()


@budget(30)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_converter_refuses_what_is_not_a_state_dict(value):
    try:
        convert(value)
    except (ValueError, RuntimeError) as exc:
        assert str(exc)
        return
    raise AssertionError(f"converted {value!r}")
