#!/usr/bin/env python
"""Examples per second of parity's training step (adapter.trainer) against a plain,
hand-written loop of the same framework, in one process, interleaved.

Per framework and model, three contenders train on the same numpy batches from
parity.train.data.Loader (embedded digits), with SGD (momentum 0.9) from the same weights:
    parity     adapter.trainer(model, Hyper(...)).step(x_nchw, labels): what `parity train` times
    plain      the framework's own loop, written the way its tutorials write it
                 torch: train(), zero_grad, cross_entropy, backward, step, loss.item()
                 keras: compile(SGD, SparseCategoricalCrossentropy(from_logits=True)) + train_on_batch
                 tf:    tf.function step with tf.GradientTape and a hand-written momentum update
    plain A/A  a second instance of `plain`: the noise floor of the ratio
The plain loops get their batches already in the framework's layout (NHWC for Keras and TF),
so the ratio parity/plain is a lower bound. interleaved_timings round-robins the contenders
each repeat, so a shared machine's load falls on all alike; figures are medians, and the
best-of ratio (fastest repeat of each) is printed beside them for busy machines.

    python benchmarks/train_bench.py --models lenet,resnet18 --batch 32 --steps 10 --repeats 7 \\
        --threads 1 --json /tmp/train_bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

LR, MOMENTUM = 0.01, 0.9


def batches_for(name: str, batch: int, steps: int, seed: int = 0):
    from parity.catalogue import registry
    from parity.train import data
    from parity.train.runs import default_size
    spec = registry.get(name)
    split = data.open_source("digits", seed=seed)
    prep = data.Preprocess(default_size(spec, True), spec.input_size[0])
    loader = data.Loader(split.train, prep, batch_size=batch, shuffle=True, seed=seed, drop_last=True)
    return list(loader.batches(0))[:steps], prep


def initial_state(name, input_size, seed=0):
    import torch

    import parity
    torch.manual_seed(seed)
    return parity.state_dict(parity.build(name, num_classes=10))


def built(name, framework, input_size, state):
    from parity.adapters import adapter
    a = adapter(framework)
    model = a.build(name, input_size=input_size, num_classes=10)
    a.load_state_dict(model, state)
    return model


# --- the plain loops ------------------------------------------------------------------

def plain_torch(model, device):
    import torch
    import torch.nn.functional as F
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step(x, labels):
        x, labels = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def plain_keras(model, device):
    import keras
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def step(x, labels):
        return float(model.train_on_batch(x, labels))
    return step


def plain_tf(model, device):
    import tensorflow as tf
    variables = list(model.trainable_variables)
    velocity = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    @tf.function(autograph=False)  # a plain Python loop over the variables: nothing to convert
    def train_step(x, labels):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        for v, b, g in zip(variables, velocity, tape.gradient(loss, variables)):
            b.assign(MOMENTUM * b + g)
            v.assign_sub(LR * b)
        return loss

    def step(x, labels):
        return float(train_step(tf.constant(x), tf.constant(labels)))
    return step


PLAIN = {"torch": plain_torch, "keras": plain_keras, "tf": plain_tf}


def parity_step(model, framework, device):
    from parity.adapters import adapter
    from parity.adapters.step import Hyper
    trainer = adapter(framework).trainer(model, Hyper(optimizer="sgd", lr=LR, momentum=MOMENTUM), device=device)
    return lambda x, labels: trainer.step(x, labels).loss


# --- measuring ------------------------------------------------------------------------

def bench_framework(name, framework, batches, prep, state, args):
    from parity.bench.timing import interleaved_timings
    from parity.devices import placed
    input_size = (prep.channels, prep.size, prep.size)
    native = [(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if framework != "torch" else x, y) for x, y in batches]
    with placed(framework, args.device):
        steps = {"parity": (parity_step(built(name, framework, input_size, state), framework, args.device), batches),
                 "plain": (PLAIN[framework](built(name, framework, input_size, state), args.device), native),
                 "plain A/A": (PLAIN[framework](built(name, framework, input_size, state), args.device), native)}

        def runner(step, data):
            return lambda: [step(x, y) for x, y in data]
        runners = {k: runner(step, data) for k, (step, data) in steps.items()}
        seconds, _ = interleaved_timings(runners, repeats=args.repeats, warmup=1)
    examples = sum(len(y) for _, y in batches)
    rate = {k: examples / statistics.median(v) for k, v in seconds.items()}
    best = {k: examples / min(v) for k, v in seconds.items()}  # the least disturbed repeat (busy machines)
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in seconds.items()}
    return {"model": name, "framework": framework, "size": prep.size, "batch": args.batch, "steps": len(batches),
            "examples_per_s": rate, "best_examples_per_s": best, "spread": spread,
            "ratio": rate["parity"] / rate["plain"], "aa_ratio": rate["plain A/A"] / rate["plain"],
            "best_ratio": best["parity"] / best["plain"], "best_aa_ratio": best["plain A/A"] / best["plain"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lenet,resnet18")
    p.add_argument("--frameworks", default="torch,keras,tf")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, help="intra-op threads in torch and TF (default: each framework's own)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    from parity.train.runs import set_threads
    set_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        batches, prep = batches_for(name, args.batch, args.steps)
        state = initial_state(name, (prep.channels, prep.size, prep.size))
        for framework in args.frameworks.split(","):
            row = bench_framework(name, framework, batches, prep, state, args)
            rows.append(row)
            r = row["examples_per_s"]
            print(f"{name:9s} {framework:6s} parity {r['parity']:9.1f} ex/s  plain {r['plain']:9.1f} ex/s  "
                  f"ratio {row['ratio']:.3f} (A/A {row['aa_ratio']:.3f})  best-of ratio {row['best_ratio']:.3f} "
                  f"(A/A {row['best_aa_ratio']:.3f})  spread parity {row['spread']['parity']:.0%}, "
                  f"plain {row['spread']['plain']:.0%}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "device": args.device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
