#!/usr/bin/env python
"""Where keras_impl on KERAS_BACKEND=torch loses time against torch_impl (issue 13, item 4).

    KERAS_BACKEND=torch python benchmarks/keras_torch_profile.py --model resnet50 --batch 8 --size 224

Times, interleaved (parity.bench.interleaved_timings), the same weights and input in:

  torch               torch_impl eager (the baseline)
  keras               keras_impl eager on the torch backend, as `parity bench` runs it: its
                      2-D convolutions go through keras_impl._torch_backend.CopyFreeConv
  keras:keras-conv    the same model with Keras' own torch conv, for the timed calls only

and prints torch.profiler's top operators of one call of each Keras variant. Keras 3.15's
torch conv permutes the NHWC input to NCHW and makes it contiguous (a copy), converts it
back to channels_last memory (a second copy), and permutes and copies the kernel on every
call; CopyFreeConv hands conv2d the NHWC tensor as a channels_last view and keeps the
permuted kernel while the variable is unchanged.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != "torch":
        sys.exit("run with KERAS_BACKEND=torch")
    import keras
    import numpy as np
    import torch
    from keras.src.backend.torch import nn as keras_torch_nn
    from torch.profiler import ProfilerActivity, profile

    from keras_impl._torch_backend import CopyFreeConv
    from parity.adapters import adapter
    from parity.bench import interleaved_timings
    from parity.calibrate import calibrated_torch_model, seeded_input
    torch.set_num_threads(args.threads)
    shape = (args.batch, 3, args.size, args.size)
    reference = calibrated_torch_model(args.model, input_size=shape[1:]).eval()
    model = adapter("keras").build(args.model, input_size=shape[1:], input_shape=(args.size, args.size, 3))
    adapter("keras").load_state_dict(model, adapter("torch").state_dict(reference))
    x = seeded_input(shape, 1)
    x_torch, x_keras = torch.from_numpy(x), keras.ops.convert_to_tensor(x.transpose(0, 2, 3, 1).copy())
    shipped = keras_torch_nn.conv
    assert isinstance(shipped, CopyFreeConv), "keras_impl applies CopyFreeConv on the torch backend"

    def torch_call():
        with torch.inference_mode():
            return reference(x_torch)

    def keras_call(conv=shipped):
        keras_torch_nn.conv = conv
        try:
            with torch.inference_mode():
                return model(x_keras, training=False)
        finally:
            keras_torch_nn.conv = shipped

    runners = {"torch": torch_call, "keras": keras_call, "keras:keras-conv": lambda: keras_call(shipped.original)}
    expected = torch_call().numpy()
    for name in ("keras", "keras:keras-conv"):
        got = np.asarray(runners[name]()).astype(np.float64)
        error = np.abs(got - expected).max() / np.abs(expected).max()
        print(f"{name}: normalized error vs torch {error:.1e}")
    seconds, _ = interleaved_timings(runners, args.repeats, 1)
    base = statistics.median(seconds["torch"])
    print(f"\n{args.model} batch {args.batch} {args.size}x{args.size}, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved repeats")
    print("| runtime | median ms | vs torch |\n|---|---|---|")
    for name, times in seconds.items():
        print(f"| {name} | {statistics.median(times) * 1e3:.0f} | {base / statistics.median(times):.2f}x |")
    for name in ("keras", "keras:keras-conv"):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            runners[name]()
        print(f"\n{name}, one call:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
