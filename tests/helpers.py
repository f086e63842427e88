"""Test helpers shared by the in-process tests and the per-backend suite."""

import keras


def randomize_batch_norms(model, rng):
    """Random BN statistics. With the defaults (gamma 1, beta 0, mean 0, var 1) a binary
    conv's integer-valued output gives exact zeros at the next binarizer, whose sign then
    depends on float rounding, so Keras and LCE may legitimately disagree."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
