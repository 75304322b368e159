"""ResNet v1 / ResNeXt / Wide ResNet: builders, torchvision keys, transfer and parity."""
import numpy as np
import pytest

import parity
from conftest import (assert_native_parity, assert_tolerance_pinned, normalized_error, recorded_onnx_exports, three,
                      transposes)
from parity.calibrate import seeded_input

RESNETS = parity.list_models("resnet")
SMALL = ["resnet18", "resnet34", "resnet50", "resnext50_32x4d"]
LARGE = [n for n in RESNETS if n not in SMALL]

# Facts from torchvision's state_dict()s.
TORCHVISION_KEYS = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                 "layer4.1.bn2.running_var": (512,), "fc.weight": (1000, 512)},
    "resnet50": {"layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer3.5.bn2.running_var": (256,),
                 "layer4.2.conv3.weight": (2048, 512, 1, 1), "fc.weight": (1000, 2048), "fc.bias": (1000,)},
    "resnext50_32x4d": {"layer1.0.conv2.weight": (128, 4, 3, 3), "layer4.0.conv2.weight": (1024, 32, 3, 3)},
    "wide_resnet50_2": {"layer1.0.conv2.weight": (128, 128, 3, 3), "layer4.2.conv1.weight": (1024, 2048, 1, 1)},
}
TORCHVISION_KEY_COUNTS = {"resnet18": 102, "resnet50": 267}  # without num_batches_tracked


@pytest.mark.parametrize("name", list(TORCHVISION_KEYS))
def test_torch_keys_and_shapes_are_torchvisions(name):
    import torch
    with torch.device("meta"):
        state = parity.build(name).state_dict()
    for key, shape in TORCHVISION_KEYS[name].items():
        assert tuple(state[key].shape) == shape, key
    if name in TORCHVISION_KEY_COUNTS:
        assert len([k for k in state if not k.endswith("num_batches_tracked")]) == TORCHVISION_KEY_COUNTS[name]


@pytest.mark.parametrize("name", RESNETS)
def test_parameter_count_is_published(name):
    from parity.weights.commands import count_parameters
    assert count_parameters(name) == parity.registry.get(name).published_params


@pytest.mark.parametrize("name", SMALL)
def test_native_parity_even_and_odd(name):
    models, state = three(name)
    for framework in ("keras", "tf"):
        assert parity.state_dict(models[framework]).keys() == state.keys()
    assert_native_parity(models)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_native_parity_even_and_odd_large(name):
    assert_native_parity(three(name)[0], sizes=(64, 57), batch=1)


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_lossless_round_trip(name):
    models, state = three(name)
    keras_state = parity.state_dict(models["keras"])
    tf_model = parity.build(name, framework="tf")
    parity.load_state_dict(tf_model, keras_state)
    torch_model = parity.build(name)
    parity.load_state_dict(torch_model, parity.state_dict(tf_model))
    back = parity.state_dict(torch_model)
    assert back.keys() == state.keys()
    for key in state:
        assert back[key].dtype == state[key].dtype and np.array_equal(back[key], state[key]), key


# resnext50's Keras/TF exports peak at ~13 GB in tf2onnx: slow. The grouped-conv export trap
# is covered in the default run by tests/test_traps.py on a single layer.
@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnext50_32x4d", marks=pytest.mark.slow)])
def test_onnx_from_all_three_frameworks(name):
    """Parity of every target, and the three exports share one interface with no layout
    transposes left."""
    with recorded_onnx_exports() as exports:
        report = parity.check(name, size=64, batch=2)
    targets = {r.target: r for r in report.results}
    assert set(targets) == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    for r in report.results:
        assert r.error is None, r.error
        assert r.passed, f"{r.target}: {r.normalized_error:.2e}"
    assert_tolerance_pinned(report)
    assert {framework for framework, _ in exports} == {"torch", "keras", "tf"}
    for graph in exports.values():
        assert graph.inputs == ["input"] and graph.outputs == ["logits"]
        assert graph.input_dims == ["batch", 3, 64, 64]
    assert not transposes(exports), f"layout transposes left: {transposes(exports)}"


@pytest.mark.slow  # tests/test_dense.py covers the dilated path in the default run
def test_dilated_resnet50_matches():
    kwargs = {"replace_stride_with_dilation": [False, True, True]}
    models, _ = three("resnet50", **kwargs)
    x = seeded_input((1, 3, 64, 64))
    assert parity.run(models["torch"], x)[0].shape == (1, 1000)
    assert_native_parity(models, sizes=(64, 57), batch=1)


def test_include_top_false_returns_the_trunk():
    models, _ = three("resnet18", include_top=False)
    x = seeded_input((1, 3, 64, 64))
    outs = {f: parity.run(m, x)[0] for f, m in models.items()}
    assert outs["torch"].shape == (1, 512, 2, 2)
    for f in ("keras", "tf"):
        assert normalized_error(outs[f], outs["torch"]) <= 1e-5


def test_basic_block_rejects_dilation():
    for framework in ("torch", "keras", "tf"):
        with pytest.raises(ValueError, match="BasicBlock"):
            parity.build("resnet18", framework=framework, replace_stride_with_dilation=[False, False, True])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_zeroes_the_same_scales_in_every_framework(name):
    """torchvision's zero_init_residual, in torch_impl and (since issue 33) in Keras and tf_impl:
    the scale of the last BatchNorm of every residual branch starts at zero, and nothing else
    does; without the option no BatchNorm scale is zero."""
    last = "bn2" if name == "resnet18" else "bn3"
    for framework in ("torch", "keras", "tf"):
        state = parity.state_dict(parity.build(name, framework=framework, zero_init_residual=True))
        zeroed = {k for k, v in state.items() if v.ndim == 1 and k.endswith(".weight") and not v.any()}
        assert zeroed == {k for k in state if k.startswith("layer") and k.endswith(f".{last}.weight")}, framework
        plain = parity.state_dict(parity.build(name, framework=framework))
        assert not [k for k, v in plain.items() if v.ndim == 1 and k.endswith(".weight") and not v.any()], framework


@pytest.mark.parametrize("bad", [(1, 1, 32, 32), (0, 3, 32, 32)], ids=["one channel", "empty batch"])
def test_every_resnet_refuses_a_wrong_input_naming_the_model_and_its_first_layer(bad):
    """check_input in all three ResNets (keras_impl's had none until issue 33: Keras named an
    inner layer, and for an empty batch the wrong one, bn1)."""
    torch = pytest.importorskip("torch")
    import keras_impl
    import tf_impl
    import torch_impl
    x = np.zeros(bad, np.float32)
    runs = {"torch": lambda: torch_impl.resnet18()(torch.from_numpy(x)),
            "keras": lambda: keras_impl.resnet18()(x.transpose(0, 2, 3, 1)),
            "tf": lambda: tf_impl.resnet18()(x.transpose(0, 2, 3, 1))}
    for framework, run in runs.items():
        with pytest.raises(ValueError, match="resnet18: layer 'conv1' (expects input|got an empty batch)"):
            run()
