"""A float16 copy of an exported float32 graph, with the numerically fragile nodes kept in float32.

detrex's modules are not float16-clean outside autocast (e.g. ``get_sine_pos_embed``
builds float32 tensors), so ``model.half()`` does not trace. The graph is
exported in float32 and converted afterwards with ONNX Runtime's converter
(``onnxruntime.transformers.float16``, shipped with onnxruntime), which inserts
the Casts at the boundaries of the nodes it is told to keep in float32:

* every ``Softmax`` and ``ReduceLogSumExp``, and the logits that feed a softmax:
  the nodes from the softmax back to the ``MatMul`` that makes them (KDA's
  ``q·k·scale``, the decoder's self-attention ``q·kᵀ``), or to the ``ReduceSum`` of
  products that makes KDA's logits in GridSample's layout, with that product;
* ``Sigmoid`` and ``Log`` (the scores, the boxes and ``inverse_sigmoid`` of the
  reference points), and the converter's own list (``TopK``, ``Range``, ...);
* the post-processing: the cheap nodes between the outputs and the heads' last
  ``MatMul`` (top-K, gathers, box conversion and scaling).

The input ``images`` and the outputs stay float32 (``keep_io_types``).
"""
import collections
from typing import Dict, List, Set

FP32_OPS = ("Softmax", "ReduceLogSumExp", "Sigmoid", "Log")
_LOGIT_PATH_OPS = {"Mul", "Div", "Add", "Concat", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Cast", "CastLike"}


def _softmax_logit_nodes(model, max_depth: int = 6) -> List[str]:
    """Names of the nodes from a softmax's input back to what makes its logits (MatMul, or ReduceSum of a Mul)."""
    producers: Dict[str, object] = {out: node for node in model.graph.node for out in node.output}
    keep: Set[str] = set()

    def walk(name: str, depth: int) -> bool:
        node = producers.get(name)
        if node is None or depth > max_depth:
            return False
        if node.op_type == "MatMul":
            keep.add(node.name)
            return True
        if node.op_type == "ReduceSum":  # KDA's q·k in GridSample's layout: ReduceSum(Mul(keys, queries))
            keep.add(node.name)
            product = producers.get(node.input[0])
            if product is not None and product.op_type == "Mul":
                keep.add(product.name)
            return True
        if node.op_type not in _LOGIT_PATH_OPS:
            return False
        reached = [walk(inp, depth + 1) for inp in node.input if inp]
        if any(reached):
            keep.add(node.name)
        return any(reached)

    for node in model.graph.node:
        if node.op_type == "Softmax":
            walk(node.input[0], 0)
    return sorted(keep)


_POSTPROCESS_OPS = {"TopK", "Gather", "GatherElements", "Mul", "Add", "Sub", "Div", "Concat", "Unsqueeze", "Squeeze",
                    "Reshape", "Flatten", "Slice", "Sigmoid", "Mod", "Cast", "Expand", "Tile", "Transpose", "Split",
                    "Clip", "Log", "Max", "Min"}


def _postprocess_nodes(model, max_depth: int = 12) -> List[str]:
    """Names of the cheap nodes between the graph outputs and the last heavy nodes (MatMul, Conv, ...).

    The heads' sigmoids, the top-K and the box conversion: float32 keeps the
    scores and the boxes from being rounded to float16 (an ulp of 1000 px is 0.5 px).
    """
    producers: Dict[str, object] = {out: node for node in model.graph.node for out in node.output}
    keep: Set[str] = set()
    frontier = [(value.name, 0) for value in model.graph.output]
    while frontier:
        name, depth = frontier.pop()
        node = producers.get(name)
        if node is None or depth > max_depth or node.name in keep or node.op_type not in _POSTPROCESS_OPS:
            continue
        keep.add(node.name)
        frontier.extend((inp, depth + 1) for inp in node.input if inp)
    return sorted(keep)


def convert_float16(model):
    """``model`` (float32) as float16, softmaxes and their logits float32 (see the module docstring)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    for index, node in enumerate(model.graph.node):  # the converter blocks nodes by name
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    blocked_nodes = sorted(set(_softmax_logit_nodes(model)) | set(_postprocess_nodes(model)))
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP32_OPS),
        node_block_list=blocked_nodes,
    )
    _sort_topologically(converted.graph)  # the converter appends the Casts of graph inputs at the end
    del converted.graph.value_info[:]  # some of its intermediate types are stale: infer them afresh
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    _drop_round_trips(converted)
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    onnx.checker.check_model(converted)
    return converted


def _sort_topologically(graph) -> None:
    """Reorders ``graph.node`` so that every node comes after the producers of its inputs (stable)."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    nodes = list(graph.node)
    missing = [sum(name not in available for name in set(node.input)) for node in nodes]
    consumers: Dict[str, List[int]] = {}
    for index, node in enumerate(nodes):
        for name in set(node.input):
            if name not in available:
                consumers.setdefault(name, []).append(index)
    ready = collections.deque(index for index, count in enumerate(missing) if count == 0)
    ordered = []
    while ready:
        index = ready.popleft()
        ordered.append(nodes[index])
        for name in nodes[index].output:
            for consumer in consumers.pop(name, ()):
                missing[consumer] -= 1
                if missing[consumer] == 0:
                    ready.append(consumer)
    if len(ordered) != len(nodes):
        raise ValueError("float16 conversion left a graph with a cycle or a dangling input")
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_round_trips(model) -> None:
    """Removes float32 -> float16 -> float32 Cast pairs (in place).

    The converter casts every output of a kept-float32 node to float16 and back
    to float32 at the next kept node, which would round the logits between
    ``MatMul``, ``Mul`` and ``Softmax``; the consumers read the float32 value instead.
    """
    from onnx import TensorProto, helper

    infos = list(model.graph.value_info) + list(model.graph.input)
    types = {info.name: info.type.tensor_type.elem_type for info in infos}
    producers = {out: node for node in model.graph.node for out in node.output}
    graph_outputs = {value.name for value in model.graph.output}

    def cast_to(node):
        return helper.get_attribute_value(node.attribute[0]) if node.op_type == "Cast" else None

    rename = {}
    for node in model.graph.node:
        first = producers.get(node.input[0]) if node.input else None
        if (cast_to(node) == TensorProto.FLOAT and first is not None and cast_to(first) == TensorProto.FLOAT16
                and types.get(first.input[0]) == TensorProto.FLOAT and node.output[0] not in graph_outputs):
            rename[node.output[0]] = first.input[0]
    kept = [node for node in model.graph.node if not (node.output and node.output[0] in rename)]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in rename:
                node.input[position] = rename[name]
    used = {name for node in kept for name in node.input} | graph_outputs
    kept = [node for node in kept if cast_to(node) != TensorProto.FLOAT16 or node.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(kept)
