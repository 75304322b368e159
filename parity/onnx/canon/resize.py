"""Resizes: Keras/TF's nearest (two Gathers) and corner-aligned bilinear (blends of Gathers) upsampling
become torch's Resize to a size; a half-pixel bilinear Resize to integer multiples becomes Resize by scales."""
import numpy as np

from ..graph import (NCHW_TO_NHWC, NHWC_TO_NCHW, Constants, add_constant, attribute_of, close, consumers_of, drop_dead,
                     inferred_shapes, map_sizes, producers_of, read_instead, replace_nodes, run_nodes)

# The Resize attributes torch's exporter writes for F.interpolate(mode="nearest", size=...)
_TORCH_NEAREST = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                      antialias=0, cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
                      keep_aspect_ratio_policy="stretch")


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
    nhwc = before is not None and before.op_type == "Transpose" and attribute_of(before, "perm", None) == NCHW_TO_NHWC
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
                or any(n.op_type != "Transpose" or attribute_of(n, "perm", None) != NHWC_TO_NCHW for n in after)):
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
        if (before is not None and before.op_type == "Transpose" and attribute_of(before, "perm", None) == NCHW_TO_NHWC
                and len(after) == 1 and after[0].op_type == "Transpose"
                and attribute_of(after[0], "perm", None) == NHWC_TO_NCHW):
            x, y, nodes = before.input[0], after[0].output[0], [before, *nodes, after[0]]
        nodes.sort(key=lambda n: position[id(n)])
        inside = {id(n) for n in nodes}
        kept = {id(before)} if before is not None and id(before) in inside else set()  # may feed others too
        if any(o != y and (o in outputs or any(id(c) not in inside for c in consumers.get(o, [])))
               for n in nodes if id(n) not in kept for o in n.output):
            continue
        sizes = map_sizes(shapes.get(x), shapes.get(y))
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
    return close(value, corner_bilinear_reference(probe, out_h, out_w))


def corner_bilinear_reference(x, out_h, out_w):
    """numpy (float64): torch's F.interpolate(mode="bilinear", align_corners=True) of an NCHW array."""
    def along(x, axis, out):
        size = x.shape[axis]
        source = np.arange(out) * ((size - 1) / (out - 1) if out > 1 else 0.0)
        low = np.floor(source).astype(np.int64)
        weight = (source - low).reshape([out if a == axis else 1 for a in range(x.ndim)])
        return np.take(x, low, axis) * (1 - weight) + np.take(x, np.minimum(low + 1, size - 1), axis) * weight
    return along(along(x.astype(np.float64), 3, out_w), 2, out_h)
