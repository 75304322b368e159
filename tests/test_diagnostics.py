"""compare(), first divergent layer, likely causes, selftest by injected bugs."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity
from conftest import normalized_error, three
from parity.calibrate import seeded_input
from parity.inference.layerwise import compare, likely_cause


@pytest.fixture(scope="module")
def resnet18():
    return three("resnet18", input_size=(3, 48, 48))


@pytest.mark.parametrize("framework", ["keras", "tf"])
def test_correct_transfer_has_no_divergent_layer(resnet18, framework):
    models, _ = resnet18
    result = compare(models["torch"], models[framework], seeded_input((1, 3, 48, 48)), layerwise=True)
    assert result.passed and result.first_divergent_layer is None
    assert result.normalized_error < 1e-5 and result.headroom < 1
    assert [e.layer for e in result.layers][:3] == ["conv1", "bn1", "layer1.0.conv1"]
    assert max(e.normalized_error for e in result.layers) < 1e-5


def test_any_pair_of_frameworks_compares(resnet18):
    models, _ = resnet18
    result = compare(models["keras"], models["tf"], seeded_input((2, 3, 40, 40)))
    assert (result.reference, result.candidate) == ("keras", "tf") and result.passed


def test_corrupted_weight_is_named_with_its_cause(resnet18):
    models, state = resnet18
    bad = dict(state)
    bad["layer2.0.conv2.weight"] = np.ascontiguousarray(bad["layer2.0.conv2.weight"][:, :, ::-1, ::-1])
    candidate = parity.build("resnet18", framework="tf")
    parity.load_state_dict(candidate, bad)
    result = compare(models["torch"], candidate, seeded_input((1, 3, 48, 48)))
    assert not result.passed
    assert result.first_divergent_layer == "layer2.0.conv2" and result.likely_cause == "layout"
    assert result.layers[-1].layer == "layer2.0.conv2" and all(e.normalized_error < 1e-5 for e in result.layers[:-1])


def test_cause_classes_from_error_patterns():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 4, 8, 8))
    border = ref.copy()
    border[:, :, 0, :] += 1
    assert likely_cause(ref, border, "conv", 1e-5)[0] == "padding"
    swapped = ref[:, [1, 0, 2, 3]]
    assert likely_cause(ref, swapped, "conv", 1e-5)[0] == "weights"
    assert likely_cause(ref, ref * 1.001, "norm", 1e-5)[0] == "epsilon"
    assert likely_cause(ref, ref + 0.01, "norm", 1e-5)[0] == "weights"
    assert likely_cause(ref, -ref, "conv", 1e-5)[0] == "layout"


@pytest.mark.parametrize("framework", ["keras", "tf"])
def test_selftest_catches_every_applicable_bug_at_its_layer(framework):
    from parity.inference.selftest import MUTATIONS, selftest
    rows = selftest("resnet18", framework, size=48)
    assert [r.mutation for r in rows] == list(MUTATIONS)
    applicable = [r for r in rows if r.caught is not None]
    assert len(applicable) >= 7
    for r in applicable:
        assert r.caught and r.named_layer == r.expected_layer, r
    not_applicable = {r.mutation: r.note for r in rows if r.caught is None}
    assert set(not_applicable) == {"pool padding zero vs -inf", "permuted flatten"}
    assert "non-negative" in not_applicable["pool padding zero vs -inf"]  # the stem pool follows a ReLU


@pytest.mark.parametrize("framework", ["keras", "tf"])
def test_selftest_names_a_permuted_flatten_at_its_linear(framework):
    from parity.inference.selftest import selftest
    (row,) = selftest("lenet", framework, mutations=("permuted flatten",))
    assert row.expected_layer in parity.registry.get("lenet").flatten_linear
    assert row.caught and row.named_layer == row.expected_layer and row.likely_cause == "layout", row


def test_selftest_pool_padding_mutation_swaps_minus_inf_for_zero():
    """Every catalogue max-pool with padding follows a ReLU, where the mutation cannot show
    (selftest reports it n/a with that reason); on negative inputs it changes the pool."""
    import tensorflow as tf

    from parity.inference.selftest import _tf_swap_pool_padding
    from tf_impl.layers import max_pool2d
    x = tf.constant(-1.0 - np.random.default_rng(0).random((1, 7, 7, 2), dtype=np.float32))
    correct = max_pool2d(x, 3, 2, padding=1).numpy()
    with _tf_swap_pool_padding():
        mutated = max_pool2d(x, 3, 2, padding=1).numpy()
    zero_padded = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID").numpy()
    assert np.array_equal(mutated, zero_padded) and not np.array_equal(mutated, correct)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=9, max_value=70), batch=st.integers(min_value=1, max_value=3))
def test_frameworks_agree_at_any_input_size(resnet18, size, batch):
    models, _ = resnet18
    x = seeded_input((batch, 3, size, size), seed=size)
    ref = parity.run(models["torch"], x)[0]
    for framework in ("keras", "tf"):
        y = parity.run(models[framework], x)[0]
        assert y.shape == ref.shape == (batch, 1000)
        assert normalized_error(y, ref) < 1e-5, (framework, size, batch)


def test_selftest_json_is_written_after_every_model(tmp_path, monkeypatch):
    """The sweep's JSON holds each finished model even when a later one ends the process."""
    import json

    from parity.cli import main
    from parity.inference import commands
    real = commands.selftest

    def selftest(name, framework, **kwargs):
        if name == "nin":
            raise SystemExit(9)  # a sweep killed in its second model
        return real(name, framework, mutations=("permuted flatten",), **kwargs)
    monkeypatch.setattr(commands, "selftest", selftest)
    out = tmp_path / "selftest.json"
    with pytest.raises(SystemExit):
        main(["selftest", "lenet", "nin", "--frameworks", "tf", "--json", str(out)])
    written = json.loads(out.read_text())
    assert [(r["model"], r["mutation"]) for r in written["rows"]] == [("lenet", "permuted flatten")]
    assert written["detected"] == written["applicable"] == 1


def test_tf_layer_recording_watches_one_model_and_patches_no_class():
    """tf_adapter.recording sees one model's weighted layers through their watchers (issue 33:
    it used to patch the layer classes' __call__ for every model in the process)."""
    pytest.importorskip("tensorflow")
    import tf_impl
    from parity.adapters.tf_adapter import recording
    from tf_impl.layers import WeightedLayer, named_layers
    model, other = tf_impl.lenet(), tf_impl.lenet()
    x = np.zeros((1, 28, 28, 1), np.float32)
    calls = {cls: cls.__dict__.get("__call__") for cls in {WeightedLayer, *map(type, dict(named_layers(model)).values())}}
    inputs = {}
    with recording(model, inputs) as log:
        assert {cls: cls.__dict__.get("__call__") for cls in calls} == calls
        other(x)
        assert log == {} and inputs == {}
        model(x)
    assert list(log) == list(inputs) == [path for path, _ in named_layers(model)]
    model(x)  # the watchers are gone: nothing more is recorded
    assert len(log) == len(inputs) == len(list(named_layers(model)))
