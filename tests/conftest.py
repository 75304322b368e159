import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def native_errors(name, size, batch=1, seed=0, frameworks=("keras", "tf")):
    """{target: normalized error} for keras and tf against the calibrated torch reference."""
    import parity
    report = parity.check(name, size=size, batch=batch, seed=seed, frameworks=frameworks, onnx=False)
    failures = [r for r in report.results if r.error]
    assert not failures, failures[0].error
    return report


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    has_gpu = False
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        pass
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip)
