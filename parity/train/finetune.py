"""The start of `parity finetune`: pretrained weights, a new N-class head, training in the three frameworks.

The pretrained file is canonical safetensors, a torchvision-format .pth (weights_only) or a
keras.applications model file. The layers whose shape depends on the class count (found by
building the model for N and N+1 classes) start from torch's seeded initialization; every
other weight comes from the file. The three frameworks start from that same state.
--freeze-backbone trains only the catalogue's head (ModelSpec.head) with the trainer's
freeze="backbone": frozen BatchNorm statistics stay put in every framework.
"""
from ..adapters import adapter
from ..errors import StateDictError
from .runs import seeded_state


def finetune_state(config, pretrained: dict, input_size, num_classes: int) -> dict:
    """Pretrained weights with fresh (seeded) class-dependent layers."""
    fresh = seeded_state(config.model, config.frameworks, input_size, num_classes, config.seed)
    replaced = class_dependent_keys(config.model, config.frameworks[0], input_size, num_classes)
    kept = {k: v for k, v in pretrained.items() if k not in replaced}
    missing = [k for k in fresh if k not in replaced and k not in kept]
    unexpected = [k for k in kept if k not in fresh]
    mismatched = [(k, fresh[k].shape, kept[k].shape) for k in kept if k in fresh and fresh[k].shape != kept[k].shape]
    if missing or unexpected or mismatched:
        raise StateDictError(config.model, missing, unexpected, mismatched)
    return {**fresh, **kept}


def class_dependent_keys(name, framework, input_size, num_classes) -> set:
    a = adapter(framework)
    shapes = [{k: s.shape for k, s in a.slots(a.build(name, input_size=input_size, num_classes=n)).items()}
              for n in (num_classes, num_classes + 1)]
    return {k for k in shapes[0] if tuple(shapes[0][k]) != tuple(shapes[1][k])}
