"""Local response norm: one ONNX LRN for an odd window, torch's decomposition for an even one."""
import numpy as np

from ..graph import add_constant, close, rewrite_regions, run_nodes

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
    return rewrite_regions(graph, initializers, _LRN_OPS, as_lrn)


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
                        matches = all(close(value, lrn_reference(probe, size, alpha, beta, bias))
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
