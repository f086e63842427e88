"""The QE closed form against numerical integration and Monte Carlo; the per-layer report."""

import math
import warnings

import keras
import numpy as np
import pytest
from scipy import integrate

import biper_keras as bk
from biper_keras import analysis


def _qe_by_quadrature(x):
    # b = 1, omega = x; the Laplace density is symmetric and so are sin^2 and |sin|.
    period = math.pi / x
    upper = 60.0  # e^-60: nothing left beyond
    pts = np.arange(period, upper, period)[:4000]
    kw = dict(limit=max(200, 2 * len(pts) + 50), points=pts if len(pts) else None, epsabs=1e-13, epsrel=1e-11)
    s2 = integrate.quad(lambda w: np.sin(x * w) ** 2 * np.exp(-w), 0, upper, **kw)[0]
    s1 = integrate.quad(lambda w: abs(np.sin(x * w)) * np.exp(-w), 0, upper, **kw)[0]
    return s2 - s1**2


@pytest.mark.parametrize("x", [0.01, 0.1, 0.5, 0.954882, 2.0, 7.5, 30.0])
def test_closed_form_equals_numerical_integration(x):
    assert analysis.laplace_qe(1.0, x) == pytest.approx(_qe_by_quadrature(x), abs=1e-9)


@pytest.mark.parametrize("x", [1e-3, 0.05, 0.3, 1.0, 3.0, 20.0, 1e3, 1e5])
def test_closed_form_equals_monte_carlo(x):
    rng = np.random.default_rng(int(x * 1000) % 2**31)
    b = 0.05
    w = rng.laplace(0.0, b, size=2_000_000)
    s = np.sin((x / b) * w)
    mc = np.mean(s * s) - np.mean(np.abs(s)) ** 2
    # Standard error of the estimate is below 0.5/sqrt(n) ~ 3.5e-4; at tiny x QE ~ x^2.
    assert analysis.laplace_qe(b, x / b) == pytest.approx(mc, rel=0.02, abs=1e-3)


def test_maximum_and_limits():
    x_star, qe_star = analysis.laplace_qe_max()
    assert x_star == pytest.approx(0.954882, abs=2e-6)
    assert qe_star == pytest.approx(0.102835, abs=1e-6)
    assert analysis.QE_LIMIT_INFINITY == pytest.approx(0.5 - 4 / math.pi**2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or 0/0 warnings either
        tiny = analysis.laplace_qe(1.0, np.array([1e-300, 1e-12, 1e-4]))
        huge = analysis.laplace_qe(1.0, np.array([1e6, 1e12, 1e300]))
    assert tiny[0] == 0.0 and tiny[1] == pytest.approx(1e-24, rel=1e-6)
    assert tiny[2] == pytest.approx(1e-8, rel=1e-3)  # QE ~ x^2 near 0
    np.testing.assert_allclose(huge, analysis.QE_LIMIT_INFINITY, atol=1e-9)


def test_broadcasting():
    b = np.array([0.01, 0.05, 0.1])[:, None]
    omega = np.array([1.0, 5.0, 20.0, 50.0])[None, :]
    qe = analysis.laplace_qe(b, omega)
    assert qe.shape == (3, 4)
    assert qe[1, 2] == analysis.laplace_qe(0.05, 20.0) == analysis.laplace_qe(1.0, 1.0)


def test_laplace_fit_recovers_scale_and_reports_goodness():
    rng = np.random.default_rng(1)
    w = rng.laplace(0.0, 0.03, size=50_000)
    b, ks = analysis.fit_laplace(w)
    assert b == pytest.approx(0.03, rel=0.02)
    assert ks < 0.01
    _, ks_gauss = analysis.fit_laplace(rng.normal(0.0, 0.03, size=50_000))
    assert ks_gauss > 3 * ks  # a Gaussian is visibly not Laplace


def _model_with_laplace_kernels(rng, b=0.02):
    model = keras.Sequential([
        keras.Input((8, 8, 16)),
        bk.QuantConv2D(64, 3, kernel_quantizer=bk.BiPer(omega=40.0), input_quantizer="ste_sign", name="biper_conv"),
        bk.QuantConv2D(64, 3, kernel_quantizer="ste_sign", input_quantizer="ste_sign", name="ste_conv"),
        keras.layers.Conv2D(8, 1, name="float_conv"),
        keras.layers.Flatten(),
        bk.QuantDense(10, kernel_quantizer=bk.BiPer(omega=10.0), name="biper_dense"),
    ])
    for layer in model.layers:
        if hasattr(layer, "_kernel"):
            layer._kernel.assign(rng.laplace(0.0, b, size=layer._kernel.shape))
    return model


def test_report_names_every_biper_layer_and_matches_analytic_qe():
    rng = np.random.default_rng(2)
    model = _model_with_laplace_kernels(rng)
    snapshot = analysis.binary_snapshot(model)
    rows = analysis.qe_report(model)
    assert [r["layer"] for r in rows] == ["biper_conv", "biper_dense"]
    conv = rows[0]
    assert conv["omega"] == 40.0 and conv["b"] == pytest.approx(0.02, rel=0.03)
    assert conv["b_omega"] == pytest.approx(conv["b"] * 40.0)
    # 36,864 weights: the empirical QE's sampling error is ~0.003.
    assert conv["empirical_qe"] == pytest.approx(conv["analytic_qe"], abs=0.01)
    assert conv["flip_fraction"] is None

    layer = model.get_layer("biper_conv")
    w = np.array(layer._kernel)
    w.ravel()[:1000] += math.pi / 40.0  # half a period: these binary weights flip
    layer._kernel.assign(w)
    rows = analysis.qe_report(model, reference=snapshot)
    assert rows[0]["flip_fraction"] == pytest.approx(1000 / w.size)
    assert rows[1]["flip_fraction"] == 0.0


def test_suggest_omega():
    assert analysis.suggest_omega(b=0.05, x=1.0) == pytest.approx(20.0)
    omega = analysis.suggest_omega(b=0.05, qe=0.05)
    assert analysis.laplace_qe(0.05, omega) == pytest.approx(0.05, abs=1e-10)
    assert 0.05 * omega < analysis.laplace_qe_max()[0]
    w = np.random.default_rng(0).laplace(0, 0.1, 10_000)
    assert analysis.suggest_omega(w, x=2.0) == pytest.approx(2.0 / np.mean(np.abs(w)))


@pytest.mark.parametrize("b,omega", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, -3.0), (float("nan"), 1.0), (1.0, float("inf"))])
def test_bad_scale_or_frequency(b, omega):
    with pytest.raises(ValueError, match="must be finite and > 0"):
        analysis.laplace_qe(b, omega)


@pytest.mark.parametrize("weights,match", [([], "empty"), ([0.1, float("nan")], "NaN"), ([1.0, float("inf")], "infinite"), ([0.0, 0.0], "all zeros")])
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        analysis.fit_laplace(weights)


def test_bad_targets():
    with pytest.raises(ValueError, match=r"`qe` must be in \(0, 0.1028"):
        analysis.suggest_omega(b=0.1, qe=0.2)
    with pytest.raises(ValueError, match="exactly one target"):
        analysis.suggest_omega(b=0.1)
    with pytest.raises(ValueError, match="exactly one of `weights` and `b`"):
        analysis.suggest_omega(x=1.0)


def test_qe_monitor_logs_every_biper_layer_each_epoch(tmp_path):
    rng = np.random.default_rng(3)
    model = _model_with_laplace_kernels(rng)
    model.compile(keras.optimizers.SGD(0.5), "mse")
    monitor = analysis.QEMonitor()
    csv = tmp_path / "log.csv"
    x = rng.normal(size=(16, 8, 8, 16)).astype("float32")
    y = rng.normal(size=(16, 10)).astype("float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor, keras.callbacks.CSVLogger(str(csv))])
    assert [h["epoch"] for h in monitor.history] == [0, 1]
    last = {r["layer"]: r for r in monitor.history[-1]["layers"]}
    assert set(last) == {"biper_conv", "biper_dense"}
    fresh = {r["layer"]: r for r in analysis.qe_report(model)}
    for name in last:  # the epoch-end report is the report of the final weights
        assert last[name]["b"] == pytest.approx(fresh[name]["b"], rel=1e-6)
        assert last[name]["empirical_qe"] == pytest.approx(fresh[name]["empirical_qe"], rel=1e-6)
    header, *rows = csv.read_text().splitlines()
    columns = header.split(",")
    for name in ("qe/biper_conv", "b/biper_conv", "flips/biper_dense"):
        assert name in columns
    final = dict(zip(columns, rows[-1].split(",")))
    assert float(final["qe/biper_conv"]) == pytest.approx(analysis.qe_report(model)[0]["empirical_qe"], rel=1e-6)
    assert 0.0 < float(final["flips/biper_conv"]) < 1.0  # lr 0.5 moved some weights across a zero


@pytest.mark.parametrize("omegas", [[], [0.0], [5.0, -1.0], [float("nan")], [float("inf")]])
def test_omega_sweep_refuses_bad_omegas_before_training(tmp_path, omegas):
    with pytest.raises(ValueError, match="omegas"):
        analysis.omega_sweep(None, None, tmp_path / "sweep", omegas)
    assert not (tmp_path / "sweep").exists()


def test_omega_sweep_table_has_a_row_per_omega():
    rows = [{"omega": w, "test_accuracy": 0.5, "b": 0.05, "b_omega": 0.05 * w, "qe": 0.01, "qe_analytic": 0.01}
            for w in (5.0, 40.0)]
    lines = analysis.OmegaSweep(rows).table().splitlines()
    assert lines[0].split()[:2] == ["omega", "test"] and set(lines[1]) == {"─"}
    assert len(lines) == 4 and lines[2].split()[:2] == ["5", "0.5000"] and lines[3].split()[3] == "2.0000"
