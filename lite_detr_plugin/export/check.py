"""The export's check: the graph in ONNX Runtime against eager PyTorch on a fresh input.

DINO-style detectors pick their decoder queries with a top-k over the encoder's
proposals and pair them *by rank* with learned content queries. Two proposals
whose scores differ by less than the two runtimes' rounding may leave that
top-k in either order (or trade places at its boundary), and the runtimes then
decode different queries: a difference in the outputs that says nothing about
the export. So the check reads every intermediate top-k selection of the graph
(each ``TopK`` but the last, which makes the detections) from ONNX Runtime,
verifies it is a valid selection under eager's own scores (at every rank,
eager's score of the chosen element is within tolerance of eager's k-th best),
runs eager with those selections, and only then compares the outputs.
"""
import contextlib
import os
from typing import Dict, List, Sequence, Tuple

import torch

from .errors import ExportError, one_line


def fresh_images(batch: int, image_size: Tuple[int, int], seed: int) -> torch.Tensor:
    """Random pixel values in [0, 255): ``[batch, 3, H, W]`` float32."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, 3) + tuple(image_size), generator=generator) * 255.0


def selection_outputs(onnx_model) -> List[str]:
    """Index outputs of the graph's ``TopK`` nodes but the last (the detections' own), in graph order."""
    topks = [node for node in onnx_model.graph.node if node.op_type == "TopK"]
    return [node.output[1] for node in topks[:-1]]


def session_outputs(model, images: torch.Tensor, extra_outputs: Sequence[str] = ()):
    """Runs an ONNX model (proto or path) on ``images`` in ONNX Runtime's CPU provider: numpy outputs,
    the graph's own first, then ``extra_outputs`` (names of intermediate values; a proto only)."""
    import onnxruntime

    if isinstance(model, (str, os.PathLike)):
        if extra_outputs:
            raise ValueError("extra_outputs needs the model as an onnx.ModelProto, not a path")
        source = model
    else:
        outputs = model.graph.output
        kept = len(outputs)
        outputs.extend(_value_info(name) for name in extra_outputs)
        try:
            source = model.SerializeToString()
        finally:
            del outputs[kept:]
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})


def _value_info(name: str):
    import onnx

    return onnx.ValueInfoProto(name=name)


@contextlib.contextmanager
def following_selections(selections: Sequence, tolerance: float, report: Dict[str, int]):
    """Within the context, ``torch.topk`` returns the given index selections.

    Each selection (``[..., k]`` integer array) replaces the result of the next
    ``torch.topk`` call whose indices have its shape, in order, once it is found
    valid: the scores ``input`` gives the chosen elements must be within
    ``tolerance × max(1, |k-best|)`` of the sorted top-k values at every rank,
    else :class:`ExportError`. ``report["reordered"]`` counts the ranks that
    differ from eager's own choice. ``torch.topk`` is replaced module-wide and
    restored on exit: not thread-safe while active.
    """
    pending = list(selections)
    original = torch.topk
    report.setdefault("reordered", 0)

    def topk(input, k, dim=-1, largest=True, sorted=True, **kwargs):
        result = original(input, k, dim, largest, sorted, **kwargs)
        if not pending or tuple(pending[0].shape) != tuple(result.indices.shape):
            return result
        indices = torch.as_tensor(pending.pop(0), dtype=result.indices.dtype, device=result.indices.device)
        values = input.gather(dim, indices)
        if values.numel():
            deviation = float((values.double() - result.values.double()).abs().max())
            limit = tolerance * max(1.0, float(result.values.double().abs().max()))
            if not deviation <= limit:
                raise ExportError(
                    f"ONNX Runtime's top-{k} selection differs from eager's beyond near-ties: at some rank "
                    f"eager scores ONNX Runtime's choice {deviation:.3g} away from its own (tolerance {limit:.3g})"
                )
        report["reordered"] += int((indices != result.indices).sum())
        return torch.return_types.topk((values, indices))

    torch.topk = topk
    try:
        yield
    finally:
        torch.topk = original


def compare_detections(expected, actual, image_size, score_gap: float = 1e-5) -> Dict[str, float]:
    """Max |Δ| of scores and of boxes (pixels) between two (scores, labels, boxes) results.

    Two scores closer than the score tolerance may swap ranks between runtimes,
    so boxes and labels are compared only at ranks whose (expected) score differs
    from its neighbours' by more than ``score_gap``; scores are compared rank by
    rank (sorted, so swaps do not matter).
    """
    scores_e, labels_e, boxes_e = (torch.as_tensor(t) for t in expected)
    scores_a, labels_a, boxes_a = (torch.as_tensor(t) for t in actual)
    if scores_e.shape != scores_a.shape or boxes_e.shape != boxes_a.shape:
        raise ExportError(f"ONNX outputs have shapes {list(scores_a.shape)}, {list(boxes_a.shape)}; "
                          f"eager {list(scores_e.shape)}, {list(boxes_e.shape)}")
    scores_e, scores_a = scores_e.float(), scores_a.float()
    gaps = (scores_e[:, 1:] - scores_e[:, :-1]).abs()
    separated = torch.ones_like(scores_e, dtype=torch.bool)
    separated[:, 1:] &= gaps > score_gap
    separated[:, :-1] &= gaps > score_gap
    labels_differ = int((labels_e != labels_a)[separated].sum())
    box_diff = (boxes_e.float() - boxes_a.float()).abs().amax(-1)[separated]
    return {
        "scores": float((scores_e - scores_a).abs().max()),
        "boxes": float(box_diff.max()) if box_diff.numel() else 0.0,
        "labels_differ": labels_differ,
        "ranks_compared": int(separated.sum()),
    }


def check_onnx(wrapper, onnx_model, image_size, *, batch: int = 1, score_tolerance: float = 1e-4,
               box_tolerance: float = 0.1, seed: int = 1) -> Dict[str, float]:
    """Runs the graph in ONNX Runtime and ``wrapper`` eagerly on a fresh input, eager following the graph's
    intermediate top-k selections (module docstring); ExportError beyond tolerance. Returns
    :func:`compare_detections`' numbers and ``"reordered"``, the selection ranks eager took from the graph."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError("the check needs onnxruntime: pip install onnxruntime (or pass check=False)") from exc
    images = fresh_images(batch, image_size, seed=seed)
    selections = selection_outputs(onnx_model)
    try:
        outputs = session_outputs(onnx_model, images, extra_outputs=selections)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime could not run the exported graph: {one_line(exc)}") from exc
    actual, selected = outputs[:3], outputs[3:]
    report: Dict[str, int] = {}
    with torch.no_grad(), following_selections(selected, score_tolerance, report):
        expected = wrapper.eval()(images)
    # Ranks closer than a few times the score error may legitimately swap: compare boxes and labels elsewhere.
    score_error = compare_detections(expected, actual, image_size)["scores"]
    diff = compare_detections(expected, actual, image_size, score_gap=max(4 * score_error, 1e-5))
    diff["reordered"] = report["reordered"]
    if diff["scores"] > score_tolerance or diff["boxes"] > box_tolerance or diff["labels_differ"]:
        raise ExportError(
            f"ONNX Runtime differs from eager: max |Δ| scores {diff['scores']:.3g} (tolerance {score_tolerance:.3g}), "
            f"boxes {diff['boxes']:.3g} px (tolerance {box_tolerance:.3g}), {diff['labels_differ']} labels differ"
        )
    return diff
