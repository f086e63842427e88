"""Quantizer forward values and gradients against their formulas, on the active backend."""

import numpy as np
import pytest
from autodiff import value_and_vjp

from biper_keras import quantizers

RNG = np.random.default_rng(0)


def _inputs(n=4096, scale=0.3):
    x = RNG.laplace(0.0, scale, size=n).astype("float32")
    x[:4] = [0.0, -0.0, 1.0, -1.0]  # exact zeros and clip boundaries
    return x


def _upstream(n=4096):
    return RNG.normal(size=n).astype("float32")


@pytest.mark.parametrize("omega", [1.0, 5.0, 20.0, 50.0])
def test_biper_forward_and_gradient(omega):
    w, up = _inputs(), _upstream()
    y, g = value_and_vjp(quantizers.BiPer(omega=omega), w, up)
    s = np.sin(omega * w.astype("float64"))
    assert set(np.unique(y)) <= {-1.0, 1.0}
    # Away from the sine's zeros, the sign is unambiguous in float32.
    clear = np.abs(s) > 1e-4
    np.testing.assert_array_equal(y[clear], np.where(s[clear] > 0, 1.0, -1.0))
    assert y[0] == 1.0 and y[1] == 1.0  # sin(0) = 0 -> +1
    expected = up * omega * np.cos(omega * w.astype("float64"))
    np.testing.assert_allclose(g, expected, rtol=2e-5, atol=2e-5 * omega)


@pytest.mark.parametrize("omega", [1.0, 20.0])
def test_biper_stage1_is_the_sine_with_its_derivative(omega):
    w, up = _inputs(), _upstream()
    y, g = value_and_vjp(quantizers.BiPer(omega=omega, binarize=False), w, up)
    np.testing.assert_allclose(y, np.sin(omega * w.astype("float64")), atol=2e-6)
    np.testing.assert_allclose(
        g, up * omega * np.cos(omega * w.astype("float64")), rtol=2e-5, atol=2e-5 * omega
    )


@pytest.mark.parametrize("clip", [1.0, 0.5, None])
def test_ste_sign(clip):
    x, up = _inputs(scale=1.0), _upstream()
    y, g = value_and_vjp(quantizers.SteSign(clip_value=clip), x, up)
    np.testing.assert_array_equal(y, np.where(x >= 0, 1.0, -1.0))
    mask = np.ones_like(x) if clip is None else (np.abs(x) <= clip)
    np.testing.assert_allclose(g, up * mask, rtol=1e-6, atol=1e-7)


def test_approx_sign():
    x, up = _inputs(scale=1.0), _upstream()
    y, g = value_and_vjp(quantizers.ApproxSign(), x, up)
    np.testing.assert_array_equal(y, np.where(x >= 0, 1.0, -1.0))
    np.testing.assert_allclose(g, up * np.maximum(0.0, 2 - 2 * np.abs(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["biper", "ste_sign", "approx_sign"])
def test_gradients_finite_on_large_inputs(name):
    x = (RNG.normal(size=512) * 1e3).astype("float32")
    y, g = value_and_vjp(quantizers.get(name), x, _upstream(512))
    assert np.all(np.isfinite(g)) and set(np.unique(y)) <= {-1.0, 1.0}


def test_runs_on_the_requested_backend():
    import os

    import keras

    # Set by tests/test_backends.py; tests/conftest.py (which pins TensorFlow for the
    # in-process tests) must not be loaded for this suite.
    assert keras.backend.backend() == os.environ["BIPER_TEST_BACKEND"]
