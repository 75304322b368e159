"""Weight files, state errors, bad inputs, atomic writes."""
import numpy as np
import pytest

import parity
from parity.errors import InputError, StateDictError, WeightFileError


@pytest.fixture(scope="module")
def resnet18_models():
    from parity.calibrate import calibrated_torch_model
    torch_model = calibrated_torch_model("resnet18", input_size=(3, 32, 32))
    return {"torch": torch_model, "keras": parity.build("resnet18", framework="keras"),
            "tf": parity.build("resnet18", framework="tf")}


@pytest.fixture(scope="module")
def state(resnet18_models):
    return parity.state_dict(resnet18_models["torch"])


@pytest.mark.parametrize("framework", ["torch", "keras", "tf"])
def test_missing_unexpected_and_misshaped_keys_are_listed(resnet18_models, state, framework):
    model = resnet18_models[framework]
    bad = dict(state)
    del bad["layer1.0.conv1.weight"]
    bad["layer9.extra.weight"] = np.zeros(3, np.float32)
    bad["fc.weight"] = np.zeros((10, 512), np.float32)
    with pytest.raises(StateDictError) as info:
        parity.load_state_dict(model, bad)
    message = str(info.value)
    assert "resnet18" in message and "layer1.0.conv1.weight" in message and "layer9.extra.weight" in message
    assert "fc.weight" in message and "(1000, 512)" in message and "(10, 512)" in message


def test_non_strict_load_still_rejects_bad_shapes(resnet18_models, state):
    partial = {"fc.bias": state["fc.bias"], "extra": np.zeros(1, np.float32)}
    parity.load_state_dict(resnet18_models["tf"], partial, strict=False)
    with pytest.raises(StateDictError, match="fc.bias"):
        parity.load_state_dict(resnet18_models["tf"], {"fc.bias": np.zeros(3, np.float32)}, strict=False)


def test_safetensors_round_trip_and_torchvision_checkpoint(tmp_path, resnet18_models, state):
    import torch
    parity.save_state(state, tmp_path / "w.safetensors", {"model": "resnet18"})
    loaded = parity.load_state(tmp_path / "w.safetensors")
    assert all(np.array_equal(loaded[k], state[k]) for k in state)
    # A torchvision-style checkpoint: a plain state_dict with num_batches_tracked, maybe wrapped.
    torch.save({"state_dict": resnet18_models["torch"].state_dict()}, tmp_path / "tv.pth")
    from_pth = parity.load_state(tmp_path / "tv.pth")
    assert from_pth.keys() == state.keys()
    fresh = parity.build("resnet18")
    parity.load_state_dict(fresh, from_pth)


@pytest.mark.parametrize("content,name", [(b"not a weight file", "w.safetensors"), (b"\x80\x04garbage", "w.pth")])
def test_corrupt_files_name_the_file(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match=name):
        parity.load_state(path)


def test_truncated_safetensors(tmp_path, state):
    path = tmp_path / "w.safetensors"
    parity.save_state(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightFileError, match="w.safetensors"):
        parity.load_state(path)


def test_pickled_code_is_never_executed(tmp_path):
    import pickle
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(WeightFileError, match="evil.pth"):
        parity.load_state(tmp_path / "evil.pth")
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="no such weight file"):
        parity.load_state(tmp_path / "absent.safetensors")


def test_failed_write_leaves_nothing_behind(tmp_path):
    from safetensors import SafetensorError
    with pytest.raises(SafetensorError, match="dtype"):
        parity.save_state({"a": "not an array"}, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_file(tmp_path):
    from parity.io import atomic_path
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


BAD_INPUTS = {
    "wrong channels": (np.zeros((1, 4, 32, 32), np.float32), "expected input \\(N, 3, H, W\\)"),
    "wrong rank": (np.zeros((3, 32, 32), np.float32), "got shape \\(3, 32, 32\\)"),
    "float64": (np.zeros((1, 3, 32, 32)), "float32"),
    "empty batch": (np.zeros((0, 3, 32, 32), np.float32), "empty batch"),
    "nan": (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN"),
}


@pytest.mark.parametrize("framework", ["torch", "keras", "tf"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_give_the_same_clear_error(resnet18_models, framework, case):
    x, pattern = BAD_INPUTS[case]
    with pytest.raises(InputError, match=pattern) as info:
        parity.run(resnet18_models[framework], x)
    assert "resnet18" in str(info.value)


def test_native_models_name_model_and_layer_on_bad_input(resnet18_models):
    import tensorflow as tf
    import torch
    with pytest.raises(ValueError, match="resnet18: layer 'conv1' expects input \\(N, 3, H, W\\)"):
        resnet18_models["torch"](torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="resnet18: layer 'conv1' expects input \\(N, H, W, 3\\)"):
        resnet18_models["tf"](tf.zeros([1, 32, 32, 1]))
    with pytest.raises(ValueError, match="conv1"):
        resnet18_models["keras"](np.zeros((1, 32, 32, 1), np.float32))


def test_unknown_model_and_framework():
    with pytest.raises(KeyError, match="unknown model 'resnet5'"):
        parity.build("resnet5")
    with pytest.raises(ValueError, match="unknown framework 'jax'"):
        parity.build("resnet18", framework="jax")


def test_import_torch_impl_without_tensorflow():
    import subprocess
    import sys
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
            "import torch_impl, parity; m = parity.build('resnet18'); "
            "assert 'tensorflow' not in [k for k, v in sys.modules.items() if v is not None]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parity_imports_no_framework():
    import subprocess
    import sys
    code = ("import sys, parity; parity.list_models(); "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keras_applications_import_rejects_our_own_keras_models(resnet18_models):
    from parity.weights import from_keras_applications
    with pytest.raises(ValueError, match="keras_impl model"):
        from_keras_applications(resnet18_models["keras"])


def test_written_files_follow_the_umask(tmp_path):
    import os

    import parity
    from parity.io import atomic_path
    previous = os.umask(0o022)
    try:
        parity.save_state({"w": np.ones(2, np.float32)}, tmp_path / "w.safetensors")
        with atomic_path(tmp_path / "d", directory=True) as d:
            (d / "f").write_text("x")
    finally:
        os.umask(previous)
    assert oct((tmp_path / "w.safetensors").stat().st_mode & 0o777) == oct(0o644)  # was 0o600
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o755)
