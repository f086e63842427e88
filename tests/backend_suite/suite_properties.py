"""Property-based tests (hypothesis) of every quantizer on the active backend: for
arbitrary finite inputs and valid parameters, binarizers give exactly -1 or +1, the
gradient is finite and equals the NumPy reference formula, and serialization round
trips. Each backend agreeing with the same NumPy reference is how TF, JAX and torch
are shown to agree with each other (tests/test_backends.py runs this per backend).

Inputs are float32 with |x| <= 1e6 (weights and activations are far smaller; beyond
~1e36 omega*w overflows to inf and sin(inf) is NaN by definition). Examples are
derandomized, so every backend and every CI run sees the same ones.

Found by these tests: TensorFlow and JAX CPU kernels flush subnormal floats
(|x| < 1.18e-38) to zero, so a tiny negative input binarizes to +1 there and to -1 on
torch. Signs are therefore compared on normal floats; subnormals must still give +-1.
"""

import numpy as np
from autodiff import value_and_vjp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from biper_keras import quantizers

N = 64  # one shape: JAX and torch then compile/trace once per quantizer
LIMIT = 1e6
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def finite(limit=LIMIT):
    element = st.floats(-limit, limit, allow_nan=False, allow_infinity=False, width=32)
    # Mix in the points where quantizers change behaviour.
    special = st.sampled_from([float(np.float32(v)) for v in (0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 0.5, -0.5)])
    return arrays(np.float32, N, elements=st.one_of(element, special))


def upstream():
    # Normal floats (or 0): the CPU kernels of TF and JAX flush subnormal products to 0.
    magnitude = st.floats(float(np.float32(1e-6)), 10, width=32)
    return arrays(np.float32, N, elements=st.one_of(st.just(0.0), magnitude, magnitude.map(lambda v: -v)))


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def assert_sign(y, x):
    """y = sign(x) with sign(0) = +1 wherever x is a normal float; +-1 everywhere."""
    assert_binary(y)
    normal = (x == 0) | (np.abs(x) >= np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(y[normal], sign(x[normal]))


def run(quantizer, x, up):
    y, g = value_and_vjp(quantizer, x, up)
    assert y.shape == x.shape and g.shape == x.shape
    assert np.all(np.isfinite(g)), "non-finite gradient"
    return y, g


def round_trips(quantizer, x):
    copy = quantizers.deserialize(quantizers.serialize(quantizer))
    assert type(copy) is type(quantizer) and copy.get_config() == quantizer.get_config()
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(quantizer(x)))


def assert_binary(y):
    assert set(np.unique(y)) <= {-1.0, 1.0}, np.unique(y)


@PROPERTY
@given(w=finite(), up=upstream(), omega=st.floats(0.1, 100.0))
def test_biper_square_wave(w, up, omega):
    q = quantizers.BiPer(omega=omega)
    y, g = run(q, w, up)
    assert_binary(y)
    # The backend multiplies in float32: the reference uses the same product.
    arg = (np.float32(omega) * w).astype("float64")
    clear = np.abs(np.sin(arg)) > 1e-3  # away from the sine's zeros the sign is unambiguous
    clear &= np.abs(arg) < 1e4  # where float32 sin/cos are accurate on every backend
    np.testing.assert_array_equal(y[clear], sign(np.sin(arg[clear])))
    np.testing.assert_allclose(g[clear], (up * omega * np.cos(arg))[clear], rtol=1e-4, atol=1e-3 * omega)
    round_trips(q, w)


@PROPERTY
@given(w=finite(), up=upstream(), omega=st.floats(0.1, 100.0))
def test_biper_sine(w, up, omega):
    q = quantizers.BiPer(omega=omega, binarize=False)
    y, g = run(q, w, up)
    assert np.all(np.abs(y) <= 1.0)
    arg = (np.float32(omega) * w).astype("float64")
    ok = np.abs(arg) < 1e4
    np.testing.assert_allclose(y[ok], np.sin(arg[ok]), atol=1e-3)
    round_trips(q, w)


@PROPERTY
@given(x=finite(), up=upstream(), clip=st.one_of(st.none(), st.floats(0.01, 10.0)))
def test_ste_sign(x, up, clip):
    q = quantizers.SteSign(clip_value=clip)
    y, g = run(q, x, up)
    assert_sign(y, x)
    mask = np.ones_like(x) if clip is None else (np.abs(x) <= np.float32(clip))
    np.testing.assert_allclose(g, up * mask, rtol=1e-6)
    round_trips(q, x)


@PROPERTY
@given(x=finite(), up=upstream())
def test_approx_sign(x, up):
    q = quantizers.ApproxSign()
    y, g = run(q, x, up)
    assert_sign(y, x)
    np.testing.assert_allclose(g, up * np.maximum(0.0, 2 - 2 * np.abs(x.astype("float64"))), rtol=1e-5, atol=1e-5)
    round_trips(q, x)


@PROPERTY
@given(x=finite(), up=upstream(), name=st.sampled_from(["bc", "bnn"]))
def test_binary_connect_and_bnn(x, up, name):
    q = quantizers.get(name)
    y, g = run(q, x, up)
    assert_sign(y, x)
    expected = up if name == "bc" else up * (np.abs(x) <= 1)
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    round_trips(q, x)


def sign_swish(x, b):
    s = 1.0 / (1.0 + np.exp(-np.clip(b * x, -700, 700)))
    return 2 * s * (1 + b * x * (1 - s)) - 1


def sign_swish_prime(x, b):
    bx = np.clip(b * x, -700, 700)
    return b * (2 - bx * np.tanh(bx / 2)) / (1 + np.cosh(bx))


@PROPERTY
@given(x=finite(), up=upstream(), mu=st.floats(0.1, 50.0), member=st.sampled_from(["bnn_plus", "bnn_pp", "bnn_pp_hard"]))
def test_sign_swish_members(x, up, mu, member):
    q = {"bnn_plus": lambda: quantizers.BNNPlus(mu=mu), "bnn_pp": lambda: quantizers.BNNPlusPlus(mu=mu),
         "bnn_pp_hard": lambda: quantizers.BNNPlusPlus(mu=mu, hard=True)}[member]()
    y, g = run(q, x, up)
    x64 = x.astype("float64")
    if member == "bnn_pp":  # the smooth forward: finite, within SS's range (max 1.19968 at bx = 2.3994)
        assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.2)
        np.testing.assert_allclose(y, sign_swish(x64, np.float32(mu)), atol=2e-5)
    else:
        assert_sign(y, x)
    np.testing.assert_allclose(g, up * sign_swish_prime(x64, np.float32(mu)), rtol=1e-3, atol=1e-3 * mu)
    round_trips(q, x)
