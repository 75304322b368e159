"""What the ONNX graph rewrites (fold, canon) share: the opset, a graph's constants, its
producers and consumers, inferred shapes, node replacement and clean-up, and running a few
nodes on their own in onnxruntime (the probes that decide whether a rewrite may be taken)."""
import numpy as np

OPSET = 18  # the newest opset tf2onnx 1.17 writes; torch exports use the same
PROBE_TOL = 1e-5  # how close a subgraph's value on a probe must be to what its rewrite computes
NCHW_TO_NHWC, NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]  # the layout Transposes tf2onnx writes


class Constants:
    """Values of the graph's constants: big weights (`initializers`), small initializers and
    Constant nodes."""

    def __init__(self, graph=None, initializers=None):
        from onnx import numpy_helper
        self.big = initializers or {}
        self.small = {t.name: t for t in graph.initializer} if graph is not None else {}
        self.nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"} if graph is not None else {}
        self._numpy = numpy_helper

    def __contains__(self, name):
        return name in self.big or name in self.small or name in self.nodes

    def size(self, name):
        """Number of elements of a constant (without reading its bytes)."""
        if name in self.big:
            return self.big[name].size
        if name in self.small:
            return int(np.prod(self.small[name].dims))
        return 1 if name in self.nodes else 0

    def get(self, name):
        if name in self.big:
            return self.big[name]
        if name in self.small:
            return self._numpy.to_array(self.small[name])
        if name in self.nodes:
            from onnx.reference import ReferenceEvaluator
            return np.asarray(ReferenceEvaluator(self.nodes[name]).run(None, {})[0])
        return None


def consumers_of(graph):
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def producers_of(graph):
    return {o: n for n in graph.node for o in n.output}


def attribute_of(node, name, default):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return list(value) if isinstance(value, (list, tuple)) else value
    return default


def add_constant(graph, name, value):
    """Add a small initializer `name` (unique) holding `value`; returns its name."""
    from onnx import numpy_helper
    taken = {t.name for t in graph.initializer}
    unique, k = name, 0
    while unique in taken:
        k += 1
        unique = f"{name}_{k}"
    graph.initializer.append(numpy_helper.from_array(np.asarray(value), unique))
    return unique


def replace_nodes(graph, initializers, removed, added_after):
    """Drop the nodes whose id() is in `removed`; insert each list in `added_after[id(node)]`
    right after that node (kept or removed); then drop what nothing reads any more."""
    nodes = []
    for node in list(graph.node):  # held: id() of live wrappers
        if id(node) not in removed:
            nodes.append(node)
        nodes.extend(added_after.get(id(node), []))
    del graph.node[:]
    graph.node.extend(nodes)
    drop_dead(graph, initializers)


def drop_dead(graph, initializers):
    outputs = {o.name for o in graph.output}
    while True:
        used = {n for node in graph.node for n in node.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {n for node in graph.node for n in node.input} | outputs | {i.name for i in graph.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    for name in [n for n in initializers if n not in used]:
        del initializers[name]


def read_instead(graph, old, new):
    """Every consumer of tensor `old` reads `new` instead."""
    for node in graph.node:
        if old in node.input:
            node.input[:] = [new if n == old else n for n in node.input]


def bypassed(graph, node, producers, consumers) -> bool:
    """Take out `node`, which returns its first input unchanged: its consumers read the input,
    or, where it writes a graph output, the node before it writes that output instead.
    False (graph unchanged) where neither can be done."""
    source, target = node.input[0], node.output[0]
    if target not in {o.name for o in graph.output}:
        read_instead(graph, target, source)
        graph.node.remove(node)
        return True
    before = producers.get(source)
    if (before is None or source in {o.name for o in graph.output} | {i.name for i in graph.input}
            or len(consumers.get(source, [])) != 1):
        return False
    before.output[:] = [target if n == source else n for n in before.output]
    graph.node.remove(node)
    return True


def run_nodes(nodes, inputs: dict, output, constants):
    """Evaluate `nodes` (in order) in onnxruntime on `inputs` ({name: array}); the value of the
    float tensor `output`."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    needed = {n for node in nodes for n in node.input if n and n in constants and n not in inputs}
    const_nodes = [constants.nodes[n] for n in needed if n in constants.nodes]
    initializers = [numpy_helper.from_array(np.asarray(constants.get(n)), n) for n in needed
                    if n not in constants.nodes]
    model = helper.make_model(
        helper.make_graph(
            [*const_nodes, *nodes], "probe",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for n, a in inputs.items()],
            [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)], initializers),
        opset_imports=[helper.make_opsetid("", OPSET)])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([output], inputs)[0]


def inferred_shapes(graph, initializers):
    """{tensor name: [dim value or None]} by ONNX shape inference on a copy of the graph that
    holds no big tensor's bytes: `initializers` and inline tensors over 4096 elements (torch's
    graphs keep their weights inline) are given as shapes only."""
    import onnx
    from onnx import helper

    probe = onnx.GraphProto()
    probe.node.extend(graph.node)
    probe.input.extend(graph.input)
    probe.output.extend(graph.output)
    probe.value_info.extend(graph.value_info)
    for tensor in graph.initializer:
        if int(np.prod(tensor.dims)) <= 4096:
            probe.initializer.append(tensor)
        else:
            probe.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    for name, value in initializers.items():
        probe.input.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                         value.shape))
    model = helper.make_model(probe, opset_imports=[helper.make_opsetid("", OPSET)])
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in (*inferred.input, *inferred.value_info, *inferred.output):
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None
                                  for d in value.type.tensor_type.shape.dim]
    return shapes


def region_producing(y, producers, consumers, outputs, constants, ops):
    """(nodes in graph order, X) of the subgraph of `ops` that produces `y` from exactly one
    tensor X not computed in it, every intermediate read only inside it; else None."""
    found, sources, stack = {}, set(), [y]
    while stack:
        name = stack.pop()
        if not name or name in constants:
            continue
        node = producers.get(name)
        if node is None or node.op_type not in ops or node.domain not in ("", "ai.onnx"):
            sources.add(name)
            continue
        if id(node) not in found:
            found[id(node)] = node
            stack.extend(node.input)
        if len(found) > 2000:
            return None
    if len(sources) != 1 or len(found) < 2:
        return None
    inside = {o for n in found.values() for o in n.output}
    for name in inside - {y}:
        if name in outputs or any(id(c) not in found for c in consumers.get(name, [])):
            return None
    order = [n for n in producers.values() if id(n) in found]
    order = list({id(n): n for n in order}.values())
    return order, sources.pop()


def map_sizes(x_shape, y_shape):
    """(C, H, W, out H, out W) for a rank-4 X -> Y with the same known channels and a new
    known H, W, else None."""
    if x_shape is None or y_shape is None or len(x_shape) != 4 or len(y_shape) != 4:
        return None
    if None in x_shape[1:] or None in y_shape[1:] or x_shape[1] != y_shape[1] or x_shape[2:] == y_shape[2:]:
        return None
    if y_shape[2:] == [1, 1]:  # a global pool: one ReduceMean in all three exports already (fold.py)
        return None
    return (x_shape[1], *x_shape[2:], *y_shape[2:])


def rewrite_regions(graph, initializers, ops, rewrite) -> int:
    """For each subgraph of `ops` from one map x to a map y (region_producing, from the last node
    back, regions not overlapping), rewrite(nodes, x, y, shapes, constants) gives the node (or
    nodes) that replace it, or None to leave it. Returns the number replaced."""
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    outputs = {o.name for o in graph.output}
    shapes = inferred_shapes(graph, initializers)
    covered, removed, added = set(), set(), {}
    for node in reversed(list(graph.node)):
        if node.op_type not in ops or id(node) in covered:
            continue
        y = node.output[0]
        region = region_producing(y, producers, consumers, outputs, constants, ops)
        if region is None or any(id(n) in covered for n in region[0]):
            continue
        nodes, x = region
        replacement = rewrite(nodes, x, y, shapes, constants)
        if replacement is None:
            continue
        covered.update(id(n) for n in nodes)
        removed.update(id(n) for n in nodes)
        added[id(nodes[-1])] = replacement if isinstance(replacement, list) else [replacement]
    if added:
        replace_nodes(graph, initializers, removed, added)
    return len(added)


def close(value, expected) -> bool:
    """Same shape, and within PROBE_TOL of `expected` relative to its largest magnitude."""
    return value.shape == expected.shape and float(np.abs(value - expected).max()) <= PROBE_TOL * float(
        np.abs(expected).max())
