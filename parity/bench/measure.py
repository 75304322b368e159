"""`parity bench`: every chosen runtime prepared, then timed interleaved on one input."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import devices, tolerance
from ..catalogue import registry
from ..export.workers import first_line
from .environment import apply_tf32, environment, tf32_state, threads_applied
from .result import (DTYPES, FAILED, OK, RUNTIMES, SKIPPED, UNAVAILABLE, BenchResult, RuntimeSkipped, RuntimeTiming,
                     source_of)
from .runtimes import Context, missing_package, prepare, select_runtimes
from .timing import fill_figures, interleaved_timings, onnx_spread


def bench(name: str, frameworks=None, device: str = "cpu", batch: int = 1, dtype: str = "fp32", size=None,
          repeats: int = 10, warmup: int = 2, baseline: str | None = None, tf32: bool | None = None,
          compile: bool = True, threads: int | None = None, seed: int = 0, workdir=None,
          on_progress=None) -> BenchResult:
    """Time every chosen runtime of catalogue model `name` on one input, interleaved.

    frameworks: families (torch, keras, tf, onnx) and/or runtime names; default every runtime
    whose packages are installed (the others are named in the notes). A runtime asked for by
    name or family whose package is missing is a skipped row saying which.
    tf32: None keeps each framework's default (recorded), True/False sets it everywhere
    (False is the strict mode). compile=False leaves torch.compile out (it can take
    minutes to compile on a CPU). threads: intra-op threads for every runtime (default:
    each framework's own); 1 gives steadier ratios on an oversubscribed machine.
    on_progress(message) is called as runtimes get ready.
    baseline: the runtime the ratios are against (default: the reference's eager runtime,
    torch, or a model of one's own's first framework); outputs are compared with it too.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use cpu or cuda")
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError("repeats and batch must be >= 1, warmup >= 0")
    spec = registry.get(name)
    reference = spec.frameworks[0]  # torch; a model of one's own without a torch builder: its first framework
    chosen = select_runtimes(frameworks)
    unwritten = {r: f"{name} has no {source_of(r)} builder" for r in chosen if source_of(r) not in spec.frameworks}
    left_out = {r: why for r in chosen if (why := unwritten.get(r) or missing_package(r))}
    if reference in left_out:
        raise RuntimeError(f"parity bench needs {reference} for its reference: {left_out[reference]}")
    if frameworks is None:  # the default: what is installed, of what the model is written in
        chosen = [r for r in chosen if r not in left_out]
    runnable = [r for r in chosen if r not in left_out]
    baseline = baseline or reference
    if baseline not in RUNTIMES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(RUNTIMES)}")
    shape = spec.input_shape(batch, size)
    result = BenchResult(name, list(shape), device, dtype, batch, repeats, warmup, baseline,
                         {None: "default", True: "on", False: "off"}[tf32], reference=reference)
    installed_out = {r: why for r, why in left_out.items() if r not in unwritten}
    if frameworks is None and installed_out:
        result.notes.append("left out (not installed): " + "; ".join(f"{r} ({why})" for r, why in installed_out.items()))
    if frameworks is None and unwritten:
        result.notes.append(f"left out: {', '.join(unwritten)} ({name} is written in {', '.join(spec.frameworks)})")
    apply_tf32(tf32, runnable)
    with threads_applied(threads, runnable, result.notes), tempfile.TemporaryDirectory(dir=workdir) as tmp:
        context = Context(name, spec, shape, device, dtype, tf32, seed, Path(tmp), compile, threads, runnable)
        runners, expected = {}, None
        for runtime in chosen:
            if on_progress:
                on_progress(f"preparing {runtime}")
            timing, runner, output = _prepared_row(runtime, context, left_out.get(runtime))
            result.runtimes.append(timing)
            if runner is None:
                continue
            expected = output if runtime == reference else expected
            if expected is not None:
                timing.error_vs_torch = tolerance.measure(output, expected).normalized
            runners[runtime] = runner
        if on_progress:
            on_progress(f"timing {len(runners)} runtimes x {repeats} repeats")
        seconds, result.order = interleaved_timings(runners, repeats, warmup)
        context.release()
    fill_figures(result, seconds)
    result.onnx_spread = onnx_spread(result.runtimes)
    result.notes += _notes(result)
    result.environment = environment(device, tf32, threads)
    return result


def _prepared_row(runtime, context, missing=None) -> tuple[RuntimeTiming, Callable | None, np.ndarray | None]:
    """(its table row, its timed call or None, its first output) for one runtime."""
    timing = RuntimeTiming(runtime)
    if missing:
        timing.status, timing.note = SKIPPED, f"left out: {missing}"
        return timing, None, None
    began = time.perf_counter()
    try:
        runner, output = prepare(runtime, context)
    except RuntimeSkipped as skip:
        timing.status, timing.note = skip.status, str(skip)
        return timing, None, None
    except devices.DeviceUnavailable as exc:
        timing.status, timing.note = UNAVAILABLE, str(exc)
        return timing, None, None
    except Exception as exc:  # one runtime that breaks is a row, not a crashed bench
        timing.status, timing.note = FAILED, f"{type(exc).__name__}: {first_line(exc)}"
        return timing, None, None
    timing.setup_s = round(time.perf_counter() - began, 2)
    timing.tf32 = tf32_state(runtime, context.device, context.tf32)
    timing.note = context.notes.pop(runtime, None)
    return timing, runner, output


def _notes(result: BenchResult) -> list[str]:
    notes = []
    if not any(t.runtime == result.baseline and t.status == OK for t in result.runtimes):
        notes.append(f"baseline {result.baseline} was not measured: no ratios")
    if result.onnx_spread is not None and result.onnx_spread > 0.05:
        slowest = max((t for t in result.runtimes if t.runtime.startswith("onnx:") and t.status == OK),
                      key=lambda t: t.latency_ms)
        notes.append(f"ONNX exports differ by {result.onnx_spread:.0%} (> 5%): slowest {slowest.runtime}; "
                     f"compare node counts per op type (benchmarks/run.py --sections onnx)")
    if result.device == "cpu" and hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            notes.append(f"machine load {load:.1f} on {os.cpu_count()} cores: figures are noisy; "
                         f"ratios (interleaved) hold better than absolute numbers")
    return notes
