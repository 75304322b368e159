import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# glibc hands every freed block over 32 MB back to the kernel and page-faults the next one in
# afresh, which costs seconds per gigabyte on the 2-core CI machine: one Keras-on-torch AlexNet
# train-check took 86 s, 20 s with freed memory kept for reuse (peak RSS 3.9 -> 4.0 GB). Set
# here, before xdist starts the workers, so they and every child process inherit it; other
# C libraries ignore the two variables.
os.environ.setdefault("MALLOC_MMAP_MAX_", "0")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 36))
# numpy asks the kernel for transparent huge pages on every array of 4 MB or more
# (madvise); where the kernel compacts memory on each such fault and still finds no huge page
# (this VM: AnonHugePages stays 0), a fresh 8 MB array took 10-76 ms instead of 3.5-5 ms, and
# a float64 train-check of ResNet-50 spent 9-21 s instead of 4 s in the kernel (35-44 s
# against 25-26 s in all). numpy reads the variable at import.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per framework in each of the two workers (pyproject's -n 2): on 2 cores,
    # measured 85 s against 97 s with each framework's default pool and 129 s serial
    # (test_epsilon, test_resnet_v2, test_dense). Set before torch or TensorFlow starts.
    for variable in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def plant(monkeypatch):
    """plant(owner, method, old, new): owner.method with the source text `old` replaced by `new`,
    compiled in memory and set for this test only (the file is not touched). Fails if the
    method no longer contains `old`, so a plant cannot silently stop planting."""
    import inspect
    import textwrap
    import types

    def planted(owner, method, old, new):
        function = inspect.getattr_static(owner, method)
        source = textwrap.dedent(inspect.getsource(function))
        assert old in source, f"{owner.__qualname__}.{method} no longer contains {old!r}"
        # compiled inside a class body, so a zero-argument super() finds its __class__ cell,
        # which is then pointed at the real class
        body = f"class {owner.__name__}:\n" + textwrap.indent(source.replace(old, new), "    ")
        namespace = {}
        exec(compile(body, inspect.getfile(function), "exec"), function.__globals__, namespace)
        compiled = vars(namespace[owner.__name__])[method]
        cells = tuple(types.CellType(owner) if name == "__class__" else cell
                      for name, cell in zip(compiled.__code__.co_freevars, compiled.__closure__ or ()))
        replacement = types.FunctionType(compiled.__code__, function.__globals__, method, compiled.__defaults__,
                                         cells or None)
        replacement.__kwdefaults__ = compiled.__kwdefaults__  # keyword-only defaults (def f(self, *, n=1))
        monkeypatch.setattr(owner, method, replacement)
    return planted


# Seconds each file's tests take in a default run on the 2-core machine (2026-12-06;
# test_minimal_env's as on a fresh clone, where it builds its environment). The workers take the files
# heaviest first (pyproject's --no-loadscope-reorder keeps this order; xdist otherwise hands
# out the files with the most tests first, and test_distributed, six tests, started last
# while the other worker sat idle). Files not listed follow in their usual order.
MEASURED_SECONDS = {"test_train_float64.py": 170, "test_tutorials.py": 171, "test_docs_code.py": 104, "test_training.py": 87,
                    "test_distributed.py": 85, "test_bench.py": 83, "test_classic_small.py": 72,
                    "test_onnx_export.py": 71, "test_inception.py": 63, "test_densenet.py": 60,
                    "test_minimal_env.py": 45, "test_platforms.py": 45, "test_dense.py": 43,
                    "test_cli.py": 42, "test_resnet_v2.py": 40, "test_train_distributed.py": 40,
                    "test_resnet.py": 32, "test_train_cli.py": 28, "test_float64.py": 50, "test_float64_backends.py": 50,
                    "test_epsilon.py": 20}


def heaviest_first(item) -> int:
    return -MEASURED_SECONDS.get(item.path.name, 0)


def pytest_collection_modifyitems(config, items):
    items.sort(key=heaviest_first)  # stable: the other files, and each file's tests, keep their order
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


# --- helpers shared by the test files (library functions where the library has them) ---------

def nhwc(x):
    """NCHW -> NHWC, contiguous."""
    from parity.adapters.base import to_nhwc
    return to_nhwc(np.asarray(x))


def nchw(y):
    """A native NHWC output (array or tensor) -> NCHW numpy."""
    from parity.adapters.base import to_nchw_outputs
    return to_nchw_outputs(np.asarray(y))[0]


def normalized_error(y, ref) -> float:
    """max|y - ref| / max|ref| (parity.tolerance.measure)."""
    from parity import tolerance
    return tolerance.measure(np.asarray(y), np.asarray(ref)).normalized


def keras_apply(build, x_nhwc):
    """(model, output) of a one-off Keras functional model `build(inputs)` on an NHWC batch."""
    import keras
    inputs = keras.Input(shape=x_nhwc.shape[1:])
    model = keras.Model(inputs, build(inputs))
    return model, np.asarray(model(x_nhwc, training=False))


def randomize_keras_batch_norms(model, seed=0):
    """Random, non-trivial BatchNormalization statistics in a keras.applications model, so a
    converter that mixes up gamma/beta/mean/variance cannot pass."""
    import keras
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.2, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.5, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
    return model


def three(name, input_size=(3, 64, 64), **kwargs):
    """({framework: model}, canonical state): a calibrated torch_impl model and keras_impl /
    tf_impl models loaded with its state."""
    import parity
    from parity.calibrate import calibrated_torch_model
    torch_model = calibrated_torch_model(name, input_size=input_size, **kwargs)
    state = parity.state_dict(torch_model)
    models = {"torch": torch_model}
    for framework in ("keras", "tf"):
        models[framework] = parity.build(name, framework=framework, **kwargs)
        parity.load_state_dict(models[framework], state)
    return models, state


def assert_native_parity(models, sizes=(64, 57), batch=2, tol=None):
    """keras and tf against torch at each size (a seeded batch), within `tol` (the policy)."""
    import parity
    from parity import tolerance
    from parity.calibrate import seeded_input
    tol = tol or tolerance.threshold()
    for size in sizes:
        x = seeded_input((batch, 3, size, size), seed=size)
        ref = parity.run(models["torch"], x)[0]
        assert np.abs(ref).max() > 1e-3 and np.isfinite(ref).all(), "degenerate reference"
        for framework in ("keras", "tf"):
            err = normalized_error(parity.run(models[framework], x)[0], ref)
            assert err <= tol, f"{framework} at {size}x{size}: normalized error {err:.2e}"


@dataclass
class OnnxGraph:
    ops: list
    inputs: list
    outputs: list
    input_dims: list  # a dynamic axis by its name


@contextlib.contextmanager
def recorded_onnx_exports():
    """{(framework, file name): OnnxGraph} of every ONNX export made inside the block: what
    an adapter writes, and what parity.check opens (its big Keras/TF models export in a
    child process, named <model>.<framework>.onnx)."""
    import onnx

    from parity.adapters import ADAPTERS
    from parity.onnx import runtime
    log = {}

    def record(framework, path):
        graph = onnx.load(str(path), load_external_data=False).graph
        dims = graph.input[0].type.tensor_type.shape.dim
        log[(framework, Path(path).name)] = OnnxGraph(
            [n.op_type for n in graph.node], [i.name for i in graph.input], [o.name for o in graph.output],
            [d.dim_param or d.dim_value for d in dims])

    def recording(adapter):
        original = adapter.export_onnx

        def export_onnx(model, path, *args, **kwargs):
            result = original(model, path, *args, **kwargs)
            record(adapter.framework, path)
            return result
        return export_onnx

    original_session = runtime.session

    def session(path, *args, **kwargs):
        framework = Path(path).name.removesuffix(".onnx").rsplit(".", 1)[-1]
        if framework in ADAPTERS:
            record(framework, path)
        return original_session(path, *args, **kwargs)

    for adapter in ADAPTERS.values():
        adapter.export_onnx = recording(adapter)
    runtime.session = session
    try:
        yield log
    finally:
        runtime.session = original_session
        for adapter in ADAPTERS.values():
            del adapter.export_onnx  # the class's method again


def transposes(log) -> dict:
    """{export: number of Transpose nodes} for the exports that keep any."""
    return {key: g.ops.count("Transpose") for key, g in log.items() if "Transpose" in g.ops}


def assert_no_layout_transposes(exports, expected=3, known_issue=None):
    """No Transpose node in any of the `expected` recorded exports. `known_issue`: the reason
    some still keep one; the test then xfails, and fails as soon as none is left (strict)."""
    assert len(exports) == expected, list(exports)
    left = transposes(exports)
    if known_issue is None:
        assert not left, f"layout transposes left: {left}"
        return
    assert left, f"no transposes left any more: remove the known issue ({known_issue})"
    pytest.xfail(f"{known_issue}: {left}")


# The tolerance each model is judged at in the default-run checks: the fp32 CPU policy, or
# 3 x the measured reference noise (docs/inception.md). A loosening of the noise rule, or a
# noisier calibration, fails assert_tolerance_pinned.
POLICY = 1e-5
# Measured on CPU at the tests' sizes: googlenet 1.1-1.9e-5 noise, inception_v3 7.5e-5 at 80x80
# (3 x = 2.25e-4), densenet121 4.0e-6 at 64x64 (1.2e-5).
PINNED_TOLERANCE = {"googlenet": 6e-5, "inception_v1": POLICY, "inception_v3": 2.5e-4, "inception_v3_keras": 2.5e-4,
                    "densenet121": 1.5e-5}


def assert_tolerance_pinned(report):
    """Every result of a parity.check report is judged at no more than its model's pin."""
    pinned = PINNED_TOLERANCE.get(report.model, POLICY)
    looser = [(r.target, r.tolerance) for r in report.results if r.tolerance > pinned]
    assert not looser, f"{report.model} judged above its pinned tolerance {pinned:.0e}: {looser}"


def assert_same_batchnorm_epsilon(keras_application, torch_model):
    """The imported model's BatchNorms use exactly the keras.applications model's epsilon
    (1.001e-5 vs 1e-5 is invisible at ordinary variances: tests/test_epsilon.py)."""
    import keras
    import torch
    theirs = {layer.epsilon for layer in keras_application.layers if isinstance(layer, keras.layers.BatchNormalization)}
    ours = {m.eps for m in torch_model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert theirs and ours == theirs, (ours, theirs)
