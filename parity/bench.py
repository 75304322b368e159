"""`parity bench`: throughput and latency of every runtime of one model, on one input.

Every runtime gets the same seeded, BatchNorm-calibrated weights and the same input
(already in its layout and on its device, so no copy or transpose is timed). After the
warm-up, each repeat times every runtime once, round-robin, starting one place later
each time: load on a shared machine then hits every runtime alike instead of whichever
ran during a busy spell. A runtime's figure is the median of its repeats.

Runtimes (`RUNTIMES`): torch eager, torch channels_last, torch.compile, Keras (its call
under tf.function), tf_impl under tf.function and with XLA (jit_compile=True), and
onnxruntime on the ONNX export of each framework. A runtime that cannot run (torch.compile
without a compiler, a dtype a runtime lacks, a build that cannot reach the GPU) becomes a
row with a note; nothing falls back to the CPU.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import devices, registry, tolerance
from .adapters import adapter
from .calibrate import calibrated_torch_model, seeded_input
from .onnx_utils import onnx_source_problem

RUNTIMES = ("torch", "torch:channels_last", "torch:compile", "keras", "tf", "tf:xla",
            "onnx:torch", "onnx:keras", "onnx:tf")
FAMILIES = {
    "torch": ("torch", "torch:channels_last", "torch:compile"),
    "keras": ("keras",),
    "tf": ("tf", "tf:xla"),
    "onnx": ("onnx:torch", "onnx:keras", "onnx:tf"),
}
DTYPES = ("fp32", "fp16", "bf16")
OPTIONAL_RUNTIMES = ("torch:compile",)  # a failure here is a note, not a failed bench

# status of a row: measured, or why not
OK, SKIPPED, UNSUPPORTED, UNAVAILABLE, FAILED = "ok", "skipped", "unsupported", "unavailable", "failed"


@dataclass
class RuntimeTiming:
    runtime: str
    status: str = OK  # ok | skipped (asked) | unsupported (dtype) | unavailable (device) | failed
    latency_ms: float | None = None  # median over the repeats
    throughput: float | None = None  # images per second at the median
    ratio: float | None = None  # throughput / baseline throughput (> 1: faster)
    min_ms: float | None = None
    max_ms: float | None = None
    times_ms: list = field(default_factory=list)  # every repeat, in timing order
    setup_s: float = 0.0  # build, transfer, export or compile, warm-up
    error_vs_torch: float | None = None  # normalized output error against torch eager, same dtype
    tf32: bool | None = None  # None: not applicable (CPU)
    note: str | None = None


@dataclass
class BenchResult:
    model: str
    input_shape: list
    device: str
    dtype: str
    batch: int
    repeats: int
    warmup: int
    baseline: str
    tf32: str  # "default" (each framework's own), "on" or "off" (strict)
    runtimes: list = field(default_factory=list)
    order: list = field(default_factory=list)  # runtime names in the order they were timed
    onnx_spread: float | None = None  # (max - min) / min of the ONNX exports' median latencies
    notes: list = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    def timing(self, runtime: str) -> RuntimeTiming:
        return next(t for t in self.runtimes if t.runtime == runtime)

    @property
    def failed(self) -> list[RuntimeTiming]:
        """Rows that should have run and did not (the optional torch.compile excepted)."""
        return [t for t in self.runtimes if t.status in (FAILED, UNAVAILABLE) and t.runtime not in OPTIONAL_RUNTIMES]

    def to_json(self) -> dict:
        return asdict(self)


class RuntimeSkipped(Exception):
    """A runtime that does not run here, with the reason; `status` says which kind."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


# --- choosing runtimes ------------------------------------------------------------------

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


# --- the measurement --------------------------------------------------------------------

def interleaved_timings(runners: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        clock=time.perf_counter) -> tuple[dict[str, list[float]], list[str]]:
    """({runtime: seconds per repeat}, timing order). Each repeat calls every runner once,
    round-robin, starting one place later than the previous repeat."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    seconds = {name: [] for name in names}
    order = []
    gc.collect()
    with _gc_paused():
        for repeat in range(repeats):
            start = repeat % len(names) if names else 0
            for name in names[start:] + names[:start]:
                began = clock()
                runners[name]()
                seconds[name].append(clock() - began)
                order.append(name)
    return seconds, order


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def onnx_spread(timings: list[RuntimeTiming]) -> float | None:
    """(max - min) / min over the measured ONNX exports' median latencies."""
    latencies = [t.latency_ms for t in timings if t.runtime.startswith("onnx:") and t.status == OK]
    if len(latencies) < 2:
        return None
    return (max(latencies) - min(latencies)) / min(latencies)


def bench(name: str, frameworks=None, device: str = "cpu", batch: int = 1, dtype: str = "fp32", size=None,
          repeats: int = 10, warmup: int = 2, baseline: str = "torch", tf32: bool | None = None,
          compile: bool = True, threads: int | None = None, seed: int = 0, workdir=None,
          on_progress=None) -> BenchResult:
    """Time every chosen runtime of catalogue model `name` on one input, interleaved.

    frameworks: families (torch, keras, tf, onnx) and/or runtime names; default all.
    tf32: None keeps each framework's default (recorded), True/False sets it everywhere
    (False is the strict mode). compile=False leaves torch.compile out (it can take
    minutes to compile on a CPU). threads: intra-op threads for every runtime (default:
    each framework's own); 1 gives steadier ratios on an oversubscribed machine.
    on_progress(message) is called as runtimes get ready.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use cpu or cuda")
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError("repeats and batch must be >= 1, warmup >= 0")
    chosen = select_runtimes(frameworks)
    if baseline not in RUNTIMES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(RUNTIMES)}")
    spec = registry.get(name)
    c, h, w = spec.input_size
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    shape = (batch, c, h, w)
    result = BenchResult(name, list(shape), device, dtype, batch, repeats, warmup, baseline,
                         {None: "default", True: "on", False: "off"}[tf32])
    _apply_tf32(tf32, chosen)
    with _threads_applied(threads, chosen, result.notes), tempfile.TemporaryDirectory(dir=workdir) as tmp:
        context = _Context(name, spec, shape, device, dtype, tf32, seed, Path(tmp), compile, threads, chosen)
        runners, reference = {}, None
        for runtime in chosen:
            if on_progress:
                on_progress(f"preparing {runtime}")
            timing, runner, output = _prepared_row(runtime, context)
            result.runtimes.append(timing)
            if runner is None:
                continue
            reference = output if runtime == "torch" else reference
            if reference is not None:
                timing.error_vs_torch = tolerance.measure(output, reference).normalized
            runners[runtime] = runner
        if on_progress:
            on_progress(f"timing {len(runners)} runtimes x {repeats} repeats")
        seconds, result.order = interleaved_timings(runners, repeats, warmup)
        context.release()
    _fill_figures(result, seconds)
    result.onnx_spread = onnx_spread(result.runtimes)
    result.notes += _notes(result)
    result.environment = environment(device, tf32, threads)
    return result


def _prepared_row(runtime, context) -> tuple[RuntimeTiming, Callable | None, np.ndarray | None]:
    """(its table row, its timed call or None, its first output) for one runtime."""
    timing = RuntimeTiming(runtime)
    began = time.perf_counter()
    try:
        runner, output = _prepare(runtime, context)
    except RuntimeSkipped as skip:
        timing.status, timing.note = skip.status, str(skip)
        return timing, None, None
    except devices.DeviceUnavailable as exc:
        timing.status, timing.note = UNAVAILABLE, str(exc)
        return timing, None, None
    except Exception as exc:  # one runtime that breaks is a row, not a crashed bench
        timing.status, timing.note = FAILED, f"{type(exc).__name__}: {_first_line(exc)}"
        return timing, None, None
    timing.setup_s = round(time.perf_counter() - began, 2)
    timing.tf32 = _tf32_state(runtime, context.device, context.tf32)
    timing.note = context.notes.pop(runtime, None)
    return timing, runner, output


def _fill_figures(result: BenchResult, seconds: dict[str, list[float]]) -> None:
    for timing in result.runtimes:
        if timing.runtime not in seconds:
            continue
        times = seconds[timing.runtime]
        median = statistics.median(times)
        timing.times_ms = [round(s * 1e3, 4) for s in times]
        timing.latency_ms = median * 1e3
        timing.min_ms, timing.max_ms = min(times) * 1e3, max(times) * 1e3
        timing.throughput = result.batch / median
    base = next((t for t in result.runtimes if t.runtime == result.baseline and t.status == OK), None)
    for timing in result.runtimes:
        if base is not None and timing.status == OK:
            timing.ratio = timing.throughput / base.throughput


def _notes(result: BenchResult) -> list[str]:
    notes = []
    if not any(t.runtime == result.baseline and t.status == OK for t in result.runtimes):
        notes.append(f"baseline {result.baseline} was not measured: no ratios")
    if result.onnx_spread is not None and result.onnx_spread > 0.05:
        slowest = max((t for t in result.runtimes if t.runtime.startswith("onnx:") and t.status == OK),
                      key=lambda t: t.latency_ms)
        notes.append(f"ONNX exports differ by {result.onnx_spread:.0%} (> 5%): slowest {slowest.runtime}; "
                     f"compare node counts per op type (benchmarks/run.py --sections onnx)")
    if result.device == "cpu" and hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            notes.append(f"machine load {load:.1f} on {os.cpu_count()} cores: figures are noisy; "
                         f"ratios (interleaved) hold better than absolute numbers")
    return notes


# --- preparing each runtime -------------------------------------------------------------

class _Context:
    """What every runtime shares: weights, the input, built models, exported files."""

    def __init__(self, name, spec, shape, device, dtype, tf32, seed, tmp, compile, threads, chosen):
        self.name, self.spec, self.shape, self.threads = name, spec, shape, threads
        self.device, self.dtype, self.tf32, self.tmp, self.compile = device, dtype, tf32, tmp, compile
        self.torch_model = calibrated_torch_model(name, seed=seed, input_size=shape[1:])
        self.state = adapter("torch").state_dict(self.torch_model)
        self.x = seeded_input(shape, seed + 1)
        self.models: dict = {}
        self.notes: dict[str, str] = {}
        self.onnx_sources = [r.split(":")[1] for r in chosen if r.startswith("onnx:")]
        self.exports: dict = {}  # source -> Path, or the export's error text

    def onnx_export(self, source) -> Path:
        """The fp32 export of `source`; the first call exports every ONNX source chosen, in one child."""
        if source not in self.exports:
            pending = [s for s in self.onnx_sources if s not in self.exports and not onnx_source_problem(s)]
            self.exports.update(export_in_subprocess(self.name, self.state, self.shape, pending or [source],
                                                     self.tmp))
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


def _prepare(runtime, ctx) -> tuple[Callable[[], object], np.ndarray | None]:
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
            raise RuntimeSkipped(FAILED, f"torch.compile failed ({type(exc).__name__}: {_first_line(exc)}){hint}"
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
    if keras.backend.backend() != "tensorflow":
        raise RuntimeSkipped(UNSUPPORTED, f"Keras backend {keras.backend.backend()!r}: bench runs Keras on "
                                          f"the tensorflow or torch backend")
    import tensorflow as tf
    devices.require("keras", ctx.device)
    model = _keras_model(ctx)
    with devices.placed("keras", ctx.device):
        x = tf.constant(ctx.x.transpose(0, 2, 3, 1))
    call = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def run_once():
        with devices.placed("keras", ctx.device):
            return _block_tf(call(x))

    return run_once, _first_output_numpy(_first_run(run_once, ctx, "Keras"), "nhwc")


def _first_run(run_once, ctx, runtime_name):
    """The first (tracing) call; in fp16/bf16 a missing kernel means the dtype is unsupported here."""
    try:
        return run_once()
    except Exception as exc:
        if ctx.dtype == "fp32":
            raise
        raise RuntimeSkipped(UNSUPPORTED, f"{runtime_name} in {ctx.dtype} on {ctx.device}: "
                                          f"{type(exc).__name__}: {_first_line(exc)}") from None


def _build(framework, name, shape):
    """Keras is built for the bench's input size, as a Keras model is deployed: static shapes
    let TensorFlow specialise (VGG16 at batch 8: 7% faster than with unknown H and W)."""
    c, h, w = shape[1:]
    static = {"input_shape": (h, w, c)} if framework == "keras" else {}
    return adapter(framework).build(name, input_size=(c, h, w), **static)


def _keras_model(ctx):
    """The Keras model in the bench dtype: fp32, or built under a mixed precision policy."""
    if ctx.dtype == "fp32":
        return ctx.fp32_model("keras")
    from .precision import keras_policy
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
    return run_once, _first_output_numpy(keras.ops.convert_to_numpy(first), "nhwc")


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
        from .precision import convert_onnx_to_fp16
        path = convert_onnx_to_fp16(path, ctx.tmp / f"{path.stem}.fp16.onnx")
    session = ort_session(path, ctx.device, True if ctx.tf32 is None else ctx.tf32, ctx.threads)
    run_once = _onnx_runner(session, ctx)
    return run_once, _first_output_numpy(run_once())


# --- ONNX exports in a child process ------------------------------------------------------
# tf2onnx's conversion peaks at ~6 GB RSS exporting ResNet-50 (100 MB of weights) and leaves
# gigabytes allocated after it returns. Exporting in child processes keeps that peak out of
# the process that holds every other runtime, and gives the memory back when each exits.
# Models above SEPARATE_EXPORTS_BYTES of weights get one child per source, so the peaks of
# two exports never add up; smaller ones share a child (one framework import instead of three).
SEPARATE_EXPORTS_BYTES = 50 * 2**20


def export_in_subprocess(name, state, input_shape, sources, directory) -> dict:
    """{source: Path of its fp32 export, or the error text} for each source, exported on the CPU
    by child processes from the canonical `state`."""
    from .io import save_state
    directory = Path(directory)
    state_path = directory / f"{name}.state.safetensors"
    save_state(state, state_path)
    separate = sum(np.asarray(v).nbytes for v in state.values()) > SEPARATE_EXPORTS_BYTES
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
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", "from parity.bench import export_worker; export_worker()",
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

    from .io import load_state
    request = json.loads(sys.argv[1])
    name, shape = request["name"], tuple(request["shape"])
    spec, state, outcome = registry.get(name), load_state(request["state"]), {}
    for source in request["sources"]:
        path = Path(request["directory"]) / f"{name}.{source}.onnx"
        try:
            if source in ("keras", "tf"):  # refuse up front rather than be OOM-killed
                from .onnx_utils import require_memory_for_tf2onnx
                require_memory_for_tf2onnx(state, source)
            model = adapter(source).build(name, input_size=shape[1:])
            adapter(source).load_state_dict(model, state)
            adapter(source).export_onnx(model.eval() if source == "torch" else model, path, shape, spec.outputs)
            outcome[source] = {"path": str(path)}
        except Exception as exc:  # reported on that source's row
            outcome[source] = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
        model = None
        _give_memory_back()
    print(json.dumps(outcome), flush=True)


def _give_memory_back() -> None:
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _require_onnxruntime(device):
    import onnxruntime as ort
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise devices.DeviceUnavailable("onnxruntime: this build has no CUDAExecutionProvider "
                                        "(install onnxruntime-gpu); refusing to fall back to the CPU")


def ort_session(path, device="cpu", tf32=False, threads=None):
    """An onnxruntime session as onnx_utils.session makes it (no CPU fallback), with idle thread
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


# --- TF32 and environment ---------------------------------------------------------------

def _uses(chosen, family):
    return any(r == family or r.startswith(family + ":") for r in chosen)


def _apply_tf32(tf32, chosen):
    if tf32 is None:
        return
    frameworks = [f for f in ("torch", "keras", "tf") if _uses(chosen, f)]
    if frameworks:
        devices.set_tf32(tf32, tuple(frameworks))


@contextlib.contextmanager
def _threads_applied(threads, chosen, notes: list):
    """Intra-op threads for torch (restored after) and TF (onnxruntime gets them per session)."""
    if not threads:
        yield
        return
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if _uses(chosen, "tf") or _uses(chosen, "keras"):
        import tensorflow as tf
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            notes.append(f"TensorFlow was already initialized in this process: its thread pools keep their "
                         f"sizes (intra {tf.config.threading.get_intra_op_parallelism_threads() or 'default'})")
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tf32_state(runtime, device, tf32):
    """Whether TF32 convolutions are allowed for this runtime (None on the CPU, where TF32 does not exist)."""
    if device != "cuda":
        return None
    if runtime.startswith("torch"):
        import torch
        return bool(torch.backends.cudnn.allow_tf32)
    if runtime.startswith(("keras", "tf")):
        import tensorflow as tf
        return bool(tf.config.experimental.tensor_float_32_execution_enabled())
    return True if tf32 is None else tf32  # onnxruntime use_tf32 as passed to the session


def environment(device="cpu", tf32=None, threads=None) -> dict:
    """Versions, cores, load and TF32 settings: what a reader needs to trust the figures."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "tf32_setting": {None: "default", True: "on", False: "off"}[tf32]}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
        env["torch_tf32"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                             "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
        if device == "cuda" and torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        env["tensorflow"] = tf.__version__
        env["tf_tensor_float_32_execution"] = tf.config.experimental.tensor_float_32_execution_enabled()
        env["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()  # 0: one per core
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        env["keras"] = keras.__version__
        env["keras_backend"] = keras.backend.backend()
    if "onnxruntime" in sys.modules:
        ort = sys.modules["onnxruntime"]
        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
        env["onnxruntime_use_tf32"] = True if tf32 is None else tf32
        env["onnxruntime_intra_op_threads"] = threads or 0  # 0: one per core; thread spinning off
    return env


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# --- output: table, JSON, plot ------------------------------------------------------------

def table(result: BenchResult):
    from rich.table import Table
    shape = "x".join(map(str, result.input_shape))
    t = Table(title=f"{result.model}  input {shape}  {result.device} {result.dtype}  "
                    f"median of {result.repeats} interleaved repeats (warm-up {result.warmup})")
    for col in ("runtime", "img/s", "median ms", "min-max ms", f"vs {result.baseline}", "error vs torch",
                "setup s", "note"):
        t.add_column(col, justify="left" if col in ("runtime", "note") else "right")
    for r in result.runtimes:
        if r.status != OK:
            colour = "dim" if r.status in (SKIPPED, UNSUPPORTED) else "red"
            t.add_row(r.runtime, "-", "-", "-", "-", "-", "-", f"[{colour}]{r.status}: {r.note}[/{colour}]")
            continue
        error = "-" if r.error_vs_torch is None else f"{r.error_vs_torch:.1e}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        t.add_row(r.runtime, f"{r.throughput:,.1f}", f"{r.latency_ms:.2f}", f"{r.min_ms:.1f}-{r.max_ms:.1f}",
                  ratio, error, f"{r.setup_s:.1f}", r.note or "")
    caption = []
    if result.onnx_spread is not None:
        caption.append(f"ONNX export spread (max-min)/min: {result.onnx_spread:.1%}")
    caption.append(f"TF32: {result.tf32}" + ("" if result.device == "cuda" else " (not used on CPU)"))
    caption += result.notes
    t.caption = "\n".join(caption)
    return t


def write_json(result: BenchResult, path) -> None:
    import json

    from .io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2, default=float))


def plot(result: BenchResult, path) -> None:
    """A horizontal bar chart of throughput per runtime, the baseline marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path
    measured = [r for r in result.runtimes if r.status == OK]
    colours = {"torch": "#ee4c2c", "keras": "#d00000", "tf": "#ff8f00", "onnx": "#005ced"}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(measured) + 1.6))
    names = [r.runtime for r in measured][::-1]
    values = [r.throughput for r in measured][::-1]
    ax.barh(names, values, color=[colours[n.split(":")[0]] for n in names])
    for y, r in enumerate(measured[::-1]):
        label = f"{r.throughput:,.1f}" + (f"  ({r.ratio:.2f}x)" if r.ratio is not None else "")
        ax.text(r.throughput, y, " " + label, va="center", fontsize=8)
    base = next((r for r in measured if r.runtime == result.baseline), None)
    if base is not None:
        ax.axvline(base.throughput, color="grey", linestyle="--", linewidth=1)
    shape = "x".join(map(str, result.input_shape))
    ax.set_title(f"{result.model} {shape} {result.device} {result.dtype}: images/s (median)", fontsize=10)
    ax.set_xlabel("images per second")
    ax.set_xlim(0, max(values, default=1) * 1.35)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


# --- command line -------------------------------------------------------------------------

def register_cli(subparsers) -> None:
    """Add `parity bench` to the `parity` command line's subparsers."""
    s = subparsers.add_parser("bench", help="throughput and latency of every runtime, interleaved on one input",
                              description="Runtimes: " + ", ".join(RUNTIMES) + ". --frameworks takes families "
                                          "(torch, keras, tf, onnx) and/or runtime names.")
    s.add_argument("model")
    s.add_argument("--frameworks", default="torch,keras,tf,onnx",
                   help="comma list of families or runtimes (default: every runtime)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    s.add_argument("--size", type=int, help="input height and width (default: the model's)")
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--baseline", default="torch", choices=list(RUNTIMES))
    tf32 = s.add_mutually_exclusive_group()
    tf32.add_argument("--tf32", dest="tf32", action="store_const", const=True, default=None,
                      help="allow TF32 in every runtime (default: each framework's own default, recorded)")
    tf32.add_argument("--strict", dest="tf32", action="store_const", const=False,
                      help="TF32 off in every runtime")
    s.add_argument("--no-compile", action="store_true", help="leave torch.compile out (slow to compile on a CPU)")
    s.add_argument("--threads", type=int, help="intra-op threads in every runtime (default: each framework's own)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", metavar="FILE", help="write the result as JSON")
    s.add_argument("--plot", metavar="FILE.png", help="write a bar chart of throughput")
    s.set_defaults(func=cmd_bench)


def cmd_bench(args, console) -> int:
    from rich.status import Status
    with Status("preparing", console=console) if console.is_terminal else contextlib.nullcontext() as status:
        result = bench(args.model, frameworks=args.frameworks, device=args.device, batch=args.batch,
                       dtype=args.dtype, size=args.size, repeats=args.repeats, warmup=args.warmup,
                       baseline=args.baseline, tf32=args.tf32, compile=not args.no_compile,
                       threads=args.threads, seed=args.seed,
                       on_progress=(lambda m: status.update(m)) if status is not None else None)
    console.print(table(result))
    if args.json:
        write_json(result, args.json)
    if args.plot:
        plot(result, args.plot)
    if result.failed:
        console.print("[red]not measured:[/red] " + ", ".join(f"{t.runtime} ({t.status})" for t in result.failed))
        return 1
    return 0
