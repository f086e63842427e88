"""Models using QuantConv1D, QuantDepthwiseConv2D and QuantSeparableConv2D train and
round-trip `.keras` on every backend (one short process per backend), and the Larq
bridge carries them both ways with equal outputs."""


import pytest

from shared_processes import script, BACKEND_SCRIPTS, script_output

TRAIN = script("quant_layers_backends_train.py")


BACKEND_SCRIPTS["new_layers_train"] = (TRAIN, ("tensorflow", "jax", "torch"))


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_new_layers_train_and_round_trip_keras_files(backend, backend_results):
    out = script_output(backend_results(backend), "new_layers_train")
    assert f"TRAIN-OK {backend}" in out, out
    flips = [line.split()[2] for line in out.splitlines() if line.startswith("FLIPS")][0]
    if backend == "jax":  # JAX's stateless step drops updates made inside layers: warned
        assert "JAX's stateless train step" in out
    else:
        assert 0.0 < float(flips) < 1.0, out
