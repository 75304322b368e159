"""Fold the weight-only part of an ONNX graph into initializers, holding each weight once.

An exporter that sees the weights as graph inputs puts nodes between a weight and the node
that uses it (a Transpose of a conv kernel, BatchNorm's rsqrt/mul/sub). Those nodes are
evaluated here in numpy, in graph order, and each intermediate value is dropped as soon as
its last consumer has been folded, so the peak is about one extra copy of the weights.
"""
import numpy as np

from .graph import (
    OPSET,
    add_constant,
    attribute_of,
    consumers_of,
    drop_dead,
    inferred_shapes,
)


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
    _rebuild(graph, initializers, removed, {})
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


def linear_as_gemm(graph, initializers: dict) -> int:
    """MatMul(x, W (in, out)) [-> Add(b)] on a 2-D x becomes Gemm(x, W.T[, b], transB=1): the
    op and the (out, in) weight layout torch's exporter writes for a Linear. Returns the number."""
    from onnx import helper

    small = {t.name: t for t in graph.initializer}
    consumers = consumers_of(graph)
    ranks = _ranks(graph, initializers)
    outputs = {o.name for o in graph.output}
    removed, replaced = set(), {}
    for matmul in [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in initializers]:
        weight = initializers[matmul.input[1]]
        if weight.ndim != 2 or ranks.get(matmul.input[0]) != 2 or len(consumers[matmul.input[1]]) != 1:
            continue
        inputs, output = [matmul.input[0], matmul.input[1]], matmul.output[0]
        bias, add = _bias_of(matmul, consumers, outputs, initializers, small)
        if bias is not None and bias.size == weight.shape[1]:
            inputs.append(f"{matmul.input[1]}__bias")
            initializers[inputs[-1]] = np.ascontiguousarray(bias.reshape(-1), dtype=np.float32)
            output = add.output[0]
            removed.add(id(add))
        initializers[matmul.input[1]] = np.ascontiguousarray(weight.T)
        replaced[id(matmul)] = helper.make_node("Gemm", inputs, [output], name=matmul.name, transB=1)
    _rebuild(graph, initializers, removed, replaced)
    return len(replaced)


def _bias_of(matmul, consumers, outputs, initializers, small):
    """(bias vector, Add node) where the MatMul's only consumer adds a constant vector, else (None, None)."""
    from onnx import numpy_helper

    users = consumers.get(matmul.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add" or matmul.output[0] in outputs:
        return None, None
    add = users[0]
    other = add.input[1] if add.input[0] == matmul.output[0] else add.input[0]
    bias = initializers.get(other)
    if bias is None and other in small:
        bias = numpy_helper.to_array(small[other])
    return (bias, add) if bias is not None and bias.ndim <= 2 else (None, None)


def scale_shift_as_batch_norm(graph, initializers: dict) -> int:
    """A per-channel Mul -> Add left after the conv folding (a BatchNorm that does not follow a
    conv: DenseNet's pre-activation, Inception's input normalisation) becomes one
    BatchNormalization(mean 0, var 1, epsilon 0), which computes exactly x * scale + shift
    and is the op torch's exporter writes there. Returns the number rewritten."""
    from onnx import helper, numpy_helper

    small = {t.name: t for t in graph.initializer}

    def constant(name):
        if name in initializers:
            return initializers[name]
        return numpy_helper.to_array(small[name]) if name in small else None

    consumers = consumers_of(graph)
    ranks = _ranks(graph, initializers)
    outputs = {o.name for o in graph.output}
    removed, replaced = set(), {}
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        x, scale_name = _data_and_constant(mul, constant)
        users = consumers.get(mul.output[0], [])
        if x is None or ranks.get(x) != 4 or len(users) != 1 or users[0].op_type != "Add" or mul.output[0] in outputs:
            continue
        add = users[0]
        _, shift_name = _data_and_constant(add, constant)
        if shift_name is None:
            continue
        scale, shift = _channel_vector(constant(scale_name)), _channel_vector(constant(shift_name))
        if scale is None or shift is None or scale.size != shift.size:
            continue
        names = [f"{mul.output[0]}__bn_{part}" for part in ("scale", "shift", "mean", "var")]
        for name, value in zip(names, (scale, shift, np.zeros_like(scale), np.ones_like(scale))):
            initializers[name] = value
        replaced[id(mul)] = helper.make_node("BatchNormalization", [x, *names], [add.output[0]],
                                             name=mul.name, epsilon=0.0)
        removed.add(id(add))
    _rebuild(graph, initializers, removed, replaced)
    return len(replaced)


def _data_and_constant(node, constant):
    """(the non-constant input, the constant input) of a binary node, else (None, None)."""
    a, b = node.input
    if constant(b) is not None and constant(a) is None:
        return a, b
    if constant(a) is not None and constant(b) is None:
        return b, a
    return None, None


def _channel_vector(value):
    """A float32 (C,1,1) or (1,C,1,1) constant as (C,), else None (NCHW broadcasting only)."""
    if value is None or value.dtype != np.float32 or value.ndim not in (3, 4) or value.shape[-2:] != (1, 1):
        return None
    if value.ndim == 4 and value.shape[0] != 1:
        return None
    return np.ascontiguousarray(value.reshape(-1))


def _ranks(graph, initializers):
    """{tensor name: rank} by ONNX shape inference on the graph without its weight bytes."""
    return {name: len(dims) for name, dims in inferred_shapes(graph, initializers).items()}


def _rebuild(graph, initializers, removed, replaced):
    """Drop the `removed` nodes and swap the `replaced` ones (both by id() of wrappers the
    caller still holds), then the constants nothing reads any more."""
    if not removed and not replaced:
        return
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {n for node in graph.node for n in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    for name in [n for n in initializers if n not in used]:
        del initializers[name]


def global_pools_as_torch_writes_them(graph, initializers: dict) -> int:
    """Spell global average pooling and the flatten after it as torch's exporter does:
    an AveragePool whose kernel covers the whole (known) map becomes ReduceMean over H, W
    (keepdims), and a Squeeze of H, W becomes Reshape(0, -1). Same values, same kernels."""
    from onnx import helper, numpy_helper

    shapes = inferred_shapes(graph, initializers)
    small = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    replaced, nodes = {}, list(graph.node)  # held: protobuf wrappers keep their id() only while alive
    for node in nodes:
        shape = shapes.get(node.input[0]) if node.input else None
        if shape is None or len(shape) != 4:
            continue
        if node.op_type == "AveragePool" and _covers_the_map(node, shape):
            axes = add_constant(graph, f"{node.name}__axes", np.array([2, 3], np.int64))
            replaced[id(node)] = helper.make_node("ReduceMean", [node.input[0], axes], list(node.output),
                                                  name=node.name, keepdims=1)
        elif node.op_type == "Squeeze" and len(node.input) == 2 and node.input[1] in small \
                and sorted(int(a) % 4 for a in small[node.input[1]].reshape(-1)) == [2, 3]:
            target = add_constant(graph, f"{node.name}__shape", np.array([0, -1], np.int64))
            replaced[id(node)] = helper.make_node("Reshape", [node.input[0], target], list(node.output), name=node.name)
    _rebuild(graph, initializers, set(), replaced)
    return len(replaced)


def _covers_the_map(pool, shape):
    attributes = {a.name: a for a in pool.attribute}
    kernel = list(attributes["kernel_shape"].ints) if "kernel_shape" in attributes else None
    pads = list(attributes["pads"].ints) if "pads" in attributes else []
    auto_pad = attributes["auto_pad"].s if "auto_pad" in attributes else b"NOTSET"
    return (kernel is not None and None not in shape[2:] and kernel == shape[2:] and not any(pads)
            and auto_pad in (b"NOTSET", b"VALID", b""))


def flatten_as_torch_writes_it(graph, initializers: dict) -> int:
    """The flatten before a Linear becomes Reshape(x, [0, -1]) of the NCHW map, as torch writes
    it: tf_impl's Flatten, and Keras' Reshape whose shape is computed (Shape/Gather/Concat),
    alike. An NHWC->NCHW layout Transpose before it goes too: the Gemm's weight columns are
    then permuted from NHWC- to NCHW-flatten order (torch's canonical layout). Returns the
    number rewritten."""
    from onnx import helper

    shapes = inferred_shapes(graph, initializers)
    consumers, producers = consumers_of(graph), {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    replaced, removed, nodes = {}, set(), list(graph.node)  # held: id() of live wrappers
    for gemm in [n for n in nodes if n.op_type == "Gemm" and n.input[1] in initializers]:
        flatten = producers.get(gemm.input[0])
        weight = initializers[gemm.input[1]]
        if (flatten is None or flatten.op_type not in ("Flatten", "Reshape") or _axis(flatten, 1) != 1
                or len(consumers[gemm.input[0]]) != 1 or len(consumers[gemm.input[1]]) != 1
                or attribute_of(gemm, "transB", 0) != 1 or attribute_of(gemm, "transA", 0) != 0):
            continue
        x = flatten.input[0]
        if not _static_features(shapes.get(x), weight.shape[1]):
            continue
        transpose = producers.get(x)
        if (transpose is not None and transpose.op_type == "Transpose" and len(consumers[x]) == 1
                and x not in outputs and attribute_of(transpose, "perm", None) == [0, 2, 3, 1]
                and _static_features(shapes.get(transpose.input[0]), weight.shape[1])):
            _, c, h, w = shapes[transpose.input[0]]
            initializers[gemm.input[1]] = np.ascontiguousarray(
                weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(weight.shape))
            x = transpose.input[0]
            removed.add(id(transpose))
        target = add_constant(graph, f"{flatten.name}__flat", np.array([0, -1], np.int64))
        replaced[id(flatten)] = helper.make_node("Reshape", [x, target], list(flatten.output), name=flatten.name)
    _rebuild(graph, initializers, removed, replaced)
    drop_dead(graph, {})
    return len(replaced)


def identity_reshapes_removed(graph, initializers: dict) -> int:
    """A Reshape to the shape its input already has (tf2onnx writes the NCHW<->NHWC
    transposes around a 1-channel input as Reshapes, which then cancel into one no-op
    Reshape): its consumers read its input instead. Returns the number removed."""
    from onnx import numpy_helper

    shapes = inferred_shapes(graph, initializers)
    small = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    removed, nodes = set(), list(graph.node)
    for node in nodes:
        if node.op_type != "Reshape" or node.output[0] in outputs or node.input[1] not in small:
            continue
        source, target = shapes.get(node.input[0]), [int(d) for d in small[node.input[1]].reshape(-1)]
        if (source is None or len(source) != len(target) or len(target) < 2 or None in source[1:]
                or target[0] not in (0, -1) or target[1:] != source[1:]):
            continue
        for user in nodes:
            user.input[:] = [node.input[0] if n == node.output[0] else n for n in user.input]
        removed.add(id(node))
    _rebuild(graph, initializers, removed, {})
    return len(removed)


def _static_features(shape, features):
    """True for a rank >= 2 shape whose non-batch dims are known and multiply to `features`."""
    return shape is not None and len(shape) >= 2 and None not in shape[1:] and int(np.prod(shape[1:])) == features


def _axis(node, default):
    return attribute_of(node, "axis", default) if node.op_type == "Flatten" else default


def transposed_convs_as_torch_writes_them(graph, initializers: dict) -> int:
    """ConvTranspose -> Slice that keeps the whole (known) map -> Add(per-channel constant)
    becomes one ConvTranspose with a bias, as torch writes a ConvTranspose2d (tf_impl's
    conv2d_transpose with an explicit output shape converts to the crop and the bias add).
    Returns the number rewritten."""
    from onnx import numpy_helper

    shapes = inferred_shapes(graph, initializers)
    small = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers, outputs = consumers_of(graph), {o.name for o in graph.output}
    removed, nodes = set(), list(graph.node)
    for conv in [n for n in nodes if n.op_type == "ConvTranspose" and n.input[1] in initializers
                 and len(n.input) < 3]:
        users = consumers.get(conv.output[0], [])
        if len(users) != 1 or users[0].op_type != "Slice" or conv.output[0] in outputs:
            continue
        crop = users[0]
        adds = consumers.get(crop.output[0], [])
        if (not _keeps_everything(crop, shapes.get(crop.input[0]), small) or len(adds) != 1
                or adds[0].op_type != "Add" or crop.output[0] in outputs):
            continue
        add = adds[0]
        other = add.input[1] if add.input[0] == crop.output[0] else add.input[0]
        weight = initializers[conv.input[1]]
        bias = _per_channel(initializers.get(other, small.get(other)), weight.shape[1] * attribute_of(conv, "group", 1))
        if bias is None:
            continue
        initializers[f"{conv.input[1]}__bias"] = np.ascontiguousarray(bias, dtype=np.float32)
        conv.input.append(f"{conv.input[1]}__bias")
        conv.output[0] = add.output[0]
        removed.update((id(crop), id(add)))
    _rebuild(graph, initializers, removed, {})
    return len(removed) // 2


def _keeps_everything(crop, shape, small):
    """True for a Slice with constant starts 0, unit steps and ends past each (known) dim."""
    if shape is None or len(crop.input) < 4 or any(n not in small for n in crop.input[1:]):
        return False
    starts, ends, axes = (small[n].reshape(-1).tolist() for n in crop.input[1:4])
    steps = small[crop.input[4]].reshape(-1).tolist() if len(crop.input) > 4 else [1] * len(axes)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        dim = shape[axis % len(shape)]
        if start != 0 or step != 1 or end < 0 or (dim is None and end < 2**31 - 1) or (dim is not None and end < dim):
            return False
    return True


def fold_pads_into_max_pools(graph) -> int:
    """Pad(-inf, H and W only) -> MaxPool becomes one MaxPool with `pads`, as torch exports it.

    Keras and tf_impl pad with -inf before a VALID max-pool (torch's semantics); ONNX MaxPool
    ignores its padding, which is the same thing in one op. Returns the number folded."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = []
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        pads = _spatial_pads(pad, constants)
        if len(users) != 1 or users[0].op_type != "MaxPool" or pads is None:
            continue
        pool = users[0]
        attributes = {a.name: a for a in pool.attribute}
        if "auto_pad" in attributes and attributes["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        if "pads" in attributes:
            if any(attributes["pads"].ints):
                continue
            pool.attribute.remove(attributes["pads"])
        pool.attribute.append(_ints_attribute("pads", pads))
        pool.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    orphans = {name for pad in folded for name in pad.input[1:]} - used
    for tensor in [t for t in graph.initializer if t.name in orphans]:
        graph.initializer.remove(tensor)
    return len(folded)


def _spatial_pads(pad, constants):
    """[top, left, bottom, right] of a constant -inf Pad over the H, W axes of NCHW, else None."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(pad.input) < 3 or len(pad.input) > 3 or pad.input[1] not in constants:
        return None
    value = constants.get(pad.input[2])
    if value is None or value.size != 1 or not np.isneginf(value.reshape(())):
        return None
    pads = [int(p) for p in constants[pad.input[1]]]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def _ints_attribute(name, values):
    import onnx
    return onnx.helper.make_attribute(name, values)
