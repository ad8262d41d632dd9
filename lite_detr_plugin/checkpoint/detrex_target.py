"""The detrex side of a conversion: build the model a config describes and check it can take the weights.

Needs detectron2 (and whatever the config imports); imported only when used.
"""
from typing import List, Optional, Sequence

from torch import nn

from ..encoders import LiteEncoder
from ..layers import KeyAwareDeformableAttention


def build_model_from_config(config_file: str, overrides: Sequence[str] = (), device: str = "cpu") -> nn.Module:
    """``instantiate(cfg.model)`` of a detectron2 LazyConfig, on ``device``, in eval mode."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(config_file)
    cfg = LazyConfig.apply_overrides(cfg, list(overrides))
    if "model" not in cfg:
        raise ValueError(f"{config_file} has no `model` entry")
    if "device" in cfg.model:
        cfg.model.device = device
    model = instantiate(cfg.model)
    return model.to(device).eval()


def find_lite_encoder(model: nn.Module) -> Optional[LiteEncoder]:
    transformer = getattr(model, "transformer", None)
    encoder = getattr(transformer, "encoder", None)
    if isinstance(encoder, LiteEncoder):
        return encoder
    found = [m for m in model.modules() if isinstance(m, LiteEncoder)]
    return found[0] if len(found) == 1 else None


def check_model(model: nn.Module, variant: str) -> List[str]:
    """What keeps ``model`` from computing what the released checkpoint of ``variant`` computes.

    The state-dict comparison catches most differences; these are the ones it
    cannot see: the variant's H, the low-level layer semantics, and key ≡ value
    attention.
    """
    problems = []
    encoder = find_lite_encoder(model)
    if encoder is None:
        return ["the model has no LiteEncoder at model.transformer.encoder (use lite_detr_plugin.swap_encoder)"]
    if encoder.variant != variant:
        problems.append(f"the config's encoder variant is {encoder.variant}, the checkpoint's {variant}")
    if encoder.low_query_mode != "released":
        problems.append(
            f"the config's encoder has low_query_mode={encoder.low_query_mode!r}; the released checkpoints need "
            f"'released' (every token queries in the last layer of a block)"
        )
    if encoder.attention != "kda":
        problems.append(f"the config's encoder attention is {encoder.attention!r}; the released checkpoints use 'kda'")
    if encoder.low_ffn_dim != 256:
        problems.append(f"the config's light FFN has {encoder.low_ffn_dim} hidden units; the released one has 256")
    decoder = getattr(getattr(model, "transformer", None), "decoder", None)
    if decoder is not None:
        kda = [m for m in decoder.modules() if isinstance(m, KeyAwareDeformableAttention)]
        if not kda:
            problems.append("the decoder cross-attention is not KDA (swap_encoder(..., decoder_kda=True))")
        elif any(m.key_proj is not None for m in kda):
            problems.append("the decoder KDA has a key projection; the released one uses key = value")
    if any(layer.self_attn.key_proj is not None for layer in encoder.layers
           if isinstance(layer.self_attn, KeyAwareDeformableAttention)):
        problems.append("the encoder KDA has a key projection; the released one uses key = value")
    return problems


# The released model's PositionEmbeddingSineHW: temperature 20 on both axes, normalized, no offset.
RELEASED_POSITION_EMBEDDING = {"temperature": 20, "offset": 0.0, "normalize": True}


def position_embedding_warnings(model: nn.Module) -> List[str]:
    """Where the model's sine position embedding differs from the released model's.

    detrex's ``dino_r50_4scale_12ep`` uses temperature 10000 and offset -0.5; its
    ``24ep`` config (20, 0.0) matches the released Lite-DINO. The weights load
    either way, but the released weights only reproduce their results with the
    released embedding.
    """
    embedding = getattr(model, "position_embedding", None)
    if embedding is None or not hasattr(embedding, "temperature"):
        return []
    found = {key: getattr(embedding, key, None) for key in RELEASED_POSITION_EMBEDDING}
    if all(found[k] == v for k, v in RELEASED_POSITION_EMBEDDING.items()):
        return []
    shown = ", ".join(f"{k}={v}" for k, v in found.items())
    return [
        f"the config's position embedding has {shown}; the released model used temperature=20, offset=0.0, "
        f"normalize=True (detrex's dino_r50_4scale_24ep settings). To evaluate the released weights, override "
        f"model.position_embedding.temperature=20 model.position_embedding.offset=0.0"
    ]
