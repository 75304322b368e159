"""BatchNorm epsilons: pinned per family, and visible where a wrong one would otherwise hide.

With running variances near 1, epsilon 1e-5 vs 1.001e-5 (keras.applications' ResNets and
DenseNets) changes outputs by ~5e-9, far below the 1e-5 policy, and even 1e-3 vs 1e-5 hides
behind large variances. A BatchNorm whose running variance is zero divides by sqrt(eps)
alone, so there each framework must use exactly the family's epsilon: the test shows that
the other plausible value fails."""
import copy

import pytest
import torch

import parity
from parity import tolerance
from parity.catalogue import registry
from parity.calibrate import calibrated_torch_model, seeded_input

KERAS_APPLICATIONS_EPS = 1.001e-5  # keras.applications ResNet, ResNetV2, DenseNet
FAMILY_EPS = {"resnet": 1e-5, "resnet_v2": KERAS_APPLICATIONS_EPS, "resnet_keras": KERAS_APPLICATIONS_EPS,
              "inception": 1e-3, "densenet": 1e-5, "vgg": 1e-5, "unet": 1e-5, "fpn": 1e-5, "dilated": 1e-5}
# torch's default, Keras' default and keras.applications' value: each model's wrong version
# is the nearest of the others.
WRONG_EPS = {1e-5: KERAS_APPLICATIONS_EPS, KERAS_APPLICATIONS_EPS: 1e-5, 1e-3: 1e-5}


def expected_eps(name):
    return KERAS_APPLICATIONS_EPS if name.endswith("_keras") and registry.get(name).family == "densenet" \
        else FAMILY_EPS[registry.get(name).family]


def _norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


WITHOUT_NORMS = {"vgg11", "vgg13", "vgg16", "vgg19", "inception_v1",  # LRN / no normalization
                 "vgg11_fc2048", "vgg13_fc2048", "vgg16_fc2048", "vgg19_fc2048", "vgg11_d2l", "googlenet_nobn",
                 "googlenet_d2l", "inception_v1_lrn64"}
WITH_NORMS = [n for n in parity.list_models() if registry.get(n).family in FAMILY_EPS and n not in WITHOUT_NORMS]


@pytest.mark.parametrize("name", WITH_NORMS)
def test_every_batchnorm_has_its_family_epsilon(name):
    with torch.device("meta"):
        norms = _norms(parity.build(name))
    assert norms and {m.eps for m in norms} == {expected_eps(name)}


def test_models_without_batchnorm_are_known():
    with torch.device("meta"):
        assert not any(_norms(parity.build(name)) for name in WITHOUT_NORMS)


def _last_norm(model, x):
    """Path of the BatchNorm that runs last (the one nearest the outputs)."""
    order, hooks = [], []
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            hooks.append(module.register_forward_hook(lambda *_, path=path: order.append(path)))
    with torch.inference_mode():
        model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    return order[-1]


# One model per family and epsilon (the families' other members share the BatchNorm code).
# torch's 1e-5 in keras_impl/tf_impl is tests/test_traps.py::test_batchnorm_epsilon_is_torchs.
REPRESENTATIVES = ["resnet18_v2", "resnet50_keras", "googlenet", "inception_v3", "densenet121_keras"]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_zero_variance_batchnorm_uses_the_family_epsilon_in_every_framework(name):
    spec = registry.get(name)
    size = max(spec.min_size, 32)
    x = seeded_input((1, 3, size, size), seed=5)
    reference = calibrated_torch_model(name, input_size=(3, size, size))
    norm = _last_norm(reference, x)
    dict(reference.named_modules())[norm].running_var.zero_()
    state = parity.state_dict(reference)
    expected = parity.run(reference, x)[0]
    tol = tolerance.effective(tolerance.threshold(), tolerance.reference_noise(reference, x))

    wrong = copy.deepcopy(reference)
    dict(wrong.named_modules())[norm].eps = WRONG_EPS[expected_eps(name)]
    assert tolerance.measure(parity.run(wrong, x)[0], expected).normalized > 3 * tol, "epsilon invisible here"

    for framework in ("keras", "tf"):
        model = parity.build(name, framework=framework, input_size=(3, size, size))
        parity.load_state_dict(model, state)
        error = tolerance.measure(parity.run(model, x)[0], expected).normalized
        assert error <= tol, f"{framework}: {error:.1e} with the zero-variance {norm}"
