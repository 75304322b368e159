"""Layout leftovers: a Transpose undone by the next, a graph output reshaped to its own shape, a
Concat of a Concat on the same axis."""
from ..graph import (Constants, attribute_of, bypassed, consumers_of, drop_dead, inferred_shapes, producers_of,
                     read_instead, replace_nodes)


def inverse_transposes_cancelled(graph, initializers: dict) -> int:
    """Transpose(p) -> Transpose(q) with q undoing p: the second one's consumers read the
    first one's input. Returns the number of pairs cancelled."""
    producers = producers_of(graph)
    outputs = {o.name for o in graph.output}
    cancelled = 0
    for second in [n for n in graph.node if n.op_type == "Transpose"]:
        first = producers.get(second.input[0])
        if first is None or first.op_type != "Transpose" or second.output[0] in outputs:
            continue
        p, q = attribute_of(first, "perm", None), attribute_of(second, "perm", None)
        if p is None or q is None or len(p) != len(q) or [p[i] for i in q] != list(range(len(p))):
            continue
        read_instead(graph, second.output[0], first.input[0])
        cancelled += 1
    if cancelled:
        drop_dead(graph, initializers)
    return cancelled


def identity_output_reshapes_removed(graph, initializers: dict) -> int:
    """A Reshape that writes a graph output with the shape its input already has (tf2onnx spells
    the layout transposes of a 1x1 map as Reshapes): the node before it writes the output.
    Returns the number removed."""
    shapes = inferred_shapes(graph, initializers) if any(n.op_type == "Reshape" for n in graph.node) else {}
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in [n for n in graph.node if n.op_type == "Reshape" and n.output[0] in outputs]:
        source, target = shapes.get(node.input[0]), constants.get(node.input[1])
        if source is not None and target is not None and _same_shape(source, target.reshape(-1).tolist()):
            removed += bypassed(graph, node, producers, consumers)
    if removed:
        drop_dead(graph, initializers)
    return removed


def _same_shape(source, target):
    """True where Reshape(target) of a tensor of shape `source` (batch maybe unknown) keeps it."""
    if len(source) != len(target) or len(target) < 2 or None in source[1:]:
        return False
    return target[0] in (0, -1) and list(target[1:]) == list(source[1:])


def nested_concats_flattened(graph, initializers: dict) -> int:
    """A Concat input produced by another Concat along the same axis, read by nothing else,
    is replaced by that Concat's inputs (torch's cat of a cat; Keras/TF write one Concat).
    Returns the number of inner Concats removed."""
    producers, consumers = producers_of(graph), consumers_of(graph)
    outputs = {o.name for o in graph.output}
    shapes = None
    removed = set()
    for outer in [n for n in graph.node if n.op_type == "Concat"]:
        inputs, changed = [], False
        for name in outer.input:
            inner = producers.get(name)
            if (inner is not None and inner.op_type == "Concat" and id(inner) not in removed
                    and len(consumers.get(name, [])) == 1 and name not in outputs):
                shapes = shapes or inferred_shapes(graph, initializers)
                rank = len(shapes.get(name) or [])
                if rank and attribute_of(inner, "axis", 0) % rank == attribute_of(outer, "axis", 0) % rank:
                    inputs.extend(inner.input)
                    removed.add(id(inner))
                    changed = True
                    continue
            inputs.append(name)
        if changed:
            outer.input[:] = inputs
    if removed:
        replace_nodes(graph, initializers, removed, {})
    return len(removed)
