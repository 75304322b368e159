"""`parity bench`: throughput and latency of every runtime of one model, on one input.

Every runtime gets the same seeded, BatchNorm-calibrated weights and the same input
(already in its layout and on its device, so no copy or transpose is timed). After the
warm-up, each repeat times every runtime once, round-robin, starting one place later
each time: load on a shared machine then hits every runtime alike instead of whichever
ran during a busy spell. A runtime's figure is the median of its repeats.

Runtimes (`RUNTIMES`): torch eager, torch channels_last, torch.compile, Keras on its
backend (TensorFlow: under tf.function; torch: eager; JAX: one jax.jit), tf_impl under
tf.function and with XLA (jit_compile=True), and onnxruntime on the ONNX export of each
framework. By default every runtime whose packages are installed. A runtime that cannot
run (torch.compile without a compiler, a dtype a runtime lacks, a build that cannot reach
the GPU, a package asked for but not installed) becomes a row with a note; nothing falls
back to the CPU.

Modules: result (names, statuses, records), timing (the interleaved measurement),
runtimes (building and calling each runtime), environment (TF32, threads, versions),
measure (bench itself), render (table, JSON, plot), cli (`parity bench`).
"""
from ..export.workers import export_fp32, export_in_subprocess, export_worker
from .cli import cmd_bench, register_cli
from .environment import environment
from .measure import bench
from .render import plot, table, write_json
from .result import (
                     DTYPES,
                     FAILED,
                     FAMILIES,
                     OK,
                     OPTIONAL_RUNTIMES,
                     RUNTIMES,
                     SKIPPED,
                     UNAVAILABLE,
                     UNSUPPORTED,
                     BenchResult,
                     RuntimeSkipped,
                     RuntimeTiming,
)
from .runtimes import ort_session, select_runtimes
from .timing import interleaved_timings, onnx_spread

__all__ = ["bench", "table", "write_json", "plot", "register_cli", "cmd_bench", "environment", "select_runtimes",
           "interleaved_timings", "onnx_spread", "ort_session", "export_fp32", "export_in_subprocess", "export_worker",
           "BenchResult", "RuntimeTiming", "RuntimeSkipped", "RUNTIMES", "FAMILIES", "DTYPES",
           "OPTIONAL_RUNTIMES", "OK", "SKIPPED", "UNSUPPORTED", "UNAVAILABLE", "FAILED"]
