"""ProxConnect++ members against their formulas, and mu annealing inside `fit`, on the
active backend."""

import keras
import numpy as np
import pytest
from autodiff import value_and_vjp

from biper_keras import quantizers
from biper_keras.layers import QuantDense
from biper_keras.training import MuSchedule

RNG = np.random.default_rng(7)


def ss(x, b):
    s = 1.0 / (1.0 + np.exp(-b * x))
    return 2 * s * (1 + b * x * (1 - s)) - 1


def ss_prime(x, b):
    return b * (2 - b * x * np.tanh(b * x / 2)) / (1 + np.cosh(b * x))


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


X = np.concatenate([[0.0, 1.0, -1.0], RNG.normal(scale=1.5, size=2045)]).astype("float32")
UP = RNG.normal(size=X.size).astype("float32")
X64 = X.astype("float64")

CASES = {
    "bc": (lambda: quantizers.get("bc"), sign(X64), np.ones_like(X64)),
    "bnn": (lambda: quantizers.get("bnn"), sign(X64), (np.abs(X64) <= 1).astype(float)),
    "bnn_plus": (lambda: quantizers.BNNPlus(mu=3.0), sign(X64), ss_prime(X64, 3.0)),
    "bnn_pp": (lambda: quantizers.BNNPlusPlus(mu=3.0), ss(X64, 3.0), ss_prime(X64, 3.0)),
    "bnn_pp_hard": (lambda: quantizers.BNNPlusPlus(mu=3.0, hard=True), sign(X64), ss_prime(X64, 3.0)),
    "biper": (lambda: quantizers.BiPer(omega=8.0), sign(np.sin(8 * X64)), 8 * np.cos(8 * X64)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_backward_match_the_formulas(name):
    make, forward, derivative = CASES[name]
    y, g = value_and_vjp(make(), X, UP)
    clear = np.abs(np.sin(8 * X64)) > 1e-4 if name == "biper" else slice(None)
    np.testing.assert_allclose(y[clear], forward[clear], atol=2e-6)
    np.testing.assert_allclose(g, UP * derivative, rtol=1e-4, atol=1e-5)


def test_bnn_pp_forward_approaches_sign_as_mu_grows():
    x = np.linspace(-2, 2, 4001).astype("float32")
    away = np.abs(x) > 0.05
    distances = []
    for mu in (1.0, 4.0, 16.0, 64.0, 256.0):
        y, _ = value_and_vjp(quantizers.BNNPlusPlus(mu=mu), x, np.ones_like(x))
        distances.append(np.max(np.abs(y[away] - sign(x[away]))))
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 1e-3


@pytest.mark.parametrize("schedule", ["linear", "exponential"])
def test_mu_schedule_reaches_the_compiled_training_step(schedule):
    # With a zero learning rate the weights stay put, so the loss of each epoch is a
    # function of that epoch's mu only: it shows mu changed inside the compiled step.
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(32, 6)).astype("float32")
    y = RNG.normal(size=(32, 1)).astype("float32")
    layer = QuantDense(1, use_bias=False, kernel_quantizer=quantizers.BNNPlusPlus(mu=1.0))
    model = keras.Sequential([keras.Input((6,)), layer])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = MuSchedule(1.0, 8.0, epochs=4, schedule=schedule)
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback])
    expected_mu = [1.0, 1 + 7 / 3, 1 + 14 / 3, 8.0] if schedule == "linear" else [1.0, 2.0, 4.0, 8.0]
    np.testing.assert_allclose(callback.values, expected_mu, rtol=1e-6)
    np.testing.assert_allclose(history.history["mu"], expected_mu, rtol=1e-6)
    w = np.array(layer._kernel, dtype="float64")
    expected_loss = [np.mean((x @ ss(w, mu) - y) ** 2) for mu in expected_mu]
    np.testing.assert_allclose(history.history["loss"], expected_loss, rtol=1e-4)
    assert float(np.array(layer.kernel_quantizer.mu)) == pytest.approx(8.0)
