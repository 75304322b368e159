"""The settings a bench runs under (TF32, threads) and the record of the machine and versions."""
from __future__ import annotations

import contextlib
import os
import platform
import sys

from .. import devices


def _uses(chosen, family):
    return any(r == family or r.startswith(family + ":") for r in chosen)


def _engines(chosen) -> set[str]:
    """The runtimes that execute the chosen rows' ops (Keras runs on its backend's)."""
    engines = {f for f in ("torch", "tf") if _uses(chosen, f)}
    if _uses(chosen, "keras"):
        engines.add(devices.engine("keras"))
    return engines


def apply_tf32(tf32, chosen):
    if tf32 is None:
        return
    frameworks = [f for f in ("torch", "keras", "tf") if _uses(chosen, f)]  # set_tf32 maps Keras to its backend
    if frameworks:
        devices.set_tf32(tf32, tuple(frameworks))


@contextlib.contextmanager
def threads_applied(threads, chosen, notes: list):
    """Intra-op threads for torch (restored after), TF and JAX (onnxruntime gets them per session)."""
    if not threads:
        yield
        return
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    engines = _engines(chosen)
    if "jax" in engines:
        _jax_threads(threads, notes)
    if "tf" in engines:
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


def _jax_threads(threads, notes: list):
    """XLA sizes its CPU thread pool once, when JAX starts its backends; only 1 thread can be asked."""
    if threads != 1:
        notes.append(f"JAX: XLA's CPU thread pool cannot be set to {threads} threads; it uses one per core")
        return
    if "jax" in sys.modules:
        from jax._src import xla_bridge
        if xla_bridge.backends_are_initialized():
            notes.append("JAX had already started in this process: XLA keeps one thread per core")
            return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def tf32_state(runtime, device, tf32):
    """Whether TF32 convolutions are allowed for this runtime (None on the CPU, where TF32 does not exist)."""
    if device != "cuda":
        return None
    engine = devices.engine("keras") if runtime == "keras" else runtime.split(":")[0]
    if engine == "torch":
        import torch
        return bool(torch.backends.cudnn.allow_tf32)
    if engine == "tf":
        import tensorflow as tf
        return bool(tf.config.experimental.tensor_float_32_execution_enabled())
    if engine == "jax":
        return devices.jax_tf32_enabled()
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
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        env["jax"] = jax.__version__
        env["jax_default_matmul_precision"] = jax.config.jax_default_matmul_precision  # None: TF32 on GPUs
        env["xla_flags"] = os.environ.get("XLA_FLAGS", "")
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
