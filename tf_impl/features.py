"""Feature extraction: a backbone's stage outputs by name (the idea of timm's `features_only`).

For the ResNet family the stages are `layer1`..`layer4`, known in detection papers as
C2..C5 (strides 4, 8, 16 and 32 of the input, unless a stage trades its stride for
dilation). The functions read the trunk's own modules, so a trunk keeps its weight paths.
"""
import tensorflow as tf

from .layers import check_input, max_pool2d

RESNET_STAGE_PATHS = ("layer1", "layer2", "layer3", "layer4")
# stage attribute path -> name of its output
RESNET_STAGES = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}


def resnet_stem(model, x, training=False):
    """conv1 -> bn1 -> relu -> maxpool: the input of layer1 (stride 4)."""
    return max_pool2d(tf.nn.relu(model.bn1(model.conv1(x), training)), 3, 2, padding=1)


def resnet_stage_features(model, x, stages=RESNET_STAGES, training=False) -> dict:
    """{output name: stage output (NHWC)}, in stage order, for a tf_impl ResNet.

    Runs no further than the deepest stage asked for; fc never runs.
    """
    _check_stages(stages)
    check_input(x, model.arch, "conv1", 3)
    x = resnet_stem(model, x, training)
    features = {}
    for path in RESNET_STAGE_PATHS:
        for unit in getattr(model, path):
            x = unit(x, training)
        if path in stages:
            features[stages[path]] = x
        if len(features) == len(stages):
            break
    return features


def _check_stages(stages):
    unknown = [s for s in stages if s not in RESNET_STAGE_PATHS]
    if unknown or not stages:
        raise ValueError(f"ResNet stages are {', '.join(RESNET_STAGE_PATHS)}; got {list(stages)!r}")
