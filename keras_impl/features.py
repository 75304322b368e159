"""Feature extraction: a backbone's stage outputs by name (the idea of timm's `features_only`).

For the ResNet family the stages are `layer1`..`layer4`, known in detection papers as
C2..C5. A stage's output is the ReLU after the `layerN.M.add` layer of its last block;
these functions find it in a built keras_impl model, so the extractor shares its layers.
"""
import re

import keras

RESNET_STAGE_PATHS = ("layer1", "layer2", "layer3", "layer4")
# stage layer-name prefix -> name of its output
RESNET_STAGES = {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}


def resnet_stage_tensors(model, stages=RESNET_STAGES, prefix="") -> dict:
    """{output name: KerasTensor} of a keras_impl ResNet's stage outputs, in stage order.

    `prefix` is prepended to every layer name (e.g. "body." inside an FPN)."""
    _check_stages(stages)
    return {stages[path]: stage_output(model, f"{prefix}{path}") for path in RESNET_STAGE_PATHS if path in stages}


def resnet_stage_features(model, stages=RESNET_STAGES, prefix="") -> keras.Model:
    """A keras.Model sharing `model`'s layers whose outputs are {name: stage output}."""
    return keras.Model(model.input, resnet_stage_tensors(model, stages, prefix), name=f"{model.name}_features")


def stage_output(model, stage):
    """The output of stage `stage` (e.g. "layer3"): the ReLU consuming its last `.add`."""
    add = model.get_layer(f"{stage}.{_last_block(model, stage)}.add")
    return _consumer(model, add.output).output


def _last_block(model, stage):
    pattern = re.compile(rf"^{re.escape(stage)}\.(\d+)\.add$")
    blocks = [int(m.group(1)) for m in (pattern.match(layer.name) for layer in model.layers) if m]
    if not blocks:
        raise ValueError(f"{model.name}: no layer named '{stage}.<block>.add'")
    return max(blocks)


def _consumer(model, tensor):
    users = [layer for layer in model.layers if any(t is tensor for t in keras.tree.flatten(layer.input))]
    if len(users) != 1:
        raise ValueError(f"{model.name}: expected one layer reading {tensor.name}; found {len(users)}")
    return users[0]


def with_name_prefix(model, prefix):
    """A copy of a functional model (same weights) whose layer names start with `prefix`.

    Inputs keep their names. Used to nest a trunk's weight keys, e.g. "conv1" -> "body.conv1"."""
    def renamed(layer):
        return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

    copy = keras.models.clone_model(model, clone_function=renamed)
    for layer in model.layers:
        if layer.weights:
            copy.get_layer(prefix + layer.name).set_weights(layer.get_weights())
    return copy


def _check_stages(stages):
    unknown = [s for s in stages if s not in RESNET_STAGE_PATHS]
    if unknown or not stages:
        raise ValueError(f"ResNet stages are {', '.join(RESNET_STAGE_PATHS)}; got {list(stages)!r}")
