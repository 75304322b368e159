"""The tutorials' own networks (issue 32): each written here in plain torch from its seed's
text (../shared/seeds; not imported from the project), its state dict saved and loaded back
through parity.weights.from_tutorial into torch_impl, keras_impl and tf_impl, which must
compute what the tutorial's network computes, at the fp32 policy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import parity
from parity.errors import StateDictError
from parity.tolerance import threshold

from conftest import normalized_error

torch.manual_seed(0)


def d2l_lenet():
    """Seed 003: d2l's LeNet, one nn.Sequential, 1x28x28 Fashion-MNIST."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def d2l_nin():
    """Seed 003: d2l's NiN for 1-channel input and 10 classes."""
    def block(cin, cout, kernel, stride, padding):
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(),
                             nn.Conv2d(cout, cout, kernel_size=1), nn.ReLU(),
                             nn.Conv2d(cout, cout, kernel_size=1), nn.ReLU())
    return nn.Sequential(
        block(1, 96, 11, 4, 0), nn.MaxPool2d(3, stride=2),
        block(96, 256, 5, 1, 2), nn.MaxPool2d(3, stride=2),
        block(256, 384, 3, 1, 1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5), block(384, 10, 3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


class Seed004LeNet(nn.Module):
    """Seed 004: the CIFAR-10 LeNet, named modules."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool1 = nn.Conv2d(3, 16, 5), nn.MaxPool2d(2, 2)
        self.conv2, self.pool2 = nn.Conv2d(16, 32, 5), nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(32 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x))).view(-1, 32 * 5 * 5)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Seed004AlexNet(nn.Module):
    """Seed 004: AlexNet at half width for the flower set, no average pool, 2048-wide classifier."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 48, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 128, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(128, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(128 * 6 * 6, 2048), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(2048, 2048), nn.ReLU(inplace=True), nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), start_dim=1))


# catalogue name -> (the tutorial's network, input (C, H, W), builder options as the tutorial builds it)
TUTORIALS = {
    "lenet": (d2l_lenet, (1, 28, 28), {}),
    "nin": (d2l_nin, (1, 96, 96), {"in_channels": 1, "num_classes": 10}),
    "lenet_cifar": (Seed004LeNet, (3, 32, 32), {}),
    "alexnet_half": (Seed004AlexNet, (3, 224, 224), {}),
}


@pytest.mark.parametrize("name", TUTORIALS)
def test_a_tutorials_checkpoint_loads_into_every_framework(name, tmp_path):
    make, (channels, height, width), options = TUTORIALS[name]
    tutorial = make().eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tutorial.state_dict(), path)  # as the tutorial saves it
    state = parity.weights.from_tutorial(name, torch.load(path), **options)
    x = np.random.default_rng(0).standard_normal((2, channels, height, width)).astype(np.float32)
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    for framework in ("torch", "keras", "tf"):
        model = parity.build(name, framework=framework, input_size=(channels, height, width), **options)
        parity.load_state_dict(model, state)
        error = normalized_error(parity.run(model, x)[0], expected)
        assert error < threshold(), f"{name} -> {framework}: {error:.2e}"
        if framework == "torch":
            assert error == 0.0  # the same torch ops on the same weights


def test_another_networks_checkpoint_lists_every_bad_key_naming_the_model():
    with pytest.raises(StateDictError) as caught:
        parity.weights.from_tutorial("lenet_cifar", d2l_lenet().state_dict())
    message = str(caught.value)
    assert message.startswith("lenet_cifar") and "conv1.weight" in message and "0.weight" in message
    assert "missing keys (10)" in message and "unexpected keys (10)" in message


def test_a_checkpoint_with_other_class_counts_names_the_mis_shaped_keys():
    with pytest.raises(StateDictError, match=r"shape mismatch at classifier.6.weight: model has \(5, 2048\), "
                                             r"weights have \(7, 2048\)"):
        parity.weights.from_tutorial("alexnet_half", Seed004AlexNet(num_classes=7).state_dict())


def test_only_the_tutorials_networks_have_a_tutorial_rename():
    with pytest.raises(ValueError, match="resnet50: no source tutorial writes this network"):
        parity.weights.from_tutorial("resnet50", {})


@pytest.mark.parametrize("name", ["lenet_cifar", "alexnet_half"])
def test_check_passes_natively_and_through_onnx_at_the_smallest_size(name):
    from parity import registry
    report = parity.check(name, size=registry.get(name).test_sizes[0])
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]
    assert {r.target for r in report.results} >= {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}


def test_the_catalogue_names_each_networks_tutorial():
    from parity import registry
    assert registry.get("lenet_cifar").tutorial.startswith("seed 004")
    assert registry.get("alexnet_half").tutorial.startswith("seed 004")
    assert {n for n in parity.list_models() if registry.get(n).tutorial} == set(TUTORIALS)
