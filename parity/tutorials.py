"""The source tutorials' own weight names, turned into canonical state (weights.from_tutorial).

A tutorial that writes its network as one `nn.Sequential` saves its keys by index
("7.weight"); the catalogue names the same layers by module path ("classifier.0.weight").
RENAMES holds, per catalogue model, the rename from the tutorial's keys; where the tutorial
names its modules as the catalogue does (seed 004), it is the identity and only the check runs.
"""
from collections.abc import Callable

import numpy as np


def d2l_sequential(features: int, classifier_start: int) -> Callable[[str], str | None]:
    """d2l's one nn.Sequential: index k < `features` is features.k, index k >= `classifier_start`
    is classifier.(k - classifier_start); anything else (a weightless Flatten's index) is None."""
    def rename(key: str) -> str | None:
        index, _, rest = key.partition(".")
        if not index.isdigit():
            return None
        k = int(index)
        if k < features:
            return f"features.{k}.{rest}"
        return f"classifier.{k - classifier_start}.{rest}" if k >= classifier_start else None
    return rename


def d2l_resnet(key: str) -> str | None:
    """d2l's ResNet: nn.Sequential(b1, b2..b5, pool, Flatten, Linear); b1 is (conv, BN, ReLU, pool)
    and b2..b5 hold Residual units, so 0.0 -> conv1, 0.1 -> bn1, k.j -> layer<k>.j, 7 -> fc."""
    index, _, rest = key.partition(".")
    if index == "0":
        layer, _, param = rest.partition(".")
        return {"0": "conv1", "1": "bn1"}.get(layer, "?") + f".{param}"
    if index in ("1", "2", "3", "4"):
        return f"layer{index}.{rest}"
    return f"fc.{rest}" if index == "7" else None


D2L_GOOGLENET = {"0.0": "conv1", "1.0": "conv2", "1.2": "conv3", "2.0": "inception3a", "2.1": "inception3b",
                 **{f"3.{i}": f"inception4{c}" for i, c in enumerate("abcde")},
                 "4.0": "inception5a", "4.1": "inception5b"}


def d2l_googlenet(key: str) -> str | None:
    """d2l's GoogLeNet: nn.Sequential(b1..b5, Linear); its blocks' layers get the family's names
    (1.2 -> conv3, 3.4 -> inception4e), the Inception branches keep d2l's (p2_2), 5 -> fc."""
    block, _, rest = key.partition(".")
    if block == "5":
        return f"fc.{rest}"
    layer, _, param = rest.partition(".")
    name = D2L_GOOGLENET.get(f"{block}.{layer}")
    return f"{name}.{param}" if name else None


def d2l_densenet(key: str) -> str | None:
    """d2l's DenseNet: nn.Sequential(b1, DenseBlock, transition, ..., DenseBlock, BN, ReLU, pool,
    Flatten, Linear): 0.0/0.1 -> conv1/bn1, 1.net.j.0/2 -> dense1.j.bn/conv, 2.0/2 ->
    transition1.bn/conv, ..., 8 -> bn, 12 -> fc."""
    parts = key.split(".")
    index = parts[0]
    if index == "0" and parts[1] in ("0", "1"):
        return f"{'conv1' if parts[1] == '0' else 'bn1'}.{parts[2]}"
    if index in ("1", "3", "5", "7") and parts[1] == "net" and parts[3] in ("0", "2"):
        return f"dense{(int(index) + 1) // 2}.{parts[2]}.{'bn' if parts[3] == '0' else 'conv'}.{parts[4]}"
    if index in ("2", "4", "6") and parts[1] in ("0", "2"):
        return f"transition{int(index) // 2}.{'bn' if parts[1] == '0' else 'conv'}.{parts[2]}"
    return {"8": f"bn.{parts[-1]}", "12": f"fc.{parts[-1]}"}.get(index) if len(parts) == 2 else None


def same_names(key: str) -> str:
    return key


RENAMES: dict[str, Callable[[str], str | None]] = {
    "lenet": d2l_sequential(6, 7),  # seed 003: Flatten at index 6
    "nin": d2l_sequential(6, 6),  # seed 003: Dropout at index 6 is classifier.0
    "alexnet_d2l": d2l_sequential(13, 14),  # seed 003: Flatten at index 13
    "resnet18_d2l": d2l_resnet,
    "googlenet_d2l": d2l_googlenet,
    "densenet_d2l": d2l_densenet,
    "vgg11_d2l": d2l_sequential(5, 6),  # seed 003: five vgg_blocks (their inner indices kept), Flatten at 5
    "lenet_cifar": same_names,  # seed 004: conv1, conv2, fc1..fc3
    "alexnet_half": same_names,  # seed 004: features / classifier, torchvision's indices
    **dict.fromkeys(("vgg11_fc2048", "vgg13_fc2048", "vgg16_fc2048", "vgg19_fc2048"), same_names),  # seed 004
    "googlenet_nobn": same_names,  # seed 004: conv1.conv ... aux1.conv.conv, aux1.fc1, fc (inception_v1's paths)
    # seed 004 writes ResNet-34 and ResNet-101 in torchvision's layout, key for key: the catalogue's own
    "resnet34": same_names,
    "resnet101": same_names,
}


def as_array(value) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_tutorial(model_name: str, state_dict, **build_kwargs) -> dict:
    """Canonical state of catalogue model `model_name` from a state dict saved by its tutorial's
    own code. `build_kwargs` (num_classes, in_channels) as the tutorial built it. Raises
    StateDictError listing every unknown, missing and mis-shaped key at once."""
    from . import registry
    from .adapters import adapter
    from .errors import StateDictError
    name = registry.get(model_name).name
    if name not in RENAMES:
        raise ValueError(f"{name}: no source tutorial writes this network; from_tutorial takes "
                         f"{', '.join(sorted(RENAMES))}")
    rename = RENAMES[name]
    torch_adapter = adapter("torch")
    expected = torch_adapter.state_dict(torch_adapter.build(name, **build_kwargs))
    state, unknown = {}, []
    for key, value in state_dict.items():
        canonical = rename(key)
        if canonical in expected:
            state[canonical] = as_array(value)
        elif not key.endswith("num_batches_tracked"):  # torch's BN step counter is not model state here
            unknown.append(key)
    missing = [k for k in expected if k not in state]
    mismatched = [(k, expected[k].shape, v.shape) for k, v in state.items() if v.shape != expected[k].shape]
    if unknown or missing or mismatched:
        raise StateDictError(f"{name} (tutorial keys)", missing, unknown, mismatched)
    return {k: state[k].astype(expected[k].dtype, copy=False) for k in expected}
