"""Fold the weight-only part of an ONNX graph into initializers, holding each weight once.

An exporter that sees the weights as graph inputs puts nodes between a weight and the node
that uses it (a Transpose of a conv kernel, BatchNorm's rsqrt/mul/sub). Those nodes are
evaluated here in numpy, in graph order, and each intermediate value is dropped as soon as
its last consumer has been folded, so the peak is about one extra copy of the weights.
"""
import numpy as np

from .onnx_utils import OPSET


def fold_weights(graph, weights: dict) -> dict:
    """Remove the weight inputs and the nodes that depend only on them and on constants;
    return {initializer name: array} for the values the remaining nodes read.

    `weights` maps graph input names to arrays; it is emptied (the arrays move here)."""
    from onnx import numpy_helper

    values = {name: weights.pop(name) for name in list(weights)}
    missing = set(values) - {i.name for i in graph.input}
    if missing:
        raise ValueError(f"weights that are not graph inputs: {sorted(missing)[:5]}")
    _remove_inputs(graph, set(values))
    constants = {t.name: t for t in graph.initializer}
    uses = _count_uses(graph)
    kept, folded_any = [], False
    for node in graph.node:
        if not _depends_only_on(node, values, constants):
            kept.append(node)
            continue
        args = [values[n] if n in values else numpy_helper.to_array(constants[n]) if n else None
                for n in node.input]
        for name, value in zip(node.output, evaluate(node, args)):
            values[name] = value
        for name in node.input:
            uses[name] -= 1
            if uses[name] == 0:
                values.pop(name, None)
        folded_any = True
    if folded_any:
        del graph.node[:]
        graph.node.extend(kept)
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return {name: np.ascontiguousarray(value) for name, value in values.items() if name in used}


def _remove_inputs(graph, names):
    kept = [i for i in graph.input if i.name not in names]
    del graph.input[:]
    graph.input.extend(kept)


def _count_uses(graph):
    uses = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    return uses


def _depends_only_on(node, values, constants):
    """True for a node with at least one weight input and no input computed from data."""
    inputs = [n for n in node.input if n]
    return (node.domain in ("", "ai.onnx") and any(n in values for n in inputs)
            and all(n in values or n in constants for n in inputs))


def evaluate(node, args):
    """The outputs of one node on numpy inputs (fast path for the common weight layouts)."""
    if node.op_type == "Transpose":
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        return [np.ascontiguousarray(np.transpose(args[0], perm))]
    if node.op_type == "Identity":
        return [args[0]]
    from onnx.reference import ReferenceEvaluator
    outputs = ReferenceEvaluator(node, opsets={"": OPSET}).run(None, {n: a for n, a in zip(node.input, args) if n})
    return [np.asarray(o) for o in outputs]


def fold_scale_shift_into_convs(graph, initializers: dict) -> int:
    """Conv -> Mul(per-channel constant) -> Add(per-channel constant) becomes one Conv with
    scaled weights and a bias, as torch's exporter writes a BatchNorm after a conv.
    `initializers` holds the big weights by name and receives the new ones. Returns the
    number of Mul/Add nodes folded."""
    from onnx import numpy_helper

    small = {t.name: t for t in graph.initializer}

    def constant(name):
        if name in initializers:
            return initializers[name]
        return numpy_helper.to_array(small[name]) if name in small else None

    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    removed = set()
    for conv in [n for n in graph.node if n.op_type == "Conv" and n.input[1] in initializers
                 and len(consumers[n.input[1]]) == 1]:  # a shared kernel must keep its values
        out_channels = initializers[conv.input[1]].shape[0]
        while True:
            users = consumers.get(conv.output[0], [])
            if len(users) != 1 or conv.output[0] in outputs or users[0].op_type not in ("Mul", "Add"):
                break
            op = users[0]
            other = op.input[1] if op.input[0] == conv.output[0] else op.input[0]
            vector = _per_channel(constant(other), out_channels)
            if vector is None:
                break
            _scale_or_shift(conv, op.op_type, vector, initializers, constant)
            conv.output[0] = op.output[0]
            consumers[conv.output[0]] = consumers.get(op.output[0], [])
            removed.add(id(op))
    if removed:
        kept = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(kept)
        used = {n for node in graph.node for n in node.input}
        for tensor in [t for t in graph.initializer if t.name not in used]:
            graph.initializer.remove(tensor)
        for name in [n for n in initializers if n not in used]:
            del initializers[name]
    return len(removed)


def _per_channel(value, channels):
    """A (C,), (C,1,1) or (1,C,1,1) constant as a (C,) vector, else None."""
    if value is None or value.dtype != np.float32 or value.size != channels:
        return None
    if value.ndim == 1 or value.shape[-2:] == (1, 1) and value.ndim in (3, 4):
        return value.reshape(channels)
    return None


def _scale_or_shift(conv, op_type, vector, initializers, constant):
    weight_name = conv.input[1]
    bias = constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if op_type == "Mul":
        weight = initializers[weight_name]
        initializers[weight_name] = weight * vector.reshape(-1, *[1] * (weight.ndim - 1))
        bias = None if bias is None else bias * vector
    else:
        bias = vector.copy() if bias is None else bias + vector
    if bias is not None:
        bias_name = f"{weight_name}__bias"
        initializers[bias_name] = np.ascontiguousarray(bias, dtype=np.float32)
        if len(conv.input) < 3:
            conv.input.append(bias_name)
        else:
            conv.input[2] = bias_name
