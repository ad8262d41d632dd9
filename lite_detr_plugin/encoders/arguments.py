"""Type and range checks of LiteEncoder's numeric and flag keywords: one ValueError naming the keyword.

Without them a wrong type (``embed_dim=None`` from a config, ``attn_dropout="0.1"``)
surfaced as a TypeError deep inside nn.Linear or nn.Dropout.
"""
import numbers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_encoder_arguments(**arguments) -> None:
    """``embed_dim``, ``num_heads``, ``feedforward_dim``, ``num_points``: integers >= 1;
    ``attn_dropout``, ``ffn_dropout``: numbers in [0, 1]; ``post_norm``, ``use_checkpoint``,
    ``use_key_proj``: booleans. Other names are ignored."""
    for name in ("embed_dim", "num_heads", "feedforward_dim", "num_points"):
        if name in arguments and not (_is_int(arguments[name]) and arguments[name] >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {arguments[name]!r}")
    for name in ("attn_dropout", "ffn_dropout"):
        value = arguments.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    for name in ("post_norm", "use_checkpoint", "use_key_proj"):
        if name in arguments and not isinstance(arguments[name], bool):
            raise ValueError(f"{name} must be True or False, got {arguments[name]!r}")
