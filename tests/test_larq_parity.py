"""Larq's quantizers are the specification: forward values and gradients of ours equal
Larq 0.14's on the same tensors, on every backend. Larq runs once, in the
session's TF_USE_LEGACY_KERAS=1 process (tests/shared_processes.py), which writes its
results to a file."""

import json

import numpy as np
import pytest

from biper_keras import quantizers
from backend_suite.autodiff import value_and_vjp
from larq_parity_cases import ALIASES, LAYER_KEYS, mismatches
from shared_processes import script, AFTER_LARQ_SCRIPTS, LARQ_SCRIPTS, script_output

LARQ_REFERENCE = script("larq_parity_larq_reference.py")

OTHER_BACKEND = script("larq_parity_other_backend.py")


LARQ_SCRIPTS["quantizer_reference"] = LARQ_REFERENCE
AFTER_LARQ_SCRIPTS["quantizer_parity"] = (OTHER_BACKEND, ("jax", "torch"))


@pytest.fixture
def larq_reference(larq_results):
    folder, results = larq_results
    script_output(results, "quantizer_reference")
    return folder


@pytest.mark.slow
def test_forward_and_gradient_equal_larq_on_tensorflow(larq_reference):
    reference = dict(np.load(larq_reference / "reference.npz"))
    assert mismatches(reference, value_and_vjp, quantizers) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_forward_and_gradient_equal_larq_on(backend, larq_reference, after_larq_results):
    out = script_output(after_larq_results(backend), "quantizer_parity")
    assert out.strip().splitlines()[-1] == "PARITY-OK", out


def test_aliases_defaults_and_precision_equal_larq(larq_reference):
    configs = json.loads((larq_reference / "configs.json").read_text())
    for alias in ALIASES:
        theirs_class, theirs_precision, theirs_config = configs[alias]
        ours = quantizers.get(alias)
        config = {k: v for k, v in ours.get_config().items() if k not in LAYER_KEYS}
        assert (type(ours).__name__, ours.precision, config) == (theirs_class, theirs_precision, theirs_config), alias
