"""fp16 and bf16 inference parity, judged against the fp32 torch_impl reference.

    report = check_precision("resnet18", "bf16", size=64)
    report.passed, [(r.runtime, r.normalized_error, r.status) for r in report.results]

Runtimes (`PRECISION_RUNTIMES`):

- `torch:autocast`: the torch_impl model under `torch.autocast(device, dtype)`. A device
  where autocast cannot use the dtype (torch then quietly computes in fp32) is reported
  as unsupported; a low-precision call slower than fp32 is reported in the note.
- `keras:mixed`: keras_impl built under the `mixed_float16` / `mixed_bfloat16` policy
  (fp32 variables, low-precision compute), the same canonical state loaded.
- `onnx:<framework>`: each framework's fp32 export converted to fp16 with
  onnxconverter-common (inputs and outputs stay fp32). There is no bf16 path.

tf_impl has no mixed-precision mode: it computes in fp32 only. Keras runs on whichever
backend KERAS_BACKEND names (tensorflow, torch or jax).

The threshold is the brief's: fp16 1e-2, bf16 5e-2 (normalized error), with the rule fp32
uses for a deep net that amplifies rounding: torch's own output in the dtype (autocast) is
measured against the same model in float64, and where 3x that reference noise exceeds the
policy every runtime is judged at it instead (tolerance.effective, capped; the report says so).
"""
from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import tolerance
from ..adapters import adapter
from ..calibrate import calibrated_torch_model, seeded_input
from ..catalogue import registry
from ..frameworks import release_memory
from ..export.workers import export_fp32
from ..onnx.runtime import onnx_source_problem
from .lowprecision import KERAS_POLICY, Unsupported, convert_onnx_to_fp16, keras_policy, torch_dtype

PRECISION_RUNTIMES = ("torch:autocast", "keras:mixed", "onnx:torch", "onnx:keras", "onnx:tf")
LOW_DTYPES = ("fp16", "bf16")


@dataclass
class PrecisionResult:
    runtime: str
    status: str = "ok"  # ok | unsupported | failed
    normalized_error: float | None = None
    max_abs: float | None = None
    threshold: float | None = None
    passed: bool | None = None  # None where the runtime could not run the dtype
    headroom: float | None = None  # error / threshold
    top1_agreement: float | None = None
    seconds: float | None = None  # fastest of 3 low-precision calls after a warm-up call
    fp32_seconds: float | None = None  # the same call in fp32, where measured
    note: str | None = None


@dataclass
class PrecisionReport:
    model: str
    dtype: str
    input_shape: list
    device: str
    threshold: float  # the policy for the dtype
    seed: int = 0
    passed: bool = True
    reference_noise: float | None = None  # torch autocast in the dtype vs torch float64; None: not measurable
    tolerance: float | None = None  # what each runtime is judged at: the policy, or 3x the noise where larger
    results: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def result(self, runtime: str) -> PrecisionResult:
        return next(r for r in self.results if r.runtime == runtime)

    def to_json(self) -> dict:
        return asdict(self)


# --- the check --------------------------------------------------------------------------

def check_precision(name: str, dtype: str = "bf16", *, runtimes=PRECISION_RUNTIMES, size=None, batch: int = 1,
                    seed: int = 0, device: str = "cpu", timing_repeats: int = 3, workdir=None) -> PrecisionReport:
    """Normalized error of each runtime in `dtype` against the fp32 torch_impl output.

    `passed` is True when every runtime that can compute in `dtype` stays within the
    threshold; runtimes that cannot are listed with status "unsupported" and a reason.
    Each runtime's time is the fastest of `timing_repeats` calls after a warm-up call.
    """
    if dtype not in LOW_DTYPES:
        raise ValueError(f"check_precision covers fp16 and bf16; got {dtype!r}")
    unknown = [r for r in runtimes if r not in PRECISION_RUNTIMES]
    if unknown:
        raise ValueError(f"unknown precision runtime(s) {unknown}; choose from {', '.join(PRECISION_RUNTIMES)}")
    spec = registry.get(name)
    shape = spec.input_shape(batch, size)
    limit = tolerance.threshold(dtype)
    report = PrecisionReport(name, dtype, list(shape), device, limit, seed)
    from .. import devices
    devices.require("torch", device)
    if device == "cuda":
        devices.set_tf32(False, ("torch",))  # the fp32 reference is strict fp32

    torch_model = calibrated_torch_model(name, seed=seed, input_size=shape[1:])
    state = adapter("torch").state_dict(torch_model)
    x = seeded_input(shape, seed + 1)
    reference = adapter("torch").run(torch_model.to(device), x, device=device)[0]
    limit = _tolerance(report, torch_model, x, dtype, device)
    timed = functools.partial(_timed, repeats=timing_repeats)
    runners = {"torch:autocast": lambda: _torch_autocast(torch_model, x, dtype, device, timed),
               "keras:mixed": lambda: _keras_mixed(name, state, x, dtype, shape, device, timed)}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        exports = _exports(name, state, shape, dtype, runtimes, Path(tmp))
        for runtime in runtimes:
            run = runners.get(runtime) or (lambda: _onnx_fp16(runtime.split(":")[1], exports, x, dtype, device,
                                                              Path(tmp), timed))
            report.results.append(_judge(runtime, run, reference, limit, spec.classifier))
    ran = [r for r in report.results if r.status != "unsupported"]
    report.passed = bool(ran) and all(r.passed for r in ran) and report.tolerance is not None
    if not ran:
        report.notes.append(f"no runtime could compute in {dtype} on {device}")
    release_memory()
    return report


def _tolerance(report, torch_model, x, dtype, device) -> float:
    """The tolerance every runtime is judged at (recorded on the report, with a note where it
    is not the policy); where torch's own noise is beyond the ceiling, the report cannot pass."""
    policy = report.threshold
    report.tolerance = policy
    try:
        report.reference_noise = tolerance.reference_noise(torch_model, x, _torch_low_outputs(torch_model, x,
                                                                                              dtype, device))
    except Unsupported as exc:
        report.notes.append(f"reference noise not measured ({exc}): judged at the policy {policy:.0e}")
        return policy
    if unusable := tolerance.unusable_reference(policy, report.reference_noise):
        report.notes.append(unusable.replace("torch fp32", f"torch {dtype}"))
        report.tolerance = None
        return policy
    report.tolerance = tolerance.effective(policy, report.reference_noise)
    if report.tolerance > policy:
        report.notes.append(f"reference noise {report.reference_noise:.1e} (torch {dtype} autocast vs float64) "
                            f"exceeds the policy {policy:.0e}: judged at {tolerance.NOISE_FACTOR:g} x noise = "
                            f"{report.tolerance:.1e}")
    return report.tolerance


def _torch_low_outputs(model, x, dtype, device) -> list:
    """Every output of the torch model under autocast in `dtype`, as float32 numpy."""
    import torch
    if not torch.amp.is_autocast_available(device):
        raise Unsupported(f"torch: no autocast on {device}")
    with torch.inference_mode(), torch.autocast(device, dtype=torch_dtype(dtype)):
        out = model.to(device)(torch.from_numpy(x).to(device))
    out = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]
    if out[0].dtype != torch_dtype(dtype):
        raise Unsupported(f"torch autocast on {device} does not compute in {dtype}")
    return [o.float().cpu().numpy() for o in out]


def _judge(runtime, run, reference, limit, classifier) -> PrecisionResult:
    try:
        output, seconds, fp32_seconds, note = run()
    except Unsupported as exc:
        return PrecisionResult(runtime, "unsupported", threshold=limit, note=str(exc))
    except Exception as exc:  # a runtime that breaks is a failed row, not a crash
        return PrecisionResult(runtime, "failed", threshold=limit, passed=False,
                               note=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
    err = tolerance.measure(np.asarray(output, np.float32), reference, classifier=classifier)
    return PrecisionResult(runtime, "ok", err.normalized, err.max_abs, limit, bool(err.normalized <= limit),
                           err.normalized / limit, err.top1_agreement, seconds, fp32_seconds, note)


def _timed(call, repeats: int = 3):
    """(result, seconds): the fastest of `repeats` calls after a warm-up call (the least disturbed by load)."""
    out = call()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - began)
    return out, best


# --- torch autocast -----------------------------------------------------------------------

def _torch_autocast(model, x, dtype, device, timed):
    import torch
    if not torch.amp.is_autocast_available(device):
        raise Unsupported(f"torch: no autocast on {device}")
    xt = torch.from_numpy(x).to(device)
    low = torch_dtype(dtype)

    def call(autocast):
        with torch.inference_mode(), torch.autocast(device, dtype=low, enabled=autocast):
            out = model(xt)
        out = list(out.values())[0] if isinstance(out, dict) else out[0] if isinstance(out, (list, tuple)) else out
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    out, seconds = timed(lambda: call(True))
    if out.dtype != low:
        raise Unsupported(f"torch autocast on {device} did not compute in {dtype} (output {out.dtype}): "
                          f"the device lacks {dtype} kernels for these layers")
    _, fp32_seconds = timed(lambda: call(False))
    note = None
    if seconds > 1.2 * fp32_seconds:
        note = (f"{dtype} autocast is {seconds / fp32_seconds:.1f}x slower than fp32 here "
                f"(no fast {dtype} kernels on this {device})")
    return out.float().cpu().numpy(), seconds, fp32_seconds, note


# --- Keras mixed precision ------------------------------------------------------------------

def _keras_mixed(name, state, x, dtype, shape, device, timed):
    import keras

    from .. import devices
    with keras_policy(dtype), devices.placed("keras", device):
        model = adapter("keras").build(name, input_size=shape[1:])
        adapter("keras").load_state_dict(model, state)
    compute = {"fp16": "float16", "bf16": "bfloat16"}[dtype]
    with devices.placed("keras", device):
        try:
            outputs, seconds = timed(lambda: adapter("keras").run(model, x))
        except Exception as exc:
            raise Unsupported(f"Keras {KERAS_POLICY[dtype]} on {device} ({keras.backend.backend()} backend): "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}") from None
    low_layers = sum(1 for layer in model.layers if layer.weights and layer.compute_dtype == compute)
    note = f"{low_layers} weighted layers compute in {compute}; variables fp32"
    return outputs[0], seconds, None, note


# --- onnxruntime fp16 ----------------------------------------------------------------------

def _exports(name, state, shape, dtype, runtimes, tmp) -> dict:
    """{source: fp32 export Path or error text} (parity.export.workers.export_fp32)."""
    sources = [r.split(":")[1] for r in runtimes if r.startswith("onnx:")]
    sources = [s for s in sources if not onnx_source_problem(s)]
    if dtype != "fp16" or not sources:
        return {}
    return export_fp32(name, state, shape, sources, tmp)


def _onnx_fp16(source, exports, x, dtype, device, tmp, timed):
    from ..onnx import runtime
    if dtype == "bf16":
        raise Unsupported("onnxruntime: no bf16 conversion (onnxconverter-common writes fp16 only) "
                          "and no bf16 convolution kernels")
    problem = onnx_source_problem(source)
    if problem:
        raise Unsupported(problem)
    fp32_path = exports[source]
    if not isinstance(fp32_path, Path):
        raise RuntimeError(f"export from {source} failed: {fp32_path}")
    fp16_path = convert_onnx_to_fp16(fp32_path, tmp / f"{fp32_path.stem}.fp16.onnx")
    session = runtime.session(fp16_path, device)
    outputs, seconds = timed(lambda: runtime.run(session, x))
    fp32_session = runtime.session(fp32_path, device)
    _, fp32_seconds = timed(lambda: runtime.run(fp32_session, x))
    note = None
    if device == "cpu":
        note = "CPU EP: ops without fp16 kernels run in fp32 between inserted casts"
    return outputs[0], seconds, fp32_seconds, note


# --- a small command line: python -m parity.precision MODEL --dtype bf16 -----------------------

def table(report: PrecisionReport):
    from rich.table import Table
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]"
    t = Table(title=f"{report.model} {'x'.join(map(str, report.input_shape))} {report.device} "
                    f"{report.dtype} vs fp32 torch  {verdict}")
    for col in ("runtime", "normalized error", "threshold", "headroom", "top-1", "ms", "fp32 ms", "note"):
        t.add_column(col, justify="left" if col in ("runtime", "note") else "right")
    for r in report.results:
        if r.status != "ok":
            t.add_row(r.runtime, "-", f"{r.threshold:.1e}", "-", "-", "-", "-", f"[dim]{r.status}: {r.note}[/dim]")
            continue
        mark = "" if r.passed else " [red]FAIL[/red]"
        t.add_row(r.runtime, f"{r.normalized_error:.2e}{mark}", f"{r.threshold:.1e}", f"{r.headroom:.2f}",
                  "-" if r.top1_agreement is None else f"{r.top1_agreement:.0%}", f"{r.seconds * 1e3:.1f}",
                  "-" if r.fp32_seconds is None else f"{r.fp32_seconds * 1e3:.1f}", r.note or "")
    noise = "not measured" if report.reference_noise is None else f"{report.reference_noise:.1e}"
    t.caption = "\n".join([f"policy {report.threshold:.0e}; torch {report.dtype} noise vs float64 {noise}",
                            *report.notes])
    return t


def main(argv=None) -> int:
    import argparse
    import json

    from rich.console import Console
    p = argparse.ArgumentParser(prog="python -m parity.precision", description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--dtype", default="bf16", choices=list(LOW_DTYPES))
    p.add_argument("--runtimes", default=",".join(PRECISION_RUNTIMES))
    p.add_argument("--size", type=int)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    report = check_precision(args.model, args.dtype, runtimes=tuple(r for r in args.runtimes.split(",") if r),
                             size=args.size, batch=args.batch, device=args.device)
    Console().print(table(report))
    if args.json:
        from ..io import atomic_path
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(report.to_json(), indent=2, default=float))
    return 0 if report.passed else 1


if __name__ == "__main__":
    import sys
    sys.exit(main())
