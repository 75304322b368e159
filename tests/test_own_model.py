"""A model of one's own (issue 34, landing 1): registered from anywhere (parity.register_model,
a --models-from module, a `cnn_parity.models` entry point, a `package.module:builder` path),
and every inference command on it; bad builders refused by name. The example network itself
is proven in examples/own_model/test_twohead.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import parity
from parity.catalogue import registry
from parity.cli import main
from parity.errors import InputError

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


def test_the_catalogue_registers_through_the_same_public_path():
    specs = [registry.get(n) for n in registry.names()]
    catalogue = [s for s in specs if s.origin == "catalogue"]
    assert len(catalogue) == 63 and all(s.module and s.frameworks == ("torch", "keras", "tf") for s in catalogue)
    assert registry.get("twohead").origin == "python" and registry.get("twohead").frameworks == ("torch", "keras", "tf")


@pytest.mark.parametrize("kwargs, message", [
    ({"torch": "twohead_torch:twohead"}, "give builders for two frameworks or three, torch"),
    ({"keras": "twohead_keras:twohead", "tf": "twohead_tf:twohead"}, "torch \\(the reference\\) among them"),
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
    reference = torch.load(torch_file)
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
