"""`parity bench`, fp16/bf16 parity and keras_impl on the torch and JAX backends.

The default run benches resnet18 at 32x32 (every runtime but torch.compile, which takes
minutes to compile on a CPU: the `slow` test includes it), checks bf16 parity at 64x64
and runs keras_impl parity under KERAS_BACKEND=torch and KERAS_BACKEND=jax in subprocesses
(the JAX ones skip where jax is not installed).
"""
import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest

from parity import bench as bench_module
from parity.bench import RUNTIMES, bench, interleaved_timings, select_runtimes


# --- the measurement, without any framework ------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_each_repeat_times_every_runtime_once_round_robin():
    clock, calls = FakeClock(), []

    def runner(name, cost):
        def call():
            calls.append(name)
            clock.now += cost
        return call

    runners = {"a": runner("a", 1.0), "b": runner("b", 2.0), "c": runner("c", 4.0)}
    seconds, order = interleaved_timings(runners, repeats=4, warmup=2, clock=clock)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up first, not timed
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # rotates by one
    for block in range(4):
        assert sorted(order[3 * block:3 * block + 3]) == ["a", "b", "c"]
    assert seconds == {"a": [1.0] * 4, "b": [2.0] * 4, "c": [4.0] * 4}


def test_runtime_selection_by_family_or_name():
    assert select_runtimes(None) == list(RUNTIMES)
    assert select_runtimes("torch,onnx") == ["torch", "torch:channels_last", "torch:compile",
                                             "onnx:torch", "onnx:keras", "onnx:tf"]
    assert select_runtimes(["tf:xla", "keras"]) == ["keras", "tf:xla"]
    with pytest.raises(ValueError, match="unknown framework or runtime 'jax'"):
        select_runtimes("jax")


def test_spread_of_the_onnx_exports():
    rows = [bench_module.RuntimeTiming("onnx:torch", latency_ms=10.0),
            bench_module.RuntimeTiming("onnx:keras", latency_ms=10.4),
            bench_module.RuntimeTiming("onnx:tf", latency_ms=12.0),
            bench_module.RuntimeTiming("tf", latency_ms=50.0)]
    assert bench_module.onnx_spread(rows) == pytest.approx(0.2)
    rows[2].status = bench_module.FAILED
    assert bench_module.onnx_spread(rows) == pytest.approx(0.04)


def test_cli_registers_bench_with_every_option():
    parser = argparse.ArgumentParser(prog="parity")
    bench_module.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "resnet50"])
    assert (args.frameworks, args.device, args.batch, args.dtype, args.size, args.repeats, args.tf32) == \
        (None, "cpu", 1, "fp32", None, 10, None)
    args = parser.parse_args(["bench", "resnet18", "--frameworks", "torch,onnx", "--device", "cuda", "--batch",
                              "8", "--dtype", "bf16", "--size", "97", "--repeats", "3", "--strict", "--json",
                              "r.json", "--plot", "r.png", "--no-compile", "--threads", "1"])
    assert (args.device, args.batch, args.dtype, args.size, args.tf32, args.no_compile, args.threads) == \
        ("cuda", 8, "bf16", 97, False, True, 1)
    assert args.func is bench_module.cmd_bench
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "resnet18", "--tf32", "--strict"])


# --- a real bench of every runtime ---------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_bench():
    return bench("resnet18", size=32, repeats=2, warmup=1, compile=False, threads=1)


def test_bench_measures_every_runtime(resnet18_bench):
    result = resnet18_bench
    assert [t.runtime for t in result.runtimes] == list(RUNTIMES)
    compiled = result.timing("torch:compile")
    assert compiled.status == "skipped" and "--no-compile" in compiled.note
    measured = [t for t in result.runtimes if t.runtime != "torch:compile"]
    assert all(t.status == "ok" for t in measured), [(t.runtime, t.note) for t in measured if t.status != "ok"]
    for t in measured:
        assert t.throughput > 0 and t.latency_ms > 0 and len(t.times_ms) == 2
        assert t.throughput == pytest.approx(1e3 / t.latency_ms)
        assert t.error_vs_torch < 1e-5, (t.runtime, t.error_vs_torch)  # the same function everywhere
    assert result.timing("torch").ratio == 1.0
    onnx = [t.latency_ms for t in measured if t.runtime.startswith("onnx:")]
    assert len(onnx) == 3 and result.onnx_spread == pytest.approx((max(onnx) - min(onnx)) / min(onnx))
    assert not result.failed


def test_bench_interleaves_the_runtimes(resnet18_bench):
    measured = [t.runtime for t in resnet18_bench.runtimes if t.status == "ok"]
    order = resnet18_bench.order
    assert len(order) == 2 * len(measured)
    first, second = order[:len(measured)], order[len(measured):]
    assert first == measured and sorted(second) == sorted(measured) and second[0] == measured[1]


def test_bench_json_and_plot(resnet18_bench, tmp_path):
    bench_module.write_json(resnet18_bench, tmp_path / "bench.json")
    payload = json.loads((tmp_path / "bench.json").read_text())
    assert {"model", "input_shape", "device", "dtype", "batch", "repeats", "warmup", "baseline", "tf32",
            "runtimes", "order", "onnx_spread", "notes", "environment"} <= set(payload)
    assert payload["input_shape"] == [1, 3, 32, 32] and payload["tf32"] == "default"
    row = payload["runtimes"][0]
    assert {"runtime", "status", "latency_ms", "throughput", "ratio", "times_ms", "setup_s", "error_vs_torch",
            "tf32", "note"} <= set(row)
    assert {"torch", "tensorflow", "keras", "onnxruntime", "cpu_count"} <= set(payload["environment"])
    bench_module.plot(resnet18_bench, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    from parity.bench.render import figure
    ax = figure(resnet18_bench).axes[0]
    measured = [r for r in resnet18_bench.runtimes if r.status == "ok"]
    assert ax.get_xscale() == "log"  # torch's bar stays visible beside a 50x faster runtime
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("torch_impl" in t for t in legend) and any("onnxruntime" in t for t in legend), legend
    assert len([t for t in ax.texts if t.get_text()]) == len(measured)  # every bar carries its value


def test_bench_command_writes_json(tmp_path, capsys):
    from rich.console import Console
    parser = argparse.ArgumentParser(prog="parity")
    bench_module.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "resnet18", "--frameworks", "torch", "--no-compile", "--size", "32",
                              "--repeats", "2", "--warmup", "0", "--json", str(tmp_path / "b.json")])
    assert args.func(args, Console(width=160)) == 0
    assert "torch:channels_last" in capsys.readouterr().out
    runtimes = json.loads((tmp_path / "b.json").read_text())["runtimes"]
    assert [r["runtime"] for r in runtimes] == ["torch", "torch:channels_last", "torch:compile"]


def test_bench_refuses_cuda_without_a_gpu():
    import tensorflow as tf
    import torch
    if torch.cuda.is_available() or tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible here")
    result = bench("resnet18", size=32, repeats=1, warmup=0, device="cuda", frameworks="torch,keras,tf,onnx")
    assert all(t.status == "unavailable" for t in result.runtimes), [(t.runtime, t.status) for t in result.runtimes]
    assert all("refusing" in t.note for t in result.runtimes)
    assert result.failed  # the CLI exits 1


@pytest.mark.slow
def test_bench_with_torch_compile():
    result = bench("resnet18", size=32, repeats=2, warmup=1, frameworks="torch")
    compiled = result.timing("torch:compile")
    assert compiled.status == "ok", compiled.note  # inductor needs a C++ compiler on a CPU
    assert compiled.throughput > 0 and "compiled in" in compiled.note and compiled.error_vs_torch < 1e-4


@pytest.mark.slow
def test_bench_in_bf16():
    result = bench("resnet18", size=32, repeats=2, warmup=1, dtype="bf16", compile=False)
    status = {t.runtime: t.status for t in result.runtimes}
    assert status["torch"] == status["keras"] == "ok"
    assert status["tf"] == status["onnx:torch"] == "unsupported"


# --- fp16 / bf16 parity ----------------------------------------------------------------------

def test_bf16_parity_of_torch_autocast_and_keras_mixed_precision():
    from parity.inference.precision import check_precision
    report = check_precision("resnet18", "bf16", size=64, runtimes=("torch:autocast", "keras:mixed", "onnx:tf"),
                             timing_repeats=1)
    assert report.threshold == 5e-2 and report.passed, [(r.runtime, r.normalized_error, r.note)
                                                         for r in report.results]
    for runtime in ("torch:autocast", "keras:mixed"):
        r = report.result(runtime)
        assert r.status == "ok" and 0 < r.normalized_error < 5e-2 and r.top1_agreement == 1.0
    assert "bfloat16" in report.result("keras:mixed").note
    onnx = report.result("onnx:tf")
    assert onnx.status == "unsupported" and onnx.passed is None and "bf16" in onnx.note
    import keras
    assert keras.mixed_precision.global_policy().name == "float32"  # the policy scope was undone


@pytest.mark.slow
def test_fp16_parity_everywhere():
    from parity.inference.precision import check_precision
    report = check_precision("resnet18", "fp16", size=64)
    assert report.threshold == 1e-2
    assert report.passed, [(r.runtime, r.status, r.normalized_error, r.note) for r in report.results]
    assert all(r.status == "ok" for r in report.results), [(r.runtime, r.note) for r in report.results]


# --- keras_impl on the torch backend -----------------------------------------------------------

# One subprocess on KERAS_BACKEND=torch: first a plain Keras layer with a dotted name (does
# Keras still need keras_impl/_torch_backend.py?), then `parity.check` of keras_impl against
# torch_impl for one model of each kind of layer keras_impl uses.
TORCH_BACKEND_MODELS = {"resnet18": 64, "densenet121": 64, "inception_v3": 75, "unet": 64, "alexnet": 163}

_TORCH_BACKEND_SCRIPT = textwrap.dedent("""
    import json, os, sys
    assert os.environ["KERAS_BACKEND"] == "torch"
    import keras, torch

    def plain_keras_accepts_dots():
        try:
            keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="layer1.0.fc")])
            return True
        except KeyError:
            return False

    accepted_before = plain_keras_accepts_dots()
    import parity, keras_impl
    from keras.src.backend.torch.layer import TorchLayer
    fix_applied = getattr(TorchLayer, "_cnn_parity_dotted_names", False)
    model = parity.build("resnet18", framework="keras", input_size=(3, 64, 64))
    keys = [k for k, _ in model.named_parameters()]
    checks = {name: parity.check(name, frameworks=("keras",), onnx=False, batch=2, size=size).to_json()
              for name, size in json.loads(sys.argv[1]).items()}
    from parity.inference.check import targets
    from parity.devices import engine
    from keras.src.backend.torch import nn as keras_torch_nn
    from keras_impl._torch_backend import CopyFreeConv
    shipped = keras_torch_nn.conv

    def outputs_and_input_grad(conv):
        keras_torch_nn.conv = conv
        try:
            with torch.inference_mode():
                out = model(x, training=False)
            grad_x = x.clone().requires_grad_(True)
            model(grad_x, training=False).square().sum().backward()
            return out, grad_x.grad
        finally:
            keras_torch_nn.conv = shipped

    x = torch.randn(2, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    (ours, our_grad), (keras_out, keras_grad) = (outputs_and_input_grad(shipped),
                                                 outputs_and_input_grad(getattr(shipped, "original", shipped)))
    copy_free = {"applied": isinstance(shipped, CopyFreeConv), "same_output": bool(torch.equal(ours, keras_out)),
                 "grad_error": float((our_grad - keras_grad).abs().max() / keras_grad.abs().max())}
    from parity.bench import bench
    bench_rows = {t.runtime: t.status for t in bench("resnet18", frameworks="torch,keras", size=32, repeats=1,
                                                     warmup=0, compile=False, threads=1).runtimes}
    print(json.dumps({"backend": keras.backend.backend(), "is_torch_module": isinstance(model, torch.nn.Module),
                      "bench_rows": bench_rows, "copy_free_conv": copy_free,
                      "tensorflow_imported": "tensorflow" in sys.modules, "plain_keras_accepts_dots": accepted_before,
                      "fix_applied": fix_applied,
                      "parameter_keys": keys, "variables": len(model.variables),
                      "dotted_layer_names": sum("." in layer.name for layer in model.layers), "checks": checks,
                      "default_targets": targets(), "keras_engine": engine("keras")}))
""")


@pytest.fixture(scope="module")
def torch_backend_run():
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", _TORCH_BACKEND_SCRIPT, json.dumps(TORCH_BACKEND_MODELS)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", TORCH_BACKEND_MODELS)
def test_keras_impl_parity_on_the_torch_backend(torch_backend_run, name):
    report = torch_backend_run["checks"][name]
    assert report["passed"], report
    assert [r["target"] for r in report["results"]] == ["keras"]


def test_keras_impl_on_the_torch_backend_is_a_torch_module_without_tensorflow(torch_backend_run):
    run = torch_backend_run
    assert run["backend"] == "torch" and run["is_torch_module"]
    assert not run["tensorflow_imported"]  # keras_impl and the parity adapter need no TensorFlow there


def test_bench_of_torch_and_keras_on_the_torch_backend_needs_no_tensorflow(torch_backend_run):
    """--frameworks torch,keras --threads 1 once imported TensorFlow to size its thread pools."""
    assert torch_backend_run["bench_rows"] == {"torch": "ok", "torch:channels_last": "ok", "torch:compile": "skipped",
                                               "keras": "ok"}
    assert not torch_backend_run["tensorflow_imported"]


def test_check_leaves_out_the_keras_export_on_the_torch_backend(torch_backend_run):
    assert torch_backend_run["default_targets"] == ["keras", "tf", "onnx:torch", "onnx:tf"]
    assert torch_backend_run["keras_engine"] == "torch"


def test_dotted_layer_names_register_every_variable_with_torch(torch_backend_run):
    run = torch_backend_run
    assert run["dotted_layer_names"] > 0  # the layer names stay torch module paths
    assert len(run["parameter_keys"]) == run["variables"]
    if run["fix_applied"]:
        assert any(key.endswith(".layer1::0::conv1/kernel") for key in run["parameter_keys"])


def test_keras_impl_convolves_without_layout_copies_on_the_torch_backend(torch_backend_run):
    """keras_impl routes Keras' torch conv around its three copies per call (benchmarks/
    keras_torch_profile.py: resnet50 0.48x -> 0.67x of torch eager on a CPU); the output is
    Keras' own conv's, bit for bit, and gradients still flow."""
    run = torch_backend_run["copy_free_conv"]
    assert run["applied"] and run["same_output"]
    assert run["grad_error"] < 1e-5


def test_the_dotted_name_fix_is_applied_exactly_when_keras_needs_it(torch_backend_run):
    """Keras 3.15 refuses dotted names on the torch backend; once a Keras accepts them, keras_impl
    leaves TorchLayer alone (and keras_impl/_torch_backend.py can go)."""
    run = torch_backend_run
    assert run["fix_applied"] == (not run["plain_keras_accepts_dots"])


# --- fp16 / bf16: the reference-noise rule -------------------------------------------------------

def test_bf16_judges_at_three_times_torchs_own_noise_where_it_exceeds_the_policy():
    """GoogLeNet in bf16 (random weights, no residuals): torch autocast alone is 0.18 from
    float64 at 64x64 on a CPU, above the 5e-2 policy with nothing wrong; judged at the policy
    it would fail."""
    from parity.inference.precision import check_precision
    report = check_precision("googlenet", "bf16", size=64, runtimes=("torch:autocast",), timing_repeats=1)
    row = report.result("torch:autocast")
    assert row.normalized_error > report.threshold == 5e-2  # the policy alone fails it
    assert report.reference_noise > report.threshold / 3
    assert report.tolerance == pytest.approx(3 * report.reference_noise) and row.threshold == report.tolerance
    assert report.passed and any("judged at 3 x noise" in note for note in report.notes)


# --- keras_impl on the JAX backend -------------------------------------------------------------

# One subprocess on KERAS_BACKEND=jax: parity.check of keras_impl against torch_impl, a bench
# of torch and Keras (jax.jit), bf16 mixed precision, the layer probe and the device rules.
# Keras on JAX runs eagerly op by op in `check` (slow on a CPU): the default run checks
# resnet18 (and probes lenet); the slow run adds one model of each other kind of layer.
JAX_BACKEND_MODELS = {"resnet18": 32}
JAX_BACKEND_SLOW_MODELS = {"lenet": None, "googlenet": 64, "inception_v3": 75, "unet": 64, "densenet121": 64,
                           "alexnet": 163}

_JAX_BACKEND_SCRIPT = textwrap.dedent("""
    import json, os, sys
    assert os.environ["KERAS_BACKEND"] == "jax"
    import jax, keras
    import numpy as np
    import parity
    from parity import devices
    from parity.adapters import adapter
    from parity.bench import bench
    from parity.inference.check import targets
    from parity.inference.precision import check_precision
    models, probe = json.loads(sys.argv[1]), sys.argv[2]
    checks = {name: parity.check(name, frameworks=("keras",), onnx=False, batch=2, size=size).to_json()
              for name, size in models.items()}
    timed = bench("resnet18", frameworks="torch,keras", size=32, repeats=2, warmup=1, compile=False, threads=1)
    mixed = check_precision("resnet18", "bf16", size=32, runtimes=("keras:mixed",), timing_repeats=1)
    model = parity.build(probe, framework="keras")
    x = np.random.default_rng(0).standard_normal((1, *parity.registry.get(probe).input_size)).astype(np.float32)
    layers = adapter("keras").layer_outputs(model, x)
    precision = {}
    for enabled in (True, False):
        devices.set_tf32(enabled, ("keras",))
        precision[str(enabled)] = [jax.config.jax_default_matmul_precision, devices.jax_tf32_enabled()]
    try:
        devices.require("keras", "cuda")
        refused = None
    except devices.DeviceUnavailable as exc:
        refused = str(exc) if not devices.jax_gpus() else None
    print(json.dumps({"backend": keras.backend.backend(), "engine": devices.engine("keras"), "checks": checks,
                      "bench": {t.runtime: [t.status, t.error_vs_torch, t.note] for t in timed.runtimes},
                      "mixed": mixed.to_json(), "probe": {k: bool(np.isfinite(v).all()) for k, v in layers.items()},
                      "torch_probe": sorted(adapter("torch").layer_outputs(parity.build(probe, framework="torch"), x)),
                      "default_targets": targets(), "precision": precision, "refused": refused,
                      "tensorflow_imported": "tensorflow" in sys.modules}))
""")


def _jax_backend_run(models, probe):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _JAX_BACKEND_SCRIPT, json.dumps(models), probe],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jax_backend_run():
    return _jax_backend_run(JAX_BACKEND_MODELS, "lenet")


@pytest.mark.parametrize("name", JAX_BACKEND_MODELS)
def test_keras_impl_parity_on_the_jax_backend(jax_backend_run, name):
    report = jax_backend_run["checks"][name]
    assert report["passed"], report
    assert [r["target"] for r in report["results"]] == ["keras"]


def test_keras_on_the_jax_backend_in_bench_precision_and_the_layer_probe(jax_backend_run):
    run = jax_backend_run
    assert run["backend"] == run["engine"] == "jax" and not run["tensorflow_imported"]
    keras_row = run["bench"]["keras"]
    assert keras_row[0] == "ok" and keras_row[1] < 1e-5 and "jax.jit" in keras_row[2]
    mixed = run["mixed"]["results"][0]
    assert mixed["status"] == "ok" and mixed["passed"] and 0 < mixed["normalized_error"] < 5e-2
    assert "bfloat16" in mixed["note"]
    assert sorted(run["probe"]) == run["torch_probe"] and all(run["probe"].values())  # same layers, finite


def test_keras_on_the_jax_backend_maps_tf32_to_matmul_precision_and_refuses_a_missing_gpu(jax_backend_run):
    assert jax_backend_run["precision"] == {"True": ["tensorfloat32", True], "False": ["highest", False]}
    if jax_backend_run["refused"] is not None:
        assert "JAX sees no GPU" in jax_backend_run["refused"] and "refusing" in jax_backend_run["refused"]


def test_check_leaves_out_the_keras_export_on_the_jax_backend(jax_backend_run):
    assert "onnx:keras" not in jax_backend_run["default_targets"]
    assert jax_backend_run["default_targets"][0] == "keras"


@pytest.mark.slow
def test_keras_impl_parity_on_the_jax_backend_for_every_kind_of_layer():
    run = _jax_backend_run(JAX_BACKEND_SLOW_MODELS, "googlenet")
    failed = {name: report for name, report in run["checks"].items() if not report["passed"]}
    assert not failed, failed
    assert sorted(run["probe"]) == run["torch_probe"] and all(run["probe"].values())


# --- GPU ----------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("tf32", [False, True])
def test_bench_on_gpu_in_every_runtime(tf32):
    result = bench("resnet18", size=64, repeats=3, warmup=1, device="cuda", tf32=tf32, compile=False)
    assert not result.failed, [(t.runtime, t.status, t.note) for t in result.failed]
    for t in result.runtimes:
        if t.status == "ok":
            assert t.tf32 is tf32, (t.runtime, t.tf32)  # recorded, and set everywhere
            assert t.error_vs_torch < (1e-2 if tf32 else 1e-4)
    assert result.environment["gpu"]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_precision_on_gpu(dtype):
    from parity.inference.precision import check_precision
    report = check_precision("resnet18", dtype, size=64, device="cuda")
    assert report.passed, [(r.runtime, r.status, r.normalized_error, r.note) for r in report.results]
