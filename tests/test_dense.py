"""Dense prediction (issue 5): stage features, ResNet-FPN, U-Net, dilated convolutions.

Every numeric trap of these models has its own small test: torch's nearest-resize rule,
transposed-conv layout and output size, bilinear coordinates, pad-to-skip placement.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_no_layout_transposes, recorded_onnx_exports
from conftest import nchw as _nchw
from conftest import nhwc as _nhwc
from conftest import normalized_error as _error

import parity
from parity import layouts
from parity.adapters import adapter
from parity.calibrate import calibrated_torch_model, seeded_input
from parity.onnx import from_tf, runtime

FPN_OUTPUTS = ("p2", "p3", "p4", "p5", "pool")
TOL = 1e-5


def _shapes(model, framework):
    return {key: tuple(slot.shape) for key, slot in adapter(framework).slots(model).items()}


# --- catalogue and builders -------------------------------------------------------------

def test_catalogue_entries():
    assert parity.list_models("fpn") == ["resnet18_fpn", "resnet34_fpn", "resnet50_fpn", "resnet101_fpn",
                                         "fpn_shared_head"]
    assert set(parity.list_models("unet")) == {"unet", "unet_bilinear"}
    assert set(parity.list_models("dilated")) == {"hdc_net", "resnet50_dilated"}
    for name in parity.list_models("fpn"):  # seed 000's FPN has no pooled level (tests/test_tutorials.py)
        assert parity.registry.get(name).outputs == (FPN_OUTPUTS[:4] if name == "fpn_shared_head" else FPN_OUTPUTS)
    for family in ("fpn", "unet", "dilated"):
        assert not any(parity.registry.get(n).classifier for n in parity.list_models(family))


FULL_SIZE = ("resnet18_fpn", "resnet34_fpn", "resnet50_fpn", "resnet101_fpn", "unet", "unet_bilinear",
             "resnet50_dilated")


@pytest.mark.parametrize("name,kwargs", [
    ("unet", {"base_width": 8}), ("unet_bilinear", {"base_width": 8, "batch_norm": False}), ("hdc_net", {}),
    # the strict loads of the parity tests check resnet18_fpn's keys by default
    *(pytest.param(n, {}, marks=pytest.mark.slow) for n in FULL_SIZE),
])
def test_builders_share_keys_and_shapes(name, kwargs):
    reference = {k: tuple(v.shape) for k, v in parity.build(name, **kwargs).state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    for framework in ("keras", "tf"):
        assert _shapes(parity.build(name, framework, **kwargs), framework) == reference, framework


# Facts of torchvision's resnet_fpn_backbone(...) state_dict (norm_layer=BatchNorm2d).
TORCHVISION_FPN_KEYS = {
    "resnet18_fpn": {"body.conv1.weight": (64, 3, 7, 7), "body.layer4.1.bn2.running_var": (512,),
                     "fpn.inner_blocks.0.0.weight": (256, 64, 1, 1), "fpn.inner_blocks.3.0.weight": (256, 512, 1, 1),
                     "fpn.layer_blocks.3.0.weight": (256, 256, 3, 3), "fpn.layer_blocks.3.0.bias": (256,)},
    "resnet50_fpn": {"body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
                     "body.layer4.2.conv3.weight": (2048, 512, 1, 1),
                     "fpn.inner_blocks.0.0.weight": (256, 256, 1, 1), "fpn.inner_blocks.3.0.weight": (256, 2048, 1, 1),
                     "fpn.inner_blocks.3.0.bias": (256,), "fpn.layer_blocks.0.0.weight": (256, 256, 3, 3)},
}
# The ResNet's keys without fc.weight/fc.bias, plus 4 x 2 inner and 4 x 2 layer convs.
TORCHVISION_FPN_KEY_COUNTS = {"resnet18_fpn": 102 - 2 + 16, "resnet50_fpn": 267 - 2 + 16}
# resnet50's published 25,557,032 without fc (2,049,000), plus the FPN's 3,344,384.
RESNET50_FPN_PARAMS = 25_557_032 - 2_049_000 + (256 + 512 + 1024 + 2048 + 4) * 256 + 4 * (256 * 256 * 9 + 256)


@pytest.mark.parametrize("name", list(TORCHVISION_FPN_KEYS))
def test_fpn_keys_are_torchvisions(name):
    with torch.device("meta"):
        model = parity.build(name)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, shape in TORCHVISION_FPN_KEYS[name].items():
        assert state[key] == shape, key
    assert len(state) == TORCHVISION_FPN_KEY_COUNTS[name]
    assert not any(k.startswith(("body.fc.", "body.avgpool")) for k in state)
    if name == "resnet50_fpn":
        assert sum(p.numel() for p in model.parameters()) == RESNET50_FPN_PARAMS == 26_852_416


# --- stage features ------------------------------------------------------------------------

def test_stage_features_agree_in_three_frameworks():
    import tensorflow as tf

    from keras_impl.features import resnet_stage_features as keras_features
    from tf_impl.features import resnet_stage_features as tf_features
    from torch_impl.features import resnet_stage_features as torch_features

    size = 64
    reference_model = calibrated_torch_model("resnet18", input_size=(3, size, size))
    state = parity.state_dict(reference_model)
    x = seeded_input((1, 3, size, size), 1)
    with torch.no_grad():
        ref = torch_features(reference_model, torch.from_numpy(x))
    assert list(ref) == ["c2", "c3", "c4", "c5"]
    assert [v.shape[-1] for v in ref.values()] == [size // 4, size // 8, size // 16, size // 32]

    keras_model, tf_model = parity.build("resnet18", "keras"), parity.build("resnet18", "tf")
    parity.load_state_dict(keras_model, state)
    parity.load_state_dict(tf_model, state)
    outputs = {"keras": keras_features(keras_model)(_nhwc(x), training=False),
               "tf": tf_features(tf_model, tf.constant(_nhwc(x)))}
    for framework, features in outputs.items():
        assert sorted(features) == ["c2", "c3", "c4", "c5"], framework
        for name, value in ref.items():
            assert _error(_nchw(features[name]), value.numpy()) <= TOL, (framework, name)

    with torch.no_grad():
        partial = torch_features(reference_model, torch.from_numpy(x), {"layer2": "c3"})
    assert list(partial) == ["c3"] and sorted(keras_features(keras_model, {"layer2": "c3"}).output) == ["c3"]
    with pytest.raises(ValueError, match="layer1"):
        tf_features(tf_model, tf.constant(_nhwc(x)), {"layer5": "c6"})


# --- native and ONNX parity ------------------------------------------------------------------

def _randomize_conv_biases(model):
    """The FPN initialises its conv biases to zero (as torchvision); make a bias mix-up visible."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.normal_(0.0, 0.1, generator=gen)


def _errors_of_all_targets(name, sizes, onnx_sizes, tmp_path, exports=None, **kwargs):
    """{(target, size, output): normalized error} against the calibrated torch reference;
    `exports` (a dict) receives the recorded ONNX graphs.

    Like parity.check, but with builder kwargs (a narrower U-Net keeps the default run
    short) and one calibrated model and one native build per framework for all sizes."""
    outputs = parity.registry.get(name).outputs
    torch_model = calibrated_torch_model(name, input_size=(3, max(sizes), max(sizes)), **kwargs)
    _randomize_conv_biases(torch_model)
    state = parity.state_dict(torch_model)
    models = {"torch": torch_model}
    for framework in ("keras", "tf"):
        models[framework] = parity.build(name, framework, **kwargs)
        parity.load_state_dict(models[framework], state)
    errors = {}
    for size in sizes:
        x = seeded_input((1, 3, size, size), 1)
        reference = parity.run(torch_model, x)
        assert all(np.abs(r).max() > 1e-3 for r in reference), "degenerate reference"
        results = {framework: parity.run(models[framework], x) for framework in ("keras", "tf")}
        for framework in (models if size in onnx_sizes else ()):
            path = tmp_path / f"{name}.{size}.{framework}.onnx"
            with recorded_onnx_exports() as recorded:
                parity.export_onnx(models[framework], path, x.shape)
            (exports if exports is not None else {}).update(recorded)
            session = runtime.session(path)
            assert [o.name for o in session.get_outputs()] == list(outputs), framework
            results[f"onnx:{framework}"] = runtime.run(session, x)
        for target, ys in results.items():
            assert len(ys) == len(outputs), target
            errors.update({(target, size, out): _error(y, ref) for out, y, ref in zip(outputs, ys, reference)})
    return errors


def _assert_all_pass(errors, expected_rows):
    assert len(errors) == expected_rows
    failed = {key: err for key, err in errors.items() if not err <= TOL}
    assert not failed, failed


@pytest.fixture(scope="module")
def fpn_targets(tmp_path_factory):
    exports = {}
    errors = _errors_of_all_targets("resnet18_fpn", (64, 70), (70,), tmp_path_factory.mktemp("fpn"), exports)
    return errors, exports


def test_resnet18_fpn_parity_native_and_onnx(fpn_targets):
    """Native at 64 and 70; ONNX from all three frameworks at 70 (odd pyramid sizes 5 and 9)."""
    _assert_all_pass(fpn_targets[0], (2 + 2 + 3) * len(FPN_OUTPUTS))


def test_resnet18_fpn_onnx_exports_keep_no_layout_transposes(fpn_targets):
    """Keras/TF's nearest resize (Gathers between Transposes) is respelled as torch's Resize
    (parity/onnx/canon/)."""
    assert_no_layout_transposes(fpn_targets[1])


@pytest.mark.parametrize("name", ["unet", "unet_bilinear"])
def test_unet_parity_native_and_onnx(name, tmp_path):
    """base_width 16 (same graph, 1/16 of the weights); encoder sizes at 70: 35, 17, 8, 4.
    The exports (transposed convs, bilinear resize, pad-to-skip) keep no layout transposes."""
    exports = {}
    errors = _errors_of_all_targets(name, (64, 70), (70,), tmp_path, exports, base_width=16)
    _assert_all_pass(errors, 2 + 2 + 3)
    assert_no_layout_transposes(exports)  # tf_impl's bilinear x2: parity/onnx/canon/


def test_hdc_net_parity_native_and_onnx(tmp_path):
    exports = {}
    _assert_all_pass(_errors_of_all_targets("hdc_net", (57,), (57,), tmp_path, exports), 2 + 3)
    assert_no_layout_transposes(exports)


def test_unet_without_batch_norm_agrees(tmp_path):
    _assert_all_pass(_errors_of_all_targets("unet", (70,), (), tmp_path, base_width=8, batch_norm=False,
                                            num_classes=1, depth=3), 2)


def _assert_report(report, targets):
    rows = [(r.target, r.output) for r in report.results]
    assert rows == [(t, o) for t in targets for o in parity.registry.get(report.model).outputs], rows
    bad = [(r.target, r.output, r.error or r.normalized_error) for r in report.results if not r.passed]
    assert report.passed and not bad, (bad, report.notes)


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 70, 224])
@pytest.mark.parametrize("name", ["resnet18_fpn", "resnet50_fpn", "unet", "unet_bilinear", "hdc_net",
                                  "resnet50_dilated"])
def test_parity_check_passes(name, size):
    """`parity check` at full width: one row per (target, output), all five targets."""
    _assert_report(parity.check(name, size=size), ["keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"])


def test_fpn_outputs_are_named_levels_at_odd_size():
    model = parity.build("resnet18_fpn").eval()
    with torch.no_grad():
        levels = model(torch.zeros(1, 3, 70, 70))
    assert tuple(levels) == FPN_OUTPUTS
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(18, 18), (9, 9), (5, 5), (3, 3), (2, 2)]


# --- trap: nearest upsampling to an odd size --------------------------------------------------

NEAREST_CASES = [((3, 4), (5, 7)), ((5, 9), (9, 18)), ((2, 3), (4, 7)), ((9, 5), (18, 9)), ((2, 6), (82, 74))]


def _torch_nearest(x, size):
    return F.interpolate(torch.from_numpy(x), size=size, mode="nearest").numpy()


@pytest.mark.parametrize("in_hw,out_hw", NEAREST_CASES)
def test_nearest_resize_follows_torch(in_hw, out_hw):
    import keras

    from keras_impl.fpn import TorchNearestResize
    from tf_impl.fpn import resize_nearest

    x = np.arange(2 * 3 * in_hw[0] * in_hw[1], dtype=np.float32).reshape(2, 3, *in_hw)
    ref = _torch_nearest(x, out_hw)
    np.testing.assert_array_equal(_nchw(resize_nearest(_nhwc(x), out_hw)), ref)

    small, like = keras.Input((None, None, 3)), keras.Input((None, None, 1))
    model = keras.Model([small, like], TorchNearestResize()([small, like]))
    y = model([_nhwc(x), np.zeros((2, *out_hw, 1), np.float32)])
    np.testing.assert_array_equal(_nchw(y), ref)


def test_naive_nearest_resizes_differ_from_torch_at_odd_sizes():
    import keras
    import tensorflow as tf

    x = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
    ref = _torch_nearest(x, (5, 7))
    naive_tf = _nchw(tf.image.resize(_nhwc(x), (5, 7), method="nearest"))
    naive_keras = _nchw(keras.layers.Resizing(5, 7, interpolation="nearest")(_nhwc(x)))
    assert not np.array_equal(naive_tf, ref) and not np.array_equal(naive_keras, ref)
    # torch's scale in/out is float32: exact integer floor(i * in / out) differs too (2 -> 82).
    assert not np.array_equal(_torch_nearest(np.arange(2, dtype=np.float32).reshape(1, 1, 2, 1), (82, 1)).ravel(),
                              (np.arange(82) * 2) // 82)


# --- trap: transposed convolution layout, output size, output_padding ----------------------

# (kernel, stride, padding, output_padding)
CONV_T_CASES = [(2, 2, 0, 0), (3, 2, 1, 1), (3, 2, 0, 1), (4, 2, 1, 0), (1, 3, 0, 2), (5, 3, 2, 2)]


def _torch_conv_t(in_ch, out_ch, k, s, p, op):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(in_ch, out_ch, k, s, p, op)
    with torch.no_grad():
        conv.bias.normal_()  # a visible bias: torch adds it on the output_padding rows too
    return conv


def _keras_conv_t(in_ch, out_ch, k, s, p, op, weight, bias, static_hw=(None, None)):
    import keras

    from keras_impl.unet import conv_transpose2d
    inputs = keras.Input((*static_hw, in_ch))
    model = keras.Model(inputs, conv_transpose2d(inputs, out_ch, k, stride=s, padding=p, output_padding=op,
                                                 name="up"))
    model.get_layer("up").set_weights([weight, bias])
    return model


@pytest.mark.parametrize("k,s,p,op", CONV_T_CASES)
def test_transposed_conv_matches_torch(k, s, p, op):
    from tf_impl.layers import ConvTranspose2d

    x = np.random.default_rng(0).standard_normal((2, 4, 5, 7), dtype=np.float32)
    ref_conv = _torch_conv_t(4, 6, k, s, p, op)
    with torch.no_grad():
        ref = ref_conv(torch.from_numpy(x)).numpy()
    assert ref.shape[2:] == ((5 - 1) * s - 2 * p + k + op, (7 - 1) * s - 2 * p + k + op)
    weight = layouts.from_canonical("conv_transpose", ref_conv.weight.detach().numpy())
    bias = ref_conv.bias.detach().numpy()

    tf_conv = ConvTranspose2d(4, 6, k, s, p, op)
    tf_conv.weight.assign(weight)
    tf_conv.bias.assign(bias)
    assert _error(_nchw(tf_conv(_nhwc(x))), ref) <= TOL

    keras_model = _keras_conv_t(4, 6, k, s, p, op, weight, bias, static_hw=(5, 7))
    assert tuple(keras_model.output.shape) == (None, *ref.shape[2:], 6)
    assert _error(_nchw(keras_model(_nhwc(x))), ref) <= TOL


def test_wrong_transposed_conv_layouts_fail():
    from tf_impl.layers import ConvTranspose2d

    x = np.random.default_rng(0).standard_normal((1, 4, 5, 5), dtype=np.float32)
    ref_conv = _torch_conv_t(4, 4, 3, 2, 1, 1)  # in == out channels, so a swap still fits
    with torch.no_grad():
        ref = ref_conv(torch.from_numpy(x)).numpy()
    canonical = ref_conv.weight.detach().numpy()  # (I, O, kH, kW)
    right = layouts.from_canonical("conv_transpose", canonical)  # (kH, kW, O, I)
    wrong = {"flipped kernel": right[::-1, ::-1], "swapped in/out": canonical.transpose(2, 3, 0, 1)}
    tf_conv = ConvTranspose2d(4, 4, 3, 2, 1, 1)
    tf_conv.bias.assign(ref_conv.bias.detach().numpy())
    tf_conv.weight.assign(right)
    assert _error(_nchw(tf_conv(_nhwc(x))), ref) <= TOL
    for why, weight in wrong.items():
        tf_conv.weight.assign(np.ascontiguousarray(weight))
        assert _error(_nchw(tf_conv(_nhwc(x))), ref) > 1e-2, why


def test_transposed_conv_with_output_padding_exports_to_onnx(tmp_path):
    from tf_impl.layers import ConvTranspose2d

    x = np.random.default_rng(0).standard_normal((2, 4, 5, 7), dtype=np.float32)
    ref_conv = _torch_conv_t(4, 6, 3, 2, 0, 1)  # output_padding beyond the full conv: bias-only rows
    with torch.no_grad():
        ref = ref_conv(torch.from_numpy(x)).numpy()
    weight = layouts.from_canonical("conv_transpose", ref_conv.weight.detach().numpy())
    bias = ref_conv.bias.detach().numpy()
    tf_conv = ConvTranspose2d(4, 6, 3, 2, 0, 1)
    tf_conv.weight.assign(weight)
    tf_conv.bias.assign(bias)
    keras_model = _keras_conv_t(4, 6, 3, 2, 0, 1, weight, bias)
    for framework, fn in {"tf": tf_conv, "keras": keras_model}.items():
        path = tmp_path / f"{framework}.onnx"
        from_tf.export_tf_callable(fn, path, x.shape, ("output",))
        assert _error(runtime.run(runtime.session(path), x)[0], ref) <= TOL, framework


# --- traps of the U-Net decoder: bilinear coordinates, padding to the skip ------------------

def test_bilinear_x2_is_torch_align_corners_false():
    import keras
    import tensorflow as tf

    x = np.random.default_rng(0).standard_normal((1, 2, 5, 7), dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=False).numpy()
    tf_y = _nchw(tf.image.resize(_nhwc(x), (10, 14), method="bilinear", antialias=False))
    keras_y = _nchw(keras.layers.UpSampling2D(2, interpolation="bilinear")(_nhwc(x)))
    assert _error(tf_y, ref) <= TOL and _error(keras_y, ref) <= TOL
    corners = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=True).numpy()
    assert _error(tf_y, corners) > 1e-2  # the other coordinate mode is a different function


@pytest.mark.parametrize("dh,dw", [(1, 0), (1, 1), (3, 2)])
def test_pad_to_skip_puts_the_extra_row_at_the_bottom(dh, dw):
    import keras

    from keras_impl.unet import PadToMatch
    from tf_impl.unet import pad_to_match as tf_pad
    from torch_impl.unet import pad_to_match as torch_pad

    x = np.arange(1 * 2 * 4 * 5, dtype=np.float32).reshape(1, 2, 4, 5) + 1
    skip = np.zeros((1, 2, 4 + dh, 5 + dw), np.float32)
    ref = torch_pad(torch.from_numpy(x), torch.from_numpy(skip)).numpy()
    top, left = dh // 2, dw // 2  # the larger half of the padding goes to the bottom/right
    np.testing.assert_array_equal(ref[:, :, top:top + 4, left:left + 5], x)
    assert ref.shape == skip.shape and np.abs(ref).sum() == np.abs(x).sum()
    np.testing.assert_array_equal(_nchw(tf_pad(_nhwc(x), _nhwc(skip))), ref)
    a, b = keras.Input((None, None, 2)), keras.Input((None, None, 2))
    np.testing.assert_array_equal(_nchw(keras.Model([a, b], PadToMatch()([a, b]))([_nhwc(x), _nhwc(skip)])), ref)


def test_keras_custom_layers_round_trip_through_config():
    import keras

    model = parity.build("unet", "keras", depth=2, base_width=4)
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    x = _nhwc(seeded_input((1, 3, 18, 18)))
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(model(x)))
    from keras_impl.fpn import TorchNearestResize
    assert isinstance(TorchNearestResize.from_config(TorchNearestResize(name="u").get_config()), TorchNearestResize)


# --- dilated convolutions --------------------------------------------------------------------

DILATE = [False, True, True]


def _dilated_resnet50(size=48):
    reference_model = calibrated_torch_model("resnet50", input_size=(3, size, size),
                                             replace_stride_with_dilation=DILATE)
    assert reference_model.layer4[1].conv2.dilation == (4, 4)
    x = seeded_input((1, 3, size, size), 1)
    return reference_model, parity.state_dict(reference_model), x, parity.run(reference_model, x)[0]


def test_resnet50_with_dilation_agrees_natively():
    _, state, x, ref = _dilated_resnet50()
    for framework in ("keras", "tf"):
        model = parity.build("resnet50", framework, replace_stride_with_dilation=DILATE)
        parity.load_state_dict(model, state)
        assert _error(parity.run(model, x)[0], ref) <= TOL, framework


@pytest.mark.slow  # ~40 s of tf2onnx; dilated convs through ONNX by default: test_hdc_net_parity_native_and_onnx
@pytest.mark.parametrize("framework", ["tf", "keras", "torch"])
def test_resnet50_with_dilation_agrees_through_onnx(framework, tmp_path):
    reference_model, state, x, ref = _dilated_resnet50()
    model = reference_model
    if framework != "torch":
        model = parity.build("resnet50", framework, replace_stride_with_dilation=DILATE)
        parity.load_state_dict(model, state)
    path = tmp_path / f"resnet50_dilated.{framework}.onnx"
    parity.export_onnx(model, path, x.shape)
    assert _error(runtime.run(runtime.session(path), x)[0], ref) <= TOL


def test_dilated_trunk_keeps_output_stride_8():
    with torch.no_grad():
        features = parity.build("resnet50_dilated").eval()(torch.zeros(1, 3, 64, 64))
    assert tuple(features.shape) == (1, 2048, 8, 8)
    hdc = parity.build("hdc_net")
    assert [hdc.blocks[0].conv1.dilation, hdc.blocks[0].conv2.dilation, hdc.blocks[0].conv3.dilation] == \
        [(1, 1), (2, 2), (3, 3)]
