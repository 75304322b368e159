"""Shape arithmetic whose values the static shapes give is folded to constants, and a Pad that
then pads nothing goes."""
import numpy as np

from ..graph import (OPSET, Constants, attribute_of, bypassed, consumers_of, drop_dead, inferred_shapes, producers_of,
                     replace_nodes)

# Ops that only move elements: run on a mask of which elements are known, they tell which
# elements of the result are known. The inputs they move are listed (None: all).
_MOVING = {"Gather": (0,), "Slice": (0,), "Squeeze": (0,), "Unsqueeze": (0,), "Reshape": (0,), "Transpose": (0,),
           "Split": (0,), "Identity": (0,), "Expand": (0,), "Flatten": (0,), "Concat": None}


# Element-wise ops: an element of the result is known where the inputs' elements are.
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Min", "Max", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Where", "Cast"}


_SMALL = 64  # elements: shape arithmetic, never feature maps


def shape_arithmetic_folded(graph, initializers: dict) -> int:
    """Nodes computed from Shape whose values are all known from the graph's static shapes
    (everything but the batch size) become constants. Returns the number of nodes folded."""
    if not any(n.op_type == "Shape" for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    shapes = inferred_shapes(graph, initializers)
    partial = {}  # tensor: (value with 1 where unknown, mask of the known elements)
    folded = {}
    for node in graph.node:
        outputs = _partial_outputs(node, partial, constants, shapes)
        if outputs is None:
            continue
        for name, (value, known) in zip(node.output, outputs):
            partial[name] = (value, known)
        if all(known.all() for _, known in outputs):
            folded[id(node)] = node
    from onnx import numpy_helper
    outputs, readers = {o.name for o in graph.output}, consumers_of(graph)
    removed = {key for key, node in folded.items() if not any(o in outputs for o in node.output)}
    for key in removed:
        for name in folded[key].output:  # a constant where something left in the graph reads it
            if any(id(r) not in removed for r in readers.get(name, [])):
                graph.initializer.append(numpy_helper.from_array(partial[name][0], name))
    if removed:
        replace_nodes(graph, initializers, removed, {})
    return len(removed)


def _partial_outputs(node, partial, constants, shapes):
    """[(value, known mask)] for each output of `node` where its inputs are (partly) known
    small tensors, else None."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Shape":
        dims = shapes.get(node.input[0])
        if dims is None:
            return None
        start, end = attribute_of(node, "start", 0), attribute_of(node, "end", None)
        dims = dims[start:end]
        return [(np.array([d or 1 for d in dims], np.int64), np.array([d is not None for d in dims], bool))]
    args = []
    for name in node.input:
        if not name:
            args.append(None)
        elif name in partial:
            args.append(partial[name])
        elif name in constants and constants.size(name) <= _SMALL:
            value = constants.get(name)
            if value is None or value.size > _SMALL:
                return None
            args.append((value, np.ones(value.shape, bool)))
        else:
            return None
    if not any(name in partial for name in node.input):
        return None  # constants only: left as the exporter wrote them
    if node.op_type not in _MOVING and node.op_type not in _ELEMENTWISE:
        if not all(a is None or a[1].all() for a in args):
            return None
    values = _evaluate(node, [None if a is None else a[0] for a in args])
    if values is None or any(v.size > _SMALL for v in values):
        return None
    if node.op_type in _MOVING:
        moved = _MOVING[node.op_type] or range(len(args))
        if any(a is not None and i not in moved and not a[1].all() for i, a in enumerate(args)):
            return None  # where the elements go (indices, starts, shape) must be known
        masked = [None if a is None else (a[1].astype(a[0].dtype) if i in moved else a[0]) for i, a in enumerate(args)]
        masks = _evaluate(node, masked)
        if masks is None:
            return None
        masks = [m != 0 for m in masks]
    elif node.op_type in _ELEMENTWISE:
        known = [a[1] for a in args if a is not None]
        try:
            mask = np.logical_and.reduce(np.broadcast_arrays(*known)) if len(known) > 1 else known[0]
        except ValueError:
            return None
        masks = [np.broadcast_to(mask, values[0].shape).copy()]
    else:
        masks = [np.ones(v.shape, bool) for v in values]
    return list(zip(values, masks))


def _evaluate(node, args):
    from onnx.reference import ReferenceEvaluator
    try:
        feeds = {n: a for n, a in zip(node.input, args) if n}
        return [np.asarray(v) for v in ReferenceEvaluator(node, opsets={"": OPSET}).run(None, feeds)]
    except Exception:  # an op the reference cannot run on its own: leave it
        return None


def zero_pads_removed(graph, initializers: dict) -> int:
    """A Pad whose (constant) pads are all zero returns its input: its consumers read the input.
    Returns the number removed."""
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    removed = 0
    for pad in [n for n in graph.node if n.op_type == "Pad" and len(n.input) > 1]:
        pads = constants.get(pad.input[1])
        axes = pad.input[3] if len(pad.input) > 3 else ""
        if pads is not None and not pads.any() and not axes:
            removed += bypassed(graph, pad, producers, consumers)
    if removed:
        drop_dead(graph, initializers)
    return removed
