"""Feature extraction: a backbone's stage outputs by name (the idea of timm's `features_only`).

For the ResNet family the stages are `layer1`..`layer4`, known in detection papers as
C2..C5 (strides 4, 8, 16 and 32 of the input, unless a stage trades its stride for
dilation). The functions read the trunk's own modules, so a trunk keeps its weight keys.
"""
from collections import OrderedDict

from torch import nn

from ._common import check_input

RESNET_STAGE_PATHS = ("layer1", "layer2", "layer3", "layer4")
# stage module path -> name of its output
RESNET_STAGES = OrderedDict([("layer1", "c2"), ("layer2", "c3"), ("layer3", "c4"), ("layer4", "c5")])


def resnet_stem(model, x):
    """conv1 -> bn1 -> relu -> maxpool: the input of layer1 (stride 4)."""
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def resnet_stage_features(model, x, stages=RESNET_STAGES) -> OrderedDict:
    """{output name: stage output}, in stage order, for a torch_impl ResNet.

    Runs no further than the deepest stage asked for; avgpool/fc never run.
    """
    _check_stages(stages)
    check_input(x, model.arch, "conv1", 3)
    x = resnet_stem(model, x)
    features = OrderedDict()
    for path in RESNET_STAGE_PATHS:
        x = getattr(model, path)(x)
        if path in stages:
            features[stages[path]] = x
        if len(features) == len(stages):
            break
    return features


class ResNetFeatures(nn.Module):
    """A ResNet trunk under `body` whose forward returns the stage outputs by name."""

    def __init__(self, body, stages=RESNET_STAGES):
        super().__init__()
        _check_stages(stages)
        self.body = body
        self.stages = OrderedDict(stages)

    def forward(self, x):
        return resnet_stage_features(self.body, x, self.stages)


def _check_stages(stages):
    unknown = [s for s in stages if s not in RESNET_STAGE_PATHS]
    if unknown or not stages:
        raise ValueError(f"ResNet stages are {', '.join(RESNET_STAGE_PATHS)}; got {list(stages)!r}")
