"""Device placement and TF32 in every runtime. A runtime that cannot reach the GPU says so."""
import contextlib


class DeviceUnavailable(RuntimeError):
    pass


def require(framework: str, device: str) -> None:
    if device == "cpu":
        return
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}; use cpu or cuda")
    if framework == "torch":
        import torch
        if not torch.cuda.is_available():
            raise DeviceUnavailable("torch: no CUDA device visible (CPU build or no GPU); refusing to run on the CPU")
    elif framework in ("keras", "tf"):
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            raise DeviceUnavailable(f"{framework}: TensorFlow sees no GPU (tensorflow-cpu build or no CUDA); "
                                    "install cnn-parity[gpu]; refusing to run on the CPU")


def set_tf32(enabled: bool, frameworks=("torch", "tf")) -> None:
    """Switch TF32 matmuls/convolutions on or off everywhere it applies (strict mode: off)."""
    if "torch" in frameworks:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    if "tf" in frameworks or "keras" in frameworks:
        import tensorflow as tf
        tf.config.experimental.enable_tensor_float_32_execution(enabled)


@contextlib.contextmanager
def placed(framework: str, device: str):
    """Run Keras/TF ops on the asked device; torch models are moved by their adapter."""
    require(framework, device)
    if framework in ("keras", "tf") and device == "cuda":
        import tensorflow as tf
        with tf.device("/GPU:0"):
            yield
    else:
        yield
