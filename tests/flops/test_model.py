"""model_gflops: the backbone / neck / encoder / decoder / other split, on a toy detector (no detrex)."""
import pytest
import torch
from torch import nn

from lite_detr_plugin import ops
from lite_detr_plugin.encoders import LiteEncoder
from lite_detr_plugin.flops import model_gflops
from lite_detr_plugin.layers import MultiScaleDeformableAttention
from lite_detr_plugin.layers.placement import active_cost

C, M, P, F = 16, 2, 2, 32
H, W = 4, 6
N = H * W


@pytest.fixture(autouse=True)
def _compiled():
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = LiteEncoder(embed_dim=C, num_heads=M, feedforward_dim=F, attn_dropout=0.0, ffn_dropout=0.0,
                                   num_layers=1, num_feature_levels=1, variant="standard", attention="msda",
                                   value_placement="tokens", num_points=P)
        self.decoder = nn.Linear(C, 8)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, C, 1)
        self.neck = nn.Linear(C, C)
        self.transformer = Transformer()
        self.class_embed = nn.Linear(8, 3)

    def forward(self, image):
        tokens = self.neck(self.backbone(image).flatten(2).transpose(1, 2))
        ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
        reference_points = torch.stack([xs.reshape(-1) / W, ys.reshape(-1) / H], -1)[None, :, None]
        memory = self.transformer.encoder(
            query=tokens, query_pos=torch.zeros_like(tokens), spatial_shapes=torch.tensor([[H, W]]),
            level_start_index=torch.tensor([0]), reference_points=reference_points,
            valid_ratios=torch.ones(1, 1, 2),
        )
        return self.class_embed(self.transformer.decoder(memory))


def test_parts():
    result = model_gflops(Toy().eval(), (torch.randn(1, 3, H, W),), use_detectron2=False)
    backbone = N * C * 3  # 1×1 conv
    neck = N * C * C
    encoder = (
        N * C * (M * 1 * P * 2)  # sampling_offsets (L = 1)
        + N * C * (M * 1 * P)  # attention_weights
        + N * C * C  # value_proj
        + 4 * N * M * 1 * P * (C // M)  # sampling
        + N * C * C  # output_proj
        + 2 * N * C * F  # FFN
        + 2 * 5 * N * C  # LayerNorms
    )
    decoder = N * C * 8
    other = N * 8 * 3  # class_embed
    assert result["backbone"] * 1e9 == pytest.approx(backbone)
    assert result["neck"] * 1e9 == pytest.approx(neck)
    assert result["encoder"] * 1e9 == pytest.approx(encoder)
    assert result["decoder"] * 1e9 == pytest.approx(decoder)
    assert result["other"] * 1e9 == pytest.approx(other)
    assert result["total"] * 1e9 == pytest.approx(backbone + neck + encoder + decoder + other)
    assert result["unsupported_ops"] == {}
    assert result["modules"]["encoder"] == "transformer.encoder"


def test_missing_parts_count_zero():
    model = nn.Sequential(nn.Linear(4, 5))
    result = model_gflops(model, (torch.randn(2, 4),))
    assert result["encoder"] == result["backbone"] == 0
    assert result["other"] * 1e9 == pytest.approx(2 * 4 * 5)


class CrossAttention(nn.Module):
    """A decoder-style MSDA call: NQ queries on one NV-token map, value_placement="auto"."""

    def __init__(self):
        super().__init__()
        self.decoder = MultiScaleDeformableAttention(C, M, 1, P, dropout=0.0, batch_first=True)

    def forward(self, query, memory):
        reference_points = torch.full((1, query.shape[1], 1, 2), 0.5)
        return self.decoder(query, value=memory, reference_points=reference_points,
                            spatial_shapes=torch.tensor([[2, 3]]), level_start_index=torch.tensor([0]))


def test_auto_placement_counted_by_flops_not_by_measured_time():
    """2 queries on 6 tokens: by FLOPs "samples" is cheaper, by measured CPU time "tokens" (κ = 5).
    The count is of "samples", and the cost model in use is "measured" again afterwards."""
    NQ, NV = 2, 6
    model = CrossAttention().eval()
    assert model.decoder.placement(NQ, NV, "cpu") == "tokens"
    assert model.decoder.placement(NQ, NV, "cpu", cost="flops") == "samples"
    result = model_gflops(model, (torch.randn(1, NQ, C), torch.randn(1, NV, C)), use_detectron2=False)
    common = NQ * C * (M * P * 2) + NQ * C * (M * P) + NQ * C * C  # offsets, weights, output_proj
    samples = NQ * C * (C + 1) + 4 * NQ * M * P * (C + 1)  # per-head projection after sampling C + 1 channels
    tokens = NV * C * C + 4 * NQ * M * P * (C // M)
    assert result["decoder"] * 1e9 == pytest.approx(common + samples)
    assert common + samples != common + tokens
    assert active_cost() == "measured"
    assert model.decoder.placement(NQ, NV, "cpu") == "tokens"
