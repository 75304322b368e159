#!/usr/bin/env python
"""How far torch float64 drifts from itself in a train-check run: in channels_last, and from nudged weights.

For each model: the float64 train-check's torch reference run (parity.train.check.prepare),
then the same run (a) with the model in channels_last, which changes only the order of the
convolutions' sums, as a faithful port does, and (b) from the initial weights times
(1 + eps x N(0, 1)) for each eps; each judged against the reference in the float64 categories
(compare_float64). This is the drift a faithful port could show through no fault of its own,
against FLOAT64_POLICY (1e-8): where the later categories drift past it (Inception v3 at 299 px,
GoogLeNet at 32 px over 3 steps), the float64 check judges them at 3x the channels_last drift,
which it measures itself (parity.train.check.Float64Check.reorder_drift). Each model's
row is written to --json as soon as it is measured; a rerun with the same file skips the
models it holds.

    python benchmarks/float64_drift.py --models resnet50:32,googlenet:32,inception_v3 \\
        --json benchmarks/results/float64_drift.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as the tests (tests/conftest.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUDGES = (1e-14, 1e-12)


def nudged_float64(initial: dict, eps: float, rng) -> dict:
    """Every trained float32 weight as float64 times (1 + eps x N(0, 1)); buffers as they are."""
    from parity.train.judge import is_buffer
    return {k: v.astype("float64") * (1 + eps * rng.standard_normal(v.shape))
            if v.dtype == "float32" and not is_buffer(k) else v for k, v in initial.items()}


def drift(model: str, size: int | None, steps: int, seed: int) -> dict:
    import numpy as np
    import torch

    from parity.adapters import adapter
    from parity.train.check import prepare
    prepared, reference = prepare(model, size=size, steps=steps, seed=seed, with_first_step=True)
    batches = [(x.astype(np.float64), y) for x, y in prepared.batches]
    rng, rows = np.random.default_rng(seed + 1), {}
    twin = copy.deepcopy(reference).double().to(memory_format=torch.channels_last)
    rows["channels_last"] = judged(model, prepared, twin, batches, "channels_last")
    for eps in NUDGES:
        twin = copy.deepcopy(reference).double()
        adapter("torch").load_state_dict(twin, nudged_float64(prepared.initial, eps, rng))
        rows[f"{eps:g}"] = judged(model, prepared, twin, batches, f"eps {eps:g}")
    return {"model": model, "size": prepared.size, "steps": steps, "batch": prepared.batch, "drift": rows}


def judged(model, prepared, twin, batches, label) -> dict:
    """The float64 categories' errors of `twin` trained on `batches` against the reference run."""
    from parity.train.judge import compare_float64
    from parity.train.loop import train_steps
    run = train_steps(twin, batches, **prepared.common, with_first_step=True)
    _, errors, _ = compare_float64(run, prepared.truth, prepared.initial, {})
    print(f"{model:12s} {prepared.size:3d} px  {label}: " + "  ".join(f"{c} {e:.1e}" for c, e in errors.items()),
          flush=True)
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50:32,googlenet:32,inception_v3",
                        help="comma list of MODEL or MODEL:SIZE (default size: the model's training size)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    from parity.io import write_json
    rows = json.loads(args.json.read_text()) if args.json.exists() else {}
    for item in args.models.split(","):
        model, _, size = item.partition(":")
        if item in rows:
            continue
        rows[item] = drift(model, int(size) if size else None, args.steps, args.seed)
        write_json(args.json, rows)  # after every model: a rerun resumes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
