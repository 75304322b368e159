"""The example network proven the same in torch, Keras and TF, natively and through ONNX;
and a copy with one planted port bug (Keras' padding="same" on the stride-2 conv) caught,
the divergent layer named. Run from the repository: `pytest examples/`."""
import sys
from pathlib import Path

import pytest

import parity
from parity.catalogue import registry

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def registered():
    """twohead_models imported (it registers "twohead"), and what this file registers forgotten after."""
    sys.modules.pop("twohead_models", None)
    import twohead_models  # noqa: F401
    yield
    for name in ("twohead", "twohead_planted"):
        registry.unregister(name)


def test_the_port_computes_the_same_function_natively_and_through_onnx():
    report = parity.check("twohead")
    assert report.passed, report.notes
    targets = {r.target for r in report.results}
    assert targets == {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}
    assert {r.output for r in report.results} == {"classes", "attributes"}
    assert max(r.normalized_error for r in report.results) < 1e-6  # fp32 rounding; the tolerance is 1e-5


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


def test_a_planted_padding_bug_fails_and_names_the_layer(planted):
    report = parity.check(planted, frameworks=("keras",), onnx=False)
    assert not report.passed
    [keras] = {r.target for r in report.results}
    worst = max(r.normalized_error for r in report.results)
    assert worst > 1e-2, worst  # the bug's error, against the faithful port's ~1e-7 above
    assert {r.first_divergent_layer for r in report.results} == {"stem.3"}
