"""The tolerance policy, the reference-noise rule and its ceiling."""
import numpy as np
import pytest

import parity
from conftest import PINNED_TOLERANCE, POLICY
from parity import tolerance


def test_tolerance_policy():
    assert tolerance.threshold() == POLICY == 1e-5
    assert tolerance.threshold(device="cuda") == 1e-4
    assert tolerance.threshold(device="cuda", tf32=True) == 1e-2
    assert tolerance.threshold("fp16") == 1e-2 and tolerance.threshold("bf16") == 5e-2
    err = tolerance.measure(np.array([[1.0, 2.1]]), np.array([[1.0, 2.0]]), classifier=True)
    assert err.max_abs == pytest.approx(0.1) and err.normalized == pytest.approx(0.05) and err.top1_agreement == 1.0
    assert tolerance.measure(np.array([np.nan]), np.array([1.0])).normalized == float("inf")


def test_noise_rule_and_its_ceiling():
    assert tolerance.NOISE_FACTOR == 3.0 and tolerance.NOISE_CEILING_FACTOR == 10.0
    assert tolerance.noise_ceiling(1e-5) == pytest.approx(1e-4)
    assert tolerance.effective(1e-5, 1e-6) == 1e-5  # quiet reference: the policy
    assert tolerance.effective(1e-5, 6.6e-5) == pytest.approx(1.98e-4)  # Inception v3's worst, measured
    assert tolerance.effective(1e-5, 1.0) == pytest.approx(3e-4)  # never above 3 x the ceiling
    assert tolerance.unusable_reference(1e-5, 1e-4) is None
    assert "reference unusable" in tolerance.unusable_reference(1e-5, 1.1e-4)
    assert tolerance.unusable_reference(1e-2, 5e-2) is None  # scales with the policy (TF32, fp16)


def test_pinned_tolerances_stay_within_the_ceiling():
    ceiling = tolerance.NOISE_FACTOR * tolerance.noise_ceiling(POLICY)
    assert all(POLICY <= pin <= ceiling for pin in PINNED_TOLERANCE.values())
    assert PINNED_TOLERANCE["googlenet"] <= 6e-5 and PINNED_TOLERANCE["inception_v3"] <= 2.5e-4


def test_reference_noise_is_torch_fp32_against_fp64():
    from parity.calibrate import calibrated_torch_model, seeded_input
    model = calibrated_torch_model("lenet")
    noise = tolerance.reference_noise(model, seeded_input((2, 1, 28, 28), 1))
    assert 0 < noise < 1e-6


def test_check_fails_saying_the_reference_is_unusable(monkeypatch):
    """A reference whose own fp32 rounding exceeds the ceiling judges nothing: the check
    fails with that reason instead of widening its tolerance."""
    monkeypatch.setattr(tolerance, "reference_noise", lambda *args, **kwargs: 2e-4)
    report = parity.check("lenet", frameworks=("tf",), onnx=False)
    assert not report.passed
    assert any("reference unusable" in note for note in report.notes), report.notes
    assert all(r.tolerance == pytest.approx(3e-4) for r in report.results)
