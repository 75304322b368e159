"""Each runtime `parity bench` times: how it is built, placed and called for one batch.

A prepare function returns (a call that runs one batch and returns when it is done, its
first output as float32 NCHW numpy), or raises RuntimeSkipped / DeviceUnavailable with
the reason the runtime does not run here.
"""
from __future__ import annotations

import contextlib
import gc
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import devices
from ..adapters import adapter
from ..calibrate import seeded_input, seeded_reference
from ..catalogue import registry
from ..export.workers import export_fp32, first_line
from ..inference.lowprecision import convert_onnx_to_fp16, keras_policy
from ..onnx.runtime import onnx_source_problem
from .result import FAILED, FAMILIES, RUNTIMES, SKIPPED, UNSUPPORTED, RuntimeSkipped


def missing_package(runtime: str) -> str | None:
    """Why `runtime` cannot run in this environment (a package not installed), or None."""
    from .. import frameworks
    kind, _, source = runtime.partition(":")
    if kind == "onnx":
        return frameworks.onnx_source_missing(source)
    return frameworks.missing(kind)


def select_runtimes(frameworks=None) -> list[str]:
    """Runtime names from families (torch, keras, tf, onnx) and/or runtime names, in RUNTIMES order."""
    if frameworks is None:
        return list(RUNTIMES)
    if isinstance(frameworks, str):
        frameworks = [f for f in frameworks.split(",") if f]
    chosen = set()
    for item in frameworks:
        if item in FAMILIES:
            chosen.update(FAMILIES[item])
        elif item in RUNTIMES:
            chosen.add(item)
        else:
            raise ValueError(f"unknown framework or runtime {item!r}; choose from "
                             f"{', '.join(FAMILIES)} or {', '.join(RUNTIMES)}")
    return [r for r in RUNTIMES if r in chosen]


class Context:
    """What every runtime shares: weights, the input, built models, exported files."""

    def __init__(self, name, spec, shape, device, dtype, tf32, seed, tmp, compile, threads, chosen):
        self.name, self.spec, self.shape, self.threads = name, spec, shape, threads
        self.device, self.dtype, self.tf32, self.tmp, self.compile = device, dtype, tf32, tmp, compile
        framework, reference = seeded_reference(name, seed=seed, input_size=shape[1:])
        self.torch_model = reference if framework == "torch" else None
        self.state = adapter(framework).state_dict(reference)
        self.x = seeded_input(shape, seed + 1)
        self.models: dict = {}
        self.notes: dict[str, str] = {}
        self.onnx_sources = [r.split(":")[1] for r in chosen if r.startswith("onnx:")]
        self.exports: dict = {}  # source -> Path, or the export's error text

    def onnx_export(self, source) -> Path:
        """The fp32 export of `source`; the first call exports every ONNX source chosen (export_fp32)."""
        if source not in self.exports:
            pending = [s for s in self.onnx_sources if s not in self.exports and not onnx_source_problem(s)]
            self.exports.update(export_fp32(self.name, self.state, self.shape, pending or [source], self.tmp))
        found = self.exports[source]
        if not isinstance(found, Path):
            raise RuntimeError(f"export from {source} failed: {found}")
        return found

    def fp32_model(self, framework):
        """A model of `framework` on the CPU (or GPU for Keras/TF) holding the shared state."""
        key = (framework, "fp32")
        if key not in self.models:
            with devices.placed(framework, self.device):
                model = _build(framework, self.name, self.shape)
                adapter(framework).load_state_dict(model, self.state)
            self.models[key] = model.eval() if framework == "torch" else model
        return self.models[key]

    def release(self):
        self.models.clear()
        self.torch_model = None
        if "keras" in sys.modules:
            sys.modules["keras"].backend.clear_session()
        gc.collect()


def prepare(runtime, ctx) -> tuple[Callable[[], object], np.ndarray | None]:
    """(a call that runs one batch and returns when it is done, its first output as float32 numpy)."""
    kind, _, variant = runtime.partition(":")
    if kind == "torch":
        return _prepare_torch(variant, ctx)
    if kind == "keras":
        return _prepare_keras(ctx)
    if kind == "tf":
        return _prepare_tf(variant, ctx)
    return _prepare_onnx(variant, ctx)


def _torch_autocast(ctx):
    import torch
    if ctx.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(ctx.device, dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[ctx.dtype])


def _prepare_torch(variant, ctx):
    import torch
    devices.require("torch", ctx.device)
    if variant == "compile" and not ctx.compile:
        raise RuntimeSkipped(SKIPPED, "left out (compile=False / --no-compile)")
    model = ctx.torch_model.to(ctx.device)
    x = torch.from_numpy(ctx.x).to(ctx.device)
    if variant == "channels_last":
        model = _channels_last_copy(ctx)
        x = x.contiguous(memory_format=torch.channels_last)
    elif variant == "compile":
        model = torch.compile(model)
    synchronize = torch.cuda.synchronize if ctx.device == "cuda" else (lambda: None)

    def run_once():
        with torch.inference_mode(), _torch_autocast(ctx):
            out = model(x)
        synchronize()
        return out

    began = time.perf_counter()
    try:
        out = run_once()
    except Exception as exc:
        if variant == "compile":
            hint = "; on a CPU, inductor needs a C++ compiler" if ctx.device == "cpu" else ""
            raise RuntimeSkipped(FAILED, f"torch.compile failed ({type(exc).__name__}: {first_line(exc)}){hint}"
                                 ) from None
        raise
    if variant == "compile":
        ctx.notes["torch:compile"] = f"compiled in {time.perf_counter() - began:.0f} s"
    return run_once, _first_output_numpy(out)


def _channels_last_copy(ctx):
    import torch
    model = adapter("torch").build(ctx.name)
    adapter("torch").load_state_dict(model, ctx.state)
    return model.eval().to(ctx.device).to(memory_format=torch.channels_last)


def _first_output_numpy(out, layout="nchw") -> np.ndarray:
    """The first output as float32 numpy in NCHW (Keras and TF give feature maps in NHWC)."""
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    elif hasattr(out, "numpy"):
        out = out.numpy()
    array = np.asarray(out).astype(np.float32)
    if layout == "nhwc" and array.ndim == 4:
        array = np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    return array


def _prepare_keras(ctx):
    import keras
    if keras.backend.backend() == "torch":
        return _prepare_keras_on_torch(ctx)
    if keras.backend.backend() == "jax":
        return _prepare_keras_on_jax(ctx)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeSkipped(UNSUPPORTED, f"Keras backend {keras.backend.backend()!r}: bench runs Keras on "
                                          f"the tensorflow, torch or jax backend")
    import tensorflow as tf
    devices.require("keras", ctx.device)
    model = _keras_model(ctx)
    with devices.placed("keras", ctx.device):
        x = tf.constant(ctx.x.transpose(0, 2, 3, 1))
    call = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def run_once():
        with devices.placed("keras", ctx.device):
            return _block_tf(call(x))

    ctx.notes["keras"] = "tensorflow backend, tf.function"
    return run_once, _first_output_numpy(_first_run(run_once, ctx, "Keras"), "nhwc")


def _first_run(run_once, ctx, runtime_name):
    """The first (tracing) call; in fp16/bf16 a missing kernel means the dtype is unsupported here."""
    try:
        return run_once()
    except Exception as exc:
        if ctx.dtype == "fp32":
            raise
        raise RuntimeSkipped(UNSUPPORTED, f"{runtime_name} in {ctx.dtype} on {ctx.device}: "
                                          f"{type(exc).__name__}: {first_line(exc)}") from None


def _build(framework, name, shape):
    """Keras is built for the bench's input size, as a Keras model is deployed: static shapes
    let TensorFlow specialise (VGG16 at batch 8: 7% faster than with unknown H and W). A model
    of one's own is built as its builder builds it (it takes input_shape only if fixed_size)."""
    c, h, w = shape[1:]
    static = {"input_shape": (h, w, c)} if framework == "keras" and registry.get(name).module else {}
    return adapter(framework).build(name, input_size=(c, h, w), **static)


def _keras_model(ctx):
    """The Keras model in the bench dtype: fp32, or built under a mixed precision policy."""
    if ctx.dtype == "fp32":
        return ctx.fp32_model("keras")
    with keras_policy(ctx.dtype), devices.placed("keras", ctx.device):
        model = _build("keras", ctx.name, ctx.shape)
        adapter("keras").load_state_dict(model, ctx.state)
    return model


def _prepare_keras_on_torch(ctx):
    """Keras 3 on the torch backend: the model is a torch module; the call runs in inference mode."""
    import keras
    import torch
    devices.require("keras", ctx.device)
    with devices.placed("keras", ctx.device):
        model = _keras_model(ctx)
        x = keras.ops.convert_to_tensor(ctx.x.transpose(0, 2, 3, 1).copy())
    synchronize = torch.cuda.synchronize if ctx.device == "cuda" else (lambda: None)

    def run_once():
        with torch.inference_mode():
            out = model(x, training=False)
        synchronize()
        return out

    out = _first_run(run_once, ctx, "Keras (torch backend)")
    first = out[0] if isinstance(out, (list, tuple)) else out
    ctx.notes["keras"] = "torch backend, eager"
    return run_once, _first_output_numpy(keras.ops.convert_to_numpy(first), "nhwc")


def _prepare_keras_on_jax(ctx):
    """Keras 3 on the JAX backend, as JAX runs a model in production: one jax.jit of the
    stateless call, the weights passed in as arguments (not baked into the program)."""
    import jax
    devices.require("keras", ctx.device)
    with devices.placed("keras", ctx.device):
        model = _keras_model(ctx)
    target = (devices.jax_gpus() if ctx.device == "cuda" else jax.devices("cpu"))[0]
    x = jax.device_put(ctx.x.transpose(0, 2, 3, 1).copy(), target)
    trainable = [jax.device_put(v.value, target) for v in model.trainable_variables]
    non_trainable = [jax.device_put(v.value, target) for v in model.non_trainable_variables]

    @jax.jit
    def infer(trainable, non_trainable, x):
        out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return out

    def run_once():
        return jax.block_until_ready(infer(trainable, non_trainable, x))

    out = _first_run(run_once, ctx, "Keras (jax backend)")
    first = out[0] if isinstance(out, (list, tuple)) else out
    ctx.notes["keras"] = "jax backend, jax.jit"
    return run_once, _first_output_numpy(np.asarray(first), "nhwc")


def _block_tf(out):
    """Wait for a TF result (a tiny host copy of each output); returns the outputs."""
    import tensorflow as tf
    for tensor in tf.nest.flatten(out):
        tensor.numpy()
    return out


def _prepare_tf(variant, ctx):
    import tensorflow as tf
    devices.require("tf", ctx.device)
    if ctx.dtype != "fp32":
        raise RuntimeSkipped(UNSUPPORTED, "tf_impl computes in fp32 only (no mixed-precision mode)")
    model = ctx.fp32_model("tf")
    with devices.placed("tf", ctx.device):
        x = tf.constant(ctx.x.transpose(0, 2, 3, 1))
    call = tf.function(lambda t: model(t, training=False), jit_compile=variant == "xla", reduce_retracing=True)

    def run_once():
        with devices.placed("tf", ctx.device):
            return _block_tf(call(x))

    return run_once, _first_output_numpy(run_once(), "nhwc")


def _prepare_onnx(source, ctx):
    _require_onnxruntime(ctx.device)  # before a long export
    if ctx.dtype == "bf16":
        raise RuntimeSkipped(UNSUPPORTED, "onnxruntime: no bf16 conversion (onnxconverter-common writes fp16 "
                                          "only) and no bf16 convolution kernels")
    problem = onnx_source_problem(source)
    if problem:
        raise RuntimeSkipped(UNSUPPORTED, problem)
    path = ctx.onnx_export(source)
    if ctx.dtype == "fp16":
        path = convert_onnx_to_fp16(path, ctx.tmp / f"{path.stem}.fp16.onnx")
    session = ort_session(path, ctx.device, True if ctx.tf32 is None else ctx.tf32, ctx.threads)
    run_once = _onnx_runner(session, ctx)
    return run_once, _first_output_numpy(run_once())


def _require_onnxruntime(device):
    import onnxruntime as ort
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise devices.DeviceUnavailable("onnxruntime: this build has no CUDAExecutionProvider "
                                        "(install onnxruntime-gpu); refusing to fall back to the CPU")


def ort_session(path, device="cpu", tf32=False, threads=None):
    """An onnxruntime session as parity.onnx.runtime.session makes it (no CPU fallback), with idle thread
    pools that sleep instead of spinning: spinning threads would steal the cores from the runtime
    timed next. `threads` sets the intra-op pool size (default: one per core)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    _require_onnxruntime(device)
    if device == "cuda":
        providers = [("CUDAExecutionProvider", {"use_tf32": int(tf32)})]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), options, providers=providers)
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise devices.DeviceUnavailable(f"onnxruntime could not place {path} on CUDA "
                                        f"(providers: {session.get_providers()})")
    return session


def _onnx_runner(session, ctx):
    if ctx.device != "cuda":
        feeds = {"input": ctx.x}
        return lambda: session.run(None, feeds)
    import onnxruntime as ort
    binding = session.io_binding()  # input stays on the GPU: no host copy is timed
    binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(ctx.x, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")

    def run_once():
        session.run_with_iobinding(binding)
        return [o.numpy() for o in binding.get_outputs()[:1]]

    return run_once
