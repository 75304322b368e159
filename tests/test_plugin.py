"""cnn-parity's pytest plugin (parity.testing, issue 34) on a catalogue family, as the
project's own tests: LeNet's ports proven the same function, in ONNX, and trained alike; a
planted training bug and a strict --parity-tolerance seen to fail."""
import subprocess
import sys
from pathlib import Path

import pytest

import parity
from parity.testing import assert_onnx_matches, assert_same_function, assert_same_training_step

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model"


@pytest.fixture
def lenets(parity_ports):
    return parity_ports("lenet")


def test_lenet_ports_are_the_same_function_in_every_runtime(lenets, parity_inputs):
    x = parity_inputs((2, 1, 28, 28))
    assert_same_function(lenets["torch"], lenets["keras"], x)
    assert_same_function(lenets["torch"], lenets["tf"], x)
    assert_onnx_matches(lenets["keras"], inputs=x)


def test_lenet_ports_train_alike(lenets):
    assert_same_training_step(lenets["torch"], lenets["keras"], optimizer="adam", lr=1e-3, steps=2)


def test_a_weight_left_out_of_the_transfer_fails_the_function_naming_the_layer(lenets, parity_inputs):
    keras_model = lenets["keras"]
    kernel = keras_model.get_layer("features.3").kernel
    kernel.assign(kernel.numpy() * 1.01)  # one conv's weights 1% off
    with pytest.raises(AssertionError, match="(?s)keras differs from torch.*first divergent layer: features.3"):
        assert_same_function(lenets["torch"], keras_model, parity_inputs((2, 1, 28, 28)))


def test_a_planted_batchnorm_bug_fails_the_training_step_naming_the_statistic(tmp_path, calibrated_state):
    """The example's Keras port with Keras' own BatchNormalization (biased running variance)."""
    source = (EXAMPLE / "twohead_keras.py").read_text()
    bug = source.replace("x = TorchBatchNormalization(epsilon=1e-5, momentum=0.9, name=bn)(x)",
                         "x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=bn)(x)")
    (tmp_path / "plugin_bn_bug.py").write_text(bug)
    sys.path[:0] = [str(tmp_path), str(EXAMPLE)]
    try:
        parity.register_model("plugin_bn_bug", torch="twohead_torch:twohead", keras="plugin_bn_bug:twohead",
                              input_size=(3, 32, 32), outputs=("classes", "attributes"))
        torch_model, keras_model = parity.build("plugin_bn_bug"), parity.build("plugin_bn_bug", "keras")
        parity.load_state_dict(torch_model, calibrated_state("plugin_bn_bug"))
        with pytest.raises(AssertionError, match=r"(?s)float64: .*buffer .* stem\.\d\.running_var  <- over"):
            assert_same_training_step(torch_model, keras_model, steps=2)
    finally:
        parity.registry.unregister("plugin_bn_bug")
        del sys.path[:2]


def test_a_keras_reference_judges_a_tf_port_without_torch(tmp_path, parity_ports):
    """Without a torch builder the Keras port is the reference (rebuilt in float64 for the
    judge): the TF port trains alike, and the TF port with Keras' BN epsilon (1e-3) does not."""
    source = (EXAMPLE / "twohead_tf.py").read_text()
    (tmp_path / "plugin_eps_bug.py").write_text(source.replace("BatchNorm2d(32), tf.nn.relu]",
                                                               "BatchNorm2d(32, eps=1e-3), tf.nn.relu]"))
    sys.path[:0] = [str(tmp_path), str(EXAMPLE)]
    try:
        for name, tf_builder in (("plugin_keras_tf", "twohead_tf:twohead"), ("plugin_eps_bug", "plugin_eps_bug:twohead")):
            parity.register_model(name, keras="twohead_keras:twohead", tf=tf_builder, input_size=(3, 32, 32),
                                  outputs=("classes", "attributes"))
        faithful = parity_ports("plugin_keras_tf")
        assert set(faithful) == {"keras", "tf"}
        assert_same_training_step(faithful["keras"], faithful["tf"], steps=2)
        planted = parity_ports("plugin_eps_bug")
        with pytest.raises(AssertionError, match=r"(?s)tf does not train as keras does.*float64: .*loss .*<- over"):
            assert_same_training_step(planted["keras"], planted["tf"], steps=2)
    finally:
        for name in ("plugin_keras_tf", "plugin_eps_bug"):
            parity.registry.unregister(name)
        del sys.path[:2]


def test_the_tolerance_option_reaches_the_assertions(tmp_path):
    """A user's suite run with --parity-tolerance 1e-9: the fixture says so, and LeNet's Keras port
    (1e-7 from torch in fp32) fails assert_same_function."""
    (tmp_path / "test_strict.py").write_text(
        "import parity, pytest\n"
        "from parity.testing import assert_same_function\n"
        "def test_option(parity_tolerance):\n"
        "    assert parity_tolerance == 1e-9\n"
        "def test_strict(calibrated_state, parity_inputs):\n"
        "    torch_model, keras_model = parity.build('lenet'), parity.build('lenet', 'keras')\n"
        "    parity.load_state_dict(torch_model, calibrated_state('lenet'))\n"
        "    parity.load_state_dict(keras_model, parity.state_dict(torch_model))\n"
        "    with pytest.raises(AssertionError, match='keras differs from torch'):\n"
        "        assert_same_function(torch_model, keras_model, parity_inputs((2, 1, 28, 28)))\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "--parity-tolerance", "1e-9", "test_strict.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
