"""Keras/TF ONNX exports whose death cannot take the caller down with them.

`parity check` (and a sweep of the whole catalogue) exports big models in a child process
(parity.export.workers): if the kernel's out-of-memory killer or a crash ends the child, that
target records the error and the sweep goes on. Small models export in-process, where
a child's start (importing TensorFlow again) would cost more than the export.
"""
from pathlib import Path

from .workers import IN_PROCESS_BYTES, export_in_subprocess, weight_bytes
from ..onnx.from_tf import require_memory_for_tf2onnx


class ExportError(RuntimeError):
    """An ONNX export that failed or whose process died; names the model and the source."""


def export_guarded(source, model, name, state, path, input_shape, output_names, in_process_bytes=IN_PROCESS_BYTES):
    """Export `model` (built from the canonical `state`) from keras or tf to `path`; models
    with more than `in_process_bytes` of weights export in a child process."""
    from ..adapters import adapter

    require_memory_for_tf2onnx(state, source)  # refuses only when even the bounded path cannot fit
    if weight_bytes(state) <= in_process_bytes:
        adapter(source).export_onnx(model, path, input_shape, output_names)
        return
    path = Path(path)
    outcome = export_in_subprocess(name, state, input_shape, [source], path.parent)[source]
    if not isinstance(outcome, Path):
        raise ExportError(f"{name}: ONNX export from {source} (child process): {outcome}")
    if outcome != path:
        outcome.replace(path)
