#!/usr/bin/env python
"""Wall time of `train-check` in float64 against float32, per model, in one process.

Per model, round-robin, `--repeats` times: the float32 check (torch fp32 + fp64 reference,
three perturbed torch runs, Keras and tf_impl in fp32), the float64 check (one torch fp64
run, Keras and tf_impl in float64) and a second float32 check, the A/A control whose ratio to
the first is the noise floor of the comparison (LeNet in both dtypes first, untimed: the first run in a
process pays the imports and first traces). Medians; each model's row is written to
`--json` as soon as it is measured, and a rerun with the same file skips the models it holds.

    python benchmarks/train_check_float64.py --models lenet,resnet18,googlenet,resnet50 \\
        --json benchmarks/results/train_check_float64.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# numpy's transparent-huge-page requests cost seconds of kernel time per check on a VM that
# has none to give (tests/conftest.py); set before numpy is imported
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONTENDERS = (("float32", "float32"), ("float64", "float64"), ("float32 A/A", "float32"))


def timed(model: str, dtype: str) -> float:
    from parity.train.check import train_check
    started = time.perf_counter()
    result = train_check(model, dtype=dtype)
    if not result.passed:
        raise SystemExit(f"{model}: the {dtype} train-check failed; a timing of a failing check means nothing")
    return time.perf_counter() - started


def measure(model: str, repeats: int) -> dict:
    seconds = {name: [] for name, _ in CONTENDERS}
    for _ in range(repeats):
        for name, dtype in CONTENDERS:
            seconds[name].append(timed(model, dtype))
    median = {name: statistics.median(times) for name, times in seconds.items()}
    return {"model": model, "seconds": seconds, "median_s": median,
            "float64 / float32": median["float64"] / median["float32"],
            "A/A: float32 / float32": median["float32 A/A"] / median["float32"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,resnet18,googlenet,resnet50")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    from parity.io import write_json
    rows = json.loads(args.json.read_text()) if args.json.exists() else {}
    for dtype in ("float32", "float64"):  # the first run in a process pays imports and first traces
        timed("lenet", dtype)
    for model in args.models.split(","):
        if model in rows:
            continue
        rows[model] = measure(model, args.repeats)
        row = rows[model]
        print(f"{model:10s} float32 {row['median_s']['float32']:6.1f} s  float64 {row['median_s']['float64']:6.1f} s"
              f"  ratio {row['float64 / float32']:.2f}  (A/A {row['A/A: float32 / float32']:.2f})", flush=True)
        write_json(args.json, rows)  # after every model: a rerun resumes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
