"""Where users install it: any subset of frameworks, triton beside TensorFlow, sweeps that
survive a bad model, and the documented exit codes (docs/cli.md, docs/platforms.md).

This file also runs in a minimal environment (torch + keras on the torch backend, no
TensorFlow, no ONNX tools: tests/test_minimal_env.py builds it), so every test here works
with what is installed and skips what needs more.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity import frameworks
from parity.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
HAS_TF = frameworks.installed("tf")
HAS_ONNX_TOOLS = frameworks.installed("onnxruntime")


def parity_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def python(code, extra_path=None):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


# --- import order: triton (torch's CUDA wheels bring it) after TensorFlow aborts -------------

@pytest.fixture
def triton_path():
    """The folder holding triton, installed beside the venv on first use (tests/_beside.py)."""
    if not HAS_TF:
        pytest.skip("no TensorFlow: the import-order trap needs it")
    from _beside import installed_beside
    target, why_not = installed_beside("triton")
    if target is None:
        pytest.skip(why_not)
    return target


def test_triton_after_tensorflow_aborts_and_parity_loads_them_in_a_safe_order(triton_path):
    naive = python("import tensorflow; import triton", triton_path)
    assert naive.returncode < 0, (naive.returncode, naive.stderr[-800:])  # killed by a signal: the trap is real
    # parity's path: a Keras (TensorFlow-backed) model first, triton later, as torch.onnx.export loads it
    safe = python("import parity, sys; parity.build('lenet', framework='keras'); "
                  "assert sys.modules['tensorflow']; import triton; print('survived')", triton_path)
    assert safe.returncode == 0 and "survived" in safe.stdout, safe.stderr[-2000:]


@pytest.mark.slow
def test_check_with_torch_onnx_export_after_keras_survives_triton(triton_path):
    """The reported crash: torch.onnx.export loads triton after Keras loaded TensorFlow."""
    env = {"PYTHONPATH": os.pathsep.join([str(triton_path), os.environ.get("PYTHONPATH", "")])}
    out = parity_cli("check", "resnet18", "--size", "32", "--frameworks", "keras", env=env)
    assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])


def test_tensorflow_imported_first_disables_triton_instead_of_aborting(triton_path):
    late = python("import tensorflow, warnings\nwith warnings.catch_warnings(record=True) as seen:\n"
                  "    warnings.simplefilter('always')\n    import parity\n"
                  "    parity.build('lenet', framework='keras')\n"
                  "from torch.utils._triton import has_triton_package\n"
                  "print(has_triton_package(), any('triton is disabled' in str(w.message) for w in seen))", triton_path)
    assert late.returncode == 0 and late.stdout.split()[-2:] == ["False", "True"], late.stderr[-2000:]


def test_frameworks_looks_up_without_importing():
    done = python("import sys; from parity import frameworks as f; a = f.available(); "
                  "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnxruntime') if m in sys.modules))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-1000:]


# --- any subset of frameworks ---------------------------------------------------------------

def _expected_targets():
    native = [f for f in ("keras", "tf") if frameworks.missing(f) is None]
    return native


def test_default_targets_are_what_is_installed_and_the_rest_is_noted():
    from parity.inference.check import plan
    targets, notes = plan(None, onnx=True)
    assert [t for t in targets if ":" not in t] == _expected_targets()
    for f in ("keras", "tf"):
        if frameworks.missing(f):
            assert any(n.startswith(f"{f} left out: ") for n in notes), notes
    if not HAS_ONNX_TOOLS:
        assert not [t for t in targets if t.startswith("onnx:")]
        assert any(n.startswith("onnx:torch left out: ") and n.endswith(" is not installed") for n in notes), notes


@pytest.mark.skipif(HAS_TF and HAS_ONNX_TOOLS, reason="needs an environment without TensorFlow or onnxruntime")
def test_minimal_environment_commands():
    assert parity_cli("list", "--family", "lenet").returncode == 0
    summary = parity_cli("summary", "lenet")
    assert summary.returncode == 0 and "classifier.0.weight" in summary.stdout, summary.stderr[-2000:]
    asked = parity_cli("check", "resnet18", "--frameworks", "tf" if not HAS_TF else "keras")
    if not HAS_TF:
        assert asked.returncode == 2 and "tensorflow is not installed" in asked.stderr, asked.stderr[-2000:]
    export = parity_cli("export", "lenet", "--out", "never.onnx")
    assert export.returncode == 2 and "is not installed" in export.stderr, export.stderr[-2000:]


# --- a fixed input is refused up front ------------------------------------------------------

def test_fixed_input_model_refuses_another_size_naming_its_input():
    import parity
    with pytest.raises(InputError, match="lenet: takes a 1x28x28 input.*got 1x64x64"):
        parity.check("lenet", size=64, frameworks=("keras",), onnx=False)
    model = parity.build("lenet")
    with pytest.raises(InputError, match="1x28x28"):
        parity.run(model, np.zeros((1, 1, 64, 64), np.float32))
    assert parity.run(model, np.zeros((1, 1, 29, 29), np.float32))[0].shape == (1, 10)  # 29 still gives 5x5


# --- sweeps lose nothing, exit codes --------------------------------------------------------

def test_sweep_runs_what_is_installed_records_a_bad_model_goes_on_and_resumes(tmp_path):
    results = tmp_path / "sweep.json"
    out = parity_cli("check", "lenet", "resnet18", "--size", "32", "--json", results,
                     *(["--no-onnx"] if HAS_ONNX_TOOLS else []))  # default frameworks: what is installed
    assert out.returncode == 2, out.stdout[-3000:] + out.stderr[-3000:]  # an error row: exit 2, not 1
    assert "oneDNN" not in out.stderr and "absl" not in out.stderr  # TensorFlow's start-up lines are muted
    payload = json.loads(results.read_text())
    assert payload["complete"] and [m["model"] for m in payload["models"]] == ["lenet", "resnet18"]
    lenet, resnet = payload["models"]
    assert lenet["error"].startswith("InputError: lenet: takes a 1x28x28 input") and not lenet["passed"]
    assert resnet["passed"] and resnet["error"] is None
    assert [r["target"] for r in resnet["results"]] == _expected_targets()  # never a FAIL for a missing package
    if not HAS_TF:
        assert "tf left out: tensorflow is not installed" in resnet["notes"]
    again = parity_cli("check", "lenet", "resnet18", "--size", "32", "--json", results, "--resume", "--no-onnx")
    assert again.returncode == 2 and "1 models already checked, 1 to go" in again.stdout, again.stdout[-2000:]
    assert json.loads(results.read_text())["models"][1] == resnet  # kept, not re-run


def test_sweep_file_holds_every_finished_model_when_the_sweep_dies(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    import parity
    from parity.inference.commands import sweep

    def one(name):
        if name == "resnet34":
            raise KeyboardInterrupt  # stands for the process being stopped mid-sweep
        return parity.check(name, size=32, frameworks=("keras",), onnx=False)

    args = SimpleNamespace(json=str(tmp_path / "s.json"), size=32, batch=1, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        sweep(["resnet18", "resnet34"], one, Console(file=open(os.devnull, "w")), args)
    payload = json.loads((tmp_path / "s.json").read_text())
    assert not payload["complete"] and [m["model"] for m in payload["models"]] == ["resnet18"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # written atomically: no temporary left


def test_a_real_mismatch_exits_1_and_the_same_weights_unchanged_exit_0(tmp_path, capsys):
    import parity
    from parity.calibrate import calibrated_torch_model
    from parity.cli import main
    state = parity.state_dict(calibrated_torch_model("resnet18", input_size=(3, 32, 32)))
    parity.save_state(state, tmp_path / "same.safetensors")
    state["layer2.0.bn1.running_var"] = state["layer2.0.bn1.running_var"].copy()
    state["layer2.0.bn1.running_var"][3] *= 4.0  # one running variance off: a real transfer bug
    parity.save_state(state, tmp_path / "bad.safetensors")
    args = ["diagnose", "resnet18", "--size", "32", "--frameworks", "keras", "--weights"]
    assert main(args + [str(tmp_path / "same.safetensors")]) == 0
    assert main(args + [str(tmp_path / "bad.safetensors")]) == 1
    assert "first divergent layer: layer2.0.bn1" in capsys.readouterr().out


def test_errors_and_crashes_exit_2_never_1(tmp_path):
    (tmp_path / "list.json").write_text("[]")  # not a results file: report crashes on it (a TypeError)
    crash = parity_cli("report", "--from", tmp_path / "list.json", "--out", tmp_path / "r.html")
    assert crash.returncode == 2 and "TypeError" in crash.stderr, crash.stderr[-2000:]
    (tmp_path / "err.json").write_text(json.dumps({"passed": False, "models": [
        {"model": "lenet", "input_shape": [1, 1, 64, 64], "device": "cpu", "passed": False, "results": [],
         "error": "InputError: lenet: takes a 1x28x28 input"}]}))
    error_row = parity_cli("report", "--from", tmp_path / "err.json", "--out", tmp_path / "e.html")
    assert error_row.returncode == 2 and "could not be checked" in (tmp_path / "e.html").read_text()
    assert parity_cli("check", "resnet18", "--batch", "two").returncode == 2  # usage


# --- Keras' grouped convolution on the TensorFlow backend -----------------------------------

@pytest.mark.skipif(not HAS_TF or frameworks.keras_backend() != "tensorflow", reason="Keras on TensorFlow only")
def test_keras_grouped_convolution_traces_once_per_layer_not_per_call():
    import logging

    import keras

    import parity

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.retraces = 0

        def emit(self, record):
            self.retraces += "triggered tf.function retracing" in record.getMessage()

    logger, records = logging.getLogger("tensorflow"), Records()
    level = logger.level
    logger.setLevel(logging.WARNING)  # the CLI, run in-process elsewhere, may have muted it
    logger.addHandler(records)
    try:
        model = parity.build("resnext50_32x4d", framework="keras", input_size=(3, 32, 32))
        x = np.zeros((1, 3, 32, 32), np.float32)
        for _ in range(3):
            parity.run(model, x)
        compiled = [layer.__dict__["_eager_convolution"] for layer in model.layers
                    if "_eager_convolution" in layer.__dict__]
        assert len(compiled) == 16 and all(f.experimental_get_tracing_count() == 1 for f in compiled)
        assert records.retraces == 0
        stock = keras.layers.Conv2D(4, 3, groups=2)  # the wrong version: Keras' own layer, called eagerly
        for _ in range(6):
            stock(np.zeros((1, 8, 8, 4), np.float32))
        assert records.retraces > 0
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
