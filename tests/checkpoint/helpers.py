"""Test data and synthetic released-layout state dicts for the checkpoint converter tests."""
import json
import re
from collections import OrderedDict
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"

# Released checkpoint name -> its encoder variant (Lite-DETR README / issue).
CHECKPOINTS = {
    "r50_s2ex3": "H2L2-(2+1)x3",
    "r50_s3ex1": "H3L1-(6+1)x1",
    "r50_s3ex3": "H3L1-(2+1)x3",
}
_HEAD = re.compile(r"(?:transformer\.decoder\.)?(class_embed|bbox_embed)\.\d+\.(.+)")


def load_layout(kind: str, name: str) -> "OrderedDict[str, tuple]":
    """``kind`` "official" or "target"; ``name`` a key of CHECKPOINTS."""
    with open(DATA / f"{kind}_{name}.json") as f:
        return OrderedDict((k, tuple(v)) for k, v in json.load(f).items())


def _random(name: str, shape, generator) -> torch.Tensor:
    if name.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    leaf = name.rsplit(".", 2)
    is_norm_weight = name.endswith(".weight") and (
        re.search(r"(norm\w*|bn\d|downsample\.1|input_proj\.\d+\.1)$", leaf[0]) is not None
    )
    if is_norm_weight:
        return 1.0 + 0.02 * torch.randn(shape, generator=generator)
    return 0.02 * torch.randn(shape, generator=generator)


def official_state_dict(layout, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors in the released layout, heads tied as in the released model.

    The released DINO shares one class head and one box head across its decoder
    layers (``dec_pred_*_embed_share``) and registers them both at the top and in
    the decoder, so all those names hold the same tensor; the two-stage heads are
    separate copies.
    """
    generator = torch.Generator().manual_seed(seed)
    shared, state_dict = {}, OrderedDict()
    for name, shape in layout.items():
        match = _HEAD.fullmatch(name)
        if match is not None:
            key = match.groups()
            if key not in shared:
                shared[key] = _random(name, tuple(shape), generator)
            state_dict[name] = shared[key]
        else:
            state_dict[name] = _random(name, tuple(shape), generator)
    return state_dict


def shapes(state_dict) -> "OrderedDict[str, tuple]":
    return OrderedDict((k, tuple(v.shape)) for k, v in state_dict.items())
