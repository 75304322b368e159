#!/usr/bin/env python
"""ONNX export time and peak memory per framework (the `export` section of benchmarks/run.py).

Each export runs alone in a fresh child process: build the torch model, take its canonical
state, build and load the framework's model, drop everything else, then export. The child
resets the kernel's peak-RSS counter (/proc/self/clear_refs) right before the export, so
`peak` is the export's own high-water mark over the process's resident memory before it
(`before`: the framework, its model and the state). Big models wait until the machine has
MIN_AVAILABLE_GIB available and run one at a time.

    python benchmarks/export_bench.py --models resnet50,vgg16 [--size 224]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("resnet50", "vgg16", "densenet121", "inception_v3", "resnext101_32x8d")
FRAMEWORKS = ("torch", "keras", "tf")
MIN_AVAILABLE_GIB = 12
TITLE = "ONNX export: time and peak memory"


def export_section(args) -> tuple[str, dict]:
    """(markdown, data) for benchmarks/run.py; uses args.export_models if set, else MODELS."""
    models = getattr(args, "export_models", None) or MODELS
    size = getattr(args, "size", None)
    rows, data = [], {}
    for name in models:
        results = {fw: measure_in_child(name, fw, size) for fw in FRAMEWORKS}
        data[name] = results
        torch_seconds = results["torch"].get("export_s")
        for fw, r in results.items():
            rows.append(_row(name, fw, r, torch_seconds))
    return _table(rows), data


def measure_in_child(name, framework, size=None, timeout=1800) -> dict:
    _wait_for_memory()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, __file__, "--child", name, framework] + ([str(size)] if size else [])
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
        return {"error": f"{why}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}",
                "wall_s": time.perf_counter() - began}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(name, framework, size=None) -> dict:
    import gc
    import tempfile

    import parity
    from parity.catalogue import registry
    from parity.adapters import adapter
    spec = registry.get(name)
    c, h, w = spec.input_size
    if size:
        h = w = size
    torch_model = adapter("torch").build(name, input_size=(c, h, w)).eval()
    state = adapter("torch").state_dict(torch_model)
    weight_bytes = sum(v.nbytes for v in state.values())
    model = torch_model
    if framework != "torch":
        model = adapter(framework).build(name, input_size=(c, h, w))
        adapter(framework).load_state_dict(model, state)
        del torch_model
    del state
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        before = _status("VmRSS")
        _reset_peak()
        began = time.perf_counter()
        parity.export_onnx(model, Path(tmp) / f"{name}.onnx", (1, c, h, w))
        seconds = time.perf_counter() - began
        peak = _status("VmHWM")
    return {"model": name, "framework": framework, "size": h, "weights_mb": weight_bytes / 2**20,
            "before_mb": before / 2**20, "peak_mb": peak / 2**20, "export_s": seconds,
            "peak_over_weights": (peak - before) / weight_bytes}


def _status(field) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def _reset_peak():
    """Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _available_gib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) / 2**20 for line in f if line.startswith("MemAvailable"))


def _wait_for_memory(poll=10, limit=1800):
    waited = 0
    while _available_gib() < MIN_AVAILABLE_GIB and waited < limit:
        time.sleep(poll)
        waited += poll


def _row(name, fw, r, torch_seconds):
    if "error" in r:
        return (name, fw, "-", "-", "-", "-", r["error"])
    ratio = f"{r['export_s'] / torch_seconds:.2f}" if torch_seconds else "-"
    return (name, fw, f"{r['weights_mb']:.0f}", f"{r['export_s']:.1f}", ratio,
            f"{r['peak_mb'] - r['before_mb']:.0f} ({r['peak_over_weights']:.1f}x)", f"{r['peak_mb']:.0f}")


def _table(rows) -> str:
    headers = ("model", "framework", "weights MB", "export s", "vs torch", "export peak - before, MB (x weights)",
               "process peak MB")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        print(json.dumps(child(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else None)), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--size", type=int)
    args = p.parse_args(argv)
    args.export_models = [m for m in args.models.split(",") if m]
    text, data = export_section(args)
    print(text)
    print(json.dumps(data, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
