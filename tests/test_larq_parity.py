"""Larq's quantizers are the specification: forward values and gradients of ours equal
Larq 0.14's on the same tensors, on every backend. Larq runs once, in the
session's TF_USE_LEGACY_KERAS=1 process (tests/shared_processes.py), which writes its
results to a file."""

import json
import textwrap

import numpy as np
import pytest

from biper_keras import quantizers
from backend_suite.autodiff import value_and_vjp
from larq_parity_cases import ALIASES, LAYER_KEYS, mismatches
from shared_processes import BACKEND_SCRIPTS, LARQ_SCRIPTS, script_output

LARQ_REFERENCE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import larq as lq
    from larq_parity_cases import ALIASES, CASES, LAYER_KEYS, inputs, key

    x, upstream = inputs()
    out = {}
    for i, (cls, kwargs) in enumerate(CASES):
        q = getattr(lq.quantizers, cls)(**kwargs)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = q(xt)
        out[key(i) + "_y"] = y.numpy()
        out[key(i) + "_g"] = tape.gradient(y, xt, output_gradients=tf.constant(upstream)).numpy()
        out[key(i) + "_precision"] = q.precision
    np.savez(sys.argv[1] + "/reference.npz", **out)
    configs = {}
    for alias in ALIASES:
        q = lq.quantizers.get(alias)
        configs[alias] = [type(q).__name__, q.precision,
                          {k: v for k, v in q.get_config().items() if k not in LAYER_KEYS}]
    json.dump(configs, open(sys.argv[1] + "/configs.json", "w"))
    """
)

OTHER_BACKEND = textwrap.dedent(
    """
    import sys
    import numpy as np
    from biper_keras import quantizers
    from backend_suite.autodiff import value_and_vjp
    from larq_parity_cases import mismatches

    found = mismatches(dict(np.load(sys.argv[1] + "/reference.npz")), value_and_vjp, quantizers)
    print("\\n".join(found) if found else "PARITY-OK")
    """
)


LARQ_SCRIPTS["quantizer_reference"] = LARQ_REFERENCE
BACKEND_SCRIPTS["quantizer_parity"] = (OTHER_BACKEND, ("jax", "torch"))


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
def test_forward_and_gradient_equal_larq_on(backend, larq_reference, backend_results):
    out = script_output(backend_results(backend), "quantizer_parity")
    assert out.strip().splitlines()[-1] == "PARITY-OK", out


def test_aliases_defaults_and_precision_equal_larq(larq_reference):
    configs = json.loads((larq_reference / "configs.json").read_text())
    for alias in ALIASES:
        theirs_class, theirs_precision, theirs_config = configs[alias]
        ours = quantizers.get(alias)
        config = {k: v for k, v in ours.get_config().items() if k not in LAYER_KEYS}
        assert (type(ours).__name__, ours.precision, config) == (theirs_class, theirs_precision, theirs_config), alias
