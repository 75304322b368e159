#!/usr/bin/env python
"""How far cuDNN's fp32 convolution gradients are from float64, per memory format.

For each of AlexNet's convolutions (64 px, batch 4, the shapes train-check uses) the weight
gradient of sum(conv(x) * g) is computed on CUDA with TF32 off, in NCHW and in channels_last,
and compared with the same gradient in float64 on the CPU (max |diff| / max |ref|). The
cuDNN kernels that ran are listed from torch.profiler, so an algorithm (Winograd, FFT,
implicit GEMM) can be tied to its error.

    python benchmarks/cudnn_precision.py [--json out.json]
"""
import argparse
import json

import torch
import torch.nn.functional as F

# AlexNet's convolutions at 64 px: (in, out, kernel, stride, padding, input size)
CONVS = {"features.0": (3, 64, 11, 4, 2, 64), "features.3": (64, 192, 5, 1, 2, 7),
         "features.6": (192, 384, 3, 1, 1, 3), "features.8": (384, 256, 3, 1, 1, 3)}


def weight_grad(x, w, g, stride, padding, memory_format=torch.contiguous_format):
    x = x.contiguous(memory_format=memory_format)
    w = w.detach().contiguous(memory_format=memory_format).requires_grad_(True)
    (F.conv2d(x, w, stride=stride, padding=padding) * g).sum().backward()
    return w.grad


def probe(name, spec, device="cuda"):
    cin, cout, k, stride, padding, size = spec
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, cin, size, size, generator=gen, dtype=torch.float64)
    w = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64) * (2.0 / (cin * k * k)) ** 0.5
    out_size = (size + 2 * padding - k) // stride + 1
    g = torch.randn(4, cout, out_size, out_size, generator=gen, dtype=torch.float64)
    truth = weight_grad(x, w, g, stride, padding)
    row = {"conv": name}
    for label, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        args = [t.float().to(device) for t in (x, w, g)]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            grad = weight_grad(*args[:2], args[2].contiguous(memory_format=fmt), stride, padding, fmt)
            torch.cuda.synchronize()
        kernels = sorted({e.name[:90] for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                          and ("conv" in e.name.lower() or "wgrad" in e.name.lower() or "winograd" in e.name.lower()
                               or "fft" in e.name.lower() or "gemm" in e.name.lower() or "sm90" in e.name)})
        error = float((grad.double().cpu() - truth).abs().max() / truth.abs().max())
        row[label] = {"error": error, "kernels": kernels}
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for name, spec in CONVS.items():
            row = {"cudnn.benchmark": benchmark, **probe(name, spec)}
            rows.append(row)
            print(f"benchmark={benchmark} {name}: nchw {row['nchw']['error']:.1e} "
                  f"channels_last {row['channels_last']['error']:.1e}\n  nchw kernels {row['nchw']['kernels']}\n"
                  f"  channels_last kernels {row['channels_last']['kernels']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
