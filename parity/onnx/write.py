"""Write an export: its interface named (one input `input`, NCHW, dynamic batch; outputs as
catalogued), one spelling (canon), and the weights held apart from the proto, one tensor at a time.

`onnx.save` serializes the whole model into one bytes object (a second copy of the weights)
and cannot go past protobuf's 2 GiB. Here the proto without its big initializers is
serialized first; each initializer follows as its own `graph { initializer { ... } }`
record, whose raw bytes are written straight from the numpy buffer. Protobuf merges
repeated occurrences of a message field, so readers see one graph. Past the limit (or when
asked), the tensors go to `<file>.data` beside the model as ONNX external data.
Both files are written in a temp directory and renamed into place only after
`onnx.checker.check_model(full_check=True)` passed, so a failure leaves nothing behind.
"""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_MARGIN = 64 * 2**20  # room for the graph itself below the limit
_ALIGN = 4096  # external tensors start on page boundaries (onnxruntime can map them)


def finalize(proto, path, output_names, initializers: dict | None = None, external: bool | None = False):
    """Every export's last step: spell the ops the three implementations write differently one
    way (canon), name the input and outputs, mark the batch axis dynamic, write atomically,
    check fully. `initializers` ({name: array}, weights held apart from the proto) is emptied
    as it is written. `external`: None decides by size (external data past protobuf's limit)."""
    from .canon import canonical_spellings

    initializers = {} if initializers is None else initializers
    canonical_spellings(proto.graph, initializers)
    name_interface(proto.graph, output_names)
    if external is None:
        external = sum(a.nbytes for a in initializers.values()) + proto.ByteSize() > PROTOBUF_LIMIT - EXTERNAL_MARGIN
    write_atomically(proto, initializers, Path(path), external)


def data_path(path) -> Path:
    """Where the external data of `path` lives: `model.onnx` -> `model.onnx.data`."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def write_atomically(proto, initializers, path, external):
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        if external:
            _write_external(proto, initializers, tmp)
        else:
            _write_inline(proto, initializers, tmp)
        onnx.checker.check_model(str(tmp), full_check=True)
        if external:
            os.replace(data_path(tmp), data_path(path))
        elif data_path(path).exists():
            data_path(path).unlink()  # a stale external file from an earlier, bigger export
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _write_inline(proto, initializers, tmp):
    with open(tmp, "wb") as f:
        f.write(proto.SerializeToString())
        for name in list(initializers):
            array = initializers.pop(name)  # written, then dropped: the check below reloads the file
            head = _tensor_header(name, array).SerializeToString()
            raw = _little_endian(array)
            tensor = head + _key(9) + _varint(raw.nbytes)  # TensorProto.raw_data = 9
            tensor_size = len(tensor) + raw.nbytes
            graph = _key(5) + _varint(tensor_size)  # GraphProto.initializer = 5
            f.write(_key(7) + _varint(len(graph) + tensor_size) + graph + tensor)  # ModelProto.graph = 7
            f.write(raw.reshape(-1).view(np.uint8))
        f.flush()
        os.fsync(f.fileno())


def _write_external(proto, initializers, tmp):
    import onnx

    location = data_path(tmp).name
    offset = 0
    with open(data_path(tmp), "wb") as data:
        for name in list(initializers):
            raw = _little_endian(initializers.pop(name))
            offset = -(-offset // _ALIGN) * _ALIGN
            data.seek(offset)
            data.write(raw.reshape(-1).view(np.uint8))
            tensor = _tensor_header(name, raw)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(raw.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            proto.graph.initializer.append(tensor)
            offset += raw.nbytes
        data.flush()
        os.fsync(data.fileno())
    with open(tmp, "wb") as f:
        f.write(proto.SerializeToString())
        f.flush()
        os.fsync(f.fileno())


def _tensor_header(name, array):
    import onnx
    from onnx import helper

    tensor = onnx.TensorProto(name=name, dims=array.shape)
    tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    return tensor


def _little_endian(array):
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _key(field):
    return _varint(field << 3 | 2)  # wire type 2: length-delimited


def _varint(value):
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


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
