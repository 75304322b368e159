"""Pinned packages the tests install for themselves, beside the venv, never into it.

torchvision 0.28.0 (the external reference of tests/test_references.py) and triton 3.9.0
(what torch's CUDA wheels bring: the import-order test) must not enter the venv: PyPI's
torchvision is a CUDA build whose C++ ops fail against the CPU torch, and triton in the venv
would change how every torch import behaves. `pip install --no-deps --target DIR` puts each in
its own folder under .ci/beside/ (ignored by git) on first use, so the README's `pytest -q`
and CI run the same tests with the same skips. Where the package registry cannot be reached,
the caller skips with the reason pip gave.
"""
import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

BESIDE = Path(__file__).resolve().parents[1] / ".ci" / "beside"
PINS = {"torchvision": "torchvision==0.28.0", "triton": "triton==3.9.0"}


def installed_beside(package: str) -> tuple[Path | None, str]:
    """(the folder holding `package`, "") once installed, else (None, why not). Both xdist
    workers collect every file, so the install is done under a lock, by the first to ask."""
    BESIDE.mkdir(parents=True, exist_ok=True)
    with open(BESIDE / f".{package}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install(package)


def pip_failure(run: subprocess.CompletedProcess, what: str) -> str:
    """"pip could not WHAT: its last line", the reason a test skips with."""
    lines = (run.stderr or run.stdout).strip().splitlines()
    return f"pip could not {what}: {lines[-1] if lines else 'no output'}"


def _install(package: str) -> tuple[Path | None, str]:
    target = BESIDE / package
    if (target / package).is_dir():
        return target, ""
    staging = BESIDE / f".{package}.partial"  # a half-finished install never looks installed
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--upgrade",
                          "--target", str(staging), PINS[package]], capture_output=True, text=True, timeout=600)
    if run.returncode != 0 or not (staging / package).is_dir():
        return None, pip_failure(run, f"install {PINS[package]} beside the venv")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target, ""
