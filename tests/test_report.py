"""`parity report`: the page renders, with heatmap, failure plots and environment."""
import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import parity
from parity import report


@pytest.fixture(scope="module")
def payload():
    """A real passing check plus a real failing comparison (a flipped kernel in tf)."""
    from parity.calibrate import calibrated_torch_model, seeded_input
    from parity.inference.layerwise import compare
    passing = parity.check("resnet18", size=32, frameworks=("tf",), onnx=False).to_json()
    reference = calibrated_torch_model("resnet18", input_size=(3, 32, 32))
    state = parity.state_dict(reference)
    state["layer3.0.conv1.weight"] = np.ascontiguousarray(state["layer3.0.conv1.weight"][:, :, ::-1, ::-1])
    candidate = parity.build("resnet18", framework="tf")
    parity.load_state_dict(candidate, state)
    found = compare(reference, candidate, seeded_input((1, 3, 32, 32)))
    failing = {"model": "resnet18 (flipped)", "input_shape": [1, 3, 32, 32], "device": "cpu", "passed": False,
               "results": [{"target": "tf", "output": "logits", "max_abs": found.max_abs,
                            "normalized_error": found.normalized_error, "tolerance": found.tolerance,
                            "passed": False, "headroom": found.headroom, "error": None,
                            "first_divergent_layer": found.first_divergent_layer,
                            "layer_errors": [(e.layer, e.normalized_error) for e in found.layers]}]}
    return {"passed": False, "models": [passing, failing]}


def test_html_is_self_contained_with_plots_and_environment(payload, tmp_path):
    report.write(payload, tmp_path / "r.html", tmp_path / "r.md")
    page = (tmp_path / "r.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # the heatmap and one per-layer plot for the failure
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert 'id="verdict">FAIL' in page and "resnet18 (flipped)" in page and "first divergent: layer3.0.conv1" in page
    for package in ("torch", "keras", "onnxruntime", "python"):
        assert f"<th>{package}</th>" in page
    markdown = (tmp_path / "r.md").read_text()
    assert "first divergent: layer3.0.conv1" in markdown and "| resnet18 | tf |" in markdown
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_heatmap_labels_fit_the_figure(payload):
    figure = report.heatmap_figure({"passed": True, "models": payload["models"][:1]})  # one target: the narrowest
    figure.canvas.draw()  # applies the layout
    renderer = figure.canvas.get_renderer()
    colorbar = figure.axes[1]
    ticks = [t for t in colorbar.get_yticklabels() if t.get_text()]
    assert len(ticks) == 5 and "headroom = error / tolerance" in colorbar.get_ylabel()
    bounds = figure.bbox
    for text in [colorbar.yaxis.label, *ticks, figure.axes[0].title]:
        box = text.get_window_extent(renderer)
        assert bounds.x0 <= box.x0 and box.x1 <= bounds.x1 and bounds.y0 <= box.y0 and box.y1 <= bounds.y1, \
            (text.get_text(), box, bounds)


def test_report_from_check_json_via_cli(payload, tmp_path):
    import json
    import sys
    (tmp_path / "results.json").write_text(json.dumps(payload))
    out = subprocess.run([sys.executable, "-m", "parity", "report", "--from", tmp_path / "results.json",
                          "--out", tmp_path / "page.html"], capture_output=True, text=True)
    assert out.returncode == 1 and (tmp_path / "page.html").exists()  # the sweep failed: exit 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_page_renders_in_headless_chromium(payload, tmp_path):
    report.write(payload, tmp_path / "r.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", (tmp_path / "r.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'id="results"' in dom and 'id="environment"' in dom and "FAIL" in dom
    subprocess.run([CHROMIUM, *flags, f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1200,1600",
                    (tmp_path / "r.html").as_uri()], capture_output=True, timeout=120)
    shot = (tmp_path / "shot.png").read_bytes()
    assert shot.startswith(b"\x89PNG") and len(shot) > 20_000


def test_training_runs_in_the_report(tmp_path):
    """`parity report --runs DIR`: a real two-framework `parity train` run's curves and final epoch."""
    from parity.cli import main
    run_dir = tmp_path / "run"
    assert main(["train", "lenet", "--frameworks", "torch,tf", "--epochs", "1", "--limit", "32", "--batch", "16",
                 "--out", str(run_dir)]) == 0
    assert main(["report", "--runs", str(run_dir), "--out", str(tmp_path / "r.html"),
                 "--markdown", str(tmp_path / "r.md")]) == 0
    page = (tmp_path / "r.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0]) == (run_dir / "curves.png").read_bytes()
    assert "Training runs" in page and "<td>torch</td>" in page and "<td>tf</td>" in page
    # Only training runs: no verdict, no check sections, and the agreement columns the CLI prints.
    assert "PASS" not in page and "FAIL" not in page and "Headroom" not in page and 'id="results"' not in page
    assert "cnn-parity report: training runs" in page and "max |step loss - ref|" in page
    agreement = json.loads((run_dir / "run.json").read_text())["agreement"]["tf"]
    assert f"<td>{agreement['max_step_loss_diff']:.1e}</td>" in page
    assert f"<td>{agreement['final_weight_diff']:.1e}</td>" in page
    markdown = (tmp_path / "r.md").read_text()
    assert "## Training: lenet, 1 epochs" in markdown and "PASS" not in markdown and "weights vs ref" in markdown
    assert main(["report", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()
