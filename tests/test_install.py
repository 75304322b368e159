"""README command 1 gives a CPU torch from the public indexes: its first step takes torch from
PyTorch's CPU index, and .ci/constraints-cpu.txt pins the "+cpu" build, so the second step can
never fall back to PyPI's CUDA build (526 MB plus several GB of nvidia-* wheels).

Resolve-only dry runs (`pip install --dry-run`, metadata only), `--isolated` so this machine's
pip configuration (a local wheel folder) does not answer for the public index. Each skips with
the reason where its index cannot be reached."""
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / ".ci" / "constraints-cpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


def dry_run(tmp_path, *args) -> subprocess.CompletedProcess:
    report = tmp_path / "report.json"
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
                           "--no-deps", "--retries", "1", "--report", str(report), "-c", str(CONSTRAINTS), *args],
                          capture_output=True, text=True, timeout=300)


def readme_setup_command() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return blocks[0]


def test_readme_takes_torch_from_the_cpu_index_before_the_project():
    command = readme_setup_command()
    assert f"--index-url {CPU_INDEX}" in command
    assert command.index(CPU_INDEX) < command.index('-e ".[cpu,dev]"')
    pins = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("torch==")]
    assert any(line.startswith("torch==2.13.0+cpu;") for line in pins), pins


@pytest.mark.skipif(not reachable("download.pytorch.org"), reason="PyTorch's CPU index (download.pytorch.org) "
                    "is not reachable from this machine")
def test_the_cpu_pin_resolves_to_a_cpu_wheel_on_pytorchs_index(tmp_path):
    run = dry_run(tmp_path, "--index-url", CPU_INDEX, "torch")
    assert run.returncode == 0, run.stderr[-2000:]
    (torch,) = json.loads((tmp_path / "report.json").read_text())["install"]
    assert torch["metadata"]["version"].endswith("+cpu"), torch["metadata"]["version"]
    assert torch["download_info"]["url"].startswith("https://download.pytorch.org/"), torch["download_info"]["url"]


@pytest.mark.skipif(not reachable("pypi.org"), reason="PyPI is not reachable from this machine")
def test_pypi_alone_cannot_satisfy_the_cpu_pin(tmp_path):
    # Without PyTorch's index the pin fails loudly instead of taking PyPI's CUDA build.
    run = dry_run(tmp_path, "--index-url", "https://pypi.org/simple", "torch")
    said = run.stdout + run.stderr
    assert run.returncode != 0, said[-2000:]
    # pip words it "No matching distribution", or names the pin in a conflict where another
    # constraint (a machine-wide pip cap) applies too.
    assert "No matching distribution found for torch" in said or "2.13.0+cpu" in said, said[-2000:]


def test_ci_runs_exactly_the_readme_commands():
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)[:2]
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd ", "rm -rf "))]
    assert commands == [block.strip() for block in blocks]
