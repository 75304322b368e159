"""The `parity` command line, run as a user runs it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest


def parity_cli(*args, check=False):
    """`python -m parity ...` in a subprocess, exactly as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "parity", *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


def parity_main(*args, capsys=None):
    """The same command in-process (frameworks imported once): (exit code, stdout)."""
    from parity.cli import main
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out if capsys else ""


def test_list_shows_counted_parameters(tmp_path):
    out = parity_cli("list", "--family", "resnet", "--json", tmp_path / "list.json", check=True)
    assert "resnet50" in out.stdout and "25,557,032" in out.stdout
    rows = {r["model"]: r for r in json.loads((tmp_path / "list.json").read_text())}
    assert rows["wide_resnet50_2"]["parameters"] == 68_883_240
    assert all(r["parameters"] == r["published"] for r in rows.values() if r["published"])


def test_check_writes_the_documented_json(tmp_path):
    out = parity_cli("check", "resnet18", "--size", "48", "--no-onnx", "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resnet18" in out.stdout and "PASS" in out.stdout
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["passed"] is True
    model = payload["models"][0]
    assert model["model"] == "resnet18" and model["input_shape"] == [1, 3, 48, 48] and model["device"] == "cpu"
    assert [r["target"] for r in model["results"]] == ["keras", "tf"]
    for r in model["results"]:
        assert {"target", "max_abs", "normalized_error", "tolerance", "passed", "headroom"} <= set(r)
        assert r["tolerance"] == 1e-5 and r["passed"]


def test_check_exits_1_when_parity_fails(tmp_path):
    import parity
    state = parity.state_dict(parity.build("resnet18"))
    zeros = {k: np.zeros_like(v) for k, v in state.items()}  # a dead network: degenerate reference
    parity.save_state(zeros, tmp_path / "dead.safetensors")
    out = parity_cli("check", "resnet18", "--size", "32", "--no-onnx", "--frameworks", "tf",
                     "--weights", tmp_path / "dead.safetensors")
    assert out.returncode == 1 and "FAIL" in out.stdout


def test_usage_errors_exit_2():
    out = parity_cli("check", "resnet5")
    assert out.returncode == 2 and "unknown model 'resnet5'" in out.stderr


def test_export_and_convert_round_trip(tmp_path, capsys):
    import onnx
    assert parity_main("export", "resnet18", "--framework", "tf", "--size", "32", "--out", tmp_path / "r.onnx")[0] == 0
    graph = onnx.load(tmp_path / "r.onnx").graph
    assert graph.input[0].name == "input" and graph.output[0].name == "logits"

    import parity
    from parity.calibrate import calibrated_torch_model
    state = parity.state_dict(calibrated_torch_model("resnet18", input_size=(3, 32, 32)))
    parity.save_state(state, tmp_path / "a.safetensors")
    chain = ["a.safetensors", "b.weights.h5", "c.tfckpt", "d.pt", "e.safetensors"]
    for src, dst in zip(chain, chain[1:]):
        assert parity_main("convert", "resnet18", tmp_path / src, tmp_path / dst, capsys=capsys)[0] == 0
    back = parity.load_state(tmp_path / "e.safetensors")
    assert back.keys() == state.keys() and all(np.array_equal(back[k], state[k]) for k in state)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_export_says_which_weights_it_wrote(tmp_path, capsys):
    import onnxruntime as ort

    import parity
    code, out = parity_main("export", "lenet", "--out", tmp_path / "seeded.onnx", capsys=capsys)
    assert code == 0 and "seeded random weights (seed 0, BatchNorm-calibrated, not trained" in out, out
    model = parity.build("lenet")
    parity.save_state(parity.state_dict(model), tmp_path / "mine.safetensors")
    code, out = parity_main("export", "lenet", "--weights", tmp_path / "mine.safetensors", "--out",
                            tmp_path / "mine.onnx", capsys=capsys)
    assert code == 0 and f"weights from {tmp_path / 'mine.safetensors'}" in out, out
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28), dtype=np.float32)
    exported = ort.InferenceSession(str(tmp_path / "mine.onnx")).run(None, {"input": x})[0]
    from parity.adapters import adapter
    np.testing.assert_allclose(exported, adapter("torch").run(model, x)[0], atol=1e-5)


def subcommand_parser(name):
    from parity.cli import _parser, _subcommands
    return _subcommands(_parser())[name]


def test_export_help_describes_every_option():
    undescribed = [a.dest for a in subcommand_parser("export")._actions if not a.help]
    assert not undescribed, undescribed
    out = parity_cli("export", "--help", check=True).stdout
    assert "not trained" in out and "calibrated" in out


def test_summary_lists_canonical_names(capsys):
    code, out = parity_main("summary", "resnet18", "--framework", "keras", capsys=capsys)
    assert code == 0 and "layer1.0.conv1.weight" in out and "(64, 64, 3, 3)" in out


@pytest.mark.slow
def test_check_all_passes():
    out = parity_cli("check", "--all")
    assert out.returncode == 0, out.stdout[-4000:]


def test_version_and_no_command_behave_alike_as_parity_and_python_m_parity():
    from importlib.metadata import version
    out = parity_cli("--version", check=True)
    assert out.stdout.strip() == f"parity (cnn-parity) {version('cnn-parity')}"
    bare = parity_cli()
    script = subprocess.run([str(__import__("pathlib").Path(sys.executable).parent / "parity")], capture_output=True,
                            text=True)
    assert bare.returncode == script.returncode == 0 and bare.stdout == script.stdout and "train-check" in bare.stdout


def test_misspellings_get_suggestions_and_the_subcommands_usage():
    out = parity_cli("check", "resnet5")
    assert out.returncode == 2 and "did you mean 'resnet50'" in out.stderr
    out = parity_cli("check", "resnet18", "--frameworks", "kears")
    assert out.returncode == 2 and "did you mean 'keras'" in out.stderr
    out = parity_cli("check", "resnet18", "--szie", "32")
    assert out.returncode == 2 and out.stderr.startswith("usage: parity check ")
    assert "unknown option '--szie' (did you mean '--size'" in out.stderr


def test_errors_are_one_line_as_written_whatever_the_width(tmp_path):
    long_name = tmp_path / ("a-very-long-folder-name-" * 6) / "[data]" / "w.safetensors"
    out = parity_cli("convert", "resnet18", long_name, tmp_path / "x.safetensors")
    error_lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(error_lines) == 1, out.stderr
    assert str(long_name) in error_lines[0]  # "[data]" not eaten as markup, the path not wrapped


def test_help_states_the_defaults_the_run_uses():
    for name, normalize in (("train", "half"), ("finetune", "imagenet")):
        action = next(a for a in subcommand_parser(name)._actions if a.dest == "normalize")
        assert action.default == normalize and f"default: {normalize}" in action.help


def test_check_table_fits_80_columns_with_whole_target_names():
    from rich.console import Console

    from parity.inference.check import ModelReport, TargetResult
    from parity.inference.commands import report_table
    results = [TargetResult(target, "logits", 1.2e-6, 8.8e-7, 1e-5, True, 0.09, top1_agreement=1.0, seconds=12.3)
               for target in ("keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf")]
    report = ModelReport("resnext101_64x4d", (1, 3, 224, 224), "cpu", results=results,
                         notes=["reference noise 2.1e-6 [torch fp32 vs fp64]"])
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(report_table(report))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80, text
    assert all(t in text for t in ("onnx:torch", "onnx:keras", "onnx:tf", "status", "[torch fp32 vs fp64]")), text
    assert "headroom = error / tol, lower is better" in " ".join(text.split())


def test_messages_print_as_written():
    from rich.console import Console

    from parity.console import say
    console = Console(width=40, record=True, file=open(os.devnull, "w"))
    hint = "digits: needs scikit-learn (pip install -e '.[data]' in the clone) [red]not markup[/red]"
    say(console, hint, "yellow")
    assert console.export_text().strip() == hint  # whole, on one line, brackets kept
