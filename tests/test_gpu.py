"""GPU paths. The `gpu` tests skip where no CUDA device is present."""
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
        from parity.onnx_utils import session
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
