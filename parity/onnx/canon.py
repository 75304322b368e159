"""One spelling for the ops torch_impl, keras_impl and tf_impl write differently in ONNX.

Applied to all three exports (in write.finalize, the last step of every export), so
one model's three graphs run the same onnxruntime kernels. Each rewrite replaces a subgraph
only where it is shown to compute the same values, and leaves any other graph as it is:

- nearest upsampling by two Gathers (Keras/TF: torch's index rule, on NHWC between layout
  Transposes) becomes torch's Resize(nearest, asymmetric, floor) to the same sizes, where
  onnxruntime's Resize picks exactly the gathered rows and columns (checked on an index map);
- bilinear upsampling with aligned corners by Gathers and blends (Keras/TF's
  F.upsample_bilinear: two taps and two weights per axis, on NHWC between layout Transposes)
  becomes torch's Resize(linear, align_corners) to the same sizes, where a probe agrees;
- an adaptive average pool on a map it does not divide (torch: GatherND/Where/Gather/Add/Div
  between Transposes; Keras/TF: Slice/ReduceMean/Concat per bin) becomes one spelling, the
  per-bin Slice/ReduceMean/Concat over H, then W; a subgraph is taken for one only after it
  computed torch's adaptive pool on a random probe;
- an AveragePool of kernel 1, stride 1 (an identity pool) goes, as keras_impl writes none;
- shape arithmetic whose values are known (a static H, W read back with Shape at run time:
  tf_impl's bilinear x2 `2 * tf.shape(x)[1:3]` and its pad-to-skip) is folded to constants;
  a Pad that then pads nothing goes, and a bilinear Resize to sizes `(N, C) of its input +
  constant integer multiples of H, W` becomes Resize by scales, as torch writes
  F.interpolate(scale_factor=...) (checked to give the same values on a probe);
- a Transpose that undoes the one before it goes, and so does a Reshape of a graph output
  to the shape it already has;
- the global mean of a 1x1 map is taken on the NCHW map, as torch does, where tf2onnx
  takes it on the NHWC Reshape it writes for the map's layout transpose (NiN, Inception-v3
  at their small test sizes);
- a local response norm across channels (torch: Pow/Pad/AveragePool/Squeeze/Mul/Add/Pow/Div;
  Keras/TF: Mul/Pad/Slice/Add/Mul/Add/Log/Mul/Exp/Mul) becomes one ONNX LRN for an odd window,
  and torch's decomposition for an even one (ONNX's LRN centres it the other way), where a
  probe shows the subgraph computes it with a size, alpha, beta and bias read from its constants;
- a zero Pad of H, W before an AveragePool (or before a ReduceMean over H, W: a pool whose
  window covers the padded map) becomes AveragePool(pads, count_include_pad=1), as torch
  writes avg_pool2d(padding=...);
- a Concat of a Concat's output along the same axis (torch's cat inside a cat) takes the
  inner inputs directly, as Keras/TF write it;
- an average pool that does not count its padding spelled as padded sums divided by a
  count map (tf_impl: the map from run-time shapes, around layout Transposes) becomes
  AveragePool(pads, count_include_pad=0), as torch writes it, where a probe agrees.
"""
import numpy as np

from .graph import (
    OPSET,
    Constants,
    add_constant,
    attribute_of,
    bypassed,
    consumers_of,
    drop_dead,
    inferred_shapes,
    producers_of,
    read_instead,
    replace_nodes,
    run_nodes,
)

# Ops an adaptive pool's subgraph may be spelled with (index arithmetic, no weights)
_POOL_OPS = {"Transpose", "GatherND", "Gather", "Where", "Add", "Sub", "Mul", "Div", "Slice", "ReduceMean",
             "ReduceSum", "Concat", "Reshape", "Squeeze", "Unsqueeze", "Cast", "Identity", "Expand"}
_PROBE_TOL = 1e-5
_NCHW_TO_NHWC, _NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
# The Resize attributes torch's exporter writes for F.interpolate(mode="nearest", size=...)
_TORCH_NEAREST = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                      antialias=0, cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
                      keep_aspect_ratio_policy="stretch")


def canonical_spellings(graph, initializers: dict) -> dict:
    """Apply every rewrite of this module; {rewrite: number of places} (0 where nothing matched)."""
    done = {"shape_arithmetic": 0, "bilinear_scales": 0}
    while True:  # a Resize by scales has a static output shape, which lets more arithmetic fold
        step = {"shape_arithmetic": shape_arithmetic_folded(graph, initializers),
                "bilinear_scales": resize_sizes_as_scales(graph, initializers)}
        done = {k: done[k] + step[k] for k in done}
        if not any(step.values()):
            break
    return {**done,
            "zero_pad": zero_pads_removed(graph, initializers),
            "nearest_resize": nearest_gathers_as_resize(graph, initializers),
            "corner_bilinear": corner_bilinear_as_resize(graph, initializers),
            "adaptive_pool": adaptive_avg_pools_canonical(graph, initializers),
            "identity_pool": identity_average_pools_removed(graph, initializers),
            "inverse_transposes": inverse_transposes_cancelled(graph, initializers),
            "output_reshape": identity_output_reshapes_removed(graph, initializers),
            "global_mean_of_1x1": layout_reshapes_before_global_means_removed(graph, initializers),
            "lrn": local_response_norms_as_lrn(graph, initializers),
            "padded_average_pool": zero_pads_into_average_pools(graph, initializers),
            "nested_concat": nested_concats_flattened(graph, initializers),
            "pool_not_counting_padding": average_pools_not_counting_padding(graph, initializers)}


# --- nearest upsampling ----------------------------------------------------------------------

def nearest_gathers_as_resize(graph, initializers: dict) -> int:
    """Gather(rows) -> Gather(columns) of a feature map with constant indices (on NCHW, or on NHWC
    between the layout Transposes tf2onnx leaves) becomes torch's nearest Resize to the same
    sizes, where onnxruntime's Resize picks exactly those rows and columns. Returns the number."""
    if not any(n.op_type == "Gather" for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    consumers, producers = consumers_of(graph), producers_of(graph)
    shapes = inferred_shapes(graph, initializers)
    outputs = {o.name for o in graph.output}
    removed, added, done = set(), {}, 0
    for first in [n for n in graph.node if n.op_type == "Gather"]:
        match = _two_gathers(first, constants, consumers, producers, outputs)
        if match is None or id(first) in removed:
            continue
        x, rows, cols, y, chain = match
        shape = shapes.get(x)
        if shape is None or len(shape) != 4 or None in shape[2:] or not _resize_picks(shape[2], shape[3], rows, cols):
            continue
        for extra in chain[3:]:  # more than one transpose back: they all read the one Resize
            read_instead(graph, extra.output[0], y)
        removed.update(id(n) for n in chain)
        added[id(chain[-1])] = _resize_to(graph, x, y, (len(rows), len(cols)), _TORCH_NEAREST)
        done += 1
    if done:
        replace_nodes(graph, initializers, removed, added)
    return done


def _resize_to(graph, x, y, size_hw, attributes) -> list:
    """torch's spelling of F.interpolate(x, size=size_hw) into `y`: Resize to sizes
    Concat(Shape(x)[:2], size_hw), as [Shape, Concat, Resize]."""
    from onnx import helper
    prefix = f"{y}__resize"
    head = helper.make_node("Shape", [x], [f"{prefix}_nc"], name=f"{prefix}_shape", start=0, end=2)
    hw = add_constant(graph, f"{prefix}_hw", np.array(size_hw, np.int64))
    sizes = helper.make_node("Concat", [head.output[0], hw], [f"{prefix}_sizes"], name=f"{prefix}_concat", axis=0)
    return [head, sizes, helper.make_node("Resize", [x, "", "", sizes.output[0]], [y], name=prefix, **attributes)]


def _two_gathers(first, constants, consumers, producers, outputs):
    """(x NCHW, row indices, column indices, output name, [nodes replaced]) where `first` starts
    a two-Gather nearest resize, else None."""
    data = first.input[0]
    before = producers.get(data)
    nhwc = before is not None and before.op_type == "Transpose" and attribute_of(before, "perm", None) == _NCHW_TO_NHWC
    axes = (1, 2) if nhwc else (2, 3)
    users = consumers.get(first.output[0], [])
    if len(users) != 1 or users[0].op_type != "Gather" or first.output[0] in outputs:
        return None
    second = users[0]
    picked = {attribute_of(first, "axis", 0) % 4: constants.get(first.input[1]),
              attribute_of(second, "axis", 0) % 4: constants.get(second.input[1])}
    if sorted(picked) != list(axes) or any(v is None or v.ndim != 1 or v.dtype.kind not in "iu"
                                           for v in picked.values()):
        return None
    rows, cols = (picked[a].astype(np.int64) for a in axes)
    chain = [first, second]
    x, y = data, second.output[0]
    if nhwc:
        after = consumers.get(second.output[0], [])
        if (not after or second.output[0] in outputs
                or any(n.op_type != "Transpose" or attribute_of(n, "perm", None) != _NHWC_TO_NCHW for n in after)):
            return None
        if any(n.output[0] in outputs for n in after[1:]):
            return None
        x, y = before.input[0], after[0].output[0]
        chain.extend(after)
    return x, rows, cols, y, chain


_RESIZE_PICKS = {}


def _resize_picks(h, w, rows, cols) -> bool:
    """True where onnxruntime's nearest Resize (torch's attributes) of an (h, w) map to
    (len(rows), len(cols)) reads exactly rows x cols: run on a map of its own indices."""
    if rows.min(initial=0) < 0 or cols.min(initial=0) < 0 or rows.max(initial=0) >= h or cols.max(initial=0) >= w:
        return False
    key = (h, w, tuple(rows.tolist()), tuple(cols.tolist()))
    if key not in _RESIZE_PICKS:
        from onnx import helper
        index_map = np.arange(h * w, dtype=np.float32).reshape(1, 1, h, w)
        sizes = np.array([1, 1, len(rows), len(cols)], np.int64)
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **_TORCH_NEAREST)
        picked = run_nodes([node], {"x": index_map, "sizes": sizes}, "y", Constants())
        _RESIZE_PICKS[key] = bool(np.array_equal(picked[0, 0], index_map[0, 0][np.ix_(rows, cols)]))
    return _RESIZE_PICKS[key]


# --- adaptive average pooling ----------------------------------------------------------------

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
        region = _pool_region(y, producers, consumers, outputs, constants)
        if region is None:
            continue
        nodes, x = region
        if any(id(n) in covered for n in nodes):
            continue
        sizes = _pool_sizes(shapes.get(x), shapes.get(y))
        if sizes is None or not _computes_adaptive_pool(nodes, x, y, sizes, constants):
            continue
        covered.update(id(n) for n in nodes)
        removed.update(id(n) for n in nodes)
        added[id(nodes[-1])] = _per_bin_pool(graph, x, y, sizes)
    if added:
        replace_nodes(graph, initializers, removed, added)
    return len(added)


def _pool_region(y, producers, consumers, outputs, constants, ops=_POOL_OPS):
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


def _pool_sizes(x_shape, y_shape):
    """(C, H, W, out H, out W) for a rank-4 X -> Y with the same known channels and a new
    known H, W, else None."""
    if x_shape is None or y_shape is None or len(x_shape) != 4 or len(y_shape) != 4:
        return None
    if None in x_shape[1:] or None in y_shape[1:] or x_shape[1] != y_shape[1] or x_shape[2:] == y_shape[2:]:
        return None
    if y_shape[2:] == [1, 1]:  # a global pool: one ReduceMean in all three exports already (fold.py)
        return None
    return (x_shape[1], *x_shape[2:], *y_shape[2:])


def _computes_adaptive_pool(nodes, x, y, sizes, constants) -> bool:
    c, h, w, oh, ow = sizes
    probe = np.random.default_rng(0).standard_normal((2, c, h, w)).astype(np.float32)
    try:
        value = run_nodes(nodes, {x: probe}, y, constants)
    except Exception:  # not runnable on its own (a shape it takes from elsewhere): not a pool
        return False
    expected = adaptive_avg_pool_reference(probe, oh, ow)
    return _close(value, expected)


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


# --- shape arithmetic ------------------------------------------------------------------------

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


# The Resize attributes torch's exporter writes for F.interpolate(mode="bilinear", align_corners=False)
_TORCH_BILINEAR = {**_TORCH_NEAREST, "mode": "linear", "coordinate_transformation_mode": "half_pixel"}


def resize_sizes_as_scales(graph, initializers: dict) -> int:
    """A bilinear (half-pixel) Resize to sizes Concat((N, C) of its input, constant integer
    multiples of its H, W) becomes Resize by scales (1, 1, k_h, k_w), as torch writes
    F.interpolate(scale_factor=...), where onnxruntime gives the same values on a probe.
    Returns the number rewritten."""
    from onnx import helper

    constants = Constants(graph, initializers)
    producers = producers_of(graph)
    shapes = None
    replaced = {}
    for resize in [n for n in graph.node if n.op_type == "Resize" and len(n.input) == 4 and n.input[3]]:
        if (attribute_of(resize, "mode", b"nearest") != b"linear"
                or attribute_of(resize, "coordinate_transformation_mode", b"half_pixel") != b"half_pixel"
                or attribute_of(resize, "antialias", 0) or attribute_of(resize, "exclude_outside", 0)):
            continue
        x, hw = resize.input[0], _sizes_of(resize, producers, constants)
        if hw is None:
            continue
        shapes = shapes or inferred_shapes(graph, initializers)
        shape = shapes.get(x)
        if shape is None or len(shape) != 4 or None in shape[1:] or hw[0] % shape[2] or hw[1] % shape[3]:
            continue
        scales = np.array([1, 1, hw[0] // shape[2], hw[1] // shape[3]], np.float32)
        if not _same_resize(shape[1:], hw, scales):
            continue
        name = add_constant(graph, f"{resize.name or resize.output[0]}__scales", scales)
        replaced[id(resize)] = helper.make_node("Resize", [x, "", name], list(resize.output), name=resize.name,
                                                **_TORCH_BILINEAR)
    if replaced:
        nodes = [replaced.get(id(n), n) for n in list(graph.node)]
        del graph.node[:]
        graph.node.extend(nodes)
        drop_dead(graph, initializers)
    return len(replaced)


def _sizes_of(resize, producers, constants):
    """(out H, out W) where the Resize's sizes are Concat((N, C) of its own input, constant
    H, W), else None."""
    concat = producers.get(resize.input[3])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return None
    hw = constants.get(concat.input[1])
    if hw is None or hw.shape != (2,) or not _first_two_dims_of(concat.input[0], resize.input[0], producers, constants):
        return None
    return tuple(int(v) for v in hw)


def _first_two_dims_of(name, x, producers, constants) -> bool:
    """True where tensor `name` is Shape(x)[0:2]: Shape(x, start 0, end 2), or a Slice of Shape(x)."""
    node = producers.get(name)
    if node is None:
        return False
    if node.op_type == "Shape":
        return node.input[0] == x and attribute_of(node, "start", 0) == 0 and attribute_of(node, "end", None) == 2
    shape = producers.get(node.input[0]) if node.op_type == "Slice" and len(node.input) >= 3 else None
    if (shape is None or shape.op_type != "Shape" or shape.input[0] != x or attribute_of(shape, "start", 0) != 0
            or attribute_of(shape, "end", None) is not None):
        return False
    given = [constants.get(n) for n in node.input[1:]]
    if any(v is None for v in given):
        return False
    defaults = (None, None, np.array([0]), np.array([1]))  # axes 0, steps 1 where not given
    values = [*given, *defaults[len(given):]]
    return [v.reshape(-1).tolist() for v in values] == [[0], [2], [0], [1]]  # starts, ends, axes, steps


def _same_resize(chw, hw, scales) -> bool:
    """True where onnxruntime's bilinear Resize of a (1, C, H, W) map by `scales` equals the
    Resize to sizes (1, C, out H, out W), exactly."""
    from onnx import helper
    c, h, w = chw
    probe = np.random.default_rng(0).standard_normal((1, min(c, 4), h, w)).astype(np.float32)
    by_sizes = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **_TORCH_BILINEAR)
    by_scales = helper.make_node("Resize", ["x", "", "scales"], ["y"], **_TORCH_BILINEAR)
    sized = run_nodes([by_sizes], {"x": probe, "sizes": np.array([1, probe.shape[1], *hw], np.int64)}, "y", Constants())
    scaled = run_nodes([by_scales], {"x": probe, "scales": scales}, "y", Constants())
    return sized.shape == scaled.shape and bool(np.array_equal(sized, scaled))


# --- identities ------------------------------------------------------------------------------

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


# --- bilinear upsampling with aligned corners -----------------------------------------------------

# The Resize attributes torch's exporter writes for F.interpolate(mode="bilinear", align_corners=True)
_TORCH_CORNERS = {**_TORCH_NEAREST, "mode": "linear", "coordinate_transformation_mode": "align_corners"}


def corner_bilinear_as_resize(graph, initializers: dict) -> int:
    """Two blends of two Gathers each (Keras/TF's F.upsample_bilinear: along W, then H; on NHWC
    between layout Transposes, or on NCHW) from one map X to a larger map Y become torch's
    spelling, a Resize(linear, align_corners) to Y's H, W (_resize_to), where the subgraph
    computes that resize of a random probe. Returns the number replaced."""
    if not any(n.op_type == "Gather" for n in graph.node):
        return 0
    constants = Constants(graph, initializers)
    producers, consumers = producers_of(graph), consumers_of(graph)
    position = {id(n): i for i, n in enumerate(graph.node)}
    shapes = inferred_shapes(graph, initializers)
    outputs = {o.name for o in graph.output}
    removed, added = set(), {}
    for add in [n for n in graph.node if n.op_type == "Add"]:
        second = _blend_of_two_gathers(add, producers, constants)
        first = second and _blend_of_two_gathers(producers.get(second[0]), producers, constants)
        if not first or removed & {id(n) for n in first[1] + second[1]}:
            continue
        x, y, nodes = first[0], add.output[0], first[1] + second[1]
        before, after = producers.get(x), consumers.get(y, [])
        if (before is not None and before.op_type == "Transpose" and attribute_of(before, "perm", None) == _NCHW_TO_NHWC
                and len(after) == 1 and after[0].op_type == "Transpose"
                and attribute_of(after[0], "perm", None) == _NHWC_TO_NCHW):
            x, y, nodes = before.input[0], after[0].output[0], [before, *nodes, after[0]]
        nodes.sort(key=lambda n: position[id(n)])
        inside = {id(n) for n in nodes}
        kept = {id(before)} if before is not None and id(before) in inside else set()  # may feed others too
        if any(o != y and (o in outputs or any(id(c) not in inside for c in consumers.get(o, [])))
               for n in nodes if id(n) not in kept for o in n.output):
            continue
        sizes = _pool_sizes(shapes.get(x), shapes.get(y))
        if sizes is None or not _computes_corner_bilinear(nodes, x, y, sizes, constants):
            continue
        removed.update(inside - kept)
        added[id(nodes[-1])] = _resize_to(graph, x, y, sizes[3:], _TORCH_CORNERS)
    if added:
        replace_nodes(graph, initializers, removed, added)
    return len(added)


def _blend_of_two_gathers(add, producers, constants):
    """(source, [nodes]) where `add` = Gather(source, i) * a + Gather(source, j) * b along one
    axis, indices and weights constant; else None."""
    if add is None or add.op_type != "Add":
        return None
    nodes, gathers = [], []
    for mul in (producers.get(name) for name in add.input):
        if mul is None or mul.op_type != "Mul":
            return None
        taps = [producers.get(name) for name in mul.input if constants.get(name) is None]
        if len(taps) != 1 or taps[0] is None or taps[0].op_type != "Gather" or constants.get(taps[0].input[1]) is None:
            return None
        gathers.append(taps[0])
        nodes += [taps[0], mul]
    if len({g.input[0] for g in gathers}) != 1 or len({attribute_of(g, "axis", 0) for g in gathers}) != 1:
        return None
    return gathers[0].input[0], [*nodes, add]


def _computes_corner_bilinear(nodes, x, y, sizes, constants) -> bool:
    channels, h, w, out_h, out_w = sizes
    if out_h < h or out_w < w:
        return False
    probe = np.random.default_rng(0).standard_normal((1, channels, h, w)).astype(np.float32)
    try:
        value = run_nodes(nodes, {x: probe}, y, constants)
    except Exception:  # not runnable on its own: not a resize
        return False
    return _close(value, corner_bilinear_reference(probe, out_h, out_w))


def corner_bilinear_reference(x, out_h, out_w):
    """numpy (float64): torch's F.interpolate(mode="bilinear", align_corners=True) of an NCHW array."""
    def along(x, axis, out):
        size = x.shape[axis]
        source = np.arange(out) * ((size - 1) / (out - 1) if out > 1 else 0.0)
        low = np.floor(source).astype(np.int64)
        weight = (source - low).reshape([out if a == axis else 1 for a in range(x.ndim)])
        return np.take(x, low, axis) * (1 - weight) + np.take(x, np.minimum(low + 1, size - 1), axis) * weight
    return along(along(x.astype(np.float64), 3, out_w), 2, out_h)


# --- local response norm ---------------------------------------------------------------------

_LRN_OPS = {"Mul", "Pow", "Pad", "AveragePool", "Squeeze", "Unsqueeze", "Reshape", "Add", "Div", "Slice", "Exp",
            "Log", "Sqrt", "Reciprocal", "Neg", "Sub", "Concat", "ReduceSum"}
_LRN_SIZES = (1, 3, 5, 7, 9, 11)  # odd sizes tried without a Pad to read the size from


def local_response_norms_as_lrn(graph, initializers: dict) -> int:
    """A subgraph (_LRN_OPS, with a Pow or an Exp) from one map X to a map of X's shape that
    computes a local response norm of X on two random probes (one small, one large enough for
    the power to matter) becomes one spelling of it: for an odd window the ONNX LRN node; for an
    even one, which ONNX's LRN centres the other way (size/2 - 1 channels before, size/2 after;
    torch: size/2 before), torch's own decomposition (_torch_lrn_nodes). The parameters are tried
    from the subgraph's scalar constants (alpha or alpha/size, beta or -beta, bias), the sizes
    from its Pads (front + back + 1) and the small odd ones. Returns the number replaced."""
    from onnx import helper

    if not any(n.op_type in ("Pow", "Exp") for n in graph.node):
        return 0

    def as_lrn(nodes, x, y, shapes, constants):
        shape = shapes.get(x)
        if (not any(n.op_type in ("Pow", "Exp") for n in nodes) or shape is None or len(shape) != 4
                or None in shape[1:] or shapes.get(y) != shape and shapes.get(y, [None])[1:] != shape[1:]):
            return None
        parameters = _lrn_parameters(nodes, x, y, shape[1:], constants)
        if parameters is None:
            return None
        size, alpha, beta, bias = parameters
        if size % 2 == 0:
            if sorted(n.op_type for n in nodes) == _TORCH_LRN_OPS:  # torch's spelling already
                return None
            return _torch_lrn_nodes(graph, x, y, shape[1:], parameters)
        return helper.make_node("LRN", [x], [y], name=f"{y}__lrn", size=size, alpha=alpha, beta=beta, bias=bias)
    return _rewrite_regions(graph, initializers, _LRN_OPS, as_lrn)


def _rewrite_regions(graph, initializers, ops, rewrite) -> int:
    """For each subgraph of `ops` from one map x to a map y (_pool_region, from the last node
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
        region = _pool_region(y, producers, consumers, outputs, constants, ops)
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


_TORCH_LRN_OPS = sorted(["Mul", "Reshape", "Pad", "AveragePool", "Squeeze", "Mul", "Add", "Pow", "Div"])


def _torch_lrn_nodes(graph, x, y, chw, parameters) -> list:
    """torch's export of F.local_response_norm: x / (bias + alpha * mean of x^2 over the window)^beta,
    the mean an AveragePool over a padded (N, 1, C, H, W) view."""
    from onnx import helper
    size, alpha, beta, bias = parameters
    p = f"{y}__lrn"

    def const(name, value, dtype):
        return add_constant(graph, f"{p}_{name}", np.array(value, dtype))
    pads = const("pads", [0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0], np.int64)
    return [
        helper.make_node("Mul", [x, x], [f"{p}_square"], name=f"{p}_square"),
        helper.make_node("Reshape", [f"{p}_square", const("view_shape", [-1, 1, *chw], np.int64)], [f"{p}_view"],
                         name=f"{p}_view", allowzero=1),
        helper.make_node("Pad", [f"{p}_view", pads], [f"{p}_pad"], name=f"{p}_pad", mode="constant"),
        helper.make_node("AveragePool", [f"{p}_pad"], [f"{p}_mean"], name=f"{p}_mean", kernel_shape=[size, 1, 1],
                         strides=[1, 1, 1], pads=[0] * 6, count_include_pad=1),
        helper.make_node("Squeeze", [f"{p}_mean", const("axis", [1], np.int64)], [f"{p}_squeeze"], name=f"{p}_squeeze"),
        helper.make_node("Mul", [f"{p}_squeeze", const("alpha", alpha, np.float32)], [f"{p}_scaled"], name=f"{p}_scaled"),
        helper.make_node("Add", [f"{p}_scaled", const("bias", bias, np.float32)], [f"{p}_base"], name=f"{p}_base"),
        helper.make_node("Pow", [f"{p}_base", const("beta", beta, np.float32)], [f"{p}_power"], name=f"{p}_power"),
        helper.make_node("Div", [x, f"{p}_power"], [y], name=p),
    ]


def lrn_reference(x, size, alpha, beta, bias):
    """numpy (float64): a local response norm across channels of an NCHW array, the window
    centred as ONNX's LRN for an odd size and as torch's for an even one (size/2 channels before)."""
    squares = np.square(x.astype(np.float64))
    padded = np.pad(squares, ((0, 0), (size // 2 + 1, (size - 1) // 2), (0, 0), (0, 0)))  # one more zero in front:
    summed = np.cumsum(padded, axis=1)  # each window's sum is a difference of running sums
    window = summed[:, size:size + x.shape[1]] - summed[:, :x.shape[1]]
    return x / (bias + alpha / size * window) ** beta


def _lrn_parameters(nodes, x, y, chw, constants):
    """(size, alpha, beta, bias) of the LRN the subgraph computes on the probes (at the map's
    own C, H, W: torch's spelling reshapes to them), else None."""
    scalars = sorted({float(v.reshape(-1)[0]) for n in nodes for v in [constants.get(i) for i in n.input if i]
                      if v is not None and v.size == 1 and v.dtype.kind == "f"})
    if not scalars:
        return None
    rng = np.random.default_rng(0)
    channels = chw[0]
    probes = [rng.standard_normal((2, *chw)).astype(np.float32) * scale for scale in (1.0, 100.0)]
    try:
        values = [run_nodes(nodes, {x: probe}, y, constants) for probe in probes]
    except Exception:  # not runnable on its own: not an LRN
        return None
    for size in [s for s in sorted({*_LRN_SIZES, *_padded_windows(nodes, constants)}) if s <= channels]:
        for alpha in sorted({a for v in scalars if v > 0 for a in (v, v * size)}):
            for beta in sorted({abs(v) for v in scalars if v}):
                for bias in scalars:
                    with np.errstate(all="ignore"):  # a wrong bias can make the base negative
                        matches = all(_close(value, lrn_reference(probe, size, alpha, beta, bias))
                                      for probe, value in zip(probes, values))
                    if matches:
                        return size, float(np.float32(alpha)), beta, bias
    return None


def _padded_windows(nodes, constants) -> set:
    """Window sizes a subgraph's constant Pads suggest: front + back + 1 on each padded axis."""
    sizes = set()
    for pad in (n for n in nodes if n.op_type == "Pad" and len(n.input) > 1):
        pads = constants.get(pad.input[1])
        if pads is not None and pads.ndim == 1 and pads.size % 2 == 0:
            half = pads.size // 2
            sizes |= {int(pads[i] + pads[i + half] + 1) for i in range(half) if pads[i] or pads[i + half]}
    return sizes


def _close(value, expected):
    return value.shape == expected.shape and float(np.abs(value - expected).max()) <= _PROBE_TOL * float(
        np.abs(expected).max())


# --- padded average pools, nested concats ------------------------------------------------------

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


# --- average pools that do not count their padding ---------------------------------------------

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
        if not _close(value, average_pool_reference(probe, kernel, strides, pads)):
            return None
        return helper.make_node("AveragePool", [x], [y], name=f"{y}__avg_pool", kernel_shape=kernel,
                                strides=strides, pads=pads, count_include_pad=0, ceil_mode=0)
    return _rewrite_regions(graph, initializers, _COUNTED_OPS, as_average_pool)


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
