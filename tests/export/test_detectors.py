"""Whole detectors (detrex present): ExportWrapper against the detector's own inference; ONNX against eager.

Tiny configs (random ResNet-18, 1 decoder layer, a 64×96 input): detrex's plain
DINO, Lite-DINO with KDA (encoder and decoder) and with MSDA, Lite-H-DETR and
Lite-Deformable-DETR. Oracles: the detector's own ``inference`` (top-K before
``detector_postprocess``), captured while it runs its forward on detectron2
inputs; then ONNX Runtime on an image the export did not see, within the
issue's tolerances. Batch 2 runs through a graph exported with a dynamic batch.
"""
import importlib.util
import os

import pytest
import torch

from lite_detr_plugin.export import ExportWrapper, export_onnx
from lite_detr_plugin.export.check import compare_detections, fresh_images, session_outputs

pytestmark = pytest.mark.detrex
pytest.importorskip("onnxruntime")

SIZE = (64, 96)
DINO = "projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py"
LITE = {
    "lite_dino-kda": ("dino", dict(variant="H3L1-(1+1)x1", attention="kda", decoder_kda=True)),
    "lite_dino-msda": ("dino", dict(variant="H3L1-(1+1)x1", attention="msda")),
    "lite_h_detr-kda": ("h_detr", dict(variant="H2L2-(1+1)x1", attention="kda")),
    "lite_deformable_detr-kda": ("deformable_detr", dict(variant="H3L1-(1+1)x1", attention="kda")),
}
CONFIGS = {
    "dino": DINO,
    "h_detr": "projects/h_deformable_detr/configs/h_deformable_detr_r50_two_stage_12ep.py",
    "deformable_detr": "projects/deformable_detr/configs/deformable_detr_r50_50ep.py",
}


def tiny_model(detrex_root, family, swap=None, class_std=0.3):
    from detectron2.config import LazyConfig, instantiate

    from lite_detr_plugin import swap_encoder
    from lite_detr_plugin.config.tiny import tiny_resnet_backbone, tiny_transformer

    cfg = LazyConfig.load(os.path.join(detrex_root, CONFIGS[family]))
    model = cfg.model
    model.device = "cpu"
    tiny_resnet_backbone(model)
    tiny_transformer(model, feedforward_dim=64, num_decoder_layers=1)
    if family == "h_detr":
        model.num_queries_one2one, model.num_queries_one2many = 20, 20
        model.transformer.two_stage_num_proposals = 40
    else:
        model.num_queries = 20
    if family == "dino":
        model.dn_number = 2
    model.select_box_nums_for_evaluation = 15
    if swap is not None:
        swap_encoder(cfg, **swap)
    else:
        model.transformer.encoder.num_layers = 2
    torch.manual_seed(0)
    detector = instantiate(model).eval()
    with torch.no_grad():  # random class heads: spread the scores so that top-K ranks are distinct
        for head in detector.class_embed:
            head.weight.normal_(0, class_std)
    return detector


def own_inference(model, images):
    """The detector's ``inference`` results (before detector_postprocess) for each image.

    Snapshots (clones) are kept: detectron2's ``detector_postprocess`` then scales and
    clips the same ``Boxes`` in place, which would turn the oracle into clipped boxes.
    """
    captured = []
    original = model.inference

    def capture(box_cls, box_pred, image_sizes):
        results = original(box_cls, box_pred, image_sizes)
        captured.extend(
            {"scores": r.scores.clone(), "labels": r.pred_classes.clone(), "boxes": r.pred_boxes.tensor.clone()}
            for r in results
        )
        return results

    model.inference = capture
    try:
        with torch.no_grad():
            model([{"image": image, "height": image.shape[1], "width": image.shape[2]} for image in images])
    finally:
        del model.inference
    return captured


def check_wrapper_matches_detector(model):
    images = fresh_images(1, SIZE, seed=5)
    (result,) = own_inference(model, images)
    with torch.no_grad():
        scores, labels, boxes = ExportWrapper(model).eval()(images)
    assert labels.dtype == torch.int64 and boxes.shape == (1, model.select_box_nums_for_evaluation, 4)
    torch.testing.assert_close(scores[0], result["scores"], atol=1e-6, rtol=0)
    assert torch.equal(labels[0], result["labels"])
    torch.testing.assert_close(boxes[0], result["boxes"], atol=1e-4, rtol=0)


# name -> (opset, sampler, simplify): every opset and sampler on some whole detector
EXPORTS = {
    "dino-plain": (18, "grid_sample", True),
    "lite_dino-kda": (18, "grid_sample", False),
    "lite_dino-msda": (17, "gather", False),
    "lite_h_detr-kda": (16, "grid_sample", False),
    "lite_deformable_detr-kda": (16, "gather", False),
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_detector_exports_and_matches_eager(detrex_root, name):
    family, swap = ("dino", None) if name == "dino-plain" else LITE[name]
    opset, sampler, simplify = EXPORTS[name]
    simplify = simplify and importlib.util.find_spec("onnxsim") is not None  # a deploy extra, not a test one
    model = tiny_model(detrex_root, family, swap)
    check_wrapper_matches_detector(model)
    # check=True: ORT on a fresh image; scores within 1e-4, boxes within 1e-4 x the longer side
    result = export_onnx(model, None, SIZE, opset=opset, sampler=sampler, simplify=simplify)
    assert result.model.opset_import[0].version == opset
    assert result.max_abs_diff["scores"] <= 1e-4 and result.max_abs_diff["ranks_compared"] > 0
    assert ("GridSample" in result.node_counts) == (sampler == "grid_sample")
    assert ("GatherND" in result.node_counts) == (sampler == "gather")
    if simplify:
        before, after = (int(n) for n in result.simplified.split(": ")[1].split(" nodes")[0].split(" -> "))
        assert after < before and sum(result.node_counts.values()) == after


def test_fp16_export_matches_eager_within_fp16_tolerance(detrex_root):
    """--fp16: float16 weights and activations; softmaxes, KDA logits, sigmoids float32; ORT vs fp32 eager."""
    from onnx import TensorProto

    # smaller class weights: scores spread below saturation, where float16 keeps ranks apart
    model = tiny_model(detrex_root, "dino", LITE["lite_dino-kda"][1], class_std=0.05)
    result = export_onnx(model, None, SIZE, fp16=True)  # check: scores within 1e-2, boxes 1e-2 x longer side
    assert result.max_abs_diff["ranks_compared"] > 0
    graph = result.model.graph
    types = {info.name: info.type.tensor_type.elem_type for info in list(graph.value_info) + list(graph.input)}
    weights = [init.data_type for init in graph.initializer if len(init.dims) >= 2]
    assert weights.count(TensorProto.FLOAT16) > 0.9 * len(weights)
    softmaxes = [node for node in graph.node if node.op_type == "Softmax"]
    assert softmaxes and all(types[node.input[0]] == TensorProto.FLOAT for node in softmaxes)
    assert types["images"] == TensorProto.FLOAT and graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_dino_dynamic_batch_runs_batch_two(detrex_root, tmp_path):
    model = tiny_model(detrex_root, "dino", LITE["lite_dino-kda"][1])
    path = str(tmp_path / "dino.onnx")
    export_onnx(model, path, SIZE, dynamic_batch=True, sampler="gather", opset=17, check=False)
    wrapper = ExportWrapper(model).eval()
    for batch in (2, 1):
        images = fresh_images(batch, SIZE, seed=11 + batch)
        with torch.no_grad():
            expected = wrapper(images)
        actual = session_outputs(path, images)
        assert actual[0].shape == (batch, model.select_box_nums_for_evaluation)
        diff = compare_detections(expected, actual, SIZE)
        assert diff["scores"] <= 1e-4 and diff["boxes"] <= 1e-4 * max(SIZE) and not diff["labels_differ"]


def test_plain_dino_plugin_graph(detrex_root):
    """detrex's own MSDA modules become plugin nodes (encoder self-attention and decoder cross-attention)."""
    import onnx

    model = tiny_model(detrex_root, "dino")
    result = export_onnx(model, None, SIZE, deformable="trt_plugin", opset=17)
    onnx.checker.check_model(result.model)
    assert result.node_counts["trt.plugins::MultiscaleDeformableAttnPlugin_TRT"] == 2 + 1  # 2 encoder + 1 decoder
    assert "GridSample" not in result.node_counts and not result.max_abs_diff  # ORT cannot run it: no check


def test_bad_inputs_give_one_clear_error(detrex_root, monkeypatch):
    with pytest.raises(ValueError, match="DINO, H-DETR or Deformable DETR"):
        ExportWrapper(torch.nn.Linear(2, 2))
    model = tiny_model(detrex_root, "dino")
    with pytest.raises(ValueError, match="image_size"):
        export_onnx(model, None, (64,))
    # a backbone that needs padded sizes (as detectron2's ViT ones do)
    monkeypatch.setattr(type(model.backbone), "size_divisibility", 32)
    with pytest.raises(ValueError, match="not divisible by 32"):
        export_onnx(model, None, (64, 90))
