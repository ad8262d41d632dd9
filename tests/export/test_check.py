"""The export check against near-tied query selections (``lite_detr_plugin/export/check.py``).

Oracle: a DINO-shaped toy detector whose queries are paired *by rank* with
learned content vectors, so the order of its first top-k changes its outputs.
Its proposal scores have exact ties; eager and the exported graph break them in
opposite directions with a nudge far below the check's tolerance, as two
runtimes' rounding may on a real DINO. Without following the graph's selection
the outputs differ; following it, they agree exactly.
"""
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lite_detr_plugin import ops  # noqa: E402
from lite_detr_plugin.export import ExportError, export_module  # noqa: E402
from lite_detr_plugin.export.check import (  # noqa: E402
    check_onnx, compare_detections, following_selections, fresh_images, session_outputs,
)

pytestmark = pytest.mark.skipif(not ops.is_loaded(), reason="needs the compiled op library")

SIZE = (8, 8)
NUM_QUERIES, NUM_CLASSES, NUM_SELECT = 12, 5, 10


class RankedQueries(nn.Module):
    """images [B, 3, 8, 8] -> (scores, labels, boxes); one proposal per pixel, scores in whole steps."""

    def __init__(self, tie_break: float):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("content", torch.randn(NUM_QUERIES, NUM_CLASSES, generator=generator) * 3)
        self.tie_break = tie_break

    def forward(self, images):
        brightness = images.mean(1).flatten(1)  # [B, HW]
        proposals = torch.floor(brightness / 32)
        order = torch.arange(proposals.shape[1], dtype=proposals.dtype)
        proposals = proposals + self.tie_break * order  # |nudge| < one step: reorders ties only
        selected = torch.topk(proposals, NUM_QUERIES, dim=1)[1]  # [B, Q], paired with content by rank
        logits = self.content[None] + brightness.gather(1, selected)[..., None] / 255
        scores, index = torch.topk(logits.sigmoid().flatten(1), NUM_SELECT, dim=1)
        cell = selected.gather(1, torch.div(index, NUM_CLASSES, rounding_mode="floor"))
        x, y = (cell % SIZE[1]).float(), torch.div(cell, SIZE[1], rounding_mode="floor").float()
        return scores, index % NUM_CLASSES, torch.stack([x, y, x + 1, y + 1], -1)


def exported(tie_break):
    return export_module(RankedQueries(tie_break).eval(), (fresh_images(1, SIZE, seed=0),),
                         input_names=["images"], output_names=["scores", "labels", "boxes"])


def test_near_tied_selection_changes_outputs_unless_eager_follows_the_graph():
    eager, graph = RankedQueries(-1e-6).eval(), exported(+1e-6)
    images = fresh_images(1, SIZE, seed=1)
    with torch.no_grad():
        plain = compare_detections(eager(images), session_outputs(graph, images), SIZE)
    assert plain["scores"] > 1e-4 or plain["labels_differ"]  # beyond the check's tolerance: the toy does flip

    diff = check_onnx(eager, graph, SIZE, seed=1)
    assert diff["reordered"] > 0
    assert diff["scores"] <= 1e-6 and diff["boxes"] == 0 and not diff["labels_differ"]


def test_a_selection_beyond_near_ties_is_an_error():
    eager, graph = RankedQueries(-1e-6).eval(), exported(+0.5)  # the nudge now outranks whole steps
    with pytest.raises(ExportError, match=r"top-12 selection differs from eager's beyond near-ties"):
        check_onnx(eager, graph, SIZE, seed=1)


def test_following_selections_restores_topk_and_skips_other_shapes():
    scores = torch.tensor([[3.0, 1.0, 3.0, 2.0]])
    report, original = {}, torch.topk
    with pytest.raises(ExportError):
        with following_selections([torch.tensor([[1, 3]])], 1e-4, report):
            torch.topk(scores, 2)  # [1, 3] is not a top-2 of these scores
    assert torch.topk is original
    with following_selections([torch.tensor([[2, 0]])], 1e-4, report):
        assert torch.topk(scores, 3).indices.tolist() == [[0, 2, 3]]  # another shape: eager's own
        values, indices = torch.topk(scores, 2)
    assert indices.tolist() == [[2, 0]] and values.tolist() == [[3.0, 3.0]] and report["reordered"] == 2
    assert torch.topk is original
