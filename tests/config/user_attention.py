"""A user's own attention, registered by name as a user package would do it.

Importing this module registers :class:`DenseTokenAttention` as ``"dense_tokens"``
(tests import it inside a fixture that unregisters it afterwards). It is not a
deformable attention: every query attends to every value token with
``nn.MultiheadAttention``. It takes detrex's MSDA constructor keywords and forward
signature, records the query and value lengths of each call, and has no
``value_placement`` / ``use_key_proj``.
"""
from typing import List, Tuple

from torch import nn

from lite_detr_plugin.registry import ATTENTION_REGISTRY

NAME = "dense_tokens"


@ATTENTION_REGISTRY.register(aliases=(NAME,))
class DenseTokenAttention(nn.Module):
    def __init__(self, embed_dim=256, num_heads=8, num_levels=4, num_points=4, dropout=0.1, batch_first=False):
        super().__init__()
        self.embed_dim, self.num_heads, self.num_levels, self.num_points = embed_dim, num_heads, num_levels, num_points
        self.batch_first = batch_first
        self.dropout = nn.Dropout(dropout)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.calls: List[Tuple[int, int]] = []

    def forward(self, query, key=None, value=None, identity=None, query_pos=None, key_padding_mask=None,
                reference_points=None, spatial_shapes=None, level_start_index=None, **kwargs):
        value = query if value is None else value
        identity = query if identity is None else identity
        if not self.batch_first:
            query, value, identity = (t.transpose(0, 1) for t in (query, value, identity))
            query_pos = None if query_pos is None else query_pos.transpose(0, 1)
        self.calls.append((query.shape[1], value.shape[1]))
        q = query if query_pos is None else query + query_pos
        out, _ = self.attn(q, value, value, key_padding_mask=key_padding_mask, need_weights=False)
        out = identity + self.dropout(out)
        return out if self.batch_first else out.transpose(0, 1)

