"""float64 builds (adapter.build(dtype="float64")): the same network with float64 variables and
arithmetic in every framework, so a port can be judged with fp32 rounding gone (issue 31).

Measured here at 32 px: Keras and tf_impl land 1.9e-15 (resnet18), 3.6e-15 (resnext50_32x4d)
and 4.6e-15 (unet_bilinear) from torch in float64, where fp32 leaves 1e-7..1e-6. One float32
op anywhere shows at fp32's rounding: Keras' UpSampling2D(bilinear), which computes in float32
whatever its input, put unet_bilinear 3.7e-8 off before keras_impl upsampled float64 maps
itself. The bound 1e-11 sits between the two with three orders of magnitude either side."""
import numpy as np
import pytest

from parity.adapters import adapter
from parity.calibrate import calibrated_torch_model, seeded_input

# resnext50_32x4d: grouped convolutions (TF's CPU kernels have no float64 gradient for them:
# tf_impl convolves per group in float64). unet_bilinear: TF's bilinear resize returns float32
# whatever its input (tf_impl interpolates float64 maps itself).
CASES = [("resnet18", 32), ("resnext50_32x4d", 32), ("unet_bilinear", 32)]


@pytest.mark.parametrize("name, size", CASES)
def test_float64_builds_agree_in_every_framework(name, size):
    c = 1 if name == "lenet" else 3
    state = adapter("torch").state_dict(calibrated_torch_model(name, input_size=(c, size, size)))
    x = seeded_input((2, c, size, size)).astype(np.float64)
    outputs = {}
    for framework in ("torch", "keras", "tf"):
        a = adapter(framework)
        model = a.build(name, input_size=(c, size, size), dtype="float64")
        a.load_state_dict(model, state)
        assert a.dtype(model) == "float64"
        outputs[framework] = a.run(model, x)[0]
        assert outputs[framework].dtype == np.float64, framework
    reference = outputs["torch"]
    for framework in ("keras", "tf"):
        error = np.abs(outputs[framework] - reference).max() / np.abs(reference).max()
        assert error < 1e-11, (framework, error)


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got 'float16'"):
        adapter("tf").build("lenet", dtype="float16")


def test_a_float64_keras_build_is_float64_whatever_the_global_policy():
    """Restoring a dtype policy (parity.lowprecision does, after bf16) leaves an explicit global
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


def test_the_layer_walk_of_two_float64_models_stays_float64():
    """parity.compare's layer walk keeps float64 layer outputs float64: the torch side's once
    came back as float32, which put every layer of a faithful float64 port 4.7e-8 off."""
    from parity.layerwise import compare
    reference = calibrated_torch_model("resnet18", input_size=(3, 32, 32)).double()
    candidate = adapter("keras").build("resnet18", input_size=(3, 32, 32), dtype="float64")
    adapter("keras").load_state_dict(candidate, adapter("torch").state_dict(reference))
    x = seeded_input((1, 3, 32, 32)).astype(np.float64)
    assert {str(v.dtype) for v in adapter("torch").layer_outputs(reference, x).values()} == {"float64"}
    result = compare(reference, candidate, x, tolerance=1e-11, layerwise=True)
    assert result.passed and result.first_divergent_layer is None
    assert len(result.layers) > 20 and max(e.normalized_error for e in result.layers) < 1e-13
