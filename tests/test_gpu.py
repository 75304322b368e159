"""GPU paths. The `gpu` tests skip where no CUDA device is present."""
import importlib.util

import pytest

import parity


@pytest.mark.gpu
@pytest.mark.parametrize("tf32", [False, True])
def test_resnet18_parity_on_gpu(tf32):
    report = parity.check("resnet18", size=64, device="cuda", tf32=tf32)
    assert report.tf32 == tf32
    assert all(r.tolerance == (1e-2 if tf32 else 1e-4) for r in report.results)
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]


def test_runtimes_without_a_gpu_refuse_cuda_instead_of_falling_back():
    import tensorflow as tf
    import torch

    from parity.devices import DeviceUnavailable, require
    if torch.cuda.is_available() or tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible here")
    for framework in ("torch", "keras", "tf"):
        with pytest.raises(DeviceUnavailable, match="refusing to run on the CPU"):
            require(framework, "cuda")
    with pytest.raises(RuntimeError, match="CUDAExecutionProvider"):
        from parity.onnx.runtime import session
        session("unused.onnx", device="cuda")
    with pytest.raises(DeviceUnavailable):
        parity.check("resnet18", size=32, device="cuda", onnx=False)


@pytest.mark.gpu
def test_keras_on_the_torch_backend_runs_on_cuda():
    import json
    import os
    import subprocess
    import sys
    script = ("import json, parity; r = parity.check('resnet18', size=64, device='cuda', frameworks=('keras',), "
              "onnx=False); print(json.dumps(r.to_json()))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["passed"] and report["device"] == "cuda", report


@pytest.mark.gpu
def test_keras_on_the_jax_backend_runs_on_cuda_strict_and_with_tf32():
    """JAX has no TF32 switch: --tf32 maps to jax_default_matmul_precision 'tensorfloat32',
    strict to 'highest' (parity.devices.set_tf32)."""
    import json
    import os
    import subprocess
    import sys
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    script = ("import json, parity; print(json.dumps([parity.check('resnet18', size=64, device='cuda', "
              "frameworks=('keras',), onnx=False, tf32=t).to_json() for t in (False, True)]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    strict, tf32 = json.loads(done.stdout.strip().splitlines()[-1])
    assert strict["passed"] and strict["device"] == "cuda" and strict["results"][0]["tolerance"] == 1e-4, strict
    assert tf32["passed"] and tf32["results"][0]["tolerance"] == 1e-2, tf32

