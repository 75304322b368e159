"""Inception family: googlenet, inception_v1 (the paper's), inception_v3, inception_v3_keras.

Builders, parameter counts, canonical keys, native and ONNX parity, the keras.applications
InceptionV3 import, and the traps this family adds: ceil_mode max-pools, LocalResponseNorm,
average pools with and without the padding counted, auxiliary outputs in training mode.

Parity bound: the policy's 1e-5, or NOISE_FACTOR times the torch reference's own fp32
rounding (torch fp32 against torch fp64, same weights and input) where that is larger.
Deep BatchNorm networks without shortcuts (googlenet, inception_v3) with random calibrated
weights amplify rounding past 1e-5 in torch alone (docs/inception.md, "Measured errors");
a real mismatch is orders of magnitude larger than either.
"""
import copy
import functools

import numpy as np
import pytest
import torch

import parity
from conftest import (PINNED_TOLERANCE, assert_same_batchnorm_epsilon, assert_tolerance_pinned, keras_apply,
                      randomize_keras_batch_norms)
from conftest import recorded_onnx_exports, transposes
from conftest import nchw as _nchw
from conftest import nhwc as _nhwc
from conftest import normalized_error as _normalized
from parity import tolerance
from parity.catalogue import registry
from parity.calibrate import calibrated_torch_model, seeded_input

TOL = tolerance.threshold("fp32", "cpu")
NOISE_FACTOR = tolerance.NOISE_FACTOR  # measured worst error / noise: 1.8 (docs/inception.md)
FAMILY = ("googlenet", "inception_v1", "inception_v3", "inception_v3_keras")
FRAMEWORKS = ("torch", "keras", "tf")

# Facts from torchvision's state_dict()s.
TORCHVISION_KEYS = {
    "googlenet": {"conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_var": (64,),
                  "inception3a.branch3.1.conv.weight": (32, 16, 3, 3), "inception4e.branch4.1.bn.bias": (128,),
                  "inception5b.branch2.1.conv.weight": (384, 192, 3, 3), "fc.weight": (1000, 1024)},
    "inception_v3": {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
                     "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7), "Mixed_7c.branch3x3dbl_3b.bn.weight": (384,),
                     "AuxLogits.conv1.conv.weight": (768, 128, 5, 5), "AuxLogits.fc.weight": (1000, 768),
                     "fc.weight": (1000, 2048)},
}


# --- shared helpers ---------------------------------------------------------------------

def _keras_apply(build, x_nchw):
    return keras_apply(build, _nhwc(x_nchw))[1]


def reference_noise(torch_model, x):
    """Normalized error of the torch reference itself: fp32 against fp64, same weights and input."""
    return tolerance.reference_noise(torch_model, x)


def parity_bound(noise):
    return tolerance.effective(TOL, noise)


def assert_report_within_bound(report, noise):
    assert_tolerance_pinned(report)
    assert parity_bound(noise) <= PINNED_TOLERANCE[report.model]
    for r in report.results:
        assert r.error is None, f"{report.model} {r.target}: {r.error}"
        assert r.normalized_error <= parity_bound(noise), \
            f"{report.model} {r.target} at {report.input_shape}: {r.normalized_error:.2e} (reference noise {noise:.1e})"


@functools.lru_cache(maxsize=None)
def three(name, size=None):
    """torch, keras and tf models of a catalogue entry, built once per session. Keras graphs of
    fixed-size models are built for `size` (their spec's first test size by default)."""
    spec = registry.get(name)
    size = size or spec.test_sizes[0]
    return {framework: parity.build(name, framework=framework, input_size=(3, size, size))
            for framework in FRAMEWORKS}


def _trainable_count(model):
    import keras
    if isinstance(model, torch.nn.Module) and not isinstance(model, keras.Model):
        return sum(p.numel() for p in model.parameters())
    if isinstance(model, keras.Model):
        return sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


# --- builders, parameter counts, keys ---------------------------------------------------

@pytest.mark.parametrize("name", list(TORCHVISION_KEYS))
def test_torch_keys_and_shapes_are_torchvisions(name):
    with torch.device("meta"):
        state = parity.build(name, aux_logits=True).state_dict()
    for key, shape in TORCHVISION_KEYS[name].items():
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("name", ["googlenet", "inception_v3", "inception_v3_keras"])
def test_parameter_count_is_published(name):
    from parity.weights.commands import count_parameters
    assert count_parameters(name) == registry.get(name).published_params


def test_aux_heads_and_defaults():
    from parity.weights.commands import count_parameters
    with torch.device("meta"):
        assert parity.build("googlenet").aux1 is None  # our builder's default: no heads
        assert _trainable_count(parity.build("googlenet", aux_logits=True)) == 13_004_888
        assert _trainable_count(parity.build("inception_v3", aux_logits=False)) == 23_834_568
    assert count_parameters("inception_v3") == 27_161_264  # torchvision's default keeps AuxLogits


def test_inception_v1_differs_from_googlenet_as_documented():
    """No BatchNorm (two parameters per channel) but conv biases (one), and 5x5 branch3 convs."""
    from torch_impl.googlenet import BLOCKS
    with torch.device("meta"):
        googlenet = parity.build("googlenet", aux_logits=True)
        v1 = parity.build("inception_v1")
    bn_channels = sum(m.num_features for m in googlenet.modules() if isinstance(m, torch.nn.BatchNorm2d))
    wider_branch3 = sum((25 - 9) * b.ch5x5red * b.ch5x5 for b in BLOCKS.values())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in v1.modules())
    assert _trainable_count(v1) == _trainable_count(googlenet) - bn_channels + wider_branch3
    state = v1.state_dict()
    assert state["inception3a.branch3.1.conv.weight"].shape == (32, 16, 5, 5)
    assert state["aux1.conv.conv.bias"].shape == (128,) and state["aux2.fc1.weight"].shape == (1024, 2048)


@pytest.mark.parametrize("name", FAMILY)
def test_keys_shapes_and_counts_equal_in_every_framework(name):
    models = three(name)
    states = {f: parity.state_dict(m) for f, m in models.items()}
    shapes = {f: {k: v.shape for k, v in s.items()} for f, s in states.items()}
    assert shapes["keras"] == shapes["torch"]
    assert shapes["tf"] == shapes["torch"]
    counts = {f: _trainable_count(m) for f, m in models.items()}
    assert counts["keras"] == counts["tf"] == counts["torch"], counts


# --- native parity ------------------------------------------------------------------------

def checked(name, size, onnx=False, batch=1):
    """parity.check exactly as `parity check` runs it, and the noise of its torch reference."""
    with recorded_onnx_exports() as exports:
        report = parity.check(name, size=size, onnx=onnx, batch=batch)
    report.exports = exports
    return report, report.reference_noise


def checked_with_state(name, size, state, onnx=True, batch=1):
    """parity.check on given weights (its `weights=` file) and the noise of that reference."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/{name}.safetensors"
        parity.save_state(state, path)
        report = parity.check(name, size=size, onnx=onnx, batch=batch, weights=path)
    return report, report.reference_noise


# googlenet's odd size runs in test_googlenet_onnx_parity_all_targets, with the native targets
@pytest.mark.parametrize("name, size", [("googlenet", 64), ("inception_v1", 64), ("inception_v1", 57)])
def test_native_parity_even_and_odd(name, size):
    assert size in registry.get(name).test_sizes
    report, noise = checked(name, size)
    assert {r.target for r in report.results} == {"keras", "tf"}
    assert_report_within_bound(report, noise)


@functools.lru_cache(maxsize=None)
def v3_state(name):
    size = registry.get(name).test_sizes[0]
    return parity.state_dict(calibrated_torch_model(name, input_size=(3, size, size)))


# inception_v3_keras at 75 runs in every framework in test_import_keras_applications_inception_v3
@pytest.mark.parametrize("name, size", [
    ("inception_v3", 80), ("inception_v3", 75), ("inception_v3_keras", 80),
    pytest.param("inception_v3_keras", 75, marks=pytest.mark.slow)])
def test_native_parity_even_and_odd_v3(name, size):
    """One build per framework for both sizes (these graphs take any size): the comparison
    parity.check makes, with calibrated weights."""
    assert size in registry.get(name).test_sizes
    models, state = three(name), v3_state(name)
    for model in models.values():
        parity.load_state_dict(model, state)
    x = seeded_input((1, 3, size, size), size)
    ref = parity.run(models["torch"], x)[0]
    assert ref.shape == (1, 1000) and np.abs(ref).max() > 1e-3
    noise = reference_noise(models["torch"], x)
    assert parity_bound(noise) <= PINNED_TOLERANCE[name]
    for framework in ("keras", "tf"):
        err = _normalized(parity.run(models[framework], x)[0], ref)
        assert err <= parity_bound(noise), f"{framework} at {size}: {err:.2e} (reference noise {noise:.1e})"


def test_googlenet_onnx_parity_all_targets():
    """The smallest model of the family at its odd test size, batch 2 (dynamic batch axis)."""
    size = min(registry.get("googlenet").test_sizes)
    report, noise = checked("googlenet", size, onnx=True, batch=2)
    assert {r.target for r in report.results} == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    assert_report_within_bound(report, noise)
    assert len(report.exports) == 3 and not transposes(report.exports), transposes(report.exports)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("inception_v1", 57), ("inception_v3", 75)])
def test_onnx_parity_all_targets_slow(name, size):
    if name == "inception_v3":  # calibrate.py cannot run AuxLogits below 299x299: pass our weights
        report, noise = checked_with_state(name, size, v3_state(name))
    else:
        report, noise = checked(name, size, onnx=True)
    assert {r.target for r in report.results} == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    assert_report_within_bound(report, noise)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["googlenet", "inception_v1", "inception_v3"])
def test_onnx_exports_keep_no_layout_transposes(name, tmp_path):
    import onnx
    for framework in ("keras", "tf"):
        path = tmp_path / f"{name}.{framework}.onnx"
        parity.export_onnx(parity.build(name, framework=framework, input_size=(3, 75, 75)), path, (1, 3, 75, 75))
        graph = onnx.load(path).graph
        transposes = [n.name for n in graph.node if n.op_type == "Transpose"]
        assert not transposes, f"{framework} export of {name} keeps layout transposes {transposes}"


# --- keras.applications import ------------------------------------------------------------

def _keras_applications_inception_v3(size, seed=0):
    """keras.applications.InceptionV3 with random weights and random, non-trivial BN statistics."""
    import keras
    keras.utils.set_random_seed(seed)
    model = keras.applications.InceptionV3(weights=None, classifier_activation=None, input_shape=(size, size, 3))
    return randomize_keras_batch_norms(model, seed)  # its BNs have no gamma (scale=False)


def test_import_keras_applications_inception_v3():
    from keras import ops

    from parity.weights import from_keras_applications
    size = 75
    reference_model = _keras_applications_inception_v3(size)
    x = seeded_input((2, 3, size, size), 7)
    reference = ops.convert_to_numpy(reference_model(_nhwc(x), training=False))
    assert np.abs(reference).max() > 1e-2

    name, state = from_keras_applications(reference_model)
    assert name == "inception_v3_keras"
    assert np.all(state["Mixed_7c.branch_pool.bn.weight"] == 1.0)  # keras has no BN scale
    for framework, model in three(name).items():
        parity.load_state_dict(model, state, strict=True)
        if framework == "torch":
            assert_same_batchnorm_epsilon(reference_model, model)
        err = _normalized(parity.run(model, x)[0], reference)
        assert err <= TOL, f"{framework}: {err:.2e} from keras.applications.InceptionV3"

    # The trap the variant exists for: inception_v3's pools count the padding, and miss.
    with_padding_counted = parity.build("inception_v3", aux_logits=False)
    parity.load_state_dict(with_padding_counted, state)
    assert _normalized(parity.run(with_padding_counted, x)[0], reference) > 1e-3


# --- traps --------------------------------------------------------------------------------

POOLS = [  # (kernel, stride, padding, input size): every googlenet max-pool, ceil_mode=True
    (3, 2, 0, 32), (3, 2, 0, 14), (3, 2, 0, 8), (2, 2, 0, 3), (3, 1, 1, 5)]


@pytest.mark.parametrize("kernel, stride, padding, size", POOLS)
def test_ceil_mode_max_pool_matches_torch(kernel, stride, padding, size):
    import tensorflow as tf

    from keras_impl.layers import max_pool
    from tf_impl.layers import max_pool2d
    x = -np.abs(np.random.default_rng(size).standard_normal((2, 3, size, size), dtype=np.float32)) - 1.0
    ceil = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)(torch.from_numpy(x)).numpy()
    floor = torch.nn.MaxPool2d(kernel, stride, padding)(torch.from_numpy(x)).numpy()
    if stride > 1:
        assert ceil.shape != floor.shape  # the sizes are chosen so that ceil_mode matters

    y_tf = _nchw(max_pool2d(tf.constant(_nhwc(x)), kernel, stride, padding, ceil_mode=True))
    y_keras = _nchw(_keras_apply(lambda t: max_pool(t, kernel, stride, padding, ceil_mode=True, name="p"), x))
    for y in (y_tf, y_keras):
        assert y.shape == ceil.shape
        assert np.array_equal(y, ceil)  # -inf padding: inputs are all negative, zeros would win


def test_googlenet_pools_use_ceil_mode_in_every_framework():
    """Feature-map sizes after each max-pool of googlenet at 57x57 equal torch's."""
    import keras
    size = 57
    torch_model = parity.build("googlenet").eval()
    seen = {}
    for pool in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):
        getattr(torch_model, pool).register_forward_hook(
            lambda m, i, o, pool=pool: seen.__setitem__(pool, tuple(o.shape[2:])))
    with torch.inference_mode():
        torch_model(torch.zeros(1, 3, size, size))
    assert seen == {"maxpool1": (14, 14), "maxpool2": (7, 7), "maxpool3": (3, 3), "maxpool4": (2, 2)}
    keras_model = three("googlenet", size)["keras"]
    assert isinstance(keras_model, keras.Model)
    for pool, hw in seen.items():
        assert tuple(keras_model.get_layer(pool).output.shape[1:3]) == hw, pool


@pytest.mark.parametrize("size", [5, 4, 3, 2, 1])
def test_local_response_norm_matches_torch(size):
    import tensorflow as tf

    from keras_impl.googlenet import LocalResponseNorm
    from tf_impl.googlenet import local_response_norm
    x = np.random.default_rng(size).standard_normal((2, 7, 5, 5), dtype=np.float32) * 2
    alpha, beta, k = 0.5, 0.75, 1.5  # large alpha, so the window and the 1/size both show
    ref = torch.nn.LocalResponseNorm(size, alpha, beta, k)(torch.from_numpy(x)).numpy()

    y_tf = _nchw(local_response_norm(tf.constant(_nhwc(x)), size, alpha, beta, k))
    y_keras = _nchw(_keras_apply(lambda t: LocalResponseNorm(size, alpha, beta, k, name="lrn")(t), x))
    assert _normalized(y_tf, ref) < 1e-6
    assert _normalized(y_keras, ref) < 1e-6

    # The trap: tf.nn's LRN has a symmetric window of depth_radius and does not divide
    # alpha by size; the nearest mapping is exact only for odd sizes.
    naive = _nchw(tf.nn.local_response_normalization(_nhwc(x), depth_radius=size // 2, bias=k,
                                                     alpha=alpha / size, beta=beta))
    if size % 2:
        assert _normalized(naive, ref) < 1e-5
    else:
        assert _normalized(naive, ref) > 1e-3


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_branch_pool_count_include_pad_matches_torch(count_include_pad):
    import tensorflow as tf

    from keras_impl.inception import avg_pool_3x3 as keras_pool
    from tf_impl.inception import avg_pool_3x3 as tf_pool
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 7), dtype=np.float32) + 3.0
    pool = lambda flag: torch.nn.functional.avg_pool2d(  # noqa: E731
        torch.from_numpy(x), 3, 1, 1, count_include_pad=flag).numpy()
    ref, other = pool(count_include_pad), pool(not count_include_pad)
    assert _normalized(other, ref) > 0.1  # the border pixels tell the two apart

    y_tf = _nchw(tf_pool(tf.constant(_nhwc(x)), count_include_pad))
    y_keras = _nchw(_keras_apply(lambda t: keras_pool(t, count_include_pad, name="pool"), x))
    assert _normalized(y_tf, ref) < 1e-6
    assert _normalized(y_keras, ref) < 1e-6


# --- auxiliary outputs in training mode ---------------------------------------------------

def _train_mode(model, x):
    model.train()
    with torch.no_grad():
        out = model(torch.from_numpy(x).to(next(model.parameters()).dtype))
    model.eval()
    assert out._fields in (("logits", "aux_logits2", "aux_logits1"), ("logits", "aux_logits"))  # torchvision's
    return tuple(o.numpy() for o in out)


def _train_mode_outputs(models, x):
    """Each framework's training-mode outputs as tuples of numpy arrays, and the noise of
    each torch output (fp32 against fp64, both in training mode)."""
    from keras import ops
    outs = {"torch": _train_mode(models["torch"], x)}
    outs["keras"] = tuple(ops.convert_to_numpy(o) for o in models["keras"](_nhwc(x), training=True))
    outs["tf"] = tuple(o.numpy() for o in models["tf"](_nhwc(x), training=True))
    in_fp64 = _train_mode(copy.deepcopy(models["torch"]).double(), x)
    return outs, [_normalized(y, y64) for y, y64 in zip(outs["torch"], in_fp64)]


def _aux_models(name, size, **kwargs):
    models = {f: parity.build(name, framework=f, input_size=(3, size, size), dropout=0.0, **kwargs)
              for f in FRAMEWORKS}
    state = parity.state_dict(models["torch"])
    for framework in ("keras", "tf"):
        parity.load_state_dict(models[framework], state)
    return models


def _assert_train_outputs(outs, noise, n_outputs):
    for framework, out in outs.items():
        assert isinstance(out, tuple) and len(out) == n_outputs, framework
        assert all(o.shape == outs["torch"][0].shape for o in out), framework
    for framework in ("keras", "tf"):
        for i, (y, ref) in enumerate(zip(outs[framework], outs["torch"])):
            err = _normalized(y, ref)
            assert err <= parity_bound(noise[i]), f"{framework} output {i}: {err:.2e} (noise {noise[i]:.1e})"
    assert _normalized(outs["torch"][1], outs["torch"][0]) > 1e-2  # a swap with the logits would show


def test_inception_v1_training_outputs_match_in_order():
    """No BatchNorm and no dropout: training mode is deterministic, so (logits, aux2, aux1)
    compare at the policy's tolerance; aux1 is the head on inception4a."""
    size = 64
    models = _aux_models("inception_v1", size, dropout_aux=0.0)
    x = seeded_input((2, 3, size, size), 3)
    heads = {}

    def keep_first(head):  # the fp32 run; the fp64 copy inherits the hook
        def hook(module, inputs, output):
            heads.setdefault(head, output.detach().numpy())
        return hook

    for head in ("aux1", "aux2"):
        getattr(models["torch"], head).register_forward_hook(keep_first(head))
    outs, noise = _train_mode_outputs(models, x)
    assert np.array_equal(outs["torch"][1], heads["aux2"]) and np.array_equal(outs["torch"][2], heads["aux1"])
    assert _normalized(outs["torch"][1], outs["torch"][2]) > 1e-2  # a swap would show
    assert max(noise) < TOL / NOISE_FACTOR  # so the policy's tolerance applies unchanged
    _assert_train_outputs(outs, noise, 3)
    for framework, model in models.items():  # inference: the logits alone
        assert len(parity.run(model, x)) == 1, framework


@pytest.mark.slow
def test_googlenet_training_outputs_order():
    """BatchNorm uses batch statistics in training mode; same batch, same semantics
    (biased variance), so outputs still agree closely, in torchvision's order."""
    size = 64
    models = _aux_models("googlenet", size, aux_logits=True, dropout_aux=0.0)
    _assert_train_outputs(*_train_mode_outputs(models, seeded_input((4, 3, size, size), 3)), 3)


@pytest.mark.slow
def test_inception_v3_training_outputs_order():
    size = 299  # AuxLogits needs a 17x17 Mixed_6e map
    models = _aux_models("inception_v3", size)
    _assert_train_outputs(*_train_mode_outputs(models, seeded_input((2, 3, size, size), 3)), 2)


def test_keras_inception_v3_rejects_static_size_too_small_for_aux():
    with pytest.raises(ValueError, match="AuxLogits"):
        parity.build("inception_v3", framework="keras", input_shape=(75, 75, 3))


def test_keras_layer_probe_follows_the_inference_graph():
    """The auxiliary head cannot run on an 80x80 input (its 5x5 conv sees a 0x0 map) and does not
    run in inference: `parity diagnose`/`selftest` probe only the layers inference uses."""
    from parity.adapters import adapter
    from parity.calibrate import seeded_input
    model = parity.build("inception_v3", framework="keras", input_size=(3, 80, 80))
    outputs = adapter("keras").layer_outputs(model, seeded_input((1, 3, 80, 80), 1))
    assert "Mixed_7c.branch_pool.conv" in outputs and not any(k.startswith("AuxLogits") for k in outputs)
