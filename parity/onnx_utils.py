"""ONNX plumbing shared by the adapters: TF tracing, naming, checking, onnxruntime.

Every export has one input `input` in NCHW with a dynamic batch axis and outputs named
as in the catalogue (`logits` for classifiers), so the three exports are interchangeable.
"""
from pathlib import Path

import numpy as np

OPSET = 18  # the newest opset tf2onnx 1.17 writes; torch exports use the same


def export_tf_callable(fn, path, input_shape, output_names):
    """tf2onnx from a tf.function taking NHWC; the graph's input and outputs become NCHW."""
    import tensorflow as tf
    import tf2onnx

    _, c, h, w = input_shape
    signature = (tf.TensorSpec([None, h, w, c], tf.float32, name="input"),)
    function = tf.function(fn, input_signature=signature)
    concrete = function.get_concrete_function()
    _allow_inlining_of_xla_calls(concrete.graph)
    feature_maps = [t.name for t in concrete.outputs if t.shape.rank == 4]
    # inputs_as_nchw/outputs_as_nchw add transposes that tf2onnx's optimizer then cancels
    # against the ones it put around every NHWC conv: no layout transposes remain.
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET,
                                             inputs_as_nchw=["input"], outputs_as_nchw=feature_maps)
    fold_pads_into_max_pools(proto.graph)
    finalize(proto, path, output_names)


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


# tf2onnx 1.17 peaks at about 60x the weight bytes (resnet34: 87 MB of weights, 5.3 GB;
# resnet152: 19.5 GB for the whole check). Refuse up front rather than be OOM-killed.
TF2ONNX_MEMORY_FACTOR = 64


def require_memory_for_tf2onnx(state: dict, source: str) -> None:
    weight_bytes = sum(v.nbytes for v in state.values())
    needed, available = weight_bytes * TF2ONNX_MEMORY_FACTOR, _available_memory()
    if available is not None and needed > available:
        raise MemoryError(f"ONNX export from {source} through tf2onnx needs about {needed / 2**30:.0f} GiB "
                          f"({weight_bytes / 2**20:.0f} MiB of weights x {TF2ONNX_MEMORY_FACTOR}); "
                          f"{available / 2**30:.0f} GiB available")


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
    """Name the input and outputs, mark the batch axis dynamic, check fully, write atomically."""
    import onnx

    from .io import atomic_path

    graph = proto.graph
    if len(graph.output) != len(output_names):
        raise ValueError(f"export produced {len(graph.output)} outputs, the catalogue names {len(output_names)}")
    _rename(graph, graph.input[0].name, "input")
    for out, name in zip(list(graph.output), output_names):
        _rename(graph, out.name, name)
    for value in (*graph.input[:1], *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)


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
