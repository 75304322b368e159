"""The source tutorials' own weight names, turned into canonical state (weights.from_tutorial).

A tutorial that writes its network as one `nn.Sequential` saves its keys by index
("7.weight"); the catalogue names the same layers by module path ("classifier.0.weight").
RENAMES holds, per catalogue model, a table from the tutorial's key prefixes to the catalogue's
(by_prefix); where the tutorial names its modules as the catalogue does (seed 004), the table is
empty, the keys stay as they are and only the check runs.
"""
from collections.abc import Callable

import numpy as np


def by_prefix(table: dict[str, str]) -> Callable[[str], str | None]:
    """A rename by the longest dotted prefix `table` knows ({"1.2": "conv3"} turns "1.2.weight"
    into "conv3.weight"); a key no prefix matches is None (unknown)."""
    def rename(key: str) -> str | None:
        parts = key.split(".")
        for n in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in table:
                return ".".join([table[prefix], *parts[n:]])
        return None
    return rename


def d2l_sequential(features: int, classifier: range) -> dict[str, str]:
    """d2l's one nn.Sequential: indices below `features` are features.k, those in `classifier`
    are classifier.(k - its start); the ones between (a Flatten) hold no weights."""
    return {**{str(k): f"features.{k}" for k in range(features)},
            **{str(k): f"classifier.{k - classifier.start}" for k in classifier}}


# d2l's ResNet: (b1 = conv, BN, ReLU, pool), b2..b5 of Residual units, pool, Flatten, Linear
D2L_RESNET = {"0.0": "conv1", "0.1": "bn1", **{str(k): f"layer{k}" for k in range(1, 5)}, "7": "fc"}
# d2l's GoogLeNet: b1..b5 and a Linear; the Inception branches inside keep d2l's names (p2_2)
D2L_GOOGLENET = {"0.0": "conv1", "1.0": "conv2", "1.2": "conv3", "2.0": "inception3a", "2.1": "inception3b",
                 **{f"3.{i}": f"inception4{c}" for i, c in enumerate("abcde")},
                 "4.0": "inception5a", "4.1": "inception5b", "5": "fc"}
# d2l's DenseNet: b1, DenseBlock (units net.j = BN, ReLU, conv), transition (BN, ReLU, conv, pool)
# three times, a last DenseBlock, then BN, ReLU, pool, Flatten, Linear
D2L_DENSENET = {"0.0": "conv1", "0.1": "bn1", "8": "bn", "12": "fc",
                **{f"{2 * b - 1}.net.{j}.{i}": f"dense{b}.{j}.{layer}"
                   for b in range(1, 5) for j in range(4) for i, layer in (("0", "bn"), ("2", "conv"))},
                **{f"{2 * b}.{i}": f"transition{b}.{layer}" for b in range(1, 4) for i, layer in (("0", "bn"), ("2", "conv"))}}
SAME_NAMES: dict[str, str] = {}  # the identity: the tutorial names its modules as the catalogue does

RENAMES: dict[str, dict[str, str]] = {
    "lenet": d2l_sequential(6, range(7, 12)),  # seed 003: Flatten at index 6
    "nin": d2l_sequential(6, range(6, 8)),  # seed 003: Dropout at index 6 is classifier.0
    "alexnet_d2l": d2l_sequential(13, range(14, 21)),  # seed 003: Flatten at index 13
    "vgg11_d2l": d2l_sequential(5, range(6, 13)),  # seed 003: five vgg_blocks (inner indices kept), Flatten at 5
    "resnet18_d2l": D2L_RESNET,
    "googlenet_d2l": D2L_GOOGLENET,
    "densenet_d2l": D2L_DENSENET,
    "lenet_cifar": SAME_NAMES,  # seed 004: conv1, conv2, fc1..fc3
    "alexnet_half": SAME_NAMES,  # seed 004: features / classifier, torchvision's indices
    **dict.fromkeys(("vgg11_fc2048", "vgg13_fc2048", "vgg16_fc2048", "vgg19_fc2048"), SAME_NAMES),  # seed 004
    "googlenet_nobn": SAME_NAMES,  # seed 004: conv1.conv ... aux1.conv.conv, aux1.fc1, fc (inception_v1's paths)
    # seed 004 writes ResNet-34 and ResNet-101 in torchvision's layout, key for key: the catalogue's own
    "resnet34": SAME_NAMES,
    "resnet101": SAME_NAMES,
    # seed 000's VGG19 is torchvision's key for key; it has no average pool, so it takes 224 px
    # (where torchvision's adaptive 7x7 pool is the identity) and nothing else
    "vgg19": SAME_NAMES,
    "inception_v1_lrn64": SAME_NAMES,
    "resnet50_blocks": SAME_NAMES,
    "fpn_shared_head": SAME_NAMES,  # seed 000: resnet50's torchvision keys (its fc left out) + MtoP, C2toM2 ...  # seed 000: conv.conv.0 ... block4.2.bottleneck.4.conv.1, classifier  # seed 000: block1.0.conv.0 ... classifier, the catalogue's own paths
}

# Prefixes of keys a tutorial's checkpoint carries for layers its network never runs: seed 000
# saves its FPN beside torchvision's ResNet-50, whose classifier the FPN does not use.
UNUSED: dict[str, tuple[str, ...]] = {"fpn_shared_head": ("fc.",)}


def as_array(value) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_tutorial(model_name: str, state_dict, **build_kwargs) -> dict:
    """Canonical state of catalogue model `model_name` from a state dict saved by its tutorial's
    own code. `build_kwargs` (num_classes, in_channels) as the tutorial built it. Raises
    StateDictError listing every unknown, missing and mis-shaped key at once."""
    from .catalogue import registry
    from .adapters import adapter
    from .errors import StateDictError
    name = registry.get(model_name).name
    if name not in RENAMES:
        raise ValueError(f"{name}: no source tutorial writes this network; from_tutorial takes "
                         f"{', '.join(sorted(RENAMES))}")
    rename = by_prefix(RENAMES[name]) if RENAMES[name] else (lambda key: key)
    torch_adapter = adapter("torch")
    expected = torch_adapter.state_dict(torch_adapter.build(name, **build_kwargs))
    state, unknown = {}, []
    for key, value in state_dict.items():
        if key.startswith(UNUSED.get(name, ())):
            continue
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
