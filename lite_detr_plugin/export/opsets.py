"""Opset-18 ONNX graphs converted down to opsets 16 and 17.

The exporter (torchlib) and the op translations build opset 18. ONNX's C++
version converter does most of the way down, but it has no down adapter for
``Split`` (18 moved the sizes into ``num_outputs``) or ``Pad`` (18 added
``axes``), and opset 16 has no ``LayerNormalization``; a whole detector has all
three (``torch.chunk``/``split`` in detrex's heads and transformers, the
transformer's LayerNorms). torch's own exporter silently keeps opset 18 then.

:func:`convert_opset` therefore rewrites those nodes itself and lets ONNX's
converter do the rest:

* ``Split``: parked in a private domain (the converter leaves unknown domains
  alone), then written back in the opset-13 form, sizes as an int64 input;
* ``Pad`` without ``axes``: the same parking (opset-13 ``Pad`` has the same inputs);
* the reductions that took ``axes`` as an input in 18: their ``noop_with_empty_axes=0``
  (which the converter keeps and opset 17 rejects) is dropped;
* ``LayerNormalization`` (opset 16 only): ``ReduceMean``, ``Sub``, ``Mul``,
  ``Sqrt``, ``Div``, in float32 for float16 inputs (its ``stash_type``).
"""
from typing import List

_PARKED = "lite_detr.parked"
_AXES_INPUT_SINCE_18 = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                        "ReduceMin", "ReduceProd", "ReduceSumSquare")


def _static_dims(model):
    """{value name: list of dims (int or None)} from ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shape = info.type.tensor_type.shape
        dims[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    for init in inferred.graph.initializer:
        dims[init.name] = list(init.dims)
    types = {info.name: info.type.tensor_type.elem_type
             for info in list(inferred.graph.value_info) + list(inferred.graph.input)}
    types.update({init.name: init.data_type for init in inferred.graph.initializer})
    return dims, types


def _attribute(node, name, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _split_sizes(node, dims) -> List[int]:
    """The sizes of a ``num_outputs`` Split (the last chunk is smaller), or [] for an unknown dim."""
    count = len(node.output)
    shape = dims.get(node.input[0])
    axis = _attribute(node, "axis", 0)
    if not shape or shape[axis] is None:
        return []  # opset-13 Split without sizes splits equally, as num_outputs does for divisible dims
    total = shape[axis]
    chunk = -(-total // count)
    return [chunk] * (count - 1) + [total - chunk * (count - 1)]


def _layer_norm_nodes(node, rank: int, float16: bool, prefix: str):
    """``LayerNormalization`` as standard nodes in opset-18 form (first output only), and their initializers."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    axis = _attribute(node, "axis", -1)
    axes = list(range(axis if axis >= 0 else rank + axis, rank))
    epsilon = float(_attribute(node, "epsilon", 1e-5))
    x, scale = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    out = node.output[0]
    n = lambda suffix: f"{prefix}_{suffix}"  # noqa: E731
    nodes = []
    if float16:
        nodes.append(helper.make_node("Cast", [x], [n("x32")], to=TensorProto.FLOAT))
        x = n("x32")
    initializers = [numpy_helper.from_array(np.array(axes, dtype=np.int64), n("axes"))]
    nodes += [
        helper.make_node("ReduceMean", [x, n("axes")], [n("mean")], keepdims=1),
        helper.make_node("Sub", [x, n("mean")], [n("centred")]),
        helper.make_node("Mul", [n("centred"), n("centred")], [n("squares")]),
        helper.make_node("ReduceMean", [n("squares"), n("axes")], [n("var")], keepdims=1),
        helper.make_node("Constant", [], [n("eps")], value=helper.make_tensor(n("eps_t"), TensorProto.FLOAT, [], [epsilon])),
        helper.make_node("Add", [n("var"), n("eps")], [n("var_eps")]),
        helper.make_node("Sqrt", [n("var_eps")], [n("std")]),
        helper.make_node("Div", [n("centred"), n("std")], [n("normed")]),
    ]
    normed = n("normed")
    if float16:
        nodes.append(helper.make_node("Cast", [normed], [n("normed16")], to=TensorProto.FLOAT16))
        normed = n("normed16")
    nodes.append(helper.make_node("Mul", [normed, scale], [n("scaled") if bias else out]))
    if bias:
        nodes.append(helper.make_node("Add", [n("scaled"), bias], [out]))
    return nodes, initializers


def convert_opset(model, opset: int):
    """``model`` (opset 18) as opset ``opset`` (16 or 17); ValueError naming a node it cannot convert."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper, version_converter

    if opset == 18:
        return model
    dims, types = _static_dims(model)
    nodes, initializers = [], []
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            nodes.append(node)
        elif node.op_type == "Split":
            node.domain = _PARKED
            if len(node.input) < 2 or not node.input[1]:
                sizes = _split_sizes(node, dims)
                if sizes:
                    name = f"{node.name or 'split'}_{index}_sizes"
                    initializers.append(numpy_helper.from_array(np.array(sizes, dtype=np.int64), name))
                    del node.input[1:]
                    node.input.append(name)
            kept = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(kept)
            nodes.append(node)
        elif node.op_type in _AXES_INPUT_SINCE_18:
            # The converter keeps this attribute, which opsets 13-17 do not have for these reductions.
            if _attribute(node, "noop_with_empty_axes", 0):
                raise ValueError(f"opset {opset}: {node.op_type} node {node.name!r} uses noop_with_empty_axes")
            kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            del node.attribute[:]
            node.attribute.extend(kept)
            nodes.append(node)
        elif node.op_type == "Pad":
            if len(node.input) > 3 and node.input[3]:
                raise ValueError(f"opset {opset}: Pad node {node.name!r} pads selected axes, which needs opset 18")
            node.domain = _PARKED
            nodes.append(node)
        elif node.op_type == "LayerNormalization" and opset < 17:
            if len([o for o in node.output if o]) > 1:
                raise ValueError(f"opset {opset}: LayerNormalization node {node.name!r} uses its mean/std outputs")
            rank = len(dims.get(node.input[0]) or [])
            if _attribute(node, "axis", -1) >= 0 and not rank:
                raise ValueError(f"opset {opset}: LayerNormalization node {node.name!r} has an input of unknown rank")
            float16 = types.get(node.input[0]) == TensorProto.FLOAT16
            decomposed, constants = _layer_norm_nodes(node, rank, float16, f"{node.name or 'layer_norm'}_{index}")
            nodes.extend(decomposed)
            initializers.extend(constants)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(initializers)
    parked = any(node.domain == _PARKED for node in model.graph.node)
    if parked:
        model.opset_import.append(helper.make_opsetid(_PARKED, 1))
    converted = version_converter.convert_version(model, opset)
    for node in converted.graph.node:
        if node.domain == _PARKED:
            node.domain = ""
    kept = [entry for entry in converted.opset_import if entry.domain != _PARKED]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    onnx.checker.check_model(converted)
    return converted
