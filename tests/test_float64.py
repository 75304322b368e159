"""float64 parity (issue 31, landing 1): `check(..., dtype="float64")` builds the model with
float64 variables and arithmetic in every framework and judges it against torch float64 at
the fp64 policy (1e-11), with fp32 rounding gone.

Measured here (calibrated weights, small sizes): faithful ports 4.9e-16 (lenet) to 9.6e-14
(inception_v3 at 80 px), where fp32 leaves 1e-7..1e-5. One float32 op anywhere shows at
fp32's rounding: Keras' UpSampling2D(bilinear), which computes in float32 whatever its input
and casts back, puts unet_bilinear 3.7e-8 off; keras_impl upsamples float64 maps itself
(BilinearUpsample2x), and the test below plants the Keras layer back to show the check sees it."""
import importlib

import numpy as np
import pytest

from parity.catalogue import registry
from parity.adapters import adapter
from parity.inference.check import FLOAT64_ONNX, check
from parity.tolerance import threshold

FP64 = threshold("fp64")
# inception_v1: LRN. resnext50_32x4d: grouped convolutions (TF's CPU kernels have no float64
# gradient for them: tf_impl convolves per group in float64). unet_bilinear: TF's bilinear
# resize returns float32 whatever its input (tf_impl interpolates float64 maps itself).
CASES = [("resnet18", 32), ("inception_v1", 57), ("googlenet", 57), ("densenet121", 32),
         ("resnext50_32x4d", 32), ("unet_bilinear", 32)]


def native_rows(report):
    return {r.target: r for r in report.results if ":" not in r.target}


@pytest.mark.parametrize("name, size", CASES)
def test_check_in_float64_every_framework_agrees_with_torch_float64(name, size):
    report = check(name, size=size, dtype="float64")
    assert report.dtype == "fp64" and report.reference_noise == 0.0
    rows = native_rows(report)
    assert set(rows) == {"keras", "tf"}
    for row in rows.values():
        assert row.error is None and row.tolerance == FP64 == 1e-11, row
        assert row.normalized_error < FP64, row
    onnx = [r for r in report.results if r.target.startswith("onnx:")]
    assert onnx and all(r.skipped == FLOAT64_ONNX for r in onnx)
    assert report.passed


def test_a_float32_op_in_a_float64_keras_model_fails_the_check(monkeypatch):
    """Keras' own bilinear UpSampling2D planted back into keras_impl's U-Net: its output is
    float64 again, so only the number gives it away (3.7e-8 against 1e-11); tf_impl passes."""
    import keras
    unet = importlib.import_module("keras_impl.unet")
    monkeypatch.setattr(unet, "BilinearUpsample2x",
                        lambda name: keras.layers.UpSampling2D(2, interpolation="bilinear", name=name))
    report = check("unet_bilinear", size=32, dtype="float64", onnx=False)
    rows = native_rows(report)
    assert rows["tf"].passed
    keras_row = rows["keras"]
    assert not keras_row.passed and 1e-9 < keras_row.normalized_error < 1e-6, keras_row
    assert keras_row.first_divergent_layer and keras_row.first_divergent_layer.startswith("decoder"), keras_row
    assert not report.passed


def test_a_float32_resize_in_a_float64_tf_model_fails_naming_the_layer_it_feeds(monkeypatch):
    """TF's bilinear resize planted back into tf_impl's U-Net: it returns float32 from float64
    maps, and the next convolution cannot take it. The row names the layer, not the crash."""
    import tensorflow as tf
    unet = importlib.import_module("tf_impl.unet")
    monkeypatch.setattr(unet, "resize_bilinear",
                        lambda x, size: tf.image.resize(x, size, method="bilinear", antialias=False))
    [row] = check("unet_bilinear", size=32, dtype="float64", frameworks=("tf",), onnx=False).results
    assert not row.passed and row.first_divergent_layer == "decoder.0.reduce", row
    assert row.error == ("Float64Error: float32 enters decoder.0.reduce in a float64 model: "
                         "an op before it computes in float32"), row.error


def test_a_float32_layer_in_a_float64_keras_model_is_named_by_compare(monkeypatch):
    """A layer built with dtype="float32" inside a float64 Keras model computes in float32 and
    hands float32 on; the next weighted layer casts it back. compare names the layer that
    received float32, and says so."""
    import keras

    from parity.calibrate import calibrated_torch_model, seeded_input
    from parity.inference.layerwise import compare
    unet = importlib.import_module("keras_impl.unet")
    monkeypatch.setattr(unet, "BilinearUpsample2x", lambda name: keras.layers.UpSampling2D(
        2, interpolation="nearest", name=name, dtype="float32"))
    reference = calibrated_torch_model("unet_bilinear", input_size=(3, 32, 32)).double()
    candidate = adapter("keras").build("unet_bilinear", input_size=(3, 32, 32), dtype="float64")
    adapter("keras").load_state_dict(candidate, adapter("torch").state_dict(reference))
    result = compare(reference, candidate, seeded_input((1, 3, 32, 32)).astype(np.float64))
    assert not result.passed and result.first_divergent_layer == "decoder.0.reduce", result
    assert result.cause_detail.startswith("float32 enters decoder.0.reduce"), result.cause_detail


def test_the_dtype_walk_of_a_torch_model_names_where_float32_enters():
    import torch
    from torch import nn

    from parity.inference.layerwise import narrowing

    class Narrow(nn.Module):  # an op with no weights that computes in float32
        def forward(self, x):
            return x.float()

    model = nn.Sequential(nn.Conv2d(3, 4, 3), Narrow(), nn.Conv2d(4, 4, 3).float()).to(torch.float64)
    model[2].float()
    x = np.zeros((1, 3, 8, 8))
    assert narrowing(model, x) == ("2", "float32 enters 2 in a float64 model: an op before it computes in float32")
    assert narrowing(model[:1], x) is None


def test_the_layer_walk_of_two_float64_models_stays_float64():
    """parity.compare judges two float64 models at the fp64 policy, layer by layer; the torch
    side's layer outputs once came back as float32, which put every layer 4.7e-8 off."""
    from parity.calibrate import calibrated_torch_model, seeded_input
    from parity.inference.layerwise import compare
    reference = calibrated_torch_model("resnet18", input_size=(3, 32, 32)).double()
    candidate = adapter("keras").build("resnet18", input_size=(3, 32, 32), dtype="float64")
    adapter("keras").load_state_dict(candidate, adapter("torch").state_dict(reference))
    result = compare(reference, candidate, seeded_input((1, 3, 32, 32)).astype(np.float64), layerwise=True)
    assert result.passed and result.tolerance == FP64 and result.first_divergent_layer is None
    assert len(result.layers) > 20 and max(e.normalized_error for e in result.layers) < 1e-13


def test_float64_from_the_command_line(capsys):
    from parity.cli import main
    assert main(["check", "lenet", "--dtype", "float64", "--no-onnx"]) == 0
    out = capsys.readouterr().out
    assert "fp64" in out and "PASS" in out


def test_the_float64_table_fits_80_columns_and_says_why_onnx_is_skipped():
    import os

    from rich.console import Console

    from parity.inference.check import ModelReport, TargetResult
    from parity.inference.commands import report_table
    results = [TargetResult(t, "logits", 2e-15, 3e-15, FP64, True, 3e-4, top1_agreement=1.0, seconds=1.2)
               for t in ("keras", "tf")]
    results += [TargetResult(t, "-", float("nan"), float("nan"), FP64, True, 0.0, skipped=FLOAT64_ONNX)
                for t in ("onnx:torch", "onnx:keras", "onnx:tf")]
    report = ModelReport("resnext101_64x4d", (1, 3, 224, 224), "cpu", dtype="fp64", results=results,
                         notes=["float64: the ONNX targets are skipped; the exports take and compute float32"])
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(report_table(report))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80, text
    assert "fp64" in text and text.count("skipped") == 4 and "nan" not in text, text


def test_an_unknown_dtype_is_refused(capsys):
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got 'float16'"):
        adapter("tf").build("lenet", dtype="float16")
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got 'float16'"):
        check("lenet", dtype="float16")
    from parity.cli import main
    assert main(["check", "lenet", "--dtype", "float16"]) == 2
    assert capsys.readouterr().err == "error: dtype must be float32 or float64; got 'float16'\n"  # one line


def test_the_float64_check_refuses_a_gpu():
    from parity.errors import ParityError
    with pytest.raises(ParityError, match="lenet: the float64 check runs on the CPU; got --device cuda"):
        check("lenet", dtype="float64", device="cuda")


def test_float64_policy_separates_the_faithful_ports_from_a_float32_op():
    # the policy's claim, in numbers: largest faithful error measured, smallest bug measured
    assert 100 * 9.6e-14 < FP64 < 3.7e-8 / 1000
    assert np.float64(1.0) + FP64 != 1.0  # representable well above float64's rounding unit


def test_a_float64_keras_build_is_float64_whatever_the_global_policy():
    """Restoring a dtype policy (parity.inference.lowprecision does, after bf16) leaves an explicit global
    "float32" policy, and Keras layers then ignore floatx: a float64 build came out float32
    in whichever xdist worker had run the bf16 tests first."""
    import keras
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = adapter("keras").build("lenet", dtype="float64")
        assert adapter("keras").dtype(model) == "float64"
        assert keras.config.dtype_policy().name == "float32"  # and the policy is as it was
    finally:
        keras.config.set_dtype_policy(previous)



@pytest.mark.slow
@pytest.mark.parametrize("name", registry.names())
def test_every_catalogue_model_passes_check_in_float64(name):
    """The whole catalogue at its first test size; benchmarks/check_all.py -- --dtype float64
    sweeps it at the default sizes, resumably (benchmarks/RESULTS.md)."""
    report = check(name, size=registry.get(name).test_sizes[0], dtype="float64", onnx=False)
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]
