"""The example network proven the same in torch, Keras and TF with cnn-parity's pytest plugin
(parity.testing), as a user's own suite would: forward, through ONNX, and a training step;
and a copy with one planted port bug (Keras' padding="same" on the stride-2 conv) caught,
the divergent layer named. Run from the repository: `pytest examples/`."""
import sys
from pathlib import Path

import pytest

import parity
from parity.catalogue import registry
from parity.testing import assert_onnx_matches, assert_same_function, assert_same_training_step

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def registered():
    """twohead_models imported (it registers "twohead"), and what this file registers forgotten after."""
    sys.modules.pop("twohead_models", None)
    import twohead_models  # noqa: F401
    yield
    for name in ("twohead", "twohead_planted"):
        registry.unregister(name)


@pytest.fixture
def ports(parity_ports):
    """The three ports holding the same seeded, BatchNorm-calibrated weights."""
    return parity_ports("twohead")


@pytest.mark.parametrize("framework", ["keras", "tf"])
def test_the_port_computes_the_same_function(ports, framework, parity_inputs):
    assert_same_function(ports["torch"], ports[framework], parity_inputs((2, 3, 32, 32)))


@pytest.mark.parametrize("framework", ["torch", "keras", "tf"])
def test_its_onnx_export_computes_the_same_function(ports, framework):
    assert_onnx_matches(ports[framework])


@pytest.mark.parametrize("framework", ["keras", "tf"])
def test_the_port_trains_the_same(ports, framework):
    assert_same_training_step(ports["torch"], ports[framework], optimizer="sgd", lr=0.01, momentum=0.9, steps=2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """twohead_keras.py with Keras' own "same" padding on the stride-2 conv, which pads an even
    input at the bottom and right only (torch pads 1 on every side)."""
    folder = tmp_path_factory.mktemp("planted")
    source = (HERE / "twohead_keras.py").read_text()
    bug = source.replace('''    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="valid", name=conv)(x)''',
                         '''    x = layers.Conv2D(filters, 3, strides=stride, padding="same", name=conv)(x)''')
    assert bug != source
    (folder / "twohead_planted_keras.py").write_text(bug)
    sys.path.insert(0, str(folder))
    parity.register_model("twohead_planted", torch="twohead_torch:twohead", keras="twohead_planted_keras:twohead",
                          input_size=(3, 32, 32), outputs=("classes", "attributes"))
    yield "twohead_planted"
    sys.path.remove(str(folder))


def test_a_planted_padding_bug_fails_and_names_the_layer(planted, parity_ports):
    ports = parity_ports(planted, ("torch", "keras"))
    with pytest.raises(AssertionError, match=r"(?s)keras differs from torch: error .*first divergent layer: stem\.3"):
        assert_same_function(ports["torch"], ports["keras"])
