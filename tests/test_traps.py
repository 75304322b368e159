"""The numeric traps of the ResNet family. Each test fails when its rule is broken."""
import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

from conftest import keras_apply as _keras_apply
from conftest import nchw as _nchw
from conftest import nhwc as _nhwc
from parity import layouts
from tf_impl import layers as tfl


def _copy_conv(torch_conv, conv_var):
    conv_var.assign(layouts.from_canonical("conv", torch_conv.weight.detach().numpy()))


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 8, 16, 16), dtype=np.float32)


def _close(a, b):
    return np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1e-12)


# --- stride-2 padding: symmetric explicit padding, never "same" -----------------------

def test_stride2_conv_pads_symmetrically(x):
    torch.manual_seed(0)
    ref_conv = nn.Conv2d(8, 4, 3, stride=2, padding=1, bias=False)
    ref = ref_conv(torch.from_numpy(x)).detach().numpy()

    conv = tfl.Conv2d(8, 4, 3, stride=2, padding=1, bias=False)
    _copy_conv(ref_conv, conv.weight)
    assert _close(_nchw(conv(_nhwc(x))), ref)

    from keras_impl.layers import conv2d
    model, y = _keras_apply(lambda t: conv2d(t, 4, 3, stride=2, padding=1, bias=False, name="c"), _nhwc(x))
    model.get_layer("c").kernel.assign(conv.weight.numpy())
    assert _close(_nchw(model(_nhwc(x), training=False)), ref)

    # The trap: TF's "SAME" pads bottom/right only on even inputs, and lands elsewhere.
    same = tf.nn.conv2d(_nhwc(x), conv.weight, 2, "SAME")
    assert same.shape == (2, 8, 8, 4) and not _close(_nchw(same), ref)


@pytest.mark.parametrize("kernel, padding, dilation, uses_same", [
    (3, 1, 1, True), ((1, 7), (0, 3), 1, True), (3, 2, 2, True),  # "same" is torch's padding here
    (3, 2, 1, False), (2, 1, 1, False), (4, 2, 2, False),  # it is not: explicit ZeroPadding2D
])
def test_stride1_conv_uses_same_only_where_it_pads_symmetrically(x, kernel, padding, dilation, uses_same):
    from keras_impl.layers import conv2d
    torch.manual_seed(1)
    ref_conv = nn.Conv2d(8, 4, kernel, padding=padding, dilation=dilation, bias=False)
    ref = ref_conv(torch.from_numpy(x)).detach().numpy()
    model, _ = _keras_apply(lambda t: conv2d(t, 4, kernel, padding=padding, dilation=dilation, bias=False,
                                             name="c"), _nhwc(x))
    model.get_layer("c").kernel.assign(layouts.from_canonical("conv", ref_conv.weight.detach().numpy()))
    assert (model.get_layer("c").padding == "same") == uses_same
    assert _close(_nchw(model(_nhwc(x), training=False)), ref)


# --- max-pool padding is -inf --------------------------------------------------------

def test_maxpool_padding_is_negative_infinity(x):
    negative = -np.abs(x)  # a pre-activation stem can feed negative values
    ref = nn.MaxPool2d(3, 2, padding=1)(torch.from_numpy(negative)).numpy()
    assert _close(_nchw(tfl.max_pool2d(_nhwc(negative), 3, 2, padding=1)), ref)

    from keras_impl.layers import max_pool
    _, y = _keras_apply(lambda t: max_pool(t, 3, 2, padding=1, name="p"), _nhwc(negative))
    assert _close(_nchw(y), ref)

    zero_padded = tf.nn.max_pool2d(tf.pad(_nhwc(negative), [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
    assert not _close(_nchw(zero_padded), ref)


def _naive_ceil_out(size, k, s, p):
    """ceil_mode's output size without torch's rule that drops a window starting in the padding."""
    return -(-(size + 2 * p - k) // s) + 1


@pytest.mark.parametrize("size", [7, 8, 9, 10, 11])
def test_maxpool_ceil_mode_matches_torch(size):
    from keras_impl.layers import max_pool
    # all negative: a zero-padded pool would return zeros at the extra rows
    x = -1.0 - np.abs(np.random.default_rng(size).standard_normal((1, 2, size, size), dtype=np.float32))
    for kernel, stride, padding in [(3, 2, 0), (3, 2, 1), (2, 2, 0), (2, 2, 1)]:
        ref = nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)(torch.from_numpy(x)).numpy()
        y_tf = _nchw(tfl.max_pool2d(_nhwc(x), kernel, stride, padding, ceil_mode=True))
        _, y_keras = _keras_apply(lambda t: max_pool(t, kernel, stride, padding, ceil_mode=True, name="p"), _nhwc(x))
        for y in (y_tf, _nchw(y_keras)):
            assert y.shape == ref.shape and np.array_equal(y, ref), (size, kernel, stride, padding)


def test_maxpool_ceil_mode_wrong_versions_differ():
    """floor mode, TF's "SAME", a ceil that keeps the window starting in the padding, and
    zero instead of -inf for the extra rows each differ from torch in one of the cases above."""
    def pool(x, k, s, p, ceil_mode=True):
        return nn.MaxPool2d(k, s, p, ceil_mode=ceil_mode)(torch.from_numpy(x)).numpy()

    x8, x9 = (-1.0 - np.abs(np.random.default_rng(n).standard_normal((1, 2, n, n), dtype=np.float32)) for n in (8, 9))
    assert pool(x8, 3, 2, 0).shape == (1, 2, 4, 4) and pool(x8, 3, 2, 0, ceil_mode=False).shape == (1, 2, 3, 3)
    assert pool(x9, 2, 2, 1).shape[2] == 5 and _naive_ceil_out(9, 2, 2, 1) == 6  # torch drops the 6th window
    assert pool(x9, 3, 2, 0).shape[2] == 4 and tf.nn.max_pool2d(_nhwc(x9), 3, 2, "SAME").shape[1] == 5
    zero_padded = _nchw(tf.nn.max_pool2d(tf.pad(_nhwc(x8), [[0, 0], [0, 1], [0, 1], [0, 0]]), 3, 2, "VALID"))
    assert zero_padded.shape == (1, 2, 4, 4) and not _close(zero_padded, pool(x8, 3, 2, 0))


# --- BatchNorm epsilon ---------------------------------------------------------------

def test_batchnorm_epsilon_is_torchs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 8), dtype=np.float32) * 0.01
    var = np.full(8, 1e-4, np.float32)  # small variances make epsilon visible
    ref = nn.BatchNorm2d(8).eval()
    ref.running_var.copy_(torch.from_numpy(var))
    expected = _nhwc(ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy())

    bn = tfl.BatchNorm2d(8)
    bn.running_var.assign(var)
    assert _close(bn(x).numpy(), expected)

    from keras_impl.layers import batch_norm
    model, _ = _keras_apply(lambda t: batch_norm(t, name="bn"), x)
    model.get_layer("bn").moving_variance.assign(var)
    assert model.get_layer("bn").epsilon == 1e-5
    assert _close(np.asarray(model(x, training=False)), expected)

    keras_default = tf.nn.batch_normalization(x, 0.0, var, None, None, 1e-3).numpy()
    assert not _close(keras_default, expected)


def _torch_train_step(x_nhwc, momentum=0.1):
    ref = nn.BatchNorm2d(x_nhwc.shape[-1], momentum=momentum).train()
    ref(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)))
    return ref.running_mean.numpy(), ref.running_var.numpy()


def _keras_train_step(layer, x_nhwc):
    import keras
    inputs = keras.Input(shape=x_nhwc.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model(x_nhwc, training=True)
    return np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)


def test_batchnorm_training_update_matches_torch():
    """torch: running = 0.9 running + 0.1 batch, with the unbiased batch variance. Keras 3
    counts momentum the other way and stores the biased variance; tf.nn.moments is biased."""
    import keras

    from keras_impl.layers import TorchBatchNormalization
    x = np.random.default_rng(2).standard_normal((2, 3, 3, 3), dtype=np.float32) * 3 + 1  # n = 18 per channel
    mean, var = _torch_train_step(x)

    bn = tfl.BatchNorm2d(3)
    bn(x, training=True)
    assert np.allclose(bn.running_mean.numpy(), mean, atol=1e-6) and np.allclose(bn.running_var.numpy(), var, atol=1e-6)

    keras_mean, keras_var = _keras_train_step(TorchBatchNormalization(epsilon=1e-5, momentum=0.9, name="bn"), x)
    assert np.allclose(keras_mean, mean, atol=1e-6) and np.allclose(keras_var, var, atol=1e-6)

    # The wrong versions: Keras' own layer (biased variance) and torch's momentum given to Keras.
    _, biased = _keras_train_step(keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9), x)
    assert not np.allclose(biased, var, atol=1e-3)
    momentum_as_torch, _ = _keras_train_step(TorchBatchNormalization(epsilon=1e-5, momentum=0.1), x)
    assert not np.allclose(momentum_as_torch, mean, atol=1e-3)


def test_keras_impl_batch_norm_is_the_torch_rule_layer():
    import keras

    from keras_impl.layers import TorchBatchNormalization, batch_norm
    inputs = keras.Input(shape=(3, 3, 3))
    model = keras.Model(inputs, batch_norm(inputs, name="bn"))
    layer = model.get_layer("bn")
    assert isinstance(layer, TorchBatchNormalization) and layer.momentum == pytest.approx(0.9)
    assert layer.epsilon == 1e-5


# --- grouped convolution layout ------------------------------------------------------

def test_grouped_conv_layout(x):
    torch.manual_seed(3)
    ref_conv = nn.Conv2d(8, 12, 3, padding=1, groups=4, bias=False)
    ref = ref_conv(torch.from_numpy(x)).detach().numpy()
    conv = tfl.Conv2d(8, 12, 3, padding=1, groups=4, bias=False)
    _copy_conv(ref_conv, conv.weight)
    assert conv.weight.shape == (3, 3, 2, 12)
    assert _close(_nchw(conv(_nhwc(x))), ref)

    from keras_impl.layers import conv2d
    model, _ = _keras_apply(lambda t: conv2d(t, 12, 3, padding=1, groups=4, bias=False, name="g"), _nhwc(x))
    model.get_layer("g").kernel.assign(conv.weight.numpy())
    assert _close(_nchw(model(_nhwc(x), training=False)), ref)

    # Output channels are group-major; interleaving them (a plausible mistake) breaks parity.
    w = ref_conv.weight.detach().numpy()
    interleaved = w.reshape(4, 3, 2, 3, 3).transpose(1, 0, 2, 3, 4).reshape(12, 2, 3, 3)
    conv.weight.assign(layouts.from_canonical("conv", interleaved))
    assert not _close(_nchw(conv(_nhwc(x))), ref)


def test_grouped_conv_exports_from_keras_as_one_onnx_conv(x, tmp_path):
    """Keras' TF backend wraps grouped convs in a jit_compile function that tf2onnx cannot
    convert; the export inlines it (parity/onnx/from_tf.py) into a single grouped Conv."""
    import onnx

    from keras_impl.layers import conv2d
    from parity.adapters import adapter
    from parity.onnx.runtime import run, session
    model, expected = _keras_apply(lambda t: conv2d(t, 12, 3, padding=1, groups=4, bias=False, name="g"), _nhwc(x))
    path = tmp_path / "grouped.onnx"
    adapter("keras").export_onnx(model, path, x.shape, ("features",))
    graph = onnx.load(path).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 and onnx.helper.get_attribute_value(
        next(a for a in convs[0].attribute if a.name == "group")) == 4
    assert not [n for n in graph.node if n.op_type in ("Transpose", "Split", "Concat")]
    assert _close(run(session(path), x)[0], _nchw(expected))


@pytest.mark.parametrize("padding_value", ["-inf", "zero"])
def test_max_pool_padding_folds_into_the_onnx_max_pool_only_when_it_is_minus_inf(tmp_path, padding_value):
    """torch exports MaxPool(pads=...); Keras/TF pad with -inf and pool VALID. The export folds
    that Pad into the MaxPool (same op as torch's); a zero Pad (keras.applications' v2 stem)
    must stay, because zero and -inf padding differ on negative inputs."""
    import keras
    import onnx

    from keras_impl.layers import max_pool
    from parity.adapters import adapter
    from parity.onnx.runtime import run, session
    x = -1.0 - np.random.default_rng(5).random((2, 4, 9, 9), dtype=np.float32)  # all negative

    def build(t):
        if padding_value == "zero":
            return keras.layers.MaxPooling2D(3, 2)(keras.layers.ZeroPadding2D(1)(t))
        return max_pool(t, 3, 2, padding=1, name="pool")

    model, expected = _keras_apply(build, _nhwc(x))
    path = tmp_path / "pool.onnx"
    adapter("keras").export_onnx(model, path, x.shape, ("features",))
    graph = onnx.load(path).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Pad") == (0 if padding_value == "-inf" else 1), ops
    used = {name for node in graph.node for name in node.input}
    assert all(t.name in used for t in graph.initializer)  # the folded Pad's constants went with it
    assert _close(run(session(path), x)[0], _nchw(expected))


# --- dilation ------------------------------------------------------------------------

def test_dilated_conv(x):
    torch.manual_seed(4)
    ref_conv = nn.Conv2d(8, 4, 3, padding=2, dilation=2)
    ref = ref_conv(torch.from_numpy(x)).detach().numpy()
    conv = tfl.Conv2d(8, 4, 3, padding=2, dilation=2)
    _copy_conv(ref_conv, conv.weight)
    conv.bias.assign(ref_conv.bias.detach().numpy())
    assert _close(_nchw(conv(_nhwc(x))), ref)

    from keras_impl.layers import conv2d
    model, _ = _keras_apply(lambda t: conv2d(t, 4, 3, padding=2, dilation=2, name="d"), _nhwc(x))
    model.get_layer("d").kernel.assign(conv.weight.numpy())
    model.get_layer("d").bias.assign(conv.bias.numpy())
    assert _close(_nchw(model(_nhwc(x), training=False)), ref)

    undilated = tf.nn.conv2d(_nhwc(x), conv.weight, 1, [[0, 0], [1, 1], [1, 1], [0, 0]]) + conv.bias
    assert not _close(_nchw(undilated), ref)


# --- layouts are exact inverses ------------------------------------------------------

# Where canonical element [a, b, c, d] (torch: O, I, kH, kW; transposed conv: I, O, kH, kW)
# lands in the native array (TF/Keras: kH, kW, in, out). Written out by hand, not derived.
NATIVE_INDEX = {"conv": lambda a, b, c, d: (c, d, b, a), "conv_transpose": lambda a, b, c, d: (c, d, b, a),
                "linear": lambda a, b: (b, a)}


@pytest.mark.parametrize("kind,shape", [("conv", (8, 2, 3, 5)), ("conv_transpose", (4, 6, 2, 3)), ("linear", (7, 9))])
def test_layout_round_trip_is_bit_exact(kind, shape):
    w = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    native = layouts.from_canonical(kind, w)
    assert np.array_equal(layouts.to_canonical(kind, native), w)
    for index in np.ndindex(*shape):  # the pair is the right one, not just inverses of each other
        assert native[NATIVE_INDEX[kind](*index)] == w[index]


def test_a_wrong_inverse_pair_fails_the_layout_check():
    """(2, 3, 0, 1) / (2, 3, 0, 1) is its own inverse and round-trips exactly: only the
    element map catches it."""
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3)).astype(np.float32)
    wrong = w.transpose(2, 3, 0, 1)
    assert np.array_equal(wrong.transpose(2, 3, 0, 1), w)
    assert any(wrong[NATIVE_INDEX["conv"](*i)] != w[i] for i in np.ndindex(*w.shape))


def test_flatten_linear_permutation_matches_nhwc_flatten():
    rng = np.random.default_rng(6)
    fmap = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)  # N, C, H, W
    weight = rng.standard_normal((7, 60)).astype(np.float32)  # canonical (out, C*H*W)
    ref = fmap.reshape(2, -1) @ weight.T
    native = layouts.flatten_linear_from_canonical(weight, (3, 4, 5))
    y = _nhwc(fmap).reshape(2, -1) @ native
    assert np.allclose(y, ref, atol=1e-5)
    assert np.array_equal(layouts.flatten_linear_to_canonical(native, (3, 4, 5)), weight)
    assert not np.allclose(_nhwc(fmap).reshape(2, -1) @ weight.T, ref, atol=1e-3)
