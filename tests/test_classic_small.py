"""LeNet, AlexNet, VGG and NiN: builders, parameter counts, keys, native and ONNX parity, traps."""
import gc

import numpy as np
import pytest

import parity
from parity.adapters.base import to_nchw_outputs, to_nhwc
from conftest import assert_no_layout_transposes, assert_tolerance_pinned, normalized_error, recorded_onnx_exports
from parity.calibrate import calibrated_torch_model, seeded_input

FAMILIES = {
    "lenet": ["lenet"],
    "alexnet": ["alexnet"],
    "vgg": ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
    "nin": ["nin"],
}
ALL = [name for names in FAMILIES.values() for name in names]
DEFAULT = ["lenet", "nin", "alexnet", "vgg11", "vgg11_bn"]  # native parity, every default run
BIG_VGG = [name for name in FAMILIES["vgg"] if name not in DEFAULT]
TOLERANCE = 1e-5

# Measured at 64x64 / 67x67: the torch fp32 output of vgg19_bn is 1.2e-5 / 1.5e-5 away from the
# same torch model run in float64, keras and tf fp32 only 5.2e-6 / 6.0e-6; keras/tf vs torch
# fp32 is 1.3e-5 / 1.7e-5 (vgg16_bn 1.1e-5). The fp32 CPU threshold is below the reference's
# own rounding noise for these deep BatchNorm nets, so they are checked against float64 too.
NOISY_REFERENCE = ("vgg16_bn", "vgg19_bn")
NOISY_REFERENCE_REASON = "torch's fp32 rounding alone exceeds the 1e-5 policy for deep BN VGGs"

# Facts from torchvision's state_dict()s (num_batches_tracked left out of the counts).
TORCHVISION_KEYS = {
    "alexnet": {"features.0.weight": (64, 3, 11, 11), "features.10.weight": (256, 256, 3, 3),
                "classifier.1.weight": (4096, 9216), "classifier.6.weight": (1000, 4096)},
    "vgg11": {"features.0.weight": (64, 3, 3, 3), "features.18.weight": (512, 512, 3, 3),
              "classifier.0.weight": (4096, 25088), "classifier.6.bias": (1000,)},
    "vgg16": {"features.28.weight": (512, 512, 3, 3), "classifier.3.weight": (4096, 4096)},
    "vgg16_bn": {"features.1.running_var": (64,), "features.40.weight": (512, 512, 3, 3),
                 "features.41.weight": (512,), "classifier.0.weight": (4096, 25088)},
    "vgg19_bn": {"features.49.weight": (512, 512, 3, 3), "features.50.running_mean": (512,)},
}
TORCHVISION_KEY_COUNTS = {"alexnet": 16, "vgg11": 22, "vgg16": 32, "vgg16_bn": 84, "vgg19_bn": 102}

# Module paths defined once by this project (torch_impl/lenet.py, torch_impl/nin.py).
OWN_KEYS = {
    "lenet": {"features.0.weight": (6, 1, 5, 5), "features.3.weight": (16, 6, 5, 5),
              "classifier.0.weight": (120, 400), "classifier.2.weight": (84, 120),
              "classifier.4.weight": (10, 84), "classifier.4.bias": (10,)},
    "nin": {"features.0.0.weight": (96, 3, 11, 11), "features.0.2.weight": (96, 96, 1, 1),
            "features.0.4.weight": (96, 96, 1, 1), "features.2.0.weight": (256, 96, 5, 5),
            "features.4.0.weight": (384, 256, 3, 3), "classifier.1.0.weight": (1000, 384, 3, 3),
            "classifier.1.4.weight": (1000, 1000, 1, 1), "classifier.1.4.bias": (1000,)},
}
OWN_KEY_COUNTS = {"lenet": 10, "nin": 24}


# --- catalogue and builders ---------------------------------------------------------

TUTORIALS_OWN = {"lenet": ["lenet_cifar"], "alexnet": ["alexnet_half", "alexnet_d2l"],  # tests/test_tutorials.py
                 "vgg": ["vgg11_fc2048", "vgg13_fc2048", "vgg16_fc2048", "vgg19_fc2048", "vgg11_d2l"]}


def test_catalogue_lists_every_family():
    for family, names in FAMILIES.items():
        assert parity.list_models(family) == names + TUTORIALS_OWN.get(family, [])


@pytest.mark.parametrize("framework", ["torch", "keras", "tf"])
def test_every_builder_exists_under_the_same_name(framework):
    import importlib
    for name in ALL:
        module = importlib.import_module(f"{framework}_impl.{parity.registry.get(name).module}")
        assert callable(getattr(module, name)), f"{framework}_impl lacks {name}"


@pytest.mark.parametrize("name", ALL)
def test_torch_parameter_count_is_published(name):
    import torch
    with torch.device("meta"):
        model = parity.build(name)
    assert sum(p.numel() for p in model.parameters()) == parity.registry.get(name).published_params


@pytest.mark.parametrize("name", list(TORCHVISION_KEYS) + list(OWN_KEYS))
def test_torch_keys_and_shapes(name):
    import torch
    with torch.device("meta"):
        state = parity.build(name).state_dict()
    facts, counts = {**TORCHVISION_KEYS, **OWN_KEYS}[name], {**TORCHVISION_KEY_COUNTS, **OWN_KEY_COUNTS}
    for key, shape in facts.items():
        assert tuple(state[key].shape) == shape, key
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == counts[name]


# --- one calibrated torch model and its keras and tf copies per architecture -----------

class Trio:
    """A calibrated torch_impl model and keras_impl / tf_impl models loaded with its state.

    Keras models are built with unknown H, W where the architecture allows it (adaptive
    pooling follows the runtime size), so one model serves every test size; LeNet's Dense
    input fixes H, W, so it gets one Keras model per size.
    """

    def __init__(self, name):
        self.name, self.spec = name, parity.registry.get(name)
        self.channels = self.spec.input_size[0]
        size = self.spec.test_sizes[0]
        self.torch = calibrated_torch_model(name, input_size=(self.channels, size, size))
        self.state = parity.state_dict(self.torch)
        self.tf = parity.build(name, framework="tf")
        parity.load_state_dict(self.tf, self.state)
        self._keras, self._tf_sizes = {}, set()

    @property
    def dynamic_keras(self):
        return self.name != "lenet"

    def keras(self, size=None):
        size = size or self.spec.test_sizes[0]
        key = None if self.dynamic_keras else size
        if key not in self._keras:
            shape = (key, key, self.channels)
            model = parity.build(self.name, framework="keras", input_shape=shape)
            parity.load_state_dict(model, self.state)
            self._keras[key] = model
        return self._keras[key]

    def run(self, framework, x):
        size = x.shape[2]
        if framework == "torch":
            return parity.run(self.torch, x)[0]
        if framework == "keras":
            return parity.run(self.keras(size), x)[0]
        # The tf adapter caches one tf.function per model with reduce_retracing=True: a second
        # input size retraces with H, W unknown, which tf_impl.layers.adaptive_avg_pool2d cannot
        # take. Later sizes therefore run eagerly (same ops, static shapes).
        if not self._tf_sizes or size in self._tf_sizes:
            self._tf_sizes.add(size)
            return parity.run(self.tf, x)[0]
        import tensorflow as tf
        return to_nchw_outputs(self.tf(tf.constant(to_nhwc(x))).numpy())[0]


@pytest.fixture(scope="module",
                params=DEFAULT + [pytest.param(name, marks=pytest.mark.slow) for name in BIG_VGG])
def trio(request):
    models = Trio(request.param)
    yield models
    del models
    gc.collect()


def test_keras_and_tf_parameter_counts_are_published(trio):
    published = trio.spec.published_params
    assert sum(int(np.prod(w.shape)) for w in trio.keras().trainable_weights) == published
    assert sum(int(np.prod(v.shape)) for v in trio.tf.trainable_variables) == published


def test_keys_and_shapes_equal_in_all_three(trio):
    from parity.adapters import adapter_for
    shapes = {k: tuple(v.shape) for k, v in trio.state.items()}
    for model in (trio.keras(), trio.tf):
        assert {k: tuple(slot.shape) for k, slot in adapter_for(model).slots(model).items()} == shapes


def test_native_parity_even_and_odd(trio, request):
    if trio.name in NOISY_REFERENCE:
        request.applymarker(pytest.mark.xfail(reason=NOISY_REFERENCE_REASON, strict=False))
    for size in trio.spec.test_sizes:
        x = seeded_input((2, trio.channels, size, size), seed=size)
        ref = trio.run("torch", x)
        assert np.isfinite(ref).all() and np.abs(ref).max() > 1e-3, "degenerate reference"
        for framework in ("keras", "tf"):
            err = normalized_error(trio.run(framework, x), ref)
            assert err < TOLERANCE, f"{trio.name} {framework} at {size}x{size}: normalized error {err:.2e}"


@pytest.mark.slow
def test_deep_bn_vggs_match_the_float64_reference(trio):
    """keras and tf fp32 are within the policy of the exact (float64) function, even where
    torch's fp32 reference is not."""
    import copy

    import torch
    if trio.name not in NOISY_REFERENCE:
        pytest.skip("its fp32 parity test is not marked xfail")
    exact = copy.deepcopy(trio.torch).double().eval()
    for size in trio.spec.test_sizes:
        x = seeded_input((2, trio.channels, size, size), seed=size)
        with torch.no_grad():
            ref = exact(torch.from_numpy(x).double()).numpy()
        for framework in ("keras", "tf"):
            err = normalized_error(trio.run(framework, x), ref)
            assert err < TOLERANCE, f"{trio.name} {framework} at {size}x{size}: {err:.2e} from float64"


# --- ONNX: exports from all three frameworks, run in onnxruntime -----------------------

# tf2onnx holds about 50x the weight bytes while converting (NiN: 29 MB of weights, 1.5 GB;
# AlexNet's Keras export: ~3 minutes and ~15 GB here), so the big classifiers are slow tests.
# No export keeps a Transpose: the flatten (parity/onnx/fold.py), and torch's adaptive pool on a map
# it does not divide (alexnet 160 px, vgg11 64 px), GatherND between 2 Transposes, respelled
# per bin as Keras/TF write it (parity/onnx/canon/).


@pytest.mark.parametrize("name", ["lenet", "nin", pytest.param("alexnet", marks=pytest.mark.slow),
                                  pytest.param("vgg11", marks=pytest.mark.slow)])
def test_onnx_from_all_three_frameworks(name):
    with recorded_onnx_exports() as exports:
        report = parity.check(name, size=parity.registry.get(name).test_sizes[0])
    targets = {r.target: r for r in report.results}
    assert set(targets) == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    for r in report.results:
        assert r.error is None, f"{r.target}: {r.error}"
        assert r.passed, f"{r.target}: {r.normalized_error:.2e}"
    assert report.passed, report.notes
    assert_tolerance_pinned(report)
    assert_no_layout_transposes(exports)


# --- trap 1: the first Linear after a spatial flatten ----------------------------------

FLATTEN_TRAP = ("lenet", "alexnet")  # VGG's classifier.0 is the same mechanism, at 4x the cost


def _first_linear_kernel(model, framework, key):
    from tf_impl.layers import named_layers
    return model.get_layer(key).kernel if framework == "keras" else dict(named_layers(model))[key].weight


@pytest.mark.parametrize("trio", FLATTEN_TRAP, indirect=True)
def test_flatten_trap_first_linear_needs_chw_to_hwc_permutation(trio):
    """Keras and TF flatten NHWC as (H, W, C); torch's Linear expects (C, H, W) features.

    The transfer that the catalogue's flatten_linear drives passes the parity tests; here the
    first Linear gets what a naive converter writes, the plain (out, in) -> (in, out)
    transpose, and parity must break.
    """
    (key, (c, h, w)), = trio.spec.flatten_linear.items()
    canonical = trio.state[f"{key}.weight"]
    assert canonical.shape[1] == c * h * w and h * w > 1
    size = trio.spec.test_sizes[1]
    x = seeded_input((4, trio.channels, size, size), seed=3)
    ref = trio.run("torch", x)
    for framework, model in (("keras", trio.keras(size)), ("tf", trio.tf)):
        kernel = _first_linear_kernel(model, framework, key)
        permuted = np.array(kernel)
        assert normalized_error(trio.run(framework, x), ref) < TOLERANCE
        try:
            kernel.assign(np.ascontiguousarray(canonical.T))
            err = normalized_error(trio.run(framework, x), ref)
        finally:  # the other tests share these models
            kernel.assign(permuted)
        assert err > 100 * TOLERANCE, f"{framework}: unpermuted {key} should break parity; error only {err:.2e}"


def test_flatten_permutation_round_trips_bit_identically():
    trio = Trio("lenet")
    keras_state = parity.state_dict(trio.keras())
    tf_model = parity.build("lenet", framework="tf")
    parity.load_state_dict(tf_model, keras_state)
    back = parity.state_dict(tf_model)
    for key, value in trio.state.items():
        assert np.array_equal(back[key], value), key


# --- trap 2: adaptive average pooling at sizes whose bins do not divide ----------------

# (input H, W, output): overlapping uneven bins, upsampling bins, a dividing case
POOL_CASES = [(10, 13, 6), (4, 4, 6), (2, 2, 7), (3, 5, 7), (15, 9, 7), (1, 1, 6), (12, 18, 6), (7, 7, 7)]


def _torch_adaptive(x_nchw, out):
    import torch
    return torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x_nchw), out).numpy()


@pytest.mark.parametrize("h, w, out", POOL_CASES)
def test_adaptive_avg_pool_matches_torch_bins(h, w, out, rng):
    import tensorflow as tf

    from keras_impl.layers import AdaptiveAvgPool2D
    from tf_impl.layers import adaptive_avg_pool2d

    x = rng.standard_normal((2, 5, h, w), dtype=np.float32)
    ref = _torch_adaptive(x, out)
    keras_out = np.asarray(AdaptiveAvgPool2D(out)(to_nhwc(x))).transpose(0, 3, 1, 2)
    tf_out = adaptive_avg_pool2d(tf.constant(to_nhwc(x)), out).numpy().transpose(0, 3, 1, 2)
    assert np.abs(keras_out - ref).max() < 1e-6
    assert np.abs(tf_out - ref).max() < 1e-6


def test_keras_adaptive_pool_follows_the_runtime_size_in_a_graph(rng):
    import tensorflow as tf

    from keras_impl.layers import AdaptiveAvgPool2D
    layer = AdaptiveAvgPool2D(7)
    graph = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)])
    for h, w in [(10, 13), (2, 3), (14, 21)]:
        x = rng.standard_normal((1, 4, h, w), dtype=np.float32)
        y = graph(to_nhwc(x)).numpy().transpose(0, 3, 1, 2)
        assert np.abs(y - _torch_adaptive(x, 7)).max() < 1e-6, (h, w)


@pytest.mark.parametrize("h, w, out", [(10, 13, 6), (15, 9, 7), (11, 11, 6)])
def test_naive_average_pool_differs_from_torch_bins(h, w, out, rng):
    """The usual port, stride = H // out and kernel = H - (out - 1) * stride, gives torch's bins
    when out divides H (and by luck for a few sizes, e.g. 13 -> 6); elsewhere it does not."""
    from keras import layers
    x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
    stride = (h // out, w // out)
    kernel = (h - (out - 1) * stride[0], w - (out - 1) * stride[1])
    naive = np.asarray(layers.AveragePooling2D(kernel, stride)(to_nhwc(x))).transpose(0, 3, 1, 2)
    assert naive.shape == (2, 3, out, out)
    assert np.abs(naive - _torch_adaptive(x, out)).max() > 1e-2


def test_naive_average_pool_is_right_when_sizes_divide(rng):
    from keras import layers
    x = rng.standard_normal((2, 3, 14, 21), dtype=np.float32)
    naive = np.asarray(layers.AveragePooling2D((2, 3), (2, 3))(to_nhwc(x))).transpose(0, 3, 1, 2)
    assert np.abs(naive - _torch_adaptive(x, 7)).max() < 1e-6


@pytest.mark.parametrize("name, size, final", [("alexnet", 163, 4), ("vgg11", 67, 2)])
def test_test_sizes_exercise_uneven_adaptive_bins(name, size, final):
    """The catalogued test sizes end in a feature map that the adaptive pool cannot divide."""
    import torch
    spec = parity.registry.get(name)
    assert size in spec.test_sizes
    with torch.device("meta"):
        model = parity.build(name)
        features = model.features(torch.empty(1, 3, size, size, device="meta"))
    assert tuple(features.shape[2:]) == (final, final)
    assert model.avgpool.output_size % final != 0


# --- kwargs -------------------------------------------------------------------------

def test_lenet_in_channels_and_num_classes_in_all_three():
    torch_model = calibrated_torch_model("lenet", input_size=(3, 28, 28), in_channels=3, num_classes=5)
    state = parity.state_dict(torch_model)
    assert state["features.0.weight"].shape == (6, 3, 5, 5) and state["classifier.4.weight"].shape == (5, 84)
    x = seeded_input((2, 3, 28, 28), seed=5)
    import torch
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy()
    for framework in ("keras", "tf"):
        model = parity.build("lenet", framework=framework, in_channels=3, num_classes=5)
        parity.load_state_dict(model, state)
        y = np.asarray(model(to_nhwc(x)))
        assert y.shape == (2, 5) and normalized_error(y, ref) < TOLERANCE, framework


def test_nin_accepts_any_size_from_its_minimum():
    trio = Trio("nin")
    for size in (67, 130):
        x = seeded_input((1, 3, size, size), seed=size)
        ref = trio.run("torch", x)
        assert normalized_error(trio.run("keras", x), ref) < TOLERANCE
    with pytest.raises(parity.InputError, match="minimum 67x67"):
        parity.run(trio.torch, seeded_input((1, 3, 66, 66)))


@pytest.mark.parametrize("arch", ["VGG16", pytest.param("VGG19", marks=pytest.mark.slow)])
def test_keras_applications_vgg_import_reproduces_keras(arch):
    """keras.applications' VGG at 224 is torchvision's layout; fc1 reads an (H, W, C) flatten."""
    import keras

    import parity
    from parity.weights import from_keras_applications
    reference = getattr(keras.applications, arch)(weights=None, classifier_activation=None)
    name, state = from_keras_applications(reference)
    assert name == arch.lower()
    x = seeded_input((1, 3, 224, 224), seed=1)
    expected = np.asarray(reference(x.transpose(0, 2, 3, 1), training=False))
    for framework in ("torch", "keras", "tf"):
        model = parity.build(name, framework=framework)
        parity.load_state_dict(model, state)
        err = normalized_error(parity.run(model, x)[0], expected)
        assert err < 1e-5, f"{arch} -> {framework}: {err:.2e}"
