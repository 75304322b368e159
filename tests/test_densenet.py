"""DenseNet: torchvision layout in all three frameworks, parity natively and through ONNX,
and import of keras.applications DenseNet121/169/201 (the `*_keras` variants)."""
import numpy as np
import pytest

import parity
from conftest import (assert_same_batchnorm_epsilon, assert_tolerance_pinned, randomize_keras_batch_norms,
                      recorded_onnx_exports, transposes)
from parity import tolerance
from parity.catalogue import registry

TORCHVISION = ("densenet121", "densenet161", "densenet169", "densenet201")
KERAS_VARIANTS = ("densenet121_keras", "densenet169_keras", "densenet201_keras")
FRAMEWORKS = ("torch", "keras", "tf")
TOL = tolerance.threshold("fp32", "cpu")

# Facts: torchvision state_dict() keys and shapes.
TORCHVISION_KEYS = {
    "densenet121": {
        "features.conv0.weight": (64, 3, 7, 7),
        "features.norm0.running_var": (64,),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1),
        "features.denseblock1.denselayer1.norm2.bias": (128,),
        "features.denseblock1.denselayer1.conv2.weight": (32, 128, 3, 3),
        "features.denseblock1.denselayer6.norm1.running_mean": (224,),
        "features.transition1.norm.weight": (256,),
        "features.transition1.conv.weight": (128, 256, 1, 1),
        "features.denseblock3.denselayer24.conv1.weight": (128, 992, 1, 1),
        "features.transition3.conv.weight": (512, 1024, 1, 1),
        "features.denseblock4.denselayer16.conv2.weight": (32, 128, 3, 3),
        "features.norm5.weight": (1024,),
        "classifier.weight": (1000, 1024),
        "classifier.bias": (1000,),
    },
    "densenet161": {"features.conv0.weight": (96, 3, 7, 7),
                    "features.denseblock1.denselayer1.conv1.weight": (192, 96, 1, 1),
                    "features.denseblock1.denselayer1.conv2.weight": (48, 192, 3, 3),
                    "features.denseblock4.denselayer24.conv2.weight": (48, 192, 3, 3),
                    "classifier.weight": (1000, 2208)},
    "densenet169": {"features.denseblock4.denselayer32.conv2.weight": (32, 128, 3, 3),
                    "features.transition3.conv.weight": (640, 1280, 1, 1),
                    "classifier.weight": (1000, 1664)},
    "densenet201": {"features.denseblock3.denselayer48.conv1.weight": (128, 1760, 1, 1),
                    "features.transition3.conv.weight": (896, 1792, 1, 1),
                    "classifier.weight": (1000, 1920)},
}
# BatchNorm, Conv and Linear modules of torchvision's densenet121; with num_batches_tracked
# its state_dict() has 121 * 5 + 120 + 2 = 727 entries.
DENSENET121_STATE_ENTRIES = 727 - 121


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def _weight_count(state):
    return sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var")))


@pytest.fixture(scope="module")
def densenet121_models():
    return {fw: parity.build("densenet121", framework=fw) for fw in FRAMEWORKS}


@pytest.fixture(scope="module")
def densenet121_onnx_report():
    """Native and ONNX targets at the small even size (the slowest thing here: three exports)."""
    spec = registry.get("densenet121")
    with recorded_onnx_exports() as exports:
        report = parity.check("densenet121", size=spec.test_sizes[0])
    report.exports = exports
    return report


# --- layout --------------------------------------------------------------------------

@pytest.mark.parametrize("name", TORCHVISION + KERAS_VARIANTS)
def test_torch_param_count_is_published(name):
    model = parity.build(name)
    assert sum(p.numel() for p in model.parameters()) == registry.get(name).published_params


@pytest.mark.parametrize("name", TORCHVISION)
def test_torch_keys_are_torchvision_keys(name):
    shapes = _shapes(parity.state_dict(parity.build(name)))
    for key, shape in TORCHVISION_KEYS[name].items():
        assert shapes.get(key) == shape, key


def test_densenet121_keys_and_shapes_equal_in_every_framework(densenet121_models):
    states = {fw: parity.state_dict(m) for fw, m in densenet121_models.items()}
    assert len(states["torch"]) == DENSENET121_STATE_ENTRIES
    for fw in ("keras", "tf"):
        assert _shapes(states[fw]) == _shapes(states["torch"]), fw
        assert _weight_count(states[fw]) == registry.get("densenet121").published_params, fw


def test_tf_named_layers_are_torch_module_paths(densenet121_models):
    from tf_impl.layers import named_layers
    torch_model = densenet121_models["torch"]
    torch_paths = [n for n, m in torch_model.named_modules() if list(m.parameters(recurse=False))]
    tf_paths = [path for path, _ in named_layers(densenet121_models["tf"])]
    assert sorted(tf_paths) == sorted(torch_paths)
    assert len(tf_paths) == len(set(tf_paths))


def test_round_trip_is_bit_identical(densenet121_models):
    rng = np.random.default_rng(0)
    state = {k: np.abs(rng.standard_normal(v.shape)).astype(np.float32) if k.endswith("running_var")
             else rng.standard_normal(v.shape).astype(np.float32)
             for k, v in parity.state_dict(densenet121_models["torch"]).items()}
    parity.load_state_dict(densenet121_models["torch"], state)
    parity.load_state_dict(densenet121_models["keras"], parity.state_dict(densenet121_models["torch"]))
    parity.load_state_dict(densenet121_models["tf"], parity.state_dict(densenet121_models["keras"]))
    back = parity.state_dict(densenet121_models["tf"])
    assert all(np.array_equal(back[k], v) for k, v in state.items())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TORCHVISION + KERAS_VARIANTS if n != "densenet121"])
def test_keys_and_shapes_equal_in_every_framework(name):
    states = {fw: parity.state_dict(parity.build(name, framework=fw)) for fw in FRAMEWORKS}
    for fw in ("keras", "tf"):
        assert _shapes(states[fw]) == _shapes(states["torch"]), fw
        assert _weight_count(states[fw]) == registry.get(name).published_params, fw


def test_min_size_runs(densenet121_models):
    import torch
    model = densenet121_models["torch"].eval()
    size = registry.get("densenet121").min_size
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 1000)
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, size - 1, size - 1))


# --- numerics traps --------------------------------------------------------------------

def _stem_pool_outputs(padding, x_nhwc):
    import keras
    import tensorflow as tf
    import torch

    import keras_impl.densenet as kd
    import tf_impl.densenet as td
    import torch_impl.densenet as pd

    torch_out = pd.stem_pool(padding)(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    inputs = keras.Input(shape=x_nhwc.shape[1:])
    keras_out = keras.Model(inputs, kd.stem_pool(inputs, padding, name="pool0"))(x_nhwc)
    tf_out = td.stem_pool(tf.constant(x_nhwc), padding)
    return [torch_out, keras.ops.convert_to_numpy(keras_out), tf_out.numpy()]


@pytest.mark.parametrize("padding", ["neg_inf", "zero"])
def test_stem_pool_padding_semantics(padding):
    x = -np.random.default_rng(0).uniform(1, 2, (1, 7, 7, 2)).astype(np.float32)  # negative inputs
    corner = x[0, :2, :2].max(axis=(0, 1))  # the top-left window covers 2x2 real pixels
    expected = corner if padding == "neg_inf" else np.zeros_like(corner)
    for out in _stem_pool_outputs(padding, x):
        assert out.shape == (1, 4, 4, 2)
        np.testing.assert_array_equal(out[0, 0, 0], expected)
        np.testing.assert_array_equal(out[0, 1, 1], x[0, 1:4, 1:4].max(axis=(0, 1)))


# --- parity ------------------------------------------------------------------------------

def test_densenet121_native_parity_even(densenet121_onnx_report):
    native = [r for r in densenet121_onnx_report.results if r.target in ("keras", "tf")]
    assert len(native) == 2 and all(r.passed for r in native), native


def test_densenet121_onnx_parity(densenet121_onnx_report):
    results = densenet121_onnx_report.results
    assert [r.target for r in results] == ["keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"]
    assert all(r.passed and r.error is None for r in results), results
    assert all(r.top1_agreement == 1.0 for r in results)
    assert_tolerance_pinned(densenet121_onnx_report)


def test_densenet121_onnx_exports_keep_no_layout_transposes(densenet121_onnx_report):
    """The dense blocks' channel concatenations stay on the NCHW channel axis."""
    exports = densenet121_onnx_report.exports
    assert len(exports) == 3 and not transposes(exports), transposes(exports)
    assert all(g.ops.count("Concat") >= 58 for g in exports.values())  # 6 + 12 + 24 + 16 dense layers


def test_densenet121_native_parity_odd():
    report = parity.check("densenet121", size=registry.get("densenet121").test_sizes[1], onnx=False)
    assert report.passed, report.results


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TORCHVISION + KERAS_VARIANTS if n != "densenet121"])
@pytest.mark.parametrize("which", [0, 1])
def test_native_parity(name, which):
    report = parity.check(name, size=registry.get(name).test_sizes[which], onnx=False)
    assert report.passed, report.results


# --- keras.applications ------------------------------------------------------------------

def _keras_application(name, size=64, seed=0):
    """A keras.applications DenseNet with random weights and non-trivial BN statistics."""
    import keras
    build = {"densenet121": keras.applications.DenseNet121, "densenet169": keras.applications.DenseNet169,
             "densenet201": keras.applications.DenseNet201}[name]
    model = build(weights=None, classifier_activation=None, input_shape=(size, size, 3))
    return randomize_keras_batch_norms(model, seed)


def _keras_application_output(model, x_nchw):
    from keras import ops
    return ops.convert_to_numpy(model(x_nchw.transpose(0, 2, 3, 1), training=False))


def _assert_reproduces_keras_application(keras_app, x):
    from parity.weights import from_keras_applications
    catalogue_name, state = from_keras_applications(keras_app)
    assert catalogue_name == f"{keras_app.name}_keras"
    reference = _keras_application_output(keras_app, x)
    assert np.abs(reference).max() > 1e-3
    for fw in FRAMEWORKS:
        model = parity.build(catalogue_name, framework=fw)
        parity.load_state_dict(model, state, strict=True)
        if fw == "torch":
            assert_same_batchnorm_epsilon(keras_app, model)
        error = tolerance.measure(parity.run(model, x)[0], reference, classifier=True)
        assert error.normalized <= TOL and error.top1_agreement == 1.0, (fw, error)


@pytest.fixture(scope="module")
def keras_densenet121():
    model = _keras_application("densenet121")
    assert model.name == "densenet121"
    return model


@pytest.fixture(scope="module")
def keras_input():
    return np.random.default_rng(1).standard_normal((2, 3, 64, 64), dtype=np.float32)


def test_import_keras_applications_densenet121(keras_densenet121, keras_input):
    _assert_reproduces_keras_application(keras_densenet121, keras_input)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet169", "densenet201"])
def test_import_keras_applications(name, keras_input):
    keras_app = _keras_application(name)
    assert keras_app.name == name
    _assert_reproduces_keras_application(keras_app, keras_input)


def test_keras_variant_epsilon_is_needed(keras_densenet121, keras_input):
    """With zero moving variance in the last BN, epsilon 1e-5 vs 1.001e-5 changes the logits."""
    from keras import ops

    from parity.weights import from_keras_applications
    final_variance = keras_densenet121.get_layer("bn").moving_variance
    saved = ops.convert_to_numpy(final_variance).copy()
    final_variance.assign(np.zeros_like(saved))
    try:
        catalogue_name, state = from_keras_applications(keras_densenet121)
        reference = _keras_application_output(keras_densenet121, keras_input)
    finally:
        final_variance.assign(saved)
    errors = {}
    for name in (catalogue_name, "densenet121"):
        model = parity.build(name)
        parity.load_state_dict(model, state)
        errors[name] = tolerance.measure(parity.run(model, keras_input)[0], reference).normalized
    assert errors[catalogue_name] <= TOL < errors["densenet121"], errors


def test_converter_rejects_unknown_layers():
    from parity.keras_applications.densenet import torch_path
    assert torch_path("conv4_block24_2_conv") == "features.denseblock3.denselayer24.conv2"
    assert torch_path("pool3_bn") == "features.transition2.norm"
    with pytest.raises(ValueError, match="conv6_weird"):
        torch_path("conv6_weird")
