"""Quantization error (QE) of BiPer: closed form, Laplace fit, per-layer report.

BiPer binarizes `sin(omega*w)` to `sign(sin(omega*w))`. Its quantization error is the
variance of the sine left after the best scalar scale of its sign,

    QE = min_a E[(sin(omega*w) - a*sign(sin(omega*w)))^2] = E[sin^2] - (E|sin|)^2,

and for Laplace(0, b) weights it depends on x = b*omega only (Vargas et al., 2024):

    QE(x) = 2x^2/(1 + 4x^2) - x^2 coth^2(pi/(2x)) / (1 + x^2)^2,

0 at x -> 0, largest (0.102835) at x ~ 0.954882, and 1/2 - 4/pi^2 as x -> inf.
The math is plain NumPy (float64), usable on any Keras backend and without a model.
"""

import dataclasses
import json
import math
import os
import pathlib

import keras
import numpy as np

__all__ = [
    "laplace_qe",
    "laplace_qe_max",
    "QE_LIMIT_INFINITY",
    "fit_laplace",
    "empirical_qe",
    "suggest_omega",
    "qe_report",
    "binary_snapshot",
    "plot_qe_curve",
    "QEMonitor",
    "OmegaSweep",
    "omega_sweep",
]

QE_LIMIT_INFINITY = 0.5 - 4.0 / math.pi**2


def _positive(name, value):
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"Argument `{name}` must be finite and > 0. Received: {name}={value!r}.")
    return arr


def _qe_of_x(x):
    # Written in 1/x so that neither tiny nor huge x overflows or divides 0 by 0:
    # 2x^2/(1+4x^2) = 2/(4 + x^-2) and x coth(pi/(2x))/(1+x^2) = coth(pi/(2x))/(x + 1/x).
    with np.errstate(over="ignore", divide="ignore"):
        inv = 1.0 / x
        first = 2.0 / (4.0 + inv * inv)
        coth = 1.0 / np.tanh(0.5 * math.pi * inv)
        second = (coth / (x + inv)) ** 2
    return first - second


def laplace_qe(b, omega):
    """Closed-form QE of BiPer for Laplace(0, b) weights at frequency omega.

    Broadcasts `b` and `omega` (both finite and > 0); returns a float for scalars.
    """
    qe = _qe_of_x(_positive("b", b) * _positive("omega", omega))
    return float(qe) if qe.ndim == 0 else qe


def laplace_qe_max():
    """(x*, QE*): where the Laplace QE peaks, located numerically (~(0.954882, 0.102835))."""
    from scipy.optimize import minimize_scalar

    # QE(x) rises then falls on [0.1, 10]: a bounded scalar search finds its peak.
    found = minimize_scalar(lambda x: -float(_qe_of_x(np.float64(x))), bounds=(0.1, 10.0), method="bounded",
                            options={"xatol": 1e-12})
    return float(found.x), -float(found.fun)


def _weights(w):
    arr = np.asarray(w, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("Argument `weights` is empty.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("Argument `weights` contains NaN or infinite values.")
    return arr


def fit_laplace(weights):
    """Maximum-likelihood Laplace(0, b) fit of a weight tensor.

    Returns `(b, ks)`: b = mean(|w|) (the MLE with the location fixed at 0, as the QE
    formula assumes) and the Kolmogorov-Smirnov distance between the weights'
    empirical CDF and the fitted Laplace CDF (0 = perfect fit; a sample of n draws
    from the fitted law typically gives about 0.9/sqrt(n)).
    """
    from scipy import stats

    w = _weights(weights)
    b = float(np.mean(np.abs(w)))
    if b == 0.0:
        raise ValueError("Argument `weights` is all zeros: no Laplace scale can be fitted.")
    return b, float(stats.kstest(w, stats.laplace(0.0, b).cdf).statistic)


def empirical_qe(weights, omega):
    """QE of an actual weight tensor: E[sin^2(omega w)] - (E|sin(omega w)|)^2."""
    s = np.sin(float(_positive("omega", omega)) * _weights(weights))
    return float(np.mean(s * s) - np.mean(np.abs(s)) ** 2)


def _x_for_qe(target):
    x_star, qe_star = laplace_qe_max()
    if not 0.0 < target < qe_star:
        raise ValueError(
            f"Argument `qe` must be in (0, {qe_star:.6f}) (the largest Laplace QE). "
            f"Received: qe={target!r}."
        )
    from scipy.optimize import brentq

    # QE rises on (0, x*): the root on that branch.
    return float(brentq(lambda x: float(_qe_of_x(np.float64(x))) - target, 1e-12, x_star, xtol=1e-15, rtol=1e-15))


def suggest_omega(weights=None, *, b=None, x=None, qe=None):
    """The frequency that puts a layer at a target `x = b*omega` or a target QE.

    Give the layer as `weights` (b is fitted) or its Laplace scale `b`, and exactly one
    target: `x` (b*omega) or `qe` (reached on the rising branch x < x*, where a lower
    omega means a lower QE). Returns omega.
    """
    if (weights is None) == (b is None):
        raise ValueError("Give exactly one of `weights` and `b`.")
    if (x is None) == (qe is None):
        raise ValueError("Give exactly one target: `x` (= b*omega) or `qe`.")
    scale = fit_laplace(weights)[0] if weights is not None else float(_positive("b", b))
    target_x = float(_positive("x", x)) if x is not None else _x_for_qe(qe)
    return target_x / scale


def _biper_layers(model):
    from biper_keras.layers import layer_quantizers, quantized_layers
    from biper_keras.quantizers import BiPer

    for layer in quantized_layers(model):
        if isinstance(layer_quantizers(layer).get("kernel_quantizer"), BiPer):
            yield layer


def qe_report(model, reference=None):
    """One row per BiPer-quantized layer of a Keras 3 model (and only those).

    Each row: layer, omega, b (Laplace fit of the latent kernel), b_omega, analytic_qe,
    empirical_qe, ks (goodness of the Laplace fit), and flip_fraction: the fraction of
    binary weights that differ from `reference` (a dict layer name -> earlier latent
    kernel, e.g. `binary_snapshot(model)` from the last epoch), or None.
    """
    rows = []
    for layer in _biper_layers(model):
        w = np.asarray(layer.latent_kernel, dtype=np.float64)
        omega = layer.kernel_quantizer.omega
        b, ks = fit_laplace(w)
        flips = None
        if reference is not None and layer.name in reference:
            before = np.sin(omega * np.asarray(reference[layer.name])) >= 0
            flips = float(np.mean(before != (np.sin(omega * w) >= 0)))
        rows.append(
            {
                "layer": layer.name,
                "omega": omega,
                "b": b,
                "b_omega": b * omega,
                "analytic_qe": laplace_qe(b, omega),
                "empirical_qe": empirical_qe(w, omega),
                "ks": ks,
                "flip_fraction": flips,
            }
        )
    return rows


def binary_snapshot(model):
    """The latent kernels of the BiPer layers, to pass later as `qe_report(reference=)`."""
    return {layer.name: np.array(layer.latent_kernel) for layer in _biper_layers(model)}


def plot_qe_curve(bs, path, omegas=None):
    """Draws QE against omega for each Laplace scale in `bs` (the paper's Figure 3) and
    marks the maximum; saves to `path` (PNG, SVG, PDF... by extension). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bs = [float(v) for v in np.atleast_1d(_positive("b", bs))]
    omegas = np.linspace(0.1, 100.0, 1000) if omegas is None else _positive("omega", omegas)
    from matplotlib.backend_bases import FigureCanvasBase

    _check_image_path(path, FigureCanvasBase.get_supported_filetypes())
    x_star, qe_star = laplace_qe_max()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for b in bs:
        ax.plot(omegas, laplace_qe(b, omegas), label=f"b = {b:g}")
        ax.plot([x_star / b], [qe_star], "k.", ms=5)
    ax.axhline(QE_LIMIT_INFINITY, color="gray", ls=":", lw=1, label="1/2 - 4/pi^2 (x -> inf)")
    ax.set_xlabel("omega_0")
    ax.set_ylabel("quantization error")
    ax.set_title(f"BiPer QE for Laplace(0, b) weights; max {qe_star:.6f} at b*omega = {x_star:.6f}",
                 fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _check_image_path(path, formats):
    """matplotlib writes `path + ".png"` when `path` has no known extension (a folder
    `plots` becomes a file `plots.png` beside it): refuse what would not be written as
    named."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not text:
        raise ValueError(f"Argument `path` must name an image file to write. Received: path={path!r}.")
    if os.path.isdir(text):
        raise ValueError(f"Argument `path` is a folder: {text}. Name the image file to write, e.g. "
                         f"{os.path.join(text, 'qe_curve.png')}.")
    suffix = os.path.splitext(text)[1].lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(f"Argument `path` must end with an image format matplotlib writes "
                         f"({', '.join('.' + f for f in sorted(formats))}). Received: path={text!r}.")


class QEMonitor(keras.callbacks.Callback):
    """Adds the per-layer QE report to the epoch logs: `qe/<layer>`, `b/<layer>` and
    `flips/<layer>` (fraction of binary weights flipped during the epoch), so that
    `CSVLogger` and `TensorBoard` placed *after* it in the callback list record them.
    `history` keeps every epoch's full report."""

    def __init__(self):
        super().__init__()
        self.history = []
        self._reference = None

    def on_epoch_begin(self, epoch, logs=None):
        self._reference = binary_snapshot(self.model)

    def on_epoch_end(self, epoch, logs=None):
        rows = qe_report(self.model, reference=self._reference)
        self.history.append({"epoch": epoch, "layers": rows})
        if logs is not None:
            for row in rows:
                logs[f"qe/{row['layer']}"] = row["empirical_qe"]
                logs[f"b/{row['layer']}"] = row["b"]
                logs[f"flips/{row['layer']}"] = row["flip_fraction"]


@dataclasses.dataclass
class OmegaSweep:
    """What `omega_sweep` returns: one row per omega_0 (test accuracy of the deployed stage,
    mean Laplace scale b, mean b*omega_0, mean measured and closed-form QE over the layers)."""

    rows: list

    def to_dict(self):
        return {"rows": self.rows}

    def table(self):
        from biper_keras._tables import render

        return render(("omega", "test acc", "mean b", "b*omega", "mean QE"),
                      [(f"{r['omega']:g}", f"{r['test_accuracy']:.4f}", f"{r['b']:.5f}", f"{r['b_omega']:.4f}",
                        f"{r['qe']:.5f}") for r in self.rows], right=range(5))


def omega_sweep(recipe, data, out_dir, omegas, *, verbose=2, callbacks=()):
    """The omega_0 ablation (the paper's Figure 4): `training.train(recipe)` once per omega
    in `omegas`, each run in `out_dir/omega_<omega>`, then the QE report of its deployed
    model. A stopped sweep continues where it stopped (a run folder that has content is
    resumed); `out_dir/sweep.json` is rewritten, atomically, after every omega. `callbacks`
    go to every `train`.
    """
    # Imported here: the QE math above needs no training code (and no TensorFlow).
    from biper_keras._files import atomic_write
    from biper_keras.training import train

    omegas = [float(v) for v in np.atleast_1d(omegas)]
    if not omegas or not all(math.isfinite(v) and v > 0 for v in omegas):
        raise ValueError(f"Argument `omegas` must be finite numbers > 0. Received: {omegas!r}.")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for omega in omegas:
        folder = out / f"omega_{omega:g}"
        resume = folder.exists() and any(folder.iterdir())
        summary = train(dataclasses.replace(recipe, omega=omega), data, folder, resume=resume,
                        verbose=verbose, callbacks=callbacks)
        final = "stage2" if "stage2" in summary else "stage1"
        report = qe_report(keras.models.load_model(folder / final / "model.keras"))
        rows.append({"omega": omega, "test_accuracy": summary[final]["test_accuracy"],
                     "b": float(np.mean([r["b"] for r in report])),
                     "b_omega": float(np.mean([r["b_omega"] for r in report])),
                     "qe": float(np.mean([r["empirical_qe"] for r in report])),
                     "qe_analytic": float(np.mean([r["analytic_qe"] for r in report]))})
        atomic_write(out / "sweep.json", lambda p: pathlib.Path(p).write_text(json.dumps(rows, indent=2)))
    return OmegaSweep(rows)
