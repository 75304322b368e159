"""The interleaved measurement and the figures made from it (no framework needed)."""
from __future__ import annotations

import contextlib
import gc
import statistics
import time
from typing import Callable

from .result import OK, BenchResult, RuntimeTiming


def interleaved_timings(runners: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        clock=time.perf_counter) -> tuple[dict[str, list[float]], list[str]]:
    """({runtime: seconds per repeat}, timing order). Each repeat calls every runner once,
    round-robin, starting one place later than the previous repeat."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    seconds = {name: [] for name in names}
    order = []
    gc.collect()
    with _gc_paused():
        for repeat in range(repeats):
            start = repeat % len(names) if names else 0
            for name in names[start:] + names[:start]:
                began = clock()
                runners[name]()
                seconds[name].append(clock() - began)
                order.append(name)
    return seconds, order


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def fill_figures(result: BenchResult, seconds: dict[str, list[float]]) -> None:
    """Median latency, throughput, spread and ratio to the baseline of every measured row."""
    for timing in result.runtimes:
        if timing.runtime not in seconds:
            continue
        times = seconds[timing.runtime]
        median = statistics.median(times)
        timing.times_ms = [round(s * 1e3, 4) for s in times]
        timing.latency_ms = median * 1e3
        timing.min_ms, timing.max_ms = min(times) * 1e3, max(times) * 1e3
        timing.throughput = result.batch / median
    base = next((t for t in result.runtimes if t.runtime == result.baseline and t.status == OK), None)
    for timing in result.runtimes:
        if base is not None and timing.status == OK:
            timing.ratio = timing.throughput / base.throughput


def onnx_spread(timings: list[RuntimeTiming]) -> float | None:
    """(max - min) / min over the measured ONNX exports' median latencies."""
    latencies = [t.latency_ms for t in timings if t.runtime.startswith("onnx:") and t.status == OK]
    if len(latencies) < 2:
        return None
    return (max(latencies) - min(latencies)) / min(latencies)
