"""Pools: adaptive average pools as per-bin means, identity pools gone, zero Pads folded into
average pools (counted or not), and the global mean of a 1x1 map taken on NCHW."""
import numpy as np

from ..graph import (Constants, add_constant, attribute_of, bypassed, close, consumers_of, drop_dead, inferred_shapes,
                     map_sizes, producers_of, region_producing, replace_nodes, rewrite_regions, run_nodes)

# Ops an adaptive pool's subgraph may be spelled with (index arithmetic, no weights)
_POOL_OPS = {"Transpose", "GatherND", "Gather", "Where", "Add", "Sub", "Mul", "Div", "Slice", "ReduceMean",
             "ReduceSum", "Concat", "Reshape", "Squeeze", "Unsqueeze", "Cast", "Identity", "Expand"}


def adaptive_bins(size, bins):
    """torch's AdaptiveAvgPool bins: [floor(i*size/bins), ceil((i+1)*size/bins)) for each i."""
    return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


def adaptive_avg_pool_reference(x, out_h, out_w):
    """numpy: torch's AdaptiveAvgPool2d((out_h, out_w)) of an NCHW array (float64 sums)."""
    rows = np.stack([x[:, :, s:e].mean(axis=2, dtype=np.float64) for s, e in adaptive_bins(x.shape[2], out_h)], 2)
    return np.stack([rows[:, :, :, s:e].mean(axis=3) for s, e in adaptive_bins(x.shape[3], out_w)], 3)


def adaptive_avg_pools_canonical(graph, initializers: dict) -> int:
    """A subgraph of index arithmetic (_POOL_OPS) from one feature map X to one map Y that
    computes torch's adaptive average pool of X to Y's H, W (checked on a random probe) is
    replaced by the per-bin spelling: Slice/ReduceMean per bin of H, Concat, then the same
    over W (an axis whose size equals its bins is left out). Returns the number replaced."""
    if not any(n.op_type in ("GatherND", "ReduceMean") for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    outputs = {o.name for o in graph.output}
    shapes = inferred_shapes(graph, initializers)
    covered, removed, added = set(), set(), {}
    for node in reversed(list(graph.node)):  # the last tensor of a pool first: the biggest subgraph
        if node.op_type not in _POOL_OPS or id(node) in covered:
            continue
        y = node.output[0]
        region = region_producing(y, producers, consumers, outputs, constants, _POOL_OPS)
        if region is None:
            continue
        nodes, x = region
        if any(id(n) in covered for n in nodes):
            continue
        sizes = map_sizes(shapes.get(x), shapes.get(y))
        if sizes is None or not _computes_adaptive_pool(nodes, x, y, sizes, constants):
            continue
        covered.update(id(n) for n in nodes)
        removed.update(id(n) for n in nodes)
        added[id(nodes[-1])] = _per_bin_pool(graph, x, y, sizes)
    if added:
        replace_nodes(graph, initializers, removed, added)
    return len(added)


def _computes_adaptive_pool(nodes, x, y, sizes, constants) -> bool:
    c, h, w, oh, ow = sizes
    probe = np.random.default_rng(0).standard_normal((2, c, h, w)).astype(np.float32)
    try:
        value = run_nodes(nodes, {x: probe}, y, constants)
    except Exception:  # not runnable on its own (a shape it takes from elsewhere): not a pool
        return False
    expected = adaptive_avg_pool_reference(probe, oh, ow)
    return close(value, expected)


def _per_bin_pool(graph, x, y, sizes):
    """The nodes of the per-bin spelling of Y = adaptive average pool of X (its constants are
    added to the graph)."""
    from onnx import helper

    _, h, w, oh, ow = sizes
    prefix = f"{y}__adaptive_pool"
    new, current = [], x
    passes = [(axis, size, bins) for axis, size, bins in ((2, h, oh), (3, w, ow)) if size != bins]
    for k, (axis, size, bins) in enumerate(passes):
        axes = add_constant(graph, f"{prefix}_axis{axis}", np.array([axis], np.int64))
        parts = []
        for i, (start, end) in enumerate(adaptive_bins(size, bins)):
            starts = add_constant(graph, f"{prefix}_a{axis}_start{i}", np.array([start], np.int64))
            ends = add_constant(graph, f"{prefix}_a{axis}_end{i}", np.array([end], np.int64))
            piece = f"{prefix}_a{axis}_bin{i}"
            new.append(helper.make_node("Slice", [current, starts, ends, axes], [piece], name=f"{piece}_slice"))
            new.append(helper.make_node("ReduceMean", [piece, axes], [f"{piece}_mean"], name=f"{piece}_mean",
                                        keepdims=1))
            parts.append(f"{piece}_mean")
        current = y if k == len(passes) - 1 else f"{prefix}_a{axis}"
        new.append(helper.make_node("Concat", parts, [current], name=f"{prefix}_a{axis}_concat", axis=axis))
    return new


def identity_average_pools_removed(graph, initializers: dict) -> int:
    """An AveragePool with kernel 1 and stride 1 and no padding returns its input: its consumers
    read the input instead (torch and tf_impl write one for an adaptive pool that is the
    identity, keras_impl none). Returns the number removed."""
    producers, consumers = producers_of(graph), consumers_of(graph)
    removed = 0
    for pool in [n for n in graph.node if n.op_type == "AveragePool"]:
        if (set(attribute_of(pool, "kernel_shape", [0])) == {1} and set(attribute_of(pool, "strides", [1])) == {1}
                and not any(attribute_of(pool, "pads", [])) and len(pool.output) == 1
                and attribute_of(pool, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID", b"")):
            removed += bypassed(graph, pool, producers, consumers)
    return removed


def layout_reshapes_before_global_means_removed(graph, initializers: dict) -> int:
    """Reshape(x (N, C, 1, 1) -> (N, 1, 1, C)) -> ReduceMean over axes 1, 2 (tf2onnx's NHWC
    global mean of a 1x1 map) becomes ReduceMean(x) over axes 2, 3 with keepdims, then the
    flatten Reshape(0, -1): torch's spelling. With keepdims=1 the mean's consumers must all be
    flattens to (N, C) already. Means of one element: the values are the same. Returns the number."""
    from onnx import helper

    if not any(n.op_type == "ReduceMean" for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    outputs = {o.name for o in graph.output}
    shapes = None
    removed, added = set(), {}
    for mean in [n for n in graph.node if n.op_type == "ReduceMean"]:
        layout = producers.get(mean.input[0])
        axes = constants.get(mean.input[1]) if len(mean.input) > 1 else np.array(attribute_of(mean, "axes", []))
        if (layout is None or layout.op_type != "Reshape" or axes is None
                or sorted(int(a) % 4 for a in axes.reshape(-1)) != [1, 2] or layout.output[0] in outputs
                or len(consumers.get(layout.output[0], [])) != 1):
            continue
        shapes = shapes or inferred_shapes(graph, initializers)
        x, target = layout.input[0], constants.get(layout.input[1])
        shape = shapes.get(x)
        if (shape is None or len(shape) != 4 or shape[2:] != [1, 1] or shape[1] is None or target is None
                or target.reshape(-1).tolist()[1:] != [1, 1, shape[1]] or target.reshape(-1)[0] not in (0, -1)):
            continue
        keepdims = attribute_of(mean, "keepdims", 1)
        if keepdims and not all(_flattens(user, shape[1], constants) for user in consumers.get(mean.output[0], [])):
            continue
        hw = add_constant(graph, f"{mean.name or mean.output[0]}__hw", np.array([2, 3], np.int64))
        pooled = mean.output[0] if keepdims else f"{mean.output[0]}__nchw"
        new = [helper.make_node("ReduceMean", [x, hw], [pooled], name=mean.name, keepdims=1)]
        if not keepdims:
            flat = add_constant(graph, f"{mean.name or mean.output[0]}__flat", np.array([0, -1], np.int64))
            new.append(helper.make_node("Reshape", [pooled, flat], [mean.output[0]], name=f"{pooled}_flatten"))
        removed.update((id(layout), id(mean)))
        added[id(mean)] = new
    if added:
        replace_nodes(graph, initializers, removed, added)
    return len(added)


def _flattens(node, channels, constants):
    """True for a Reshape of an (N, C, 1, 1) or (N, 1, 1, C) tensor to (N, C)."""
    if node.op_type != "Reshape":
        return False
    target = constants.get(node.input[1])
    return target is not None and target.size == 2 and target.reshape(-1)[0] in (0, -1) \
        and target.reshape(-1)[1] in (-1, channels)


def zero_pads_into_average_pools(graph, initializers: dict) -> int:
    """Pad(zeros, H and W only) -> AveragePool(no padding) becomes AveragePool(pads,
    count_include_pad=1); Pad -> ReduceMean(H, W, keepdims) becomes AveragePool with the padded
    map as its window: torch's spelling of avg_pool2d(padding=p), the zeros counted. Returns the number."""
    from onnx import helper

    if not any(n.op_type == "Pad" for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    consumers = consumers_of(graph)
    outputs = {o.name for o in graph.output}
    shapes = None
    removed, replaced = set(), {}
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        pads = _zero_spatial_pads(pad, constants)
        if pads is None or len(users) != 1 or pad.output[0] in outputs:
            continue
        pool = users[0]
        if pool.op_type == "AveragePool" and not any(attribute_of(pool, "pads", [])) \
                and attribute_of(pool, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID", b"") \
                and not attribute_of(pool, "ceil_mode", 0) and len(attribute_of(pool, "kernel_shape", [])) == 2:
            kernel, strides = attribute_of(pool, "kernel_shape", None), attribute_of(pool, "strides", [1, 1])
        elif pool.op_type == "ReduceMean" and attribute_of(pool, "keepdims", 1) and len(pool.input) > 1 \
                and _axes_are_hw(constants.get(pool.input[1])):
            shapes = shapes or inferred_shapes(graph, initializers)
            padded = shapes.get(pad.output[0])
            if padded is None or len(padded) != 4 or None in padded[2:]:
                continue
            kernel, strides = padded[2:], [1, 1]
        else:
            continue
        replaced[id(pool)] = helper.make_node("AveragePool", [pad.input[0]], list(pool.output), name=pool.name,
                                              kernel_shape=kernel, strides=strides, pads=pads,
                                              count_include_pad=1, ceil_mode=0)
        removed.add(id(pad))
    if replaced:
        nodes = [replaced.get(id(n), n) for n in list(graph.node) if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(nodes)
        drop_dead(graph, initializers)
    return len(replaced)


def _zero_spatial_pads(pad, constants):
    """[top, left, bottom, right] of a constant-zero Pad of the H, W axes of NCHW, else None."""
    mode = attribute_of(pad, "mode", b"constant")
    if mode != b"constant" or len(pad.input) > 3 or (len(pad.input) == 4 and pad.input[3]):
        return None
    value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1, np.float32)
    given = constants.get(pad.input[1])
    if value is None or value.size != 1 or float(value.reshape(())) != 0.0 or given is None:
        return None
    pads = [int(p) for p in given.reshape(-1)]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0 or not any(pads):
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def _axes_are_hw(axes):
    return axes is not None and sorted(int(a) % 4 for a in axes.reshape(-1)) == [2, 3]


# No Concat: the pool's input is often a block's Concat, which must stay its one source
_COUNTED_OPS = {"Transpose", "Mul", "Div", "AveragePool", "Reshape", "Pad", "ConstantOfShape", "Gather", "Shape",
                "Slice", "Cast", "Squeeze", "Unsqueeze", "Identity", "Expand", "ReduceMean"}


def average_pools_not_counting_padding(graph, initializers: dict) -> int:
    """A subgraph (_COUNTED_OPS, with a Div and a padded AveragePool) from one map X to one map
    Y that computes the average over each window's in-map elements only (checked on a random
    probe at X's own C, H, W), with the window, strides and padding of that AveragePool,
    becomes AveragePool(pads, count_include_pad=0). Returns the number replaced."""
    from onnx import helper

    if not any(n.op_type == "Div" for n in graph.node) or not any(n.op_type == "AveragePool" for n in graph.node):
        return 0

    def as_average_pool(nodes, x, y, shapes, constants):
        window = _padded_window(nodes)
        x_shape, y_shape = shapes.get(x), shapes.get(y)
        if (window is None or not any(n.op_type == "Div" for n in nodes) or x_shape is None or y_shape is None
                or len(x_shape) != 4 or None in x_shape[1:] or y_shape[1:2] != x_shape[1:2]):
            return None
        kernel, strides, pads = window
        probe = np.random.default_rng(0).standard_normal((2, *x_shape[1:])).astype(np.float32)
        try:
            value = run_nodes(nodes, {x: probe}, y, constants)
        except Exception:  # not runnable on its own: not such a pool
            return None
        if not close(value, average_pool_reference(probe, kernel, strides, pads)):
            return None
        return helper.make_node("AveragePool", [x], [y], name=f"{y}__avg_pool", kernel_shape=kernel,
                                strides=strides, pads=pads, count_include_pad=0, ceil_mode=0)
    return rewrite_regions(graph, initializers, _COUNTED_OPS, as_average_pool)


def _padded_window(nodes):
    """(kernel, strides, pads) of the one padded 2-D AveragePool among `nodes` that reads
    the data (not a count map), else None."""
    pools = [n for n in nodes if n.op_type == "AveragePool" and any(attribute_of(n, "pads", []))
             and len(attribute_of(n, "kernel_shape", [])) == 2 and not attribute_of(n, "ceil_mode", 0)]
    if len(pools) != 1:
        return None
    pool = pools[0]
    return attribute_of(pool, "kernel_shape", None), attribute_of(pool, "strides", [1, 1]), attribute_of(pool, "pads", None)


def average_pool_reference(x, kernel, strides, pads):
    """numpy (float64): average over each window's in-map elements of an NCHW array."""
    (kh, kw), (sh, sw), (top, left, bottom, right) = kernel, strides, pads
    spec = ((0, 0), (0, 0), (top, bottom), (left, right))
    data = np.pad(x.astype(np.float64), spec)
    inside = np.pad(np.ones(x.shape[2:], np.float64), spec[2:])
    out_h, out_w = (data.shape[2] - kh) // sh + 1, (data.shape[3] - kw) // sw + 1
    sums = np.zeros((*x.shape[:2], out_h, out_w))
    counts = np.zeros((out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            sums += data[:, :, i:i + sh * out_h:sh, j:j + sw * out_w:sw]
            counts += inside[i:i + sh * out_h:sh, j:j + sw * out_w:sw]
    return sums / counts
