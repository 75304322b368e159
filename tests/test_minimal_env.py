"""The minimal install: CPU torch + Keras on the torch backend + the base dependencies, no
TensorFlow, no ONNX tools (docs/platforms.md). Built once into .ci/venv-minimal (ignored by
git; about 35 s from a package mirror, then reused), it runs tests/test_platforms.py, which
checks that every command works with what is installed and says what it left out.

Part of the default run, so the README's `pytest -q` and CI test the same environments."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _beside import pip_failure

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".ci" / "venv-minimal"
PYTHON = VENV / "bin" / "python"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pip(*args) -> subprocess.CompletedProcess:
    # --no-compile: Python compiles what it imports anyway; byte-compiling all of torch at
    # install time took the build from 35 s to 71 s on the 2-core machine
    return subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--no-compile", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def build_minimal_venv() -> str:
    """"" once .ci/venv-minimal holds the minimal install, else why not (pip's last line)."""
    ready = VENV / "parity-minimal-ready-2"  # bump when the install changes
    if ready.exists():
        return ""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    constraints = ["-c", ".ci/constraints-cpu.txt"]
    for step in (["--no-deps", "--index-url", CPU_INDEX, *constraints, "torch"],
                 [*constraints, "-e", ".", "torch", "keras", "pytest", "pytest-xdist"]):
        run = pip(*step)
        if run.returncode != 0:
            return pip_failure(run, "build the minimal environment")
    ready.write_text("torch + keras, no TensorFlow, no ONNX tools\n")
    return ""


def test_platform_tests_pass_with_torch_and_keras_on_torch_alone():
    why_not = build_minimal_venv()
    if why_not:
        pytest.skip(why_not)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    # -n 0: one file in one process; two more workers would only import torch and Keras twice
    run = subprocess.run([str(PYTHON), "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                          "tests/test_platforms.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout and "failed" not in run.stdout
    check = subprocess.run([str(PYTHON), "-c", "import importlib.util as u; "
                            "print([m for m in ('tensorflow', 'onnxruntime') if u.find_spec(m)])"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "[]", check.stdout  # really minimal
