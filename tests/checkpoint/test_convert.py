"""Released Lite-DETR layout -> detrex Lite-DINO layout, without detrex."""
import pytest
import torch

from lite_detr_plugin import LiteEncoder
from lite_detr_plugin.checkpoint import (
    COCO_80_IDS,
    ConversionError,
    convert,
    encoder_blocks,
    extract_state_dict,
    infer_variant,
    lite_dino_layout,
    match_rule,
    official_layout,
    variant_from_name,
)

from .helpers import CHECKPOINTS, load_layout, official_state_dict, shapes


@pytest.fixture(scope="module")
def released():
    """name -> a random state dict in the released layout of that checkpoint."""
    return {name: official_state_dict(load_layout("official", name), seed=i) for i, name in enumerate(CHECKPOINTS)}


# -- completeness ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_converts_every_key_to_the_detrex_layout(released, name):
    state_dict = released[name]
    converted, report = convert(state_dict, name_hint=f"{name}_50.4.pth")
    assert report.ok, report.format()
    assert report.variant == CHECKPOINTS[name]
    assert sum(report.counts.values()) == len(state_dict)  # every source key mapped
    assert not report.unmapped_source and not report.missing_target
    assert shapes(converted) == load_layout("target", name)  # names, shapes and order
    assert list(converted) == list(load_layout("target", name))


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_every_released_name_matches_exactly_one_rule(name):
    from lite_detr_plugin.checkpoint.rules import _COMPILED

    for key in load_layout("official", name):
        hits = [rule for pattern, rule in _COMPILED if pattern.fullmatch(key)]
        assert len(hits) == 1, (key, hits)


def test_group_counts(released):
    _, report = convert(released["r50_s3ex3"], "H3L1-(2+1)x3")
    assert report.counts == {
        "backbone": 265, "neck": 16, "encoder": 1 + 9 * 16 + 3 * 6, "decoder": 6 * 22 + 2 + 4,
        "queries": 6, "heads": 2 * 6 * 2 + 2 * 6 * 6 + 2 + 6,
    }
    assert len(report.mapped) == 700


@pytest.mark.parametrize("variant", ["H2L2-(1+1)x3", "H3L1-(5+1)x1", "H3L1-(1+1)x3", "H3L1-(3+1)x2"])
def test_other_block_layouts(variant):
    """E.g. the README's literal enc_layers=6 commands: (1+1)x3 and (5+1)x1."""
    converted, report = convert(official_state_dict(official_layout(variant)), variant)
    assert report.ok
    assert shapes(converted) == lite_dino_layout(variant)


# -- values and transforms ------------------------------------------------------


def test_values_go_where_they_belong(released):
    src = released["r50_s3ex3"]
    out, _ = convert(src, "H3L1-(2+1)x3")
    same = {
        "backbone.0.body.conv1.weight": "backbone.stem.conv1.weight",
        "backbone.0.body.bn1.running_var": "backbone.stem.conv1.norm.running_var",
        "backbone.0.body.layer1.0.downsample.0.weight": "backbone.res2.0.shortcut.weight",
        "backbone.0.body.layer3.5.bn2.bias": "backbone.res4.5.conv2.norm.bias",
        "backbone.0.body.layer4.0.downsample.1.running_mean": "backbone.res5.0.shortcut.norm.running_mean",
        "input_proj.2.0.weight": "neck.convs.2.conv.weight",
        "input_proj.3.1.bias": "neck.extra_convs.0.norm.bias",
        "transformer.level_embed": "transformer.level_embeds",
        "transformer.encoder.layers.4.self_attn.query_proj.weight":
            "transformer.encoder.layers.4.self_attn.query_proj.weight",
        "transformer.encoder.layers.5.linear1.weight": "transformer.encoder.layers.5.ffn.fc1.weight",
        "transformer.encoder.layers.5.linear12.weight": "transformer.encoder.layers.5.light_ffn.fc1.weight",
        "transformer.encoder.layers.8.norm22.bias": "transformer.encoder.layers.8.light_norm.bias",
        "transformer.decoder.layers.3.self_attn.in_proj_weight":
            "transformer.decoder.layers.3.attentions.0.attn.in_proj_weight",
        "transformer.decoder.layers.3.cross_attn.sampling_offsets.bias":
            "transformer.decoder.layers.3.attentions.1.sampling_offsets.bias",
        "transformer.decoder.layers.3.norm2.weight": "transformer.decoder.layers.3.norms.0.weight",
        "transformer.decoder.layers.3.norm1.weight": "transformer.decoder.layers.3.norms.1.weight",
        "transformer.decoder.layers.3.norm3.weight": "transformer.decoder.layers.3.norms.2.weight",
        "transformer.decoder.layers.3.linear2.bias": "transformer.decoder.layers.3.ffns.0.layers.1.bias",
        "transformer.decoder.ref_point_head.layers.1.weight": "transformer.decoder.ref_point_head.layers.1.weight",
        "transformer.tgt_embed.weight": "transformer.tgt_embed.weight",
        "transformer.enc_output_norm.weight": "transformer.enc_output_norm.weight",
        "bbox_embed.2.layers.2.weight": "bbox_embed.2.layers.2.weight",
        "transformer.enc_out_bbox_embed.layers.0.weight": "bbox_embed.6.layers.0.weight",
    }
    for old, new in same.items():
        assert torch.equal(out[new], src[old]), (old, new)
    assert torch.equal(out["transformer.decoder.bbox_embed.6.layers.2.bias"],
                       src["transformer.enc_out_bbox_embed.layers.2.bias"])


def test_class_rows_follow_coco_category_ids(released):
    src = released["r50_s3ex3"]
    out, report = convert(src, "H3L1-(2+1)x3")
    ids = list(COCO_80_IDS)
    assert len(ids) == 80 and ids[:3] == [1, 2, 3] and ids[-1] == 90 and 12 not in ids
    for i in range(6):
        assert torch.equal(out[f"class_embed.{i}.weight"], src[f"class_embed.{i}.weight"][ids])
        assert torch.equal(out[f"transformer.decoder.class_embed.{i}.bias"], src[f"class_embed.{i}.bias"][ids])
    assert torch.equal(out["class_embed.6.weight"], src["transformer.enc_out_class_embed.weight"][ids])
    assert torch.equal(out["transformer.decoder.class_embed.6.bias"], src["transformer.enc_out_class_embed.bias"][ids])
    assert torch.equal(out["label_enc.weight"], src["label_enc.weight"][ids])
    assert len(report.transforms) == 2


def test_class_map_none_keeps_rows(released):
    src = released["r50_s3ex3"]
    out, report = convert(src, "H3L1-(2+1)x3", class_map="none")
    assert report.ok
    assert shapes(out) == lite_dino_layout("H3L1-(2+1)x3", num_classes=91)
    assert torch.equal(out["class_embed.0.weight"], src["class_embed.0.weight"])
    assert torch.equal(out["label_enc.weight"], src["label_enc.weight"][:91])


def test_coco80_refuses_another_class_count():
    src = official_state_dict(official_layout("H3L1-(2+1)x3", num_classes=21))
    with pytest.raises(ConversionError, match="91 rows"):
        convert(src, "H3L1-(2+1)x3")
    out, report = convert(src, "H3L1-(2+1)x3", class_map="none")
    assert report.ok and out["class_embed.6.weight"].shape == (21, 256)


# -- refusals -------------------------------------------------------------------


def test_missing_key_is_refused_by_name(released):
    src = dict(released["r50_s3ex3"])
    del src["transformer.decoder.layers.3.norm2.weight"]
    with pytest.raises(ConversionError) as info:
        convert(src, "H3L1-(2+1)x3")
    message = str(info.value)
    assert "transformer.decoder.layers.3.norm2.weight" in message  # the checkpoint key
    assert "transformer.decoder.layers.3.norms.0.weight" in message  # the target left missing


def test_missing_light_ffn_key_is_refused_by_name(released):
    src = dict(released["r50_s3ex3"])
    del src["transformer.encoder.layers.5.linear12.weight"]
    with pytest.raises(ConversionError, match=r"transformer\.encoder\.layers\.5\.linear12\.weight"):
        convert(src, "H3L1-(2+1)x3")


def test_unknown_key_is_refused_by_name(released):
    src = dict(released["r50_s3ex3"])
    src["transformer.encoder.layers.0.self_attn.attention_weights.weight"] = torch.zeros(128, 256)
    with pytest.raises(ConversionError, match=r"unmapped[\s\S]*self_attn\.attention_weights\.weight"):
        convert(src, "H3L1-(2+1)x3")


def test_wrong_shape_is_refused_by_name(released):
    src = dict(released["r50_s3ex3"])
    src["transformer.encoder.layers.2.linear12.weight"] = torch.zeros(512, 256)
    with pytest.raises(ConversionError) as info:
        convert(src, "H3L1-(2+1)x3")
    message = str(info.value)
    assert "transformer.encoder.layers.2.linear12.weight: [512, 256], expected [256, 256]" in message
    layer = "transformer.encoder.layers.2"
    assert f"{layer}.light_ffn.fc1.weight <- {layer}.linear12.weight" in message


def test_target_mismatch_is_refused(released):
    """A target model that differs (here: MSDA instead of KDA in the encoder) is caught key by key."""
    target = dict(lite_dino_layout("H3L1-(2+1)x3"))
    for i in range(9):
        del target[f"transformer.encoder.layers.{i}.self_attn.query_proj.weight"]
        target[f"transformer.encoder.layers.{i}.self_attn.attention_weights.weight"] = (128, 256)
    with pytest.raises(ConversionError) as info:
        convert(released["r50_s3ex3"], "H3L1-(2+1)x3", target=target)
    message = str(info.value)
    assert "transformer.encoder.layers.0.self_attn.attention_weights.weight" in message
    assert "transformer.encoder.layers.0.self_attn.query_proj.weight" in message


def test_untied_heads_are_refused(released):
    src = dict(released["r50_s3ex3"])
    src["transformer.decoder.class_embed.2.weight"] = src["class_embed.2.weight"] + 1
    tied = r"class_embed\.2\.weight vs transformer\.decoder\.class_embed\.2\.weight"
    with pytest.raises(ConversionError, match=tied):
        convert(src, "H3L1-(2+1)x3")


def test_allow_partial_returns_what_converted_with_the_list(released):
    src = dict(released["r50_s3ex3"])
    del src["label_enc.weight"]
    src["extra.thing"] = torch.zeros(1)
    out, report = convert(src, "H3L1-(2+1)x3", allow_partial=True)
    assert not report.ok
    assert report.unmapped_source == ["extra.thing"]
    assert report.missing_source == ["label_enc.weight"] and report.missing_target == ["label_enc.weight"]
    assert "label_enc.weight" not in out and len(out) == 699
    assert "extra.thing" in report.format()


# -- variants -------------------------------------------------------------------


def test_variant_inference(released):
    src = released["r50_s3ex1"]
    assert encoder_blocks(src) == (6, 1)
    assert infer_variant(src, num_high_levels=3)[0].name == "H3L1-(6+1)x1"
    assert infer_variant(src, name_hint="/x/r50_s3ex1_50.2.pth")[0].name == "H3L1-(6+1)x1"
    assert infer_variant(released["r50_s2ex3"], name_hint="r50_s2ex3_49.9.pth")[0].name == "H2L2-(2+1)x3"
    assert variant_from_name("lite_dino.pth") is None
    with pytest.raises(ConversionError, match="leaves no trace in the weights"):
        infer_variant(src)
    with pytest.raises(ConversionError, match="num_expansion=3"):
        infer_variant(src, name_hint="r50_s3ex3.pth")


def test_given_variant_is_checked_against_the_weights(released):
    with pytest.raises(ConversionError, match=r"blocks of \(2\+1\)x3"):
        convert(released["r50_s3ex3"], "H3L1-(6+1)x1")
    with pytest.raises(ConversionError, match="5 levels"):
        convert(released["r50_s3ex3"], "H3L2-(2+1)x3")
    with pytest.raises(ConversionError, match="contradicts"):
        convert(released["r50_s3ex3"], "H3L1-(2+1)x3", num_high_levels=2)


def test_non_lite_checkpoint_is_refused():
    src = official_state_dict(official_layout("H3L1-(2+1)x3"))
    plain = {k: v for k, v in src.items() if not any(s in k for s in ("linear12", "linear22", "norm22"))}
    with pytest.raises(ConversionError, match="small_expand"):
        convert(plain, num_high_levels=3)


# -- checkpoint containers ------------------------------------------------------


def test_ddp_prefix_and_containers(released):
    src = released["r50_s2ex3"]
    wrapped = {"model": {"module." + k: v for k, v in src.items()}, "optimizer": {}, "epoch": 35}
    out, report = convert(extract_state_dict(wrapped), name_hint="r50_s2ex3")
    assert report.ok and report.stripped_prefix == "module."
    assert shapes(out) == load_layout("target", "r50_s2ex3")
    assert extract_state_dict({"ema_model": src, "model": {}}, "ema_model") is src
    assert extract_state_dict(dict(src)) == dict(src)
    with pytest.raises(ConversionError, match="cannot find"):
        extract_state_dict({"epoch": 3})


def test_match_rule_rejects_near_misses():
    assert match_rule("backbone.0.body.layer5.0.conv1.weight") is None
    assert match_rule("transformer.encoder.layers.0.linear3.weight") is None
    assert match_rule("transformer.decoder.layers.0.cross_attn.attention_weights.weight") is None


# -- the converted encoder runs -------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_converted_encoder_loads_strictly_and_runs(released, name):
    """Without detrex: the encoder part loads into a standalone LiteEncoder and runs a forward."""
    converted, _ = convert(released[name], name_hint=name)
    prefix = "transformer.encoder."
    encoder_state = {k[len(prefix):]: v for k, v in converted.items() if k.startswith(prefix)}
    encoder = LiteEncoder(variant=CHECKPOINTS[name], feedforward_dim=2048, attn_dropout=0.0, ffn_dropout=0.0,
                          attention="kda", low_query_mode="released").eval()
    encoder.load_state_dict(encoder_state, strict=True)

    shapes_hw = torch.tensor([[8, 10], [4, 5], [2, 3], [1, 2]])
    starts = torch.cat([shapes_hw.new_zeros(1), shapes_hw.prod(1).cumsum(0)[:-1]])
    n = int(shapes_hw.prod(1).sum())
    points = torch.cat([
        torch.stack(torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")[::-1], -1)
        .reshape(-1, 2) for h, w in shapes_hw.tolist()
    ])
    reference = points[None, :, None, :].expand(2, n, 4, 2)
    query = torch.randn(2, n, 256)
    with torch.no_grad():
        out = encoder(query=query, query_pos=torch.randn(2, n, 256), spatial_shapes=shapes_hw,
                      level_start_index=starts, reference_points=reference,
                      query_key_padding_mask=torch.zeros(2, n, dtype=torch.bool))
    assert out.shape == query.shape and torch.isfinite(out).all()
