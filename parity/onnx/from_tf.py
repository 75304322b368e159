"""ONNX export of TensorFlow callables (keras_impl, tf_impl) with the kernels kept out of tf2onnx.

tf2onnx converts a frozen graph and copies each constant several times on the way (the
imported graph, grappler, its own graph, every optimizer pass): about 60x the weight bytes.
Here the conv and linear kernels, nearly all the bytes, never enter it. The function is
frozen with every kernel read left as a placeholder, so tf2onnx converts a graph whose size
does not depend on the weights and makes each kernel a graph input. The kernels then come
back as ONNX initializers: each such input is fed its variable's value, the nodes that
depend only on weights (the HWIO -> OIHW Transpose tf2onnx puts before a conv) are
evaluated in numpy (parity/fold.py), a following per-channel scale and shift
(BatchNorm) is folded into the conv, and the file is written one tensor at a time
(parity/onnx/write.py): the graph the old constant-folding path wrote, at a fraction of
its memory and time.
"""
from .graph import OPSET


class ExportStepError(RuntimeError):
    """An export that failed, naming the model and the step (trace, convert, fold or write)."""

    def __init__(self, model, step, exc):
        self.model, self.step = model, step
        super().__init__(f"{model}: ONNX export failed at step '{step}': {type(exc).__name__}: {exc}")


def export_tf_callable(fn, path, input_shape, output_names, model_name="model", external=None):
    """tf2onnx from a callable taking NHWC; the ONNX input and feature-map outputs are NCHW.
    `external`: write the weights as external data (None: only past protobuf's 2 GiB)."""
    from . import fold, write

    def _step(step):
        return _Step(model_name, step)

    with _step("trace"):
        graph_def, weights, input_name, outputs = frozen_without_weights(fn, input_shape)
    with _step("convert"):
        proto = _convert(graph_def, input_name, outputs, list(weights))
        del graph_def
    with _step("fold"):
        initializers = fold.fold_weights(proto.graph, weights)
        fold.fold_scale_shift_into_convs(proto.graph, initializers)
        fold.scale_shift_as_batch_norm(proto.graph, initializers)
        fold.linear_as_gemm(proto.graph, initializers)
        fold.global_pools_as_torch_writes_them(proto.graph, initializers)
        fold.flatten_as_torch_writes_it(proto.graph, initializers)
        fold.identity_reshapes_removed(proto.graph, initializers)
        fold.transposed_convs_as_torch_writes_them(proto.graph, initializers)
        fold.fold_pads_into_max_pools(proto.graph)
    with _step("write"):
        write.finalize(proto, path, output_names, initializers, external)


class _Step:
    """Re-raises an exception of the step as ExportStepError (MemoryError stays itself)."""

    def __init__(self, model, step):
        self.model, self.step = model, step

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, Exception) and not isinstance(exc, (ExportStepError, MemoryError)):
            raise ExportStepError(self.model, self.step, exc) from exc
        return False


def frozen_without_weights(fn, input_shape):
    """(graph_def, {placeholder tensor name: kernel value}, input tensor name, [(output name, rank)]).

    Small variables are frozen into constants; each read of a kernel variable becomes a
    placeholder, so the graph never holds the kernels' bytes."""
    import tensorflow as tf


    _, c, h, w = input_shape
    signature = (tf.TensorSpec([None, h, w, c], tf.float32, name="input"),)
    concrete = tf.function(fn, input_signature=signature).get_concrete_function()
    _allow_inlining_of_xla_calls(concrete.graph)
    kernels = _kernel_captures(concrete)
    frozen = _freeze_all_but(concrete, set(kernels))
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    outputs = [(t.name, t.shape.rank) for t in frozen.outputs]
    input_name = frozen.inputs[0].name
    del frozen, concrete
    weights = _kernel_reads_as_placeholders(graph_def, kernels)
    return graph_def, weights, input_name, outputs


def _kernel_captures(concrete):
    """{name of the captured resource placeholder: its variable} for conv and linear kernels
    (rank >= 2). Vectors (biases, BatchNorm statistics) are frozen as constants: tf2onnx
    folds BatchNorm's arithmetic into a per-channel scale and shift, and moves its layout
    transposes through them, only when they are constants."""
    variables = {id(v.handle): v for v in concrete.graph.variables}
    kernels = {}
    for outer, inner in concrete.graph.captures:
        variable = variables.get(id(outer))
        if variable is not None and variable.shape.rank >= 2:
            kernels[inner.op.name] = variable
    return kernels


def _freeze_all_but(concrete, kept):
    # TensorFlow's public freezing (convert_variables_to_constants_v2) has no denylist; its
    # building blocks do (tf2onnx's large-model path uses them the same way).
    from tensorflow.python.framework import convert_to_constants as freezing

    data = freezing._FunctionConverterDataInEager(func=concrete, lower_control_flow=False, aggressive_inlining=True,
                                                  variable_names_denylist=kept)
    graph_def, converted = freezing._replace_variables_by_constants(converter_data=data)
    return freezing._construct_concrete_function(concrete, graph_def, converted)


def _kernel_reads_as_placeholders(graph_def, kernels):
    """Each ReadVariableOp of a kernel becomes a float placeholder; returns {its tensor name: value}."""
    handles = dict(kernels)  # resource tensors: the captures, and Identity copies of them (inlined calls)
    reads, grown = {}, True
    while grown:  # a GraphDef need not list a node after its inputs
        grown = False
        for node in graph_def.node:
            source = node.input[0].split(":")[0] if node.input else None
            if source not in handles or node.name in handles or node.name in reads:
                continue
            if node.op == "ReadVariableOp":
                reads[node.name] = handles[source]
            elif node.op == "Identity":
                handles[node.name], grown = handles[source], True
    weights, values = {}, {}  # a kernel read twice is held once
    for node in graph_def.node:
        if node.name in reads:
            variable = reads[node.name]
            node.op = "Placeholder"
            del node.input[:]
            for attr in [a for a in node.attr if a != "_output_shapes"]:
                del node.attr[attr]
            node.attr["dtype"].type = variable.dtype.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(variable.shape.as_proto())
            if id(variable) not in values:
                values[id(variable)] = variable.numpy()
            weights[f"{node.name}:0"] = values[id(variable)]
    kept = [n for n in graph_def.node if n.name not in handles]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return weights


def _convert(graph_def, input_name, outputs, weight_names):
    import tf2onnx

    feature_maps = [name for name, rank in outputs if rank == 4]
    # inputs_as_nchw/outputs_as_nchw add transposes that tf2onnx's optimizer then cancels
    # against the ones it put around every NHWC conv: no layout transposes remain.
    proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[input_name, *weight_names],
        output_names=[name for name, _ in outputs], opset=OPSET,
        inputs_as_nchw=[input_name], outputs_as_nchw=feature_maps)
    unsupported = sorted({n.op_type for n in proto.graph.node if not _is_onnx_op(n)})
    if unsupported:  # tf2onnx leaves what it cannot convert as TensorFlow ops
        raise NotImplementedError(f"tf2onnx cannot convert TensorFlow op(s) {', '.join(unsupported)} to ONNX")
    return proto


def _is_onnx_op(node):
    import onnx
    return onnx.defs.has(node.op_type, node.domain or "")


def _allow_inlining_of_xla_calls(graph):
    """Keras' TF backend wraps grouped convolutions in a jit_compile tf.function (a CPU
    workaround); grappler never inlines such calls and tf2onnx cannot convert them. TF 2.21
    runs grouped tf.nn.conv2d correctly on CPU (tests/test_traps.py), so drop the XLA mark
    on the traced call nodes and let tf2onnx inline a plain convolution."""
    from tensorflow.core.framework import attr_value_pb2

    for op in graph.get_operations():
        if op.type in ("StatefulPartitionedCall", "PartitionedCall") and "_XlaMustCompile" in op.node_def.attr:
            op._set_attr("_XlaMustCompile", attr_value_pb2.AttrValue(b=False))


# The Keras/TF export (export_tf_callable) holds the kernels about twice (native, then in
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
