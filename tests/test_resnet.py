"""ResNet v1 / ResNeXt / Wide ResNet: builders, torchvision keys, transfer and parity."""
import numpy as np
import pytest

import parity
from parity.calibrate import calibrated_torch_model, seeded_input

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
    from parity.cli import count_parameters
    assert count_parameters(name) == parity.registry.get(name).published_params


def _three(name, input_size=(3, 64, 64), **kwargs):
    torch_model = calibrated_torch_model(name, input_size=input_size, **kwargs)
    state = parity.state_dict(torch_model)
    models = {"torch": torch_model}
    for framework in ("keras", "tf"):
        models[framework] = parity.build(name, framework=framework, **kwargs)
        parity.load_state_dict(models[framework], state)
    return models, state


def _assert_parity(models, sizes=(64, 57), batch=2):
    for size in sizes:
        x = seeded_input((batch, 3, size, size), seed=size)
        ref = parity.run(models["torch"], x)[0]
        assert np.abs(ref).max() > 1e-3 and np.isfinite(ref).all(), "degenerate reference"
        for framework in ("keras", "tf"):
            y = parity.run(models[framework], x)[0]
            err = np.abs(y - ref).max() / np.abs(ref).max()
            assert err < 1e-5, f"{framework} at {size}x{size}: normalized error {err:.2e}"


@pytest.mark.parametrize("name", SMALL)
def test_native_parity_even_and_odd(name):
    models, state = _three(name)
    for framework in ("keras", "tf"):
        assert parity.state_dict(models[framework]).keys() == state.keys()
    _assert_parity(models)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_native_parity_even_and_odd_large(name):
    _assert_parity(_three(name)[0], sizes=(64, 57), batch=1)


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_lossless_round_trip(name):
    models, state = _three(name)
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
    report = parity.check(name, size=64, batch=2)
    targets = {r.target: r for r in report.results}
    assert set(targets) == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    for r in report.results:
        assert r.error is None, r.error
        assert r.passed, f"{r.target}: {r.normalized_error:.2e}"


def test_onnx_exports_share_interface(tmp_path):
    import onnx
    models, _ = _three("resnet18")
    for framework, model in models.items():
        path = tmp_path / f"{framework}.onnx"
        parity.export_onnx(model, path, (1, 3, 64, 64))
        graph = onnx.load(path).graph
        assert [i.name for i in graph.input] == ["input"]
        assert [o.name for o in graph.output] == ["logits"]
        dims = graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]
        transposes = [n for n in graph.node if n.op_type == "Transpose"]
        assert not transposes, f"{framework} export keeps {len(transposes)} layout transposes"


@pytest.mark.slow  # tests/test_dense.py covers the dilated path in the default run
def test_dilated_resnet50_matches():
    kwargs = {"replace_stride_with_dilation": [False, True, True]}
    models, _ = _three("resnet50", **kwargs)
    x = seeded_input((1, 3, 64, 64))
    assert parity.run(models["torch"], x)[0].shape == (1, 1000)
    _assert_parity(models, sizes=(64, 57), batch=1)


def test_include_top_false_returns_the_trunk():
    models, _ = _three("resnet18", include_top=False)
    x = seeded_input((1, 3, 64, 64))
    outs = {f: parity.run(m, x)[0] for f, m in models.items()}
    assert outs["torch"].shape == (1, 512, 2, 2)
    for f in ("keras", "tf"):
        assert np.abs(outs[f] - outs["torch"]).max() / np.abs(outs["torch"]).max() < 1e-5


def test_basic_block_rejects_dilation():
    for framework in ("torch", "keras", "tf"):
        with pytest.raises(ValueError, match="BasicBlock"):
            parity.build("resnet18", framework=framework, replace_stride_with_dilation=[False, False, True])
