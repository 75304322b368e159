"""ONNX export from keras_impl and tf_impl (parity/onnx_tf.py): the same graph and kernels as
torch's export, bounded memory, external data past 2 GiB, and failures that leave no file."""
import os
import subprocess
import sys

import numpy as np
import pytest

import parity
from parity import onnx_utils, registry
from parity.adapters import adapter

FRAMEWORKS = ("torch", "keras", "tf")
TOL = 1e-5  # fp32 CPU policy

# One cheap representative per family in the default run, at the catalogue's small test
# size; every catalogue model under -m slow. Not below: where a feature map shrinks to 1x1,
# tf2onnx turns the NHWC<->NCHW transposes around it into Reshapes before it can cancel them
# (resnet18 at 32 px: 4 Reshapes more than torch's, with the old constant-folding path too).
REPRESENTATIVES = ("resnet18", "lenet")  # densenet121, googlenet, unet match too (-m slow): 95, 63, 28 s here
# Where keras_impl/tf_impl spell an op differently from torch_impl the graphs differ whatever
# the exporter does (docs/onnx.md lists them). xfail (not strict: the slow sweep has not been
# run over all their sizes), so the reason shows in the report.
DIFFERENT_SPELLING = {
    "vgg": "AdaptiveAvgPool2d(7) on a map that is not 7x7: torch GatherND/Where/Gather/Add/Div between "
           "2 Transposes, Keras/TF Slice/ReduceMean/Concat (the flatten matches since onnx_fold)",
    "alexnet": "AdaptiveAvgPool2d(6) on a map that is not 6x6, as vgg",
    "fpn": "nearest upsampling: Gather + Transpose in Keras/TF, Resize in torch",
    "unet_bilinear": "bilinear x2 resize: tf_impl's keeps 4 Transposes, spelled unlike torch's Resize",
}


def _spelling_gap(name):
    return DIFFERENT_SPELLING.get(name, DIFFERENT_SPELLING.get(registry.get(name).family))


def _exports(name, size, tmp_path):
    """{framework: path} of the three exports of one calibrated model, x, the torch output and
    the tolerance (the fp32 policy, or 3x torch's own fp32-vs-fp64 noise where that is larger)."""
    from parity import tolerance
    from parity.calibrate import calibrated_torch_model
    c = registry.get(name).input_size[0]
    torch_model = calibrated_torch_model(name, seed=0, input_size=(c, size, size))
    state = adapter("torch").state_dict(torch_model)
    x = np.random.default_rng(1).standard_normal((2, c, size, size)).astype(np.float32)
    reference = adapter("torch").run(torch_model, x)
    tol = tolerance.effective(TOL, tolerance.reference_noise(torch_model, x, reference))
    paths = {}
    for framework in FRAMEWORKS:
        model = torch_model
        if framework != "torch":
            model = adapter(framework).build(name, input_size=(c, size, size))
            adapter(framework).load_state_dict(model, state)
        paths[framework] = tmp_path / f"{name}.{framework}.onnx"
        parity.export_onnx(model, paths[framework], (1, c, size, size))
    return paths, x, reference, tol


def _error(outputs, reference):
    return max(float(np.abs(o - r).max() / np.abs(r).max()) for o, r in zip(outputs, reference))


def _assert_same_kernels_and_numerics(name, size, tmp_path):
    import onnx
    paths, x, reference, tol = _exports(name, size, tmp_path)
    kernels = {f: onnx_utils.optimized_op_counts(p) for f, p in paths.items()}
    assert kernels["keras"] == kernels["torch"] == kernels["tf"], kernels
    for framework, path in paths.items():
        graph = onnx.load(path).graph
        assert [i.name for i in graph.input] == ["input"]
        assert [o.name for o in graph.output] == list(registry.get(name).outputs)
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        if framework != "torch":
            assert not [n for n in graph.node if n.op_type == "Transpose"], f"{framework}: layout transposes"
        error = _error(onnx_utils.run(onnx_utils.session(path), x), reference)
        assert error <= tol, f"{framework}: {error:.2e} > {tol:.1e}"


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_three_exports_run_the_same_kernels(name, tmp_path):
    _assert_same_kernels_and_numerics(name, registry.get(name).test_sizes[0], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=_spelling_gap(n)))
                                  if _spelling_gap(n) else n for n in registry.names()])
def test_three_exports_run_the_same_kernels_whole_catalogue(name, tmp_path):
    _assert_same_kernels_and_numerics(name, registry.get(name).test_sizes[0], tmp_path)


# --- writing: external data, atomicity, clear failures ------------------------------------

def _small_tf_model():
    return adapter("tf").build("lenet", input_size=(1, 28, 28))


def test_external_data_is_written_beside_the_model_and_runs_the_same(tmp_path):
    """Models past protobuf's 2 GiB keep their weights in `<file>.data`; forced here on LeNet."""
    import onnx
    from parity.onnx_write import data_path
    model, shape = _small_tf_model(), (1, 1, 28, 28)
    inline, external = tmp_path / "inline.onnx", tmp_path / "external.onnx"
    fn = lambda x: model(x, training=False)  # noqa: E731
    onnx_utils.export_tf_callable(fn, inline, shape, ("logits",), "lenet", external=False)
    onnx_utils.export_tf_callable(fn, external, shape, ("logits",), "lenet", external=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["external.onnx", "external.onnx.data", "inline.onnx"]
    assert not data_path(inline).exists()
    assert external.stat().st_size < 20_000 < data_path(external).stat().st_size
    kernels = [t for t in onnx.load(external, load_external_data=False).graph.initializer if len(t.dims) >= 2]
    assert kernels and all(t.data_location == onnx.TensorProto.EXTERNAL for t in kernels)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(onnx_utils.run(onnx_utils.session(external), x)[0],
                                  onnx_utils.run(onnx_utils.session(inline), x)[0])


_WRITE_WITH_FILE_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
import parity
for framework in ("keras", "tf"):
    model = parity.build("lenet", framework=framework, input_size=(1, 28, 28))
    try:
        parity.export_onnx(model, Path(sys.argv[1]) / "lenet.onnx", (1, 1, 28, 28))
        print(f"{framework}: no error")
    except Exception as exc:
        print(f"{framework}: {type(exc).__name__}: {exc}")
"""


def test_a_write_that_fails_leaves_no_file_and_names_model_and_step(tmp_path):
    """A disk that fills (here: RLIMIT_FSIZE below LeNet's 250 kB) must leave no partial .onnx."""
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", _WRITE_WITH_FILE_SIZE_LIMIT, str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in done.stdout.splitlines() if line.startswith(("keras:", "tf:"))]
    assert len(lines) == 2, done.stdout + done.stderr[-2000:]
    for line in lines:
        assert "lenet" in line and "'write'" in line and "File too large" in line, line
    assert list(out.iterdir()) == []


def test_an_unsupported_op_names_the_model_the_step_and_the_op(tmp_path):
    import tensorflow as tf
    from parity.onnx_tf import ExportStepError
    with pytest.raises(ExportStepError, match=r"odd_model: .*'convert'.*Lgamma"):
        onnx_utils.export_tf_callable(lambda x: tf.math.lgamma(x), tmp_path / "odd.onnx", (1, 3, 8, 8),
                                      ("features",), "odd_model")
    assert list(tmp_path.iterdir()) == []


# --- parity check: big exports in a child process ----------------------------------------

def test_check_exports_big_models_in_a_child_process(tmp_path):
    """What `parity check` does past IN_PROCESS_BYTES (forced here on LeNet): the child writes
    the file, the parent runs it; a failure in the child is an ExportError naming the model."""
    from parity.onnx_guard import ExportError, export_guarded
    state = adapter("torch").state_dict(adapter("torch").build("lenet"))
    model = adapter("tf").build("lenet")
    path = tmp_path / "lenet.tf.onnx"
    export_guarded("tf", model, "lenet", state, path, (1, 1, 28, 28), ("logits",), in_process_bytes=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    adapter("tf").load_state_dict(model, state)
    np.testing.assert_allclose(onnx_utils.run(onnx_utils.session(path), x)[0], adapter("tf").run(model, x)[0],
                               rtol=1e-5, atol=1e-6)
    wrong = {k: v for k, v in state.items() if not k.startswith("classifier.4")}  # the child cannot load it
    with pytest.raises(ExportError, match=r"lenet: ONNX export from tf \(child process\).*do not fit"):
        export_guarded("tf", model, "lenet", wrong, tmp_path / "wrong.onnx", (1, 1, 28, 28), ("logits",),
                       in_process_bytes=0)
    assert not (tmp_path / "wrong.onnx").exists()
