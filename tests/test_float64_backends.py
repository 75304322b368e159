"""float64 on Keras' torch and JAX backends (issue 31, landing 3): keras_impl's ResNet-18 and
GoogLeNet (aux heads in training) through `check --dtype float64` and the float64 train-check,
in one child process per backend (KERAS_BACKEND is read once, at import).

Keras 3.15 promotes float64 to float32 on every backend but tensorflow (result_type follows
JAX without x64), so Dense, BatchNormalization's inference path, ops.mean and a Loss's own
reduction computed a float64 model in float32 there: ResNet-18 5e-7 and GoogLeNet 5.6e-6 from
torch float64 on the torch backend, with every dtype saying float64. keras_impl keeps them
float64 (keras_impl.layers: Linear, GlobalAvgPool2D, mean, TorchBatchNormalization); measured
after: 1.6e-15..6.6e-14 (check), 1e-9 at worst (train-check's final weights).

The default run takes ResNet-18 on both backends (Linear, BatchNormalization, the global
mean, the loss: every fixed layer but the adaptive pool of the aux heads; before the fix it
was 5e-7 from torch float64, 5e4 times the policy); -m slow adds GoogLeNet on both (Keras on
JAX compiles its step for a minute on the 2-core machine)."""
import json
import os
import subprocess
import sys

import pytest

_CHILD = """
import json, sys
import parity
from parity.train.check import train_check
rows = {}
for name in json.loads(sys.argv[1]):
    report = parity.check(name, frameworks=("keras",), onnx=False, size=32, dtype="float64")
    [row] = report.results
    trained = train_check(name, size=32, steps=2, frameworks=("keras",), dtype="float64")
    [result] = trained.results
    rows[name] = {"check": [row.passed, row.normalized_error, row.error],
                  "train": [result.passed, result.errors, result.error, result.engine]}
print(json.dumps(rows))
"""


@pytest.mark.parametrize("backend, models", [
    ("torch", ["resnet18"]),
    ("jax", ["resnet18"]),
    pytest.param("torch", ["googlenet"], marks=pytest.mark.slow),
    pytest.param("jax", ["googlenet"], marks=pytest.mark.slow),
])
def test_float64_check_and_train_check_on_another_keras_backend(backend, models):
    if backend == "jax":
        pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(models)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(rows) == sorted(models)
    for name, row in rows.items():
        passed, error, crashed = row["check"]
        assert passed and crashed is None and error < 1e-11, (backend, name, row["check"])
        passed, errors, crashed, engine = row["train"]
        assert engine == backend and passed and crashed is None, (backend, name, errors, crashed)


_UNUSED_HEAD_CHILD = """
import json, sys
sys.path[:0] = sys.argv[1:3]
import parity
from parity.train.check import train_check
parity.register_model("twohead_f64", torch="twohead_torch:twohead", keras="twohead_f64_keras:twohead",
                      input_size=(3, 32, 32), outputs=("classes", "attributes"))
[row] = train_check("twohead_f64", steps=2, frameworks=("keras",), dtype="float64").results
parity.register_model("twohead_plain", torch="twohead_torch:twohead", keras="twohead_keras:twohead",
                      input_size=(3, 32, 32), outputs=("classes", "attributes"))
plain = parity.check("twohead_plain", frameworks=("keras",), onnx=False, dtype="float64")
print(json.dumps([row.passed, row.errors, row.worst, row.error, plain.passed, plain.notes]))
"""


def test_a_head_the_loss_does_not_reach_is_left_alone_on_the_torch_backend(tmp_path):
    """The example's second head gets no gradient. torch.optim skips it (no weight decay, no
    momentum); Keras on the torch backend did too only on TensorFlow, where the tape says None:
    on torch the gradient was filled with zeros, and SGD's weight decay moved the head (update
    1.0e-4 off at attributes.weight against 1e-8). The port is the example's, with keras_impl's
    float64-safe Linear and GlobalAvgPool2D in place of Dense and GlobalAveragePooling2D. The
    example as written, with Keras' own, fails the float64 check there (1.5e-7: Keras 3.15
    computes them in float32 off TensorFlow), and the report names them and what to use."""
    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "own_model")
    with open(os.path.join(example, "twohead_keras.py")) as f:
        source = f.read()
    for old, new in [("import TorchBatchNormalization", "import GlobalAvgPool2D, Linear, TorchBatchNormalization"),
                     ("layers.GlobalAveragePooling2D(keepdims=True)(x)", "GlobalAvgPool2D(keepdims=True)(x)"),
                     ('layers.GlobalAveragePooling2D()(squeeze_excite(x, 32, name="se"))',
                      'layers.Flatten()(GlobalAvgPool2D(keepdims=True)(squeeze_excite(x, 32, name="se")))'),
                     ("layers.Dense(", "Linear(")]:
        assert old in source
        source = source.replace(old, new)
    (tmp_path / "twohead_f64_keras.py").write_text(source)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", _UNUSED_HEAD_CHILD, str(tmp_path), example], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    passed, errors, worst, crashed, plain_passed, notes = json.loads(done.stdout.strip().splitlines()[-1])
    assert crashed is None and passed, (errors, worst)
    assert not plain_passed and any("classes (Linear)" in n and "se.reduce" not in n for n in notes), notes
