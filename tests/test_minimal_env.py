"""The minimal install: CPU torch + Keras on the torch backend + the base dependencies, no
TensorFlow, no ONNX tools (docs/platforms.md). Built once into .ci/venv-minimal (ignored by
git; about 12 s from a package mirror, torch linked from this environment, then reused), it
runs tests/test_platforms.py, which checks that every command works with what is installed
and says what it left out.

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
    ready = VENV / "parity-minimal-ready-3"  # bump when the install changes
    if ready.exists() and all(link.exists() for link in VENV.glob("lib/python*/site-packages/*torch*")):
        return ""  # built, and its torch links do not dangle (a .venv made again since)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    constraints = ["-c", ".ci/constraints-cpu.txt"]
    if not link_cpu_torch():
        run = pip("--no-deps", "--index-url", CPU_INDEX, *constraints, "torch")
        if run.returncode != 0:
            return pip_failure(run, "build the minimal environment")
    run = pip(*constraints, "-e", ".", "torch", "keras", "pytest", "pytest-xdist")  # torch's own dependencies too
    if run.returncode != 0:
        return pip_failure(run, "build the minimal environment")
    ready.write_text("torch + keras, no TensorFlow, no ONNX tools\n")
    return ""


def link_cpu_torch() -> bool:
    """Link this environment's CPU torch into the minimal one instead of installing the same
    wheel again (unpacking it took 11 s on the 2-core machine, and a slow or unreachable CPU
    index as long again). False, and nothing linked, where this torch is not a CPU build."""
    from importlib import metadata
    try:
        dist = metadata.distribution("torch")
    except metadata.PackageNotFoundError:
        return False
    if not dist.version.endswith("+cpu"):
        return False
    source = Path(dist.locate_file(""))
    [site_packages] = VENV.glob("lib/python*/site-packages")
    for top in {f.parts[0] for f in dist.files or ()} - {".."}:  # torch, functorch, torchgen, the dist-info
        (site_packages / top).symlink_to(source / top)
    return True


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
