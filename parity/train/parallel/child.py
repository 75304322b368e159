"""A child interpreter for the engines whose devices are fixed when they start (TF's logical
CPUs, XLA's host devices): run_child starts it with N devices, hands it a payload and reads
its answer; payloads travel as .npz (arrays, read without pickle) and .json (the rest)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder that holds parity/


def run_child(module, function, payload, *, replicas, backend="tensorflow", limit=600.0):
    """module.function() in a fresh interpreter with N host devices for TF's logical CPUs and
    XLA (JAX), reading `payload` with read_payload(sys.argv[1] + "/jobs") and writing its
    answer to sys.argv[1] + "/rows"; returns the answer. Killed with its process group on
    timeout, failure or Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="parity-mirrored-") as workdir:
        write_payload(os.path.join(workdir, "jobs"), payload)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={replicas}",
               "PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)}
        with open(os.path.join(workdir, "stderr"), "w") as stderr:
            process = subprocess.Popen([sys.executable, "-c", f"from {module} import {function}; {function}()",
                                        workdir], env=env, stdout=stderr, stderr=stderr, start_new_session=True)
            _CHILDREN.add(process)
            try:
                process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"the MirroredStrategy process did not finish in {limit:g} s; ended it") from None
            finally:
                end_child(process)
        if process.returncode != 0:
            with open(os.path.join(workdir, "stderr")) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"the MirroredStrategy process failed (exit {process.returncode}):\n{tail}")
        return read_payload(os.path.join(workdir, "rows"))


_CHILDREN = set()


def end_child(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _CHILDREN.discard(process)


def end_children():
    for process in list(_CHILDREN):
        end_child(process)


def write_payload(stem, payload) -> None:
    arrays, names = {}, {}  # one entry per array object: the jobs of several frameworks share one state

    def plain(value):
        if isinstance(value, np.ndarray):
            if id(value) not in names:
                names[id(value)] = f"a{len(names)}"
                arrays[names[id(value)]] = value
            return {"npz": names[id(value)]}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value.item() if isinstance(value, np.generic) else value
    tree = plain(payload)
    with open(stem + ".npz", "wb") as f:
        np.savez(f, **arrays)
    with open(stem + ".json", "w") as f:
        json.dump(tree, f)


def read_payload(stem):
    with open(stem + ".json") as f:
        tree = json.load(f)
    with np.load(stem + ".npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}

    def restore(value):
        if isinstance(value, dict):
            return arrays[value["npz"]] if set(value) == {"npz"} else {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value
    return restore(tree)
