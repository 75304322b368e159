"""Device placement and TF32 in every runtime. A runtime that cannot reach the GPU says so."""
import contextlib


class DeviceUnavailable(RuntimeError):
    pass


def engine(framework: str) -> str:
    """The runtime that executes a framework's ops: Keras runs on its backend's."""
    if framework != "keras":
        return framework
    import keras
    return {"tensorflow": "tf", "torch": "torch"}.get(keras.backend.backend(), keras.backend.backend())


def require(framework: str, device: str) -> None:
    if device == "cpu":
        return
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}; use cpu or cuda")
    runtime = engine(framework)
    label = framework if runtime == framework else f"{framework} (on the {runtime} backend)"
    if runtime == "torch":
        import torch
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"{label}: torch sees no CUDA device (CPU build or no GPU); "
                                    "refusing to run on the CPU")
    elif runtime == "tf":
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            raise DeviceUnavailable(f"{label}: TensorFlow sees no GPU (tensorflow-cpu build or no CUDA); "
                                    "pip install -e '.[gpu]'; refusing to run on the CPU")
    elif runtime == "jax":
        if not jax_gpus():
            raise DeviceUnavailable(f"{label}: JAX sees no GPU (CPU jaxlib or no CUDA; install jax[cuda12] "
                                    "or jax[cuda13]); refusing to run on the CPU")
    else:
        raise DeviceUnavailable(f"{label}: cnn-parity places Keras on the tensorflow, torch or jax backend only")


def jax_gpus() -> list:
    import jax
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib
        return []


# JAX has no TF32 switch: its default matmul/convolution precision on NVIDIA GPUs is TF32;
# "highest" computes in full fp32 (the strict mode).
JAX_PRECISION = {True: "tensorfloat32", False: "highest"}


def jax_tf32_enabled() -> bool:
    """Whether JAX's fp32 matmuls and convolutions may use TF32 (anything below "highest")."""
    import jax
    return jax.config.jax_default_matmul_precision not in ("highest", "float32", "HIGHEST")


def set_tf32(enabled: bool, frameworks=("torch", "tf")) -> None:
    """Switch TF32 matmuls/convolutions on or off everywhere it applies (strict mode: off)."""
    runtimes = {engine(f) for f in frameworks}
    if "torch" in runtimes:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    if "tf" in runtimes:
        import tensorflow as tf
        tf.config.experimental.enable_tensor_float_32_execution(enabled)
    if "jax" in runtimes:
        import jax
        jax.config.update("jax_default_matmul_precision", JAX_PRECISION[enabled])


@contextlib.contextmanager
def placed(framework: str, device: str):
    """Build and run Keras/TF on the asked device, the CPU included (TF would pick a visible GPU
    by itself); torch models are moved by their adapter."""
    require(framework, device)
    if framework == "keras":
        import keras
        # On the torch backend an indexed "cpu:0" copies each new variable off its Parameter and
        # integer variables (seed generators) then fail; plain "cpu"/"cuda" keep them in place.
        # TF and JAX take an indexed device ("gpu:0" is JAX's first CUDA device too).
        name = device if engine("keras") == "torch" else {"cpu": "cpu:0", "cuda": "gpu:0"}[device]
        with keras.device(name):
            yield
    elif framework == "tf":
        import tensorflow as tf
        with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
            yield
    else:
        yield
