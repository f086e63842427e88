"""Quantizer cases shared by the Larq reference process and the Keras 3 side of
tests/test_larq_parity.py: the same class names and arguments on both sides."""

import numpy as np

CASES = [
    ("SteSign", {}),
    ("SteSign", {"clip_value": None}),
    ("SteSign", {"clip_value": 0.5}),
    ("ApproxSign", {}),
    ("SwishSign", {}),
    ("SwishSign", {"beta": 10.0}),
    ("MagnitudeAwareSign", {}),
    ("MagnitudeAwareSign", {"clip_value": None}),
    ("SteHeaviside", {}),
    ("SteHeaviside", {"clip_value": None}),
    ("SteTern", {}),
    ("SteTern", {"threshold_value": 0.3}),
    ("SteTern", {"ternary_weight_networks": True}),
    ("SteTern", {"clip_value": None}),
    *[("DoReFa", {"k_bit": k, "mode": m}) for k in (1, 2, 4, 8) for m in ("activations", "weights")],
    ("NoOp", {"precision": 1}),
]

# Larq's aliases (and class names) that `get` must resolve to the same quantizer.
ALIASES = ["ste_sign", "approx_sign", "swish_sign", "magnitude_aware_sign", "ste_heaviside",
           "ste_tern", "dorefa_quantizer", "SteSign", "DoReFa"]

# Arguments every Keras layer config has; the rest must agree with Larq's config.
LAYER_KEYS = {"name", "trainable", "dtype", "metrics"}


def key(i):
    return f"case{i}"


def inputs():
    """A conv-kernel-shaped tensor with the values where the estimators change: exact
    zeros, the clip bounds +-1 and +-0.5, the ternary thresholds +-0.05 and +-0.3."""
    rng = np.random.default_rng(21)
    x = rng.normal(0.0, 0.8, size=(3, 3, 4, 8)).astype("float32")
    special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.05, -0.05, 0.3, -0.3, 2.0, -2.0]
    x.reshape(-1)[: len(special)] = special
    upstream = rng.normal(size=x.shape).astype("float32")
    return x, upstream


def mismatches(reference, value_and_vjp, quantizers):
    """Every case whose forward or gradient (for the same upstream gradient) differs
    from Larq's in `reference` (a dict of arrays), as readable lines; [] when all agree."""
    x, upstream = inputs()
    found = []
    for i, (cls, kwargs) in enumerate(CASES):
        quantizer = getattr(quantizers, cls)(**kwargs)
        y, g = value_and_vjp(quantizer, x, upstream)
        for what, ours, theirs, tol in (("forward", y, reference[key(i) + "_y"], 1e-6),
                                        ("gradient", g, reference[key(i) + "_g"], 1e-5)):
            if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=tol, atol=tol):
                bad = np.flatnonzero(~np.isclose(ours, theirs, rtol=tol, atol=tol))[:3]
                found.append(f"{cls}({kwargs}) {what}: at x={x.reshape(-1)[bad]} ours "
                             f"{ours.reshape(-1)[bad]}, Larq {theirs.reshape(-1)[bad]}")
        if quantizer.precision != int(reference[key(i) + "_precision"]):
            found.append(f"{cls}({kwargs}) precision {quantizer.precision}")
    return found
