"""External references: torch_impl against torchvision's own model code, numerically.

Every other parity test measures keras_impl and tf_impl against torch_impl, so a bug written
into all three (a stride on the wrong conv, a wrong BN epsilon) would pass them. Here
torchvision's model definitions, built on the meta device (no weight init) and loaded with
torch_impl's calibrated state, must give the same outputs within the fp32 policy.
keras.applications is the external reference of every importer (tests of parity.weights in
the family files and below).
"""
import pytest
import torch

import parity
from parity import tolerance
from parity.catalogue import registry
from parity.calibrate import calibrated_torch_model, seeded_input
import _torchvision

torchvision = _torchvision.import_torchvision()
pytestmark = pytest.mark.skipif(torchvision is None, reason=f"no torchvision: {_torchvision.WHY_NOT}")

# torchvision's constructor arguments for our defaults (no input transform; aux heads as ours, unused in eval).
INCEPTION_KWARGS = {"aux_logits": False, "init_weights": False, "transform_input": False}
TV_KWARGS = {"googlenet": INCEPTION_KWARGS, "inception_v3": {**INCEPTION_KWARGS, "aux_logits": True}}
# Same code as a default-run sibling with another depth or width table: -m slow.
BIG = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2", "densenet161",
       "densenet169", "densenet201", "vgg13", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn"}
TORCHVISION_PREFIXES = ("alexnet", "googlenet", "inception_v3", "resnet", "resnext", "wide_resnet", "vgg", "densenet")
OUR_OWN = ("_keras", "_v2", "_fpn", "_dilated")  # keras.applications layouts and our variants
TORCHVISION_NAMES = [n for n in parity.list_models() if n.startswith(TORCHVISION_PREFIXES) and not n.endswith(OUR_OWN)
                     and registry.get(n).tutorial is None]  # the tutorials' own: tests/test_tutorials.py


def _size(name):
    spec = registry.get(name)
    return max(spec.test_sizes[0], spec.min_size)


def torchvision_model(name, state):
    """torchvision's model `name`, built without initialising weights, holding `state`."""
    if name.endswith("_fpn"):
        build = _fpn_builder(name)
    else:
        def build():
            return getattr(torchvision.models, name)(weights=None, **TV_KWARGS.get(name, {}))
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _fpn_builder(name):
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    return lambda: resnet_fpn_backbone(backbone_name=name.removesuffix("_fpn"), weights=None,
                                       norm_layer=torch.nn.BatchNorm2d, trainable_layers=5)


def _outputs(model, x):
    with torch.inference_mode():
        out = model(torch.from_numpy(x))
    if isinstance(out, dict):
        return [o.numpy() for o in out.values()]
    return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def reference_error(name, ours=None, size=None):
    """Worst normalized error of torch_impl `ours` (calibrated `name` by default) against
    torchvision's code holding the same state."""
    size = size or _size(name)
    ours = ours or calibrated_torch_model(name, input_size=(3, size, size))
    theirs = torchvision_model(name, ours.state_dict())
    x = seeded_input((1, 3, size, size), seed=3)
    errors = [tolerance.measure(a, b).normalized for a, b in zip(_outputs(ours, x), _outputs(theirs, x), strict=True)]
    return max(errors)


def test_every_torchvision_model_of_the_catalogue_is_compared():
    assert {"alexnet", "googlenet", "inception_v3", "resnet18", "resnext50_32x4d", "wide_resnet50_2",
            "vgg11_bn", "densenet121"} <= set(TORCHVISION_NAMES)
    assert not {"resnet50_v2", "resnet50_keras", "densenet121_keras", "inception_v3_keras"} & set(TORCHVISION_NAMES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in TORCHVISION_NAMES] + ["resnet18_fpn"])
def test_torch_impl_equals_torchvisions_code(name):
    assert reference_error(name) <= tolerance.threshold()


# --- the reference catches a bug written into torch_impl ------------------------------------

def test_a_stride_on_the_bottleneck_1x1_conv_fails_the_reference(monkeypatch):
    """torchvision (v1.5) strides the 3x3 conv; striding the first 1x1 (v1, Caffe) is the
    plausible bug, and it keeps every shape."""
    import torch_impl.resnet as resnet

    original = resnet.Bottleneck.__init__

    def stride_on_conv1(self, inplanes, planes, stride=1, *args, **kwargs):
        original(self, inplanes, planes, stride, *args, **kwargs)
        self.conv1.stride, self.conv2.stride = (stride, stride), (1, 1)

    monkeypatch.setattr(resnet.Bottleneck, "__init__", stride_on_conv1)
    assert reference_error("resnet50") > 1e-3


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])  # torch's 1e-5 and torchvision's Inception 1e-3
def test_a_wrong_batchnorm_epsilon_fails_the_reference(name):
    ours = calibrated_torch_model(name, input_size=(3, _size(name), _size(name)))
    for module in ours.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eps = 1e-3 if module.eps != 1e-3 else 1e-5  # Keras' default, or torch's
    assert reference_error(name, ours) > 10 * tolerance.threshold()



def test_tensorflow_same_padding_on_a_stride_2_conv_fails_the_reference():
    """TF's "SAME" at stride 2 on an even size pads 2 before and 3 after where torch pads 3 and 3:
    the shapes agree, every window is shifted by one pixel."""
    ours = calibrated_torch_model("resnet18", input_size=(3, 64, 64))
    ours.conv1.padding = (0, 0)
    ours.conv1.register_forward_pre_hook(lambda _module, args: (torch.nn.functional.pad(args[0], (2, 3, 2, 3)),))
    assert reference_error("resnet18", ours, size=64) > 10 * tolerance.threshold()
