"""`parity train MODEL --replicas N` (issue 14): the short training run, data-parallel on each
installed framework's engine, 1 and N replicas from the same start on the same global batches.
LeNet has no BatchNorm, so N replicas must follow the one-replica run to rounding."""
import json
import os
import tempfile
import time

import numpy as np
import pytest

from parity.frameworks import missing

INSTALLED = [f for f in ("torch", "keras", "tf") if missing(f) is None]
ON_JAX = missing("keras") is None and missing("jax") is None  # Keras on JAX, keras.distribution.DataParallel


@pytest.mark.skipif("torch" not in INSTALLED, reason="the run starts from torch's seeded weights")
def test_lenet_on_two_replicas_follows_one_replica(tmp_path, capsys):
    record = train_and_check(INSTALLED, tmp_path)
    printed = capsys.readouterr().out
    assert "scaling eff." in printed and "DistributedDataParallel" in printed
    rows = [line for line in printed.splitlines() if line.startswith("│")]
    assert len(rows) == 2 * len(INSTALLED) and not any("error" in row for row in rows), printed
    # every engine started from the same weights and saw the same batches
    first = [run["step_loss"][0] for run in record["runs"]]
    assert max(first) - min(first) < 1e-5


@pytest.mark.slow  # 19-26 s; Keras-on-JAX DataParallel is checked by default in tests/test_distributed.py
@pytest.mark.skipif(not ON_JAX, reason="needs keras and jax")
def test_lenet_on_two_replicas_of_keras_on_jax(tmp_path):
    train_and_check(["jax"], tmp_path)


def train_and_check(frameworks, tmp_path) -> dict:
    """`parity train lenet --replicas 2`: N replicas must follow 1 replica (LeNet has no BatchNorm)."""
    from parity.cli import main
    from parity.io import load_state
    out, summary = tmp_path / "run", tmp_path / "summary.json"
    # SGD: an update linear in the gradient (Adam moves near-zero gradients by lr*sign(g), so its
    # weights drift by 2e-4 between the two runs on rounding alone)
    assert main(["train", "lenet", "--replicas", "2", "--epochs", "1", "--limit", "256", "--batch", "32",
                 "--optimizer", "sgd", "--lr", "0.05", "--frameworks", ",".join(frameworks), "--out", str(out),
                 "--json", str(summary)]) == 0
    record = json.loads(summary.read_text())
    assert record == json.loads((out / "replicas.json").read_text())
    runs = {(r["framework"], r["replicas"]): r for r in record["runs"]}
    assert set(runs) == {(f, n) for f in frameworks for n in (1, 2)}
    for framework in frameworks:
        one, two = runs[framework, 1], runs[framework, 2]
        assert one["error"] is None and two["error"] is None, (one["error"], two["error"])
        assert len(two["step_loss"]) == len(one["step_loss"]) == 8  # 256 examples, global batch 32
        # the same training: per-step losses and final weights equal to rounding
        assert record["max_step_loss_gap"][framework] < 1e-5
        assert abs(two["test_acc"] - one["test_acc"]) <= 1 / 256 and abs(two["loss"] - one["loss"]) < 1e-5
        assert two["examples_per_s"] > 0
        efficiency = record["scaling_efficiency"][framework]
        assert efficiency == pytest.approx(two["examples_per_s"] / (2 * one["examples_per_s"]))
        a, b = load_state(one["checkpoint"]), load_state(two["checkpoint"])
        assert set(a) == set(b)
        assert max(float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-12)) for k in a) < 1e-4
    return record


def test_replicas_refuse_an_uneven_global_batch(tmp_path):
    from parity.cli import main
    assert main(["train", "lenet", "--replicas", "3", "--batch", "32", "--limit", "64",
                 "--frameworks", "torch", "--out", str(tmp_path)]) == 2


@pytest.mark.skipif(not os.path.isdir("/proc") or "tf" not in INSTALLED, reason="walks /proc; MirroredStrategy")
def test_ctrl_c_during_training_ends_the_mirrored_child():
    # The TF child runs in its own session (Ctrl-C in a terminal does not reach it): the parent
    # must end it. (DDP ranks end with their parent: torch sets their parent-death signal.)
    from test_distributed import _alive, descendants, interrupt, start_interruptible
    code = "from parity.cli import main; raise SystemExit(main(['train', 'lenet', '--replicas', '2', " \
           "'--epochs', '50', '--frameworks', 'tf', '--out', %r]))" % tempfile.mkdtemp()
    process, stderr = start_interruptible(code)
    children, deadline = {}, time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not children:
        time.sleep(0.2)
        children = {p: cmd for p, cmd in descendants(process.pid).items() if "child_main" in cmd}
    assert process.poll() is None and children, "the run ended before its child could be seen"
    assert interrupt(process, stderr) == 130
    time.sleep(1)
    assert {p: cmd for p, cmd in children.items() if _alive(p)} == {}
