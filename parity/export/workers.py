"""fp32 ONNX exports from the canonical state, for `parity bench`, the fp16 precision check and
`parity check`'s big models.

tf2onnx's conversion peaks at ~6 GB RSS exporting ResNet-50 (100 MB of weights) and leaves
gigabytes allocated after it returns. Exporting in child processes keeps that peak out of
the process that holds every other runtime, and gives the memory back when each exits.
Models above SEPARATE_EXPORTS_BYTES of weights get one child per source, so the peaks of
two exports never add up; smaller ones share a child (one framework import instead of three).
Models up to IN_PROCESS_BYTES export in the caller's process (export_fp32), where a child's
start (importing torch, TensorFlow, Keras and tf2onnx again: about 10 s on the 2-core
machine) costs more than the export and the peak is small.
"""
from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path

import numpy as np

from ..adapters import adapter
from ..catalogue import registry

SEPARATE_EXPORTS_BYTES = 50 * 2**20
IN_PROCESS_BYTES = 64 * 2**20  # resnet18 (45 MB), densenet121 (32 MB), googlenet: in-process


def first_line(exc) -> str:
    """The first line of an exception's message (its type where it has none), at most 300 characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def weight_bytes(state) -> int:
    """Bytes of a canonical state's arrays: what decides where its exports run."""
    return sum(np.asarray(v).nbytes for v in state.values())


def export_fp32(name, state, input_shape, sources, directory) -> dict:
    """{source: Path of its fp32 export, or the error text} for each source, exported on the CPU
    from the canonical `state`: in this process up to IN_PROCESS_BYTES of weights, else by
    child processes (export_in_subprocess)."""
    if weight_bytes(state) > IN_PROCESS_BYTES:
        return export_in_subprocess(name, state, input_shape, sources, directory)
    return export_sources(name, state, tuple(input_shape), sources, Path(directory))


def export_in_subprocess(name, state, input_shape, sources, directory) -> dict:
    """{source: Path of its fp32 export, or the error text} for each source, exported on the CPU
    by child processes from the canonical `state`."""
    from ..io import save_state
    directory = Path(directory)
    state_path = directory / f"{name}.state.safetensors"
    save_state(state, state_path)
    separate = weight_bytes(state) > SEPARATE_EXPORTS_BYTES
    groups = [[source] for source in sources] if separate else [list(sources)]
    outcome = {}
    try:
        for group in groups:
            outcome.update(_export_child(name, state_path, input_shape, group, directory))
    finally:
        state_path.unlink(missing_ok=True)
    return outcome


def _export_child(name, state_path, input_shape, sources, directory) -> dict:
    import json
    import subprocess
    request = {"name": name, "state": str(state_path), "shape": list(input_shape), "sources": list(sources),
               "directory": str(directory)}
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding parity/
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", "from parity.export.workers import export_worker; export_worker()",
                           json.dumps(request)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
        last = (done.stderr.strip().splitlines() or [""])[-1][:300]
        return {source: f"ONNX export process failed ({why}): {last}" for source in sources}
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return {source: Path(r["path"]) if "path" in r else r["error"] for source, r in outcome.items()}


def export_worker() -> None:
    """The child side of export_in_subprocess: request JSON in argv[1], outcome JSON on stdout."""
    import json

    from ..io import load_state
    request = json.loads(sys.argv[1])
    outcome = export_sources(request["name"], load_state(request["state"]), tuple(request["shape"]),
                             request["sources"], Path(request["directory"]))
    print(json.dumps({source: {"path": str(found)} if isinstance(found, Path) else {"error": found}
                      for source, found in outcome.items()}), flush=True)


def export_sources(name, state, shape, sources, directory: Path) -> dict:
    """{source: Path of `directory`/<name>.<source>.onnx, or the error text}, one source at a time."""
    spec, outcome = registry.get(name), {}
    for source in sources:
        path = directory / f"{name}.{source}.onnx"
        try:
            if source in ("keras", "tf"):  # refuse up front rather than be OOM-killed
                from ..onnx.from_tf import require_memory_for_tf2onnx
                require_memory_for_tf2onnx(state, source)
            model = adapter(source).build(name, input_size=shape[1:])
            adapter(source).load_state_dict(model, state)
            adapter(source).export_onnx(model.eval() if source == "torch" else model, path, shape, spec.outputs)
            outcome[source] = path
        except Exception as exc:  # reported on that source's row
            outcome[source] = f"{type(exc).__name__}: {first_line(exc)}"
        model = None
        give_memory_back()
    return outcome


def give_memory_back() -> None:
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
