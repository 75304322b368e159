"""Running an export: onnxruntime sessions (never a silent CPU fallback), the kernels
onnxruntime really executes, and whether a source can export in this process."""
from pathlib import Path

import numpy as np


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


def run_file(path, x: np.ndarray, device="cpu", tf32=False, keep_layout=False) -> list[np.ndarray]:
    """An ONNX file of one's own on the NCHW batch `x`: its one input, whatever its name, in NCHW
    or, where its shape says so, NHWC (as a Keras export through tf2onnx takes it); 4-D outputs
    back in NCHW unless `keep_layout`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    sess = session(path, device, tf32)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"{path}: takes {len(inputs)} inputs ({names}); one image batch expected")
    shape, channels = inputs[0].shape, x.shape[1]
    nhwc = len(shape) == 4 and shape[3] == channels and shape[1] != channels
    outputs = sess.run(None, {inputs[0].name: np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x})
    return [o.transpose(0, 3, 1, 2) if nhwc and o.ndim == 4 and not keep_layout else o for o in outputs]


def onnx_source_problem(source) -> str | None:
    """Why `source` cannot be exported to ONNX in this process, or None."""
    if source == "keras":
        import keras
        if keras.backend.backend() != "tensorflow":
            return (f"onnx:keras left out: Keras exports through tf2onnx, which needs KERAS_BACKEND=tensorflow "
                    f"(this process runs Keras on {keras.backend.backend()})")
    return None
