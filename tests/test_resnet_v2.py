"""ResNet v2 (pre-activation) and keras.applications' ResNet v1 (`*_keras`): builders,
canonical keys, lossless transfer, parity natively and through ONNX, the zero-padded stem
pool, and weight import from keras.applications."""
import numpy as np
import pytest

import parity
from conftest import assert_native_parity, assert_tolerance_pinned, normalized_error, randomize_keras_batch_norms
from conftest import assert_same_batchnorm_epsilon, recorded_onnx_exports, transposes
from conftest import three as _three
from parity.calibrate import calibrated_torch_model, seeded_input

V2 = parity.list_models("resnet_v2")
KERAS_V1 = parity.list_models("resnet_keras")
SMALL = ["resnet18_v2", "resnet50_v2", "resnet50_keras"]
LARGE = [n for n in V2 + KERAS_V1 if n not in SMALL]
FRAMEWORKS = ("torch", "keras", "tf")


_BUILT = {}


def three(name):
    """Calibrated torch model and its keras and tf copies, built once per test session."""
    if name not in _BUILT:
        _BUILT[name] = _three(name)
    return _BUILT[name]


# --- catalogue, module paths, structure (torch on the meta device: no memory, no init) -----

def _meta_state(name, **kwargs):
    import torch
    with torch.device("meta"):
        model = parity.build(name, **kwargs)
    return model, {k: tuple(v.shape) for k, v in model.state_dict().items()}


# Facts of the module paths documented in torch_impl/resnet_v2.py and docs/resnet_v2.md.
V2_KEYS = {
    "resnet50_v2": {"conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,), "layer1.0.preact.running_var": (64,),
                    "layer1.0.downsample.weight": (256, 64, 1, 1), "layer1.0.downsample.bias": (256,),
                    "layer1.2.conv2.weight": (64, 64, 3, 3), "layer1.2.conv3.bias": (256,),
                    "layer2.0.downsample.weight": (512, 256, 1, 1), "layer3.5.bn2.running_mean": (256,),
                    "post_bn.weight": (2048,), "fc.weight": (1000, 2048)},
    "resnet18_v2": {"conv1.bias": (64,), "layer1.1.preact.weight": (64,), "layer2.0.downsample.weight": (128, 64, 1, 1),
                    "layer2.1.conv1.weight": (128, 128, 3, 3), "layer4.1.conv2.bias": (512,),
                    "post_bn.running_var": (512,), "fc.weight": (1000, 512)},
    "resnet50_keras": {"conv1.bias": (64,), "bn1.running_var": (64,), "layer1.0.downsample.0.bias": (256,),
                       "layer1.0.downsample.1.weight": (256,), "layer2.0.conv1.weight": (128, 256, 1, 1),
                       "layer2.0.conv1.bias": (128,), "layer4.2.bn3.running_var": (2048,), "fc.weight": (1000, 2048)},
}
V2_ABSENT = {"resnet50_v2": ["layer1.1.downsample.weight", "bn1.weight", "layer1.0.bn3.weight", "layer1.0.conv1.bias"],
             "resnet18_v2": ["layer1.0.downsample.weight", "layer1.0.conv3.weight"],
             "resnet50_keras": ["post_bn.weight", "layer1.0.preact.weight", "layer1.1.downsample.0.weight"]}


@pytest.mark.parametrize("name", list(V2_KEYS))
def test_module_paths(name):
    _, shapes = _meta_state(name)
    for key, shape in V2_KEYS[name].items():
        assert shapes.get(key) == shape, key
    for key in V2_ABSENT[name]:
        assert key not in shapes, key


@pytest.mark.parametrize("name", [n for n in V2 + KERAS_V1 if parity.registry.get(n).published_params])
def test_parameter_count_is_keras_applications(name):
    from parity.weights.commands import count_parameters
    assert count_parameters(name) == parity.registry.get(name).published_params


def _strides(model, stage, part):
    return [getattr(unit, part).stride[0] for unit in getattr(model, stage)]


def test_v2_stride_sits_on_the_last_unit_of_a_stage():
    model, shapes = _meta_state("resnet50_v2")
    assert _strides(model, "layer1", "conv2") == [1, 1, 2]
    assert _strides(model, "layer3", "conv2") == [1, 1, 1, 1, 1, 2]
    assert _strides(model, "layer4", "conv2") == [1, 1, 1]
    projections = sorted(k for k in shapes if k.endswith("downsample.weight"))
    assert projections == [f"layer{s}.0.downsample.weight" for s in range(1, 5)]


def test_keras_v1_stride_sits_on_the_first_1x1_conv():
    model, _ = _meta_state("resnet50_keras")
    assert _strides(model, "layer1", "conv1") == [1, 1, 1]
    assert _strides(model, "layer2", "conv1") == [2, 1, 1, 1]
    assert _strides(model, "layer2", "conv2") == [1, 1, 1, 1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_conv2d_same_needs_an_odd_kernel(framework):
    import importlib
    module = importlib.import_module(f"{framework}_impl.resnet_v2")
    with pytest.raises(ValueError, match="odd kernel"):
        if framework == "keras":
            import keras
            module.conv2d_same(keras.Input((8, 8, 3)), 4, 2, name="c")
        else:
            module.conv2d_same(3, 4, 2)


# --- the three frameworks agree ---------------------------------------------------------

@pytest.mark.parametrize("name", SMALL)
def test_keys_and_shapes_are_equal_in_the_three(name):
    models, state = three(name)
    for framework in ("keras", "tf"):
        native = parity.state_dict(models[framework])
        assert native.keys() == state.keys()
        assert all(native[k].shape == state[k].shape for k in state)


@pytest.mark.parametrize("name", SMALL)
def test_native_parity_even_and_odd(name):
    models, _ = three(name)
    assert_native_parity(models, parity.registry.get(name).test_sizes, batch=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_native_parity_even_and_odd_large(name):
    assert_native_parity(_three(name)[0], parity.registry.get(name).test_sizes, batch=1)


@pytest.mark.parametrize("name", ["resnet18_v2", "resnet50_keras"])
def test_lossless_round_trip(name):
    models, state = three(name)
    tf_model = parity.build(name, framework="tf")
    parity.load_state_dict(tf_model, parity.state_dict(models["keras"]))
    torch_model = parity.build(name)
    parity.load_state_dict(torch_model, parity.state_dict(tf_model))
    back = parity.state_dict(torch_model)
    assert back.keys() == state.keys()
    for key in state:
        assert back[key].dtype == state[key].dtype and np.array_equal(back[key], state[key]), key


def test_include_top_false_returns_the_post_activated_trunk():
    models, _ = _three("resnet18_v2", include_top=False)
    x = seeded_input((1, 3, 64, 64))
    outs = {f: parity.run(m, x)[0] for f, m in models.items()}
    assert outs["torch"].shape == (1, 512, 2, 2) and outs["torch"].min() >= 0  # after post_bn + ReLU
    for f in ("keras", "tf"):
        assert normalized_error(outs[f], outs["torch"]) < 1e-5


@pytest.mark.parametrize("name", ["resnet18_v2", pytest.param("resnet50_v2", marks=pytest.mark.slow)])
def test_onnx_from_all_three_frameworks(name):
    with recorded_onnx_exports() as exports:
        report = parity.check(name, size=parity.registry.get(name).test_sizes[1], batch=2)
    assert len(exports) == 3 and not transposes(exports), transposes(exports)
    assert_tolerance_pinned(report)
    targets = {r.target: r for r in report.results}
    assert set(targets) == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    assert report.passed, report.notes
    for r in report.results:
        assert r.error is None, r.error
        assert r.passed, f"{r.target}: {r.normalized_error:.2e}"


# --- the stem trap: zero padding before a max-pool is not torch's -inf padding ------------

def _negative_feature_map():
    return -1.0 - np.random.default_rng(0).random((1, 4, 7, 7), dtype=np.float32)  # all < 0


def _numpy_zero_padded_max_pool(x):
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = (padded.shape[2] - 3) // 2 + 1
    return np.array([[[[padded[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(out)]
                       for i in range(out)] for c in range(x.shape[1])] for n in range(x.shape[0])])


def _stem_pools(x_nchw):
    """{framework: (zero-padded pool, -inf-padded pool)} of one NCHW map, each as NCHW numpy."""
    import keras
    import tensorflow as tf
    import torch

    import keras_impl.layers
    import keras_impl.resnet_v2
    import tf_impl.layers
    import tf_impl.resnet_v2
    import torch_impl.resnet_v2

    x = torch.from_numpy(x_nchw)
    nhwc = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    to_nchw = lambda y: np.asarray(y).transpose(0, 3, 1, 2)  # noqa: E731
    inputs = keras.Input((None, None, x_nchw.shape[1]))
    keras_zero = keras.Model(inputs, keras_impl.resnet_v2.zero_padded_max_pool(inputs, name="p"))
    keras_inf = keras.Model(inputs, keras_impl.layers.max_pool(inputs, 3, 2, padding=1, name="p"))
    return {
        "torch": (torch_impl.resnet_v2.zero_padded_max_pool(x).numpy(),
                  torch.nn.MaxPool2d(3, 2, padding=1)(x).numpy()),
        "keras": (to_nchw(keras_zero(nhwc)), to_nchw(keras_inf(nhwc))),
        "tf": (to_nchw(tf_impl.resnet_v2.zero_padded_max_pool(tf.constant(nhwc))),
               to_nchw(tf_impl.layers.max_pool2d(tf.constant(nhwc), 3, 2, padding=1))),
    }


def test_stem_pool_pads_with_zeros_not_minus_inf():
    x = _negative_feature_map()
    reference = _numpy_zero_padded_max_pool(x)
    for framework, (zero_padded, inf_padded) in _stem_pools(x).items():
        np.testing.assert_array_equal(zero_padded, reference, err_msg=framework)
        assert np.all(zero_padded[:, :, 0, :] == 0), framework  # border windows see the zero padding
        assert np.all(inf_padded < 0), framework  # -inf padding never wins
        assert not np.allclose(zero_padded, inf_padded), framework


def test_stem_padding_semantics_change_the_model(monkeypatch):
    """The v2 stem pools conv1's raw (negative-capable) output, so the trap is not academic."""
    import torch

    import torch_impl.resnet_v2
    model = calibrated_torch_model("resnet18_v2", input_size=(3, 64, 64))
    x = seeded_input((1, 3, 57, 57))
    zero_padded = parity.run(model, x)[0]
    monkeypatch.setattr(torch_impl.resnet_v2, "zero_padded_max_pool",
                        lambda y: torch.nn.functional.max_pool2d(y, 3, 2, padding=1))
    inf_padded = parity.run(model, x)[0]
    assert normalized_error(inf_padded, zero_padded) > 1e-3


# --- keras.applications import --------------------------------------------------------------

def _keras_application(factory, input_size, seed=0):
    """A keras.applications model with random weights and non-trivial BN statistics."""
    import keras
    model = getattr(keras.applications, factory)(weights=None, input_shape=(input_size, input_size, 3),
                                                 classifier_activation=None)
    return randomize_keras_batch_norms(model, seed)


def _assert_reproduces(factory, expected_name, frameworks, input_size=64, batch=2):
    from keras import ops

    from parity.weights import from_keras_applications
    reference_model = _keras_application(factory, input_size)
    x = seeded_input((batch, 3, input_size, input_size), seed=7)
    reference = ops.convert_to_numpy(reference_model(x.transpose(0, 2, 3, 1), training=False))
    name, state = from_keras_applications(reference_model)
    assert name == expected_name
    assert np.abs(reference).max() > 1e-3 and np.isfinite(reference).all(), "degenerate reference"
    for framework in frameworks:
        model = parity.build(name, framework=framework)
        parity.load_state_dict(model, state, strict=True)
        if framework == "torch":
            assert_same_batchnorm_epsilon(reference_model, model)
        err = normalized_error(parity.run(model, x)[0], reference)
        assert err < 1e-5, f"{framework} vs keras.applications {factory}: normalized error {err:.2e}"
        if framework == "keras":
            assert model.count_params() == reference_model.count_params()


@pytest.mark.parametrize("factory, name", [("ResNet50V2", "resnet50_v2"), ("ResNet50", "resnet50_keras")])
def test_keras_applications_import(factory, name):
    _assert_reproduces(factory, name, FRAMEWORKS)


DEEP_APPLICATIONS = [("ResNet101V2", "resnet101_v2"), ("ResNet152V2", "resnet152_v2"),
                     ("ResNet101", "resnet101_keras"), ("ResNet152", "resnet152_keras")]
# The 152-layer importers differ from the 101-layer ones only in blocks per stage: -m slow.
DEEPEST = ("resnet152_v2", "resnet152_keras")


@pytest.mark.parametrize("factory, name", [pytest.param(f, n, marks=pytest.mark.slow) if n in DEEPEST else (f, n)
                                           for f, n in DEEP_APPLICATIONS])
def test_keras_applications_import_deep(factory, name):
    # keras_impl and tf_impl share their unit code with the 50-layer models above and equal
    # torch_impl natively (test_native_parity_even_and_odd_large); all three here is -m slow.
    _assert_reproduces(factory, name, ("torch",), input_size=32, batch=1)


@pytest.mark.slow
@pytest.mark.parametrize("factory, name", DEEP_APPLICATIONS)
def test_keras_applications_import_deep_all_frameworks(factory, name):
    _assert_reproduces(factory, name, ("keras", "tf"), input_size=32, batch=1)


def test_keras_application_layer_names_map_to_module_paths():
    from parity.keras_applications.resnet import torch_path
    assert torch_path("conv1_conv", preact=True) == "conv1"
    assert torch_path("conv2_block1_preact_bn", preact=True) == "layer1.0.preact"
    assert torch_path("conv3_block4_0_conv", preact=True) == "layer2.3.downsample"
    assert torch_path("conv4_block23_2_conv", preact=True) == "layer3.22.conv2"
    assert torch_path("post_bn", preact=True) == "post_bn"
    assert torch_path("conv1_bn", preact=False) == "bn1"
    assert torch_path("conv5_block3_3_bn", preact=False) == "layer4.2.bn3"
    assert torch_path("conv2_block1_0_bn", preact=False) == "layer1.0.downsample.1"
    assert torch_path("predictions", preact=False) == "fc"
    with pytest.raises(ValueError, match="conv1_bn"):
        torch_path("conv1_bn", preact=True)  # a v2 stem has no BN
    with pytest.raises(ValueError, match="post_bn"):
        torch_path("post_bn", preact=False)


def test_our_own_keras_model_is_not_a_keras_application():
    from parity.weights import from_keras_applications
    models, _ = three("resnet18_v2")
    with pytest.raises(ValueError, match="keras_impl model"):
        from_keras_applications(models["keras"])
