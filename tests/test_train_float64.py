"""float64 train-check (issue 31, landing 2): every framework trains in float64 from the
torch reference's state and batches, judged against torch float64 with no noise allowance,
category by category in the order a step computes them (parity.train.check.Float64Check).

Bugs are planted in memory (conftest's `plant`), in keras_impl and tf_impl at once; measured
figures are in docs/training.md. Sizes are the smallest that keep every layer's maps above
1x1 where it matters: ResNet-50 at 32 px (layer4 1x1, BatchNorm over the batch), GoogLeNet
at 32 px, 3 steps (the later categories follow two more steps; faithful ports land 2.2e-8 there,
past FLOAT64_POLICY, and pass at 3x torch float64's own drift in channels_last, 1.5e-8)."""
import copy

import pytest

from parity.train.judge import FLOAT64_CATEGORIES, FLOAT64_POLICY, LATER, REORDER_CAP

from parity.train.check import Float64Check

STEP_1 = tuple(c for c in FLOAT64_CATEGORIES if c not in LATER)


@pytest.fixture(scope="module", params=[("resnet50", 2), ("googlenet", 3)], ids=["resnet50", "googlenet"])
def float64_sgd(request):
    """The torch float64 run, made once per model; each framework's run is judged against it."""
    model, steps = request.param
    return Float64Check(model, size=32, steps=steps)


def test_float64_train_check_passes_in_every_category(float64_sgd):
    result = float64_sgd.result(("keras", "tf"))
    assert result.dtype == "float64" and result.categories == FLOAT64_CATEGORIES
    for row in result.results:
        print(result.model, row.framework, "faithful", row.errors)  # the figures of docs/training.md (-s)
        assert row.error is None and row.passed, row
        assert set(row.errors) == set(FLOAT64_CATEGORIES)
        assert max(row.errors[c] for c in STEP_1) < FLOAT64_POLICY / 100, row.errors  # measured: 3.5e-12 at worst
        for c in LATER:  # the policy, or (GoogLeNet, 3 steps: final 2.2e-8) 3x the reference's reorder drift
            assert row.tolerances[c] == FLOAT64_POLICY or row.tolerances[c] == 3 * float64_sgd.drift[c], row


def test_the_reorder_control_changes_only_the_order_of_sums(float64_sgd):
    """torch float64 in channels_last against its NCHW run: a real difference (an allowance of 0
    would be a control that cannot move), as small as a faithful port's at step 1."""
    drift = float64_sgd.reorder_drift()
    print(float64_sgd.prepared.model, "reorder drift", drift)
    assert max(drift[c] for c in STEP_1) < FLOAT64_POLICY / 100, drift  # measured: 2.8e-12 at worst
    assert 0 < drift["final"] < REORDER_CAP / 10, drift  # measured: 7.6e-12 (ResNet-50), 1.5e-8 (GoogLeNet)


def plant_momentum_lost_between_steps(plant):
    """A loop that builds its optimizer anew every step, in both ports: step 1 is exact (torch's
    first buffer is g), every step after it moves without momentum."""
    from keras_impl.optimizers import TorchSGD as KerasTorchSGD
    from tf_impl.optimizers import TorchSGD
    plant(KerasTorchSGD, "update_step", "buffer * self.momentum + g * (1.0 - self.dampening)",
          "g * (1.0 - self.dampening)")
    plant(TorchSGD, "update", "updated = buffer * self.momentum + g\n", "updated = g\n")


def test_a_later_step_bug_fails_beyond_the_reorder_allowance(float64_sgd, plant):
    if float64_sgd.prepared.model != "googlenet":  # ResNet-50 (final 0.58) passes the policy unaided
        pytest.skip("the allowance is above the policy on GoogLeNet at 3 steps alone; one model keeps this cheap")
    plant_momentum_lost_between_steps(plant)
    for framework in ("keras", "tf"):
        row = float64_sgd.framework(framework)
        print(float64_sgd.prepared.model, framework, "momentum lost", row.errors)
        assert not row.passed and set(row.first_over) <= set(LATER) and "final" in row.first_over, row
        assert float64_sgd.drift is not None  # judged with the allowance, and still far over it
        assert row.tolerances["final"] <= REORDER_CAP
        assert row.errors["final"] > 1e4 * row.tolerances["final"], row.errors  # measured: 0.58, 1.0
        assert "momentum" in row.likely_cause
    chaotic = copy.copy(float64_sgd)  # a reference that drifts past the cap from its own reordering
    chaotic.drift = {**float64_sgd.drift, "final": REORDER_CAP}
    row = chaotic.framework("tf")
    assert not row.passed and row.tolerances["final"] == REORDER_CAP
    assert "--steps 1" in row.likely_cause and "momentum" in row.likely_cause, row.likely_cause


def plant_biased_running_variance(plant):
    """Keras' own rule in both ports: the biased batch variance into the running variance."""
    from keras_impl.layers import TorchBatchNormalization
    from tf_impl.layers import BatchNorm2d
    plant(TorchBatchNormalization, "call", "unbiased = variance * count / ops.maximum(count - 1.0, 1.0)",
          "unbiased = variance")
    plant(BatchNorm2d, "forward", "unbiased = var * count / tf.maximum(count - 1.0, 1.0)", "unbiased = var")


def test_a_biased_running_variance_fails_naming_a_batchnorm_buffer(float64_sgd, plant):
    plant_biased_running_variance(plant)
    for framework in ("keras", "tf"):
        row = float64_sgd.framework(framework)
        print(float64_sgd.prepared.model, framework, "biased variance", row.errors)
        assert not row.passed and row.first_divergence.endswith("running_var"), row
        assert set(row.first_over) == {"buffer", "final"}  # the first tensor over, per category
        assert row.first_over["buffer"] == row.first_divergence
        assert "biased batch variance" in row.likely_cause
        assert row.errors["buffer"] > 1e3 * row.tolerances["buffer"], row.errors  # far from the policy
        assert row.errors["grad"] < row.tolerances["grad"]  # the step itself is right


def test_adam_without_bias_correction_of_m_fails_the_update(plant):
    from keras_impl.optimizers import TorchAdam as KerasTorchAdam
    from tf_impl.optimizers import TorchAdam
    check = Float64Check("resnet18", optimizer="adam", size=32, steps=2)
    plant(KerasTorchAdam, "update_step", "step_size = lr / (1.0 - ops.power(self.beta_1, step))", "step_size = lr")
    plant(TorchAdam, "update", "step_size = lr / (1.0 - tf.pow(beta_1, step))", "step_size = lr")
    for framework in ("keras", "tf"):
        row = check.framework(framework)
        print("resnet18", framework, "adam without bias correction", row.errors)
        assert not row.passed and "bias correction" in row.likely_cause, row
        assert row.errors["update"] > 1e3 * row.tolerances["update"], row.errors
        assert row.errors["optimizer"] < row.tolerances["optimizer"]  # the moments themselves are right


def test_the_command_line_judges_in_float64_and_shows_float32_beside(tmp_path, capsys):
    import json

    from parity.cli import main
    out = tmp_path / "tc.json"
    assert main(["train-check", "lenet", "--json", str(out)]) == 0  # default on the CPU: both
    payload = json.loads(out.read_text())
    assert payload["dtype"] == "float64" and payload["passed"]  # the verdict
    assert payload["float32"]["dtype"] == "float32" and "weight" in payload["float32"]["results"][0]["errors"]
    printed = capsys.readouterr().out
    assert "float64 (the verdict)" in printed and "float32 (the rounding a port lives with)" in printed
    assert main(["train-check", "lenet", "--dtype", "float32", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dtype"] == "float32" and "float64" not in json.loads(out.read_text())
    assert main(["train-check", "lenet", "--dtype", "float64", "--device", "cuda"]) == 2  # float64 is CPU only
    capsys.readouterr()
    assert main(["train-check", "lenet", "--dtype", "float16"]) == 2
    assert capsys.readouterr().err == "error: --dtype must be both, float64 or float32; got 'float16'\n"
