#!/usr/bin/env python
"""The steps of benchmarks/gpu_check.sh for one Keras backend (KERAS_BACKEND), in one process.

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --out jax.json            # on a CUDA machine
    python benchmarks/gpu_check.py --summary torch.json jax.json > summary.md   # the tables

Steps, each timed and recorded even when it fails (the JSON is rewritten after every step,
so a run stopped by its time limit keeps what it measured):

  reference  torch_impl vs torchvision on the device, same weights (torch backend run only)
  check      parity.check of keras_impl against torch_impl, strict fp32 and with TF32
  bench      parity bench --frameworks torch,keras at one batch, strict and with TF32
  precision  bf16 parity of torch autocast and Keras mixed precision (the noise rule applies)
  training   (issue 11) parity train-check on the device: torch_impl (torch backend run only)
             and keras_impl trained on the GPU, judged against torch fp64 on the CPU; the
             examples/sec of parity's training step against a plain loop (train_bench.py);
             `parity train lenet` on the embedded digits, two epochs

--device cpu with a small --size runs the same steps on a CPU (how the script was tested).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="JSON file for this backend's results")
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--size", type=int, help="input size (default: the model's)")
    p.add_argument("--batch", type=int, default=64, help="bench batch")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--precision-models", default="resnet50,vgg16_bn,googlenet")
    p.add_argument("--precision-batch", type=int, default=8)
    p.add_argument("--parts", default="inference,training", help="comma list of inference, training")
    p.add_argument("--train-models", default="lenet:28:sgd,resnet18:64:sgd,alexnet:64:adamw,googlenet:64:adam,"
                                                  "resnet50:64:adam,densenet121:64:sgd",
                   help="train-check runs, model:size:optimizer")
    p.add_argument("--train-batch", type=int, default=64, help="train bench batch")
    p.add_argument("--summary", nargs="+", metavar="JSON", help="print the markdown tables of earlier runs")
    args = p.parse_args(argv)
    if args.summary:
        print(summary([json.loads(Path(f).read_text()) for f in args.summary if Path(f).exists()]))
        return 0
    return run(args)


def run(args) -> int:
    import keras

    backend = keras.backend.backend()
    record = {"backend": backend, "device": args.device, "model": args.model, "size": args.size, "steps": []}
    out = Path(args.out) if args.out else None

    def step(name, call):
        began = time.perf_counter()
        print(f"[{backend}] {name} ...", flush=True)
        try:
            entry = {"step": name, "ok": True, "result": call()}
        except Exception as exc:  # one broken step is recorded, the others still run
            traceback.print_exc()
            entry = {"step": name, "ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}
        entry["seconds"] = round(time.perf_counter() - began, 1)
        record["steps"].append(entry)
        print(f"[{backend}] {name}: {'ok' if entry['ok'] else entry['error']} ({entry['seconds']} s)", flush=True)
        if out:
            out.write_text(json.dumps(record, indent=1, default=float))

    parts = set(args.parts.split(","))
    if "training" in parts:
        frameworks = ("torch", "keras") if backend == "torch" else ("keras",)
        for run in filter(None, args.train_models.split(",")):
            name, size, optimizer = run.split(":")
            step(f"train-check {name} {size}px {optimizer}",
                 lambda name=name, size=int(size), optimizer=optimizer: train_check(args, name, size, optimizer,
                                                                                    frameworks))
        for name in ("lenet", "resnet18"):
            step(f"train bench {name} batch {args.train_batch}", lambda name=name: train_bench(args, name, frameworks))
        step("train lenet digits 2 epochs", lambda: short_training(args, frameworks))
    if "inference" not in parts:
        return finish(record, out, args.device)
    if backend == "torch":
        step(f"reference {args.model} vs torchvision", lambda: torchvision_reference(args))
    for tf32 in (False, True):
        step(f"check {args.model} tf32={tf32}", lambda tf32=tf32: check(args, tf32))
    for tf32 in (False, True):
        step(f"bench {args.model} batch {args.batch} tf32={tf32}", lambda tf32=tf32: bench(args, tf32))
    for name in filter(None, args.precision_models.split(",")):
        step(f"precision {name} bf16", lambda name=name: precision(args, name))
    return finish(record, out, args.device)


def finish(record, out, device) -> int:
    record["environment"] = environment(device)
    if out:
        out.write_text(json.dumps(record, indent=1, default=float))
    return 0 if all(s["ok"] for s in record["steps"]) else 1


def train_check(args, name, size, optimizer, frameworks) -> dict:
    from dataclasses import asdict

    from parity.train.check import train_check as run_train_check
    result = run_train_check(name, optimizer=optimizer, size=size, frameworks=frameworks, device=args.device)
    return {**asdict(result), "passed": result.passed}


def train_bench(args, name, frameworks) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import train_bench as bench_module
    options = argparse.Namespace(device=args.device, batch=args.train_batch, repeats=5)
    batches, prep = bench_module.batches_for(name, args.train_batch, 10)
    state = bench_module.initial_state(name, (prep.channels, prep.size, prep.size))
    return {"rows": [bench_module.bench_framework(name, f, batches, prep, state, options) for f in frameworks]}


def short_training(args, frameworks) -> dict:
    import tempfile

    from parity.cli import main as parity_main
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.json"
        code = parity_main(["train", "lenet", "--frameworks", ",".join(frameworks), "--device", args.device,
                            "--epochs", "2", "--out", str(Path(tmp) / "run"), "--json", str(table)])
        if code != 0:
            raise RuntimeError(f"parity train exited {code}")
        return json.loads(table.read_text())


def torchvision_reference(args) -> dict:
    """torch_impl and torchvision's model code, the same calibrated weights, on the device."""
    import torch
    import torchvision

    from parity.calibrate import calibrated_torch_model, seeded_input
    from parity.catalogue.registry import get
    c, h, w = get(args.model).input_size
    if args.size:
        h = w = args.size
    ours = calibrated_torch_model(args.model, input_size=(c, h, w)).to(args.device)
    theirs = getattr(torchvision.models, args.model)(weights=None).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs = theirs.to(args.device)
    x = torch.from_numpy(seeded_input((args.precision_batch, c, h, w), 1)).to(args.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with torch.inference_mode():
        a, b = ours(x), theirs(x)
    return {"torchvision": torchvision.__version__, "max_abs": float((a - b).abs().max()),
            "bit_exact": bool(torch.equal(a, b))}


def check(args, tf32) -> dict:
    import parity
    report = parity.check(args.model, frameworks=("keras",), onnx=False, size=args.size, device=args.device,
                          tf32=tf32)
    return report.to_json()


def bench(args, tf32) -> dict:
    from parity.bench import bench as run_bench
    result = run_bench(args.model, frameworks=("torch", "keras"), device=args.device, batch=args.batch,
                       size=args.size, repeats=args.repeats, warmup=2, tf32=tf32, compile=False)
    return result.to_json()


def precision(args, name) -> dict:
    from parity.inference.precision import check_precision
    report = check_precision(name, "bf16", runtimes=("torch:autocast", "keras:mixed"), size=args.size,
                             batch=args.precision_batch, device=args.device, timing_repeats=3)
    return report.to_json()


def environment(device) -> dict:
    from parity.bench import environment as bench_environment
    env = bench_environment(device)
    env["xla_python_client_preallocate"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    return env


# --- the markdown for benchmarks/RESULTS.md ---------------------------------------------------

def summary(records: list[dict]) -> str:
    lines = []
    for record in records:
        lines.append(f"### Keras on the {record['backend']} backend ({record['device']}, {record['model']})\n")
        lines += ["| step | result | s |", "|---|---|---|"]
        lines += [f"| {s['step']} | {_describe(s)} | {s['seconds']} |" for s in record["steps"]]
        lines.append("")
    return "\n".join(lines)


def _describe(step) -> str:
    if not step["ok"]:
        return f"**failed**: {step['error'][:200]}"
    result = step["result"]
    name = step["step"]
    if name.startswith("reference"):
        return f"max abs {result['max_abs']:.1e}, bit exact {result['bit_exact']}"
    if name.startswith("check"):
        rows = ", ".join(f"{r['target']} {r['normalized_error']:.1e} (tol {r['tolerance']:.0e})"
                         for r in result["results"])
        return f"{'PASS' if result['passed'] else 'FAIL'}: {rows}; reference noise {result['reference_noise']:.1e}"
    if name.startswith("bench"):
        rows = [r for r in result["runtimes"] if r["status"] == "ok"]
        return "; ".join(f"{r['runtime']} {r['throughput']:,.0f} img/s ({r['ratio']:.2f}x, err "
                         f"{r['error_vs_torch']:.1e}, tf32 {r['tf32']})" for r in rows)
    if name.startswith("train-check"):
        rows = ", ".join(f"{r['framework']}{' on ' + r['engine'] if r.get('engine') else ''} "
                         + (f"error {r['error'][:80]}" if r["error"] else
                            f"grad {r['errors']['grad']:.1e}/{r['tolerances']['grad']:.0e} "
                            f"weight {r['errors']['weight']:.1e}/{r['tolerances']['weight']:.0e}")
                         for r in result["results"])
        return f"{'PASS' if result['passed'] else 'FAIL'}: {rows}"
    if name.startswith("train bench"):
        return "; ".join(f"{r['framework']} parity {r['examples_per_s']['parity']:,.0f} ex/s, plain "
                         f"{r['examples_per_s']['plain']:,.0f} ex/s, ratio {r['ratio']:.2f} (A/A {r['aa_ratio']:.2f})"
                         for r in result["rows"])
    if name.startswith("train lenet"):
        return json.dumps(result)[:400]
    if name.startswith("precision"):
        rows = ", ".join(f"{r['runtime']} {r['normalized_error']:.1e}" if r["status"] == "ok"
                         else f"{r['runtime']} {r['status']}" for r in result["results"])
        noise = result["reference_noise"]
        return (f"{'PASS' if result['passed'] else 'FAIL'}: {rows}; torch bf16 noise "
                f"{'-' if noise is None else f'{noise:.1e}'}, judged at {result['tolerance'] or 0:.1e}")
    return json.dumps(result)[:200]


if __name__ == "__main__":
    sys.exit(main())
