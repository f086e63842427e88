"""Bop and CaseOptimizer (Larq's semantics): Bop flips exactly the weights its rule
says; CaseOptimizer routes binary kernels to Bop and the rest to Adam in model.fit on
every backend."""

import json

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras.optimizers import Bop, CaseOptimizer
from shared_processes import script, BACKEND_SCRIPTS, LARQ_SCRIPTS, script_output


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def test_bop_flips_exactly_where_the_moving_average_exceeds_the_threshold():
    rng = np.random.default_rng(0)
    w0 = _sign(rng.normal(size=(6, 5))).astype("float32")
    grads = [rng.normal(0, 0.1, size=w0.shape).astype("float32") for _ in range(4)]
    gamma, threshold = 0.5, 0.02
    variable = keras.Variable(w0)
    optimizer = Bop(threshold=threshold, gamma=gamma)
    w, m = w0.astype("float64"), np.zeros(w0.shape)
    for g in grads:
        m = m + gamma * (g - m)
        expected = np.where(w * m > threshold, -w, w)  # the rule, by hand
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        got = keras.ops.convert_to_numpy(variable)
        np.testing.assert_array_equal(got, expected)
        assert 0 < np.sum(got != w) < w.size  # some flips, not all
        w = expected


def test_bop_config_and_bad_arguments():
    config = Bop(threshold=1e-6, gamma=1e-3).get_config()
    assert (config["threshold"], config["gamma"]) == (1e-6, 1e-3)
    clone = Bop.from_config(config)
    assert (clone.threshold, clone.gamma) == (1e-6, 1e-3)
    for kwargs, name in [({"gamma": 0.0}, "gamma"), ({"gamma": 2.0}, "gamma"), ({"threshold": "x"}, "threshold")]:
        with pytest.raises(ValueError, match=name):
            Bop(**kwargs)


def test_case_optimizer_checks_its_arguments():
    with pytest.raises(TypeError, match="predicate"):
        CaseOptimizer((1, Bop()))
    with pytest.raises(TypeError, match="optimizer"):
        CaseOptimizer((Bop.is_binary_variable, "adam"))
    with pytest.raises(TypeError, match="default_optimizer"):
        CaseOptimizer((Bop.is_binary_variable, Bop()), default_optimizer="adam")
    v = keras.Variable(np.ones(3, "float32"))
    both = CaseOptimizer((lambda _: True, Bop()), (lambda _: True, keras.optimizers.SGD()))
    with pytest.raises(ValueError, match="more than one"):
        both.build([v])
    idle = CaseOptimizer((lambda _: False, Bop()), default_optimizer=keras.optimizers.SGD())
    with pytest.raises(ValueError, match="did not claim"):
        idle.build([v])


def test_binary_kernels_are_marked_for_bop():
    layer = bk.QuantDense(3, kernel_quantizer=bk.NoOp(precision=1))
    layer.build((None, 4))
    assert Bop.is_binary_variable(layer._kernel) and not Bop.is_binary_variable(layer.bias)
    conv = bk.layers.QuantSeparableConv2D(4, 3, depthwise_quantizer=bk.NoOp(precision=1))
    conv.build((None, 8, 8, 2))
    assert Bop.is_binary_variable(conv.depthwise_kernel) and not Bop.is_binary_variable(conv.pointwise_kernel)


FIT = script("optimizers_fit.py")


BACKEND_SCRIPTS["bop_fit"] = (FIT, ("tensorflow", "jax", "torch"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_bop_in_a_case_optimizer_learns_a_binary_teacher_in_fit(backend, backend_results):
    out = script_output(backend_results(backend), "bop_fit")
    assert f"FIT-OK {backend}" in out, out


LARQ_BOP = script("optimizers_larq_bop.py")


LARQ_SCRIPTS["larq_bop"] = LARQ_BOP


def test_bop_follows_larqs_bop_step_by_step(larq_results):
    out = script_output(larq_results[1], "larq_bop")
    larq = json.loads([l for l in out.splitlines() if l.startswith("LARQ ")][-1][5:])
    variable = keras.Variable(np.array(larq["w0"], "float32"))
    optimizer = Bop(threshold=0.01, gamma=0.3)
    for g, state in zip(larq["grads"], larq["states"]):
        optimizer.apply([keras.ops.convert_to_tensor(np.array(g, "float32"))], [variable])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), np.array(state, "float32"))
