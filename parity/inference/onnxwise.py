"""An ONNX file of one's own, layer by layer: its intermediate tensors mapped to canonical
layers where its names allow, run in onnxruntime and compared with the torch reference's
layer outputs (`parity diagnose MODEL --onnx FILE`).

A tensor is a layer's output when its node names the layer: torch's exporter records each
node's module path (metadata `pkg.torch.onnx.name_scopes`); tf2onnx keeps Keras' layer names
in node and tensor names ("model/stem.3_1/BiasAdd:0"). A layer's output is the last such node
that is neither an activation (Keras folds one into a layer, torch keeps it a module of its
own) nor a layout op (tf2onnx inserts Reshapes and Transposes under a layer's name).
Layers no name reaches are listed, not guessed."""
import ast
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import tolerance as policy
from ..adapters import adapter_for

ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Softmax", "HardSigmoid", "Elu", "Selu"}
# ops that move or relabel a tensor (tf2onnx inserts them under a layer's name, after its activation)
LAYOUT_OPS = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Cast"}
SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass
class FileLayers:
    """Per mapped layer (in the reference's order) its normalized error; the layers not found."""
    rows: list = field(default_factory=list)  # (layer, normalized error or None: other shape, tolerance)
    unmapped: list = field(default_factory=list)
    first_divergent_layer: str | None = None


def layer_tensors(model, layers) -> dict:
    """{canonical layer: the tensor holding its output} for the layers the graph's names reach."""
    found = {}
    for node in model.graph.node:
        if node.op_type in ACTIVATIONS | LAYOUT_OPS or not node.output:
            continue
        named = _named_layers(node)
        layer = next((candidate for candidate in reversed(named) if candidate in layers), None)
        if layer is not None:
            found[layer] = node.output[0]  # the last node of the layer wins
    return found


def _named_layers(node) -> list:
    """The layer paths a node's metadata and names carry, outermost first."""
    scopes = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
    if scopes:
        return ast.literal_eval(scopes)  # a list of module paths, written as Python writes one
    parts = re.split(r"/", f"{node.name}/{node.output[0]}")
    return [re.sub(r"(_\d+)?(:\d+)?$", "", part) for part in parts]


def compare_file(path, reference, x, tolerance=None) -> FileLayers:
    """The file's mapped tensors on `x` (NCHW) against the reference's layer outputs."""
    import onnx

    from ..onnx.runtime import run_file
    expected = adapter_for(reference).layer_outputs(reference, x)
    model = onnx.load(str(path))
    tensors = layer_tensors(model, set(expected))
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors.values()
                              if t not in existing)
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.onnx"
        onnx.save(model, str(probe))
        outputs = dict(zip([o.name for o in model.graph.output], run_file(probe, x, keep_layout=True)))
    limit = tolerance or policy.threshold("fp32")
    result = FileLayers(unmapped=[layer for layer in expected if layer not in tensors])
    for layer, ref in expected.items():
        if layer not in tensors:
            continue
        got = _as_nchw(outputs[tensors[layer]], ref.shape)
        error = policy.measure(got, ref).normalized if got is not None else None
        result.rows.append((layer, error, limit))
        if result.first_divergent_layer is None and (error is None or error > limit):
            result.first_divergent_layer = layer
    return result


def _as_nchw(array, shape):
    """`array` in the reference's layout: as it is, or NHWC transposed; None for another shape."""
    if array.shape == tuple(shape):
        return array
    if array.ndim == 4 and array.transpose(0, 3, 1, 2).shape == tuple(shape):
        return array.transpose(0, 3, 1, 2)
    return None
