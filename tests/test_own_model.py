"""A model of one's own (issue 34, landing 1): registered from anywhere (parity.register_model,
a --models-from module, a `cnn_parity.models` entry point, a `package.module:builder` path),
and every inference command on it; bad builders refused by name. The example network itself
is proven in examples/own_model/test_twohead.py."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import parity
from parity.catalogue import registry
from parity.cli import main
from parity.errors import InputError, StateDictError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model"


@pytest.fixture(scope="module", autouse=True)
def example_on_path():
    """The example registered (as a user's module does it, on import), and every model this file
    registers forgotten after it, so no other test file meets them."""
    before = set(registry.names())
    sys.path.insert(0, str(EXAMPLE))
    sys.modules.pop("twohead_models", None)
    import twohead_models  # noqa: F401  (registers "twohead")
    yield
    sys.path.remove(str(EXAMPLE))
    for name in set(registry.names()) - before:
        registry.unregister(name)


@contextlib.contextmanager
def planted(tmp_path, port, old, new, module):
    """The example's `port` file with `old` replaced by `new` (a planted bug), importable as
    `module` meanwhile; yields its builder's name."""
    source = (EXAMPLE / port).read_text()
    assert old in source
    (tmp_path / f"{module}.py").write_text(source.replace(old, new))
    sys.path.insert(0, str(tmp_path))
    try:
        yield f"{module}:twohead"
    finally:
        sys.path.remove(str(tmp_path))


def test_the_catalogue_registers_through_the_same_public_path():
    specs = [registry.get(n) for n in registry.names()]
    catalogue = [s for s in specs if s.origin == "catalogue"]
    assert len(catalogue) == 63 and all(s.module and s.frameworks == ("torch", "keras", "tf") for s in catalogue)
    assert registry.get("twohead").origin == "python" and registry.get("twohead").frameworks == ("torch", "keras", "tf")


@pytest.mark.parametrize("kwargs, message", [
    ({"torch": "twohead_torch:twohead"}, "give builders for two frameworks or three"),
    ({"torch": "twohead_torch:twohead", "keras": 3}, "the keras builder must be a callable"),
    ({"torch": "twohead_torch:twohead", "keras": "twohead_keras:twohead", "classifer": True},
     "unknown option\\(s\\) classifer"),
])
def test_a_bad_registration_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=f"model 'bad': .*{message}"):
        parity.register_model("bad", **kwargs)
    assert registry.find("bad") is None


def test_a_name_of_the_catalogue_is_refused():
    with pytest.raises(ValueError, match="model 'resnet18' is already registered \\(catalogue\\)"):
        parity.register_model("resnet18", torch="twohead_torch:twohead", keras="twohead_keras:twohead")


def _raises(**kwargs):
    raise RuntimeError("no weights here")


def test_a_builder_that_raises_or_returns_the_wrong_type_is_named():
    import twohead_torch
    parity.register_model("raising", torch=twohead_torch.twohead, keras=_raises, input_size=(3, 32, 32))
    with pytest.raises(InputError, match="raising: its keras builder raised RuntimeError: no weights here"):
        parity.build("raising", "keras")
    parity.register_model("mistyped", torch=twohead_torch.twohead, keras=twohead_torch.twohead)
    with pytest.raises(InputError, match="mistyped: its keras builder returned a TwoHead, not a keras model"):
        parity.build("mistyped", "keras")


def heads_swapped(**kwargs):
    import keras
    from twohead_keras import twohead
    full = twohead(**kwargs)
    return keras.Model(full.inputs, full.outputs[::-1], name="heads_swapped")


def test_outputs_that_differ_in_count_or_shape_are_an_error_naming_model_and_framework(capsys):
    parity.register_model("swapped", torch="twohead_torch:twohead", keras=heads_swapped, input_size=(3, 32, 32),
                          outputs=("classes", "attributes"))
    assert main(["check", "swapped", "--frameworks", "keras", "--no-onnx"]) == 2
    printed = capsys.readouterr()  # the error row's text, wrapped in its table cell
    flat = "".join(c for c in printed.out + printed.err if not c.isspace() and c != "│")
    assert "swapped:kerasreturns2output(s)(1,3),(1,10),thereference(torch)2:(1,10),(1,3)" in flat


def test_a_model_named_by_path_finds_its_other_frameworks():
    spec = registry.get("twohead_torch:twohead")
    assert spec.frameworks == ("torch", "keras", "tf") and spec.builders["tf"] == "twohead_tf:twohead"
    assert spec.input_size == (3, 32, 32) and spec.outputs == ("classes", "attributes")  # its PARITY_SPECS
    with pytest.raises(KeyError, match="one framework word"):
        registry.get("twohead_models:twohead")
    with pytest.raises(ValueError, match="'resnet18' is the catalogue's"):
        registry.unregister("resnet18")


def test_summary_export_convert_and_diagnose_on_a_registered_model(tmp_path, capsys):
    assert main(["summary", "twohead", "--framework", "tf"]) == 0
    assert "stem.4.running_var" in capsys.readouterr().out
    assert main(["export", "twohead", "--framework", "keras", "--out", str(tmp_path / "twohead.onnx")]) == 0
    import onnx
    graph = onnx.load(tmp_path / "twohead.onnx").graph
    assert [o.name for o in graph.output] == ["classes", "attributes"]
    torch_file = tmp_path / "twohead.pth"
    import torch
    torch.save(parity.build("twohead").state_dict(), torch_file)
    assert main(["convert", "twohead", str(torch_file), str(tmp_path / "twohead.weights.h5")]) == 0
    keras_model = parity.build("twohead", "keras")
    keras_model.load_weights(tmp_path / "twohead.weights.h5")
    reference = torch.load(torch_file, weights_only=True)
    assert (parity.state_dict(keras_model)["se.expand.weight"] == reference["se.expand.weight"].numpy()).all()
    capsys.readouterr()
    assert main(["diagnose", "twohead", "--frameworks", "tf"]) == 0
    assert "stem.3" in capsys.readouterr().out


def test_models_from_a_module_and_from_entry_points_with_their_origin(tmp_path):
    """`parity list` shows an entry point's models with their origin, and reports an entry point
    that fails to import without losing the others."""
    (tmp_path / "plugin_models.py").write_text(
        "import parity\n"
        "parity.register_model('plugin_net', torch='twohead_torch:twohead', keras='twohead_keras:twohead',\n"
        "                      input_size=(3, 32, 32), outputs=('classes', 'attributes'))\n")
    info = tmp_path / "plugin_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-models\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cnn_parity.models]\nplugin = plugin_models\nbroken = no_such_module\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLE)])}
    done = subprocess.run([sys.executable, "-m", "parity", "list", "--json", str(tmp_path / "list.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "list.json").read_text())}
    assert rows["plugin_net"]["origin"] == "entry point plugin (plugin_models)"
    assert rows["plugin_net"]["frameworks"] == ["torch", "keras"] and len(rows) == 64
    assert "not loaded: entry point 'broken' (no_such_module): ModuleNotFoundError" in done.stdout.replace("\n", "")
    done = subprocess.run([sys.executable, "-m", "parity", "--models-from", "twohead_models", "list", "--json",
                           str(tmp_path / "list2.json")], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "list2.json").read_text())}
    assert rows["twohead"]["origin"] == "module twohead_models"


@pytest.fixture(scope="module")
def renamed_port(tmp_path_factory):
    """The Keras port with layer names of its own (conv_a, bn_a, ..., se_reduce), as ports often have."""
    folder = tmp_path_factory.mktemp("renamed")
    source = (EXAMPLE / "twohead_keras.py").read_text()
    for old, new in [('conv="stem.0", bn="stem.1"', 'conv="conv_a", bn="bn_a"'),
                     ('conv="stem.3", bn="stem.4"', 'conv="conv_b", bn="bn_b"'),
                     ('name=f"{name}.reduce"', 'name=f"{name}_reduce"'), ('name=f"{name}.expand"', 'name=f"{name}_expand"')]:
        assert old in source
        source = source.replace(old, new)
    (folder / "renamed_keras.py").write_text(source)
    sys.path.insert(0, str(folder))
    yield "renamed_keras:twohead"
    sys.path.remove(str(folder))


def test_every_mismatched_key_is_listed_at_once_with_the_closest_canonical_name(renamed_port):
    parity.register_model("unrenamed", torch="twohead_torch:twohead", keras=renamed_port, input_size=(3, 32, 32),
                          outputs=("classes", "attributes"))
    keras_model = parity.build("unrenamed", "keras")
    with pytest.raises(StateDictError) as caught:
        parity.load_state_dict(keras_model, parity.state_dict(parity.build("unrenamed")))
    message = str(caught.value)
    assert "missing keys (16)" in message and "unexpected keys (16)" in message  # (conv 2 + bn 4) x 2 + se 4
    assert "se_reduce.weight ~ se.reduce.weight" in message and "se_expand.bias ~ se.expand.bias" in message


def test_a_rename_map_transfers_weights_and_names_layers_canonically(renamed_port):
    rules = [("conv_a", "stem.0"), ("bn_a", "stem.1"), ("conv_b", "stem.3"), ("bn_b", "stem.4"), (r"se_(\w+)", r"se.\1")]
    parity.register_model("renamed", torch="twohead_torch:twohead", keras=renamed_port, input_size=(3, 32, 32),
                          outputs=("classes", "attributes"), rename={"keras": rules})
    report = parity.check("renamed", frameworks=("keras",), onnx=False)
    assert report.passed and max(r.normalized_error for r in report.results) < 1e-6
    from parity.inference.layerwise import compare
    torch_model, keras_model = parity.build("renamed"), parity.build("renamed", "keras")
    parity.load_state_dict(keras_model, parity.state_dict(torch_model))
    import numpy as np
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    assert {"stem.3", "se.reduce"} <= {row.layer for row in compare(torch_model, keras_model, x, layerwise=True).layers}
    with pytest.raises(ValueError, match="rename maps Keras' or TF's layer paths to torch's, not 'torch'"):
        parity.register_model("bad", torch="twohead_torch:twohead", keras=renamed_port, rename={"torch": {}})


def test_train_check_on_a_registered_model_and_a_planted_batchnorm_bug(tmp_path):
    """The example trains the same (float64 verdict); Keras' own BatchNormalization in its place,
    which tracks the biased batch variance, is caught and named."""
    from parity.train.check import train_check
    result = train_check("twohead", steps=2, frameworks=("keras", "tf"))
    assert result.passed, [(r.framework, r.errors) for r in result.results]
    with planted(tmp_path, "twohead_keras.py", "x = TorchBatchNormalization(epsilon=1e-5, momentum=0.9, name=bn)(x)",
                 "x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=bn)(x)", "keras_bn_bug") as bug:
        parity.register_model("bn_bug", torch="twohead_torch:twohead", keras=bug,
                              input_size=(3, 32, 32), test_sizes=(32, 33), outputs=("classes", "attributes"))
        [row] = train_check("bn_bug", steps=2, frameworks=("keras",)).results
    assert not row.passed and row.first_divergence in ("stem.1.running_var", "stem.4.running_var")
    assert "unbiased" in row.likely_cause


def test_train_check_without_a_torch_builder_judges_against_the_first_framework(tmp_path):
    """Keras and TF ports alone: Keras in float64 is the judge, Keras float32's own distance from
    it the noise. The TF port with Keras' default BatchNorm epsilon (1e-3 where the Keras port
    gives torch's 1e-5) is caught and named, in the float64 verdict and in float32 alike."""
    from parity.train.check import train_check
    parity.register_model("keras_tf", keras="twohead_keras:twohead", tf="twohead_tf:twohead", input_size=(3, 32, 32),
                          test_sizes=(32, 33), outputs=("classes", "attributes"))
    for dtype in ("float32", "float64"):
        result = train_check("keras_tf", steps=2, frameworks=("tf",), dtype=dtype)
        assert result.reference == "keras" and result.passed, [(r.framework, r.errors) for r in result.results]
    with planted(tmp_path, "twohead_tf.py", "BatchNorm2d(32), tf.nn.relu]", "BatchNorm2d(32, eps=1e-3), tf.nn.relu]",
                 "tf_epsilon_bug") as bug:
        parity.register_model("epsilon_bug", keras="twohead_keras:twohead", tf=bug,
                              input_size=(3, 32, 32), test_sizes=(32, 33), outputs=("classes", "attributes"))
        rows = [train_check("epsilon_bug", steps=2, frameworks=("tf",), dtype=d).results[0]
                for d in ("float64", "float32")]
        forward = parity.check("epsilon_bug", frameworks=("tf",), onnx=False, dtype="float64")
    for row in rows:
        assert not row.passed and row.first_divergence == "loss, step 1" and "BN epsilon" in row.likely_cause
        assert row.errors["grad"] > 100 * row.tolerances["grad"]  # 5.2e-2: against 1e-8, and 4.8e-5 in float32
    assert not forward.passed  # the forward alone, in float64 against Keras: 2.0e-3, first divergent at stem.4
    assert {(r.first_divergent_layer, r.normalized_error > 1e-4) for r in forward.results} == {("stem.4", True)}


def test_the_data_parallel_check_reaches_a_model_registered_with_models_from(tmp_path):
    """--models-from is handed to the processes the check starts (the TF child, torch's DDP
    ranks), and the example's second head, which the loss does not reach, gets no gradient on
    every engine as in one process (DDP is told: find_unused_parameters)."""
    out = tmp_path / "dp.json"
    done = subprocess.run([sys.executable, "-m", "parity", "--models-from", "twohead_models", "train-check", "twohead",
                           "--replicas", "2", "--steps", "2", "--json", str(out)], capture_output=True, text=True,
                          cwd=EXAMPLE, timeout=600, env={k: v for k, v in os.environ.items() if k != registry.MODELS_FROM})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["framework"] for r in result["rows"]] == ["torch", "keras", "tf"] and result["passed"]
    assert all(r["error"] is None and r["errors"]["grad"] < 1e-5 for r in result["rows"])


def test_models_from_is_handed_to_child_processes_for_the_command_only():
    assert registry.MODELS_FROM not in os.environ
    assert main(["--models-from", "twohead_models", "list"]) == 0
    assert registry.MODELS_FROM not in os.environ  # the command's children had it; the caller's env is as it was


def flat_torch():
    from torch import nn
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5))


def flat_keras():
    import keras
    from keras import layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, strides=2, name="0")(layers.ZeroPadding2D(1)(inputs))
    x = layers.Flatten()(layers.ReLU()(x))
    return keras.Model(inputs, layers.Dense(5, name="3")(x), name="flat")


def test_a_linear_after_a_spatial_flatten_is_named_with_the_option_to_give():
    parity.register_model("flat", torch=flat_torch, keras=flat_keras, input_size=(3, 8, 8), test_sizes=(8, 8))
    with pytest.raises(InputError, match=r"flat: '3' is a Linear after a spatial flatten of a \(4, 4, 4\) .*"
                                         r"register the model with flatten_linear=\{'3': \(4, 4, 4\)\}"):
        parity.state_dict(parity.build("flat", "keras"))
    parity.register_model("flat_given", torch=flat_torch, keras=flat_keras, input_size=(3, 8, 8), test_sizes=(8, 8),
                          flatten_linear={"3": (4, 4, 4)})
    assert parity.check("flat_given", frameworks=("keras",), onnx=False).passed


def test_selftest_on_a_registered_model_says_which_mutation_cannot_reach_it(tmp_path):
    """The example's TF port holds tf.nn.relu as a function object, which the self-test's
    missing-ReLU mutation (it replaces tf.nn.relu) cannot reach: said so, not counted missed."""
    assert main(["selftest", "twohead", "--frameworks", "tf", "--json", str(tmp_path / "s.json")]) == 0
    rows = {r["mutation"]: r for r in json.loads((tmp_path / "s.json").read_text())["rows"]}
    assert rows["missing ReLU"]["caught"] is None and "did not reach" in rows["missing ReLU"]["note"]
    assert rows["off-by-one padding"]["caught"] and rows["off-by-one padding"]["named_layer"] == "stem.3"


def test_selftest_without_a_torch_builder_mutates_tf_against_keras(tmp_path):
    """Keras is the reference, so TF is the port mutated. Its BatchNorms are calibrated as
    torch's would be: a +1% running mean reaches the output (at Keras' fresh mean 0 it could
    not). The ReLU and pool mutations need torch's modules: said so, not counted."""
    parity.register_model("keras_tf_selftest", keras="twohead_keras:twohead", tf="twohead_tf:twohead",
                          input_size=(3, 32, 32), outputs=("classes", "attributes"))
    assert main(["selftest", "keras_tf_selftest", "--json", str(tmp_path / "s.json")]) == 0
    rows = {r["mutation"]: r for r in json.loads((tmp_path / "s.json").read_text())["rows"]}
    assert {r["framework"] for r in rows.values()} == {"tf"}
    caught = {m for m, r in rows.items() if r["caught"] and r["named_layer"] == r["expected_layer"]}
    assert caught == {"flipped kernel", "transposed kernel", "swapped output channels", "wrong BN epsilon",
                      "BN running mean +1%", "off-by-one padding"}
    assert "no torch builder" in rows["missing ReLU"]["note"] and rows["missing ReLU"]["caught"] is None
    from parity.calibrate import seeded_reference
    reference = seeded_reference("keras_tf_selftest", input_size=(3, 32, 32))[1]
    norm = reference.get_layer("stem.1")
    assert 0.5 <= float(norm.gamma.numpy().min()) and float(abs(norm.moving_mean.numpy()).max()) > 0.01


def test_train_and_bench_on_a_registered_model(tmp_path):
    assert main(["train", "twohead", "--epochs", "1", "--limit", "256", "--frameworks", "torch,tf",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["bench", "twohead", "--frameworks", "torch,keras", "--repeats", "2", "--json",
                 str(tmp_path / "b.json")]) == 0


def test_onnx_files_of_ones_own_are_judged_as_the_exports(tmp_path, capsys):
    """`parity check MODEL --onnx FILE...`: a file holding the reference's weights passes; one
    exported from other weights (seed 1) fails, as a port with other weights would."""
    same, other = tmp_path / "same.onnx", tmp_path / "other.onnx"
    assert main(["export", "twohead", "--framework", "tf", "--out", str(same)]) == 0
    assert main(["export", "twohead", "--framework", "torch", "--seed", "1", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["check", "twohead", "--no-onnx", "--frameworks", "keras", "--onnx", str(same), str(other),
                 "--json", str(tmp_path / "c.json")]) == 1
    rows = {(r["target"], r["output"]): r for r in json.loads((tmp_path / "c.json").read_text())["models"][0]["results"]}
    assert rows[(f"file:{same}", "classes")]["passed"] and rows[(f"file:{same}", "attributes")]["passed"]
    assert not rows[(f"file:{other}", "classes")]["passed"] and rows[("keras", "classes")]["passed"]
    assert main(["check", "twohead", "lenet", "--onnx", str(same)]) == 2
    assert "--onnx judges files against one model; got 2 models" in capsys.readouterr().err


def test_diagnose_maps_an_onnx_files_tensors_to_layers_by_name(tmp_path, capsys):
    """A file exported from a port with the padding bug planted, diagnosed against the faithful
    model: the first divergent layer its names reach is named (stem.3's conv is folded into its
    BatchNorm, stem.4), and the layers no name reaches are listed."""
    with planted(tmp_path, "twohead_keras.py", '''    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="valid", name=conv)(x)''',
                 '''    x = layers.Conv2D(filters, 3, strides=stride, padding="same", name=conv)(x)''', "padding_bug_keras") as bug:
        parity.register_model("padding_bug", torch="twohead_torch:twohead", keras=bug,
                              input_size=(3, 32, 32), outputs=("classes", "attributes"))
        buggy, faithful = tmp_path / "buggy.onnx", tmp_path / "faithful.onnx"
        assert main(["export", "padding_bug", "--framework", "keras", "--out", str(buggy)]) == 0
        assert main(["export", "twohead", "--framework", "keras", "--out", str(faithful)]) == 0
    capsys.readouterr()
    assert main(["diagnose", "twohead", "--onnx", str(faithful)]) == 0
    assert "no tensor of the file is named for: stem.0, stem.3" in capsys.readouterr().out
    assert main(["diagnose", "twohead", "--onnx", str(buggy)]) == 1
    assert "first divergent layer: stem.4" in capsys.readouterr().out


def test_without_a_torch_builder_the_first_framework_given_is_the_reference():
    """Keras and TF ports alone: Keras is the reference, TF and both exports are judged against it."""
    parity.register_model("no_torch", keras="twohead_keras:twohead", tf="twohead_tf:twohead", input_size=(3, 32, 32),
                          outputs=("classes", "attributes"))
    report = parity.check("no_torch")
    assert report.passed and {r.target for r in report.results} == {"tf", "onnx:keras", "onnx:tf"}
    assert max(r.normalized_error for r in report.results) < 1e-6
    assert any("reference: keras" in note for note in report.notes)
    exact = parity.check("no_torch", frameworks=("tf",), onnx=False, dtype="float64")
    assert exact.passed and max(r.normalized_error for r in exact.results) < 1e-11  # Keras rebuilt in float64
    with pytest.raises(ValueError, match="no_torch: no torch builder was registered"):
        parity.build("no_torch", "torch")
    assert main(["diagnose", "no_torch"]) == 0  # keras -> tf, layer by layer
    assert main(["list"]) == 0  # its parameters are counted on torch_impl: "-"
    assert main(["summary", "no_torch"]) == 0  # the canonical weights of its first framework


def test_train_without_a_torch_builder_runs_its_frameworks_and_a_keras_control(tmp_path):
    """By default the frameworks the model is written in; --control's A/A run is the reference's."""
    parity.register_model("keras_tf_train", keras="twohead_keras:twohead", tf="twohead_tf:twohead",
                          input_size=(3, 32, 32), outputs=("classes", "attributes"))
    assert main(["train", "keras_tf_train", "--epochs", "1", "--limit", "128", "--control", "--out",
                 str(tmp_path / "run"), "--json", str(tmp_path / "t.json")]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["frameworks"] == ["keras", "tf"] and set(result["agreement"]) == {"tf", "keras-aa"}
    assert all(row["reference"] == "keras" for row in result["agreement"].values())


def test_export_and_bench_without_a_torch_builder(tmp_path):
    """export writes the reference's (Keras') graph by default; bench times what the model is
    written in, compares outputs with Keras and says what it left out."""
    from parity.bench.measure import bench
    parity.register_model("keras_tf_bench", keras="twohead_keras:twohead", tf="twohead_tf:twohead",
                          input_size=(3, 32, 32), outputs=("classes", "attributes"))
    assert main(["export", "keras_tf_bench", "--out", str(tmp_path / "k.onnx")]) == 0
    assert (tmp_path / "k.onnx").stat().st_size > 0
    result = bench("keras_tf_bench", frameworks=None, repeats=2, warmup=1)
    measured = {t.runtime: t for t in result.runtimes if t.status == "ok"}
    assert result.reference == result.baseline == "keras" and {"keras", "tf", "onnx:tf"} <= set(measured)
    assert not any(r.startswith("torch") for r in measured) and measured["tf"].error_vs_torch < 1e-5
    assert any("left out: torch" in note for note in result.notes)


def test_a_keras_activation_folded_into_a_layer_is_compared_before_it():
    """Conv2D(..., activation="relu"), the idiomatic Keras spelling, computes what torch's conv then
    ReLU do; layer by layer it is compared before its activation, as torch's conv output is."""
    source = (EXAMPLE / "twohead_keras.py").read_text()
    folded = source.replace('''    gates = layers.ReLU()(layers.Conv2D(channels // reduction, 1, name=f"{name}.reduce")(gates))
    gates = layers.Activation("sigmoid")(layers.Conv2D(channels, 1, name=f"{name}.expand")(gates))''',
                            '''    gates = layers.Conv2D(channels // reduction, 1, activation="relu", name=f"{name}.reduce")(gates)
    gates = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}.expand")(gates)''')
    assert folded != source
    namespace = {}
    exec(compile(folded, "folded_keras.py", "exec"), namespace)
    parity.register_model("folded", torch="twohead_torch:twohead", keras=namespace["twohead"], input_size=(3, 32, 32),
                          outputs=("classes", "attributes"))
    import numpy as np
    from parity.inference.layerwise import compare
    from parity.testing import ports_of
    ports = ports_of("folded", ("torch", "keras"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    result = compare(ports["torch"], ports["keras"], x, layerwise=True)
    assert result.passed and result.first_divergent_layer is None
    assert {row.layer for row in result.layers} >= {"se.reduce", "se.expand"}
