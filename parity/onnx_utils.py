"""ONNX plumbing shared by the adapters: TF tracing, naming, checking, onnxruntime.

Every export has one input `input` in NCHW with a dynamic batch axis and outputs named
as in the catalogue (`logits` for classifiers), so the three exports are interchangeable.
"""
from pathlib import Path

import numpy as np

OPSET = 18  # the newest opset tf2onnx 1.17 writes; torch exports use the same


def export_tf_callable(fn, path, input_shape, output_names, model_name="model", external=None):
    """tf2onnx from a callable taking NHWC; the graph's input and feature-map outputs become NCHW.
    The kernels stay out of tf2onnx (parity/onnx_tf.py), so memory stays near the weights' size;
    a failure names the model and the step and leaves no file."""
    from .onnx_tf import export_tf_callable as export
    export(fn, path, input_shape, output_names, model_name, external)


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


# The Keras/TF export (parity/onnx_tf.py) holds the kernels about twice (native, then in
# ONNX layout while the file is written; onnx.checker reloads the file) on top of a fixed
# cost for TensorFlow, tf2onnx and the graph: measured peaks are under 3x the weights plus
# 1.5 GiB for every catalogue model (docs/onnx.md). Refuse up front only when even that
# does not fit.
EXPORT_MEMORY_FACTOR = 3
EXPORT_MEMORY_OVERHEAD = int(1.5 * 2**30)


def require_memory_for_tf2onnx(state: dict, source: str) -> None:
    weight_bytes = sum(v.nbytes for v in state.values())
    needed, available = weight_bytes * EXPORT_MEMORY_FACTOR + EXPORT_MEMORY_OVERHEAD, _available_memory()
    if available is not None and needed > available:
        raise MemoryError(f"ONNX export from {source} needs about {needed / 2**30:.1f} GiB "
                          f"({weight_bytes / 2**20:.0f} MiB of weights x {EXPORT_MEMORY_FACTOR} "
                          f"+ {EXPORT_MEMORY_OVERHEAD / 2**30:.1f} GiB); {available / 2**30:.1f} GiB available")


def _available_memory():
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None


def _allow_inlining_of_xla_calls(graph):
    """Keras' TF backend wraps grouped convolutions in a jit_compile tf.function (a CPU
    workaround); grappler never inlines such calls and tf2onnx cannot convert them. TF 2.21
    runs grouped tf.nn.conv2d correctly on CPU (tests/test_traps.py), so drop the XLA mark
    on the traced call nodes and let tf2onnx inline a plain convolution."""
    from tensorflow.core.framework import attr_value_pb2

    for op in graph.get_operations():
        if op.type in ("StatefulPartitionedCall", "PartitionedCall") and "_XlaMustCompile" in op.node_def.attr:
            op._set_attr("_XlaMustCompile", attr_value_pb2.AttrValue(b=False))


def finalize(proto, path, output_names):
    """Spell the ops the three implementations write differently one way (onnx_canon), name the
    input and outputs, mark the batch axis dynamic, write atomically, check fully."""
    from .onnx_canon import canonical_spellings
    from .onnx_write import write_atomically

    canonical_spellings(proto.graph, {})
    name_interface(proto.graph, output_names)
    write_atomically(proto, {}, path, external=False)


def name_interface(graph, output_names):
    """Input `input`, outputs named as catalogued, a dynamic `batch` axis on each."""
    if len(graph.output) != len(output_names):
        raise ValueError(f"export produced {len(graph.output)} outputs, the catalogue names {len(output_names)}")
    _rename(graph, graph.input[0].name, "input")
    for out, name in zip(list(graph.output), output_names):
        _rename(graph, out.name, name)
    for value in (*graph.input[:1], *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def _rename(graph, old, new):
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def session(path, device="cpu", tf32=False):
    """An onnxruntime session on the asked device; never a silent fallback to the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime: this build has no CUDAExecutionProvider "
                               "(install onnxruntime-gpu); refusing to fall back to the CPU")
        providers = [("CUDAExecutionProvider", {"use_tf32": int(tf32)})]
    else:
        providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(Path(path)), options, providers=providers)
    if device == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"onnxruntime could not place {path} on CUDA (providers: {sess.get_providers()})")
    return sess


def optimized_op_counts(path) -> dict:
    """{op type: count} of the graph onnxruntime runs on the CPU after its full optimization
    (the kernels an export really executes; fused ops keep their domain, e.g. com.microsoft:FusedConv)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # it warns that an ENABLE_ALL graph is hardware specific: known
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath, load_external_data=False).graph.node
    counts = {}
    for node in nodes:
        op = f"{node.domain}:{node.op_type}" if node.domain else node.op_type
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


def run(sess, x: np.ndarray) -> list[np.ndarray]:
    return sess.run(None, {"input": x})


def onnx_source_problem(source) -> str | None:
    """Why `source` cannot be exported to ONNX in this process, or None."""
    if source == "keras":
        import keras
        if keras.backend.backend() != "tensorflow":
            return (f"onnx:keras left out: Keras exports through tf2onnx, which needs KERAS_BACKEND=tensorflow "
                    f"(this process runs Keras on {keras.backend.backend()})")
    return None
