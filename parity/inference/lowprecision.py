"""fp16/bf16 building blocks shared by `parity bench` and the precision check."""
from __future__ import annotations

import contextlib
from pathlib import Path

KERAS_POLICY = {"fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


class Unsupported(Exception):
    """The runtime cannot compute in this dtype here; the message says why."""


@contextlib.contextmanager
def keras_policy(dtype: str):
    """Build Keras layers under the mixed precision policy of `dtype`; the old policy comes back after."""
    import keras
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(KERAS_POLICY[dtype])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def convert_onnx_to_fp16(source, destination) -> Path:
    """An fp16 copy of an fp32 ONNX file; the input and outputs stay fp32 (casts inside)."""
    import warnings

    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise Unsupported("onnxruntime fp16 needs onnxconverter-common (pip install onnxconverter-common)") from None

    from ..io import atomic_path
    with warnings.catch_warnings():  # one warning per constant clipped to the fp16 range
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    with atomic_path(destination) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return Path(destination)


def torch_dtype(dtype: str):
    import torch
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
