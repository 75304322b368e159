#!/usr/bin/env python
"""Where keras_impl on KERAS_BACKEND=torch loses time against torch_impl (issue 13, item 4).

    KERAS_BACKEND=torch python benchmarks/keras_torch_profile.py --model resnet50 --batch 8 --size 224

Times, interleaved (parity.bench.interleaved_timings), the same weights and input in:

  torch               torch_impl eager (the baseline)
  keras               keras_impl eager on the torch backend, as `parity bench` runs it
  keras:copy-free     the same model with Keras' torch conv replaced, for the timed calls
                      only, by one that feeds conv2d the NHWC tensor as a channels_last view
                      and reuses the permuted kernel (an experiment: keras_impl does not apply it)

and prints torch.profiler's top operators of one keras call. Keras 3.15's torch conv permutes
the NHWC input to NCHW and makes it contiguous (a copy), then converts it back to
channels_last memory (a second copy), and permutes and copies the kernel on every call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def copy_free_conv(original):
    """Keras' torch conv for NHWC 2-D convolutions without layout copies (experiment)."""
    import torch
    kernels = {}

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        kernel = getattr(kernel, "value", kernel)
        size = tuple(kernel.shape[:2])
        stride = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
        dilation = (dilation_rate,) * 2 if isinstance(dilation_rate, int) else tuple(dilation_rate)
        symmetric = padding == "same" and stride == (1, 1) and all(k % 2 for k in size)
        if data_format == "channels_first" or inputs.ndim != 4 or not (padding == "valid" or symmetric):
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        key = (kernel.data_ptr(), kernel._version)
        if key not in kernels:
            kernels[key] = kernel.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
        weight = kernels[key]
        pad = tuple(d * (k - 1) // 2 for k, d in zip(size, dilation)) if symmetric else 0
        x = inputs.permute(0, 3, 1, 2)  # NHWC memory is NCHW in channels_last: a view, no copy
        out = torch.nn.functional.conv2d(x, weight, stride=stride, padding=pad, dilation=dilation,
                                         groups=x.shape[1] // weight.shape[1])
        return out.permute(0, 2, 3, 1)

    return conv


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
    original = keras_torch_nn.conv
    patched = copy_free_conv(original)

    def torch_call():
        with torch.inference_mode():
            return reference(x_torch)

    def keras_call(conv=original):
        keras_torch_nn.conv = conv
        try:
            with torch.inference_mode():
                return model(x_keras, training=False)
        finally:
            keras_torch_nn.conv = original

    runners = {"torch": torch_call, "keras": keras_call, "keras:copy-free": lambda: keras_call(patched)}
    expected = torch_call().numpy()
    for name in ("keras", "keras:copy-free"):
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
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        keras_call()
    print("\nkeras, one call:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
