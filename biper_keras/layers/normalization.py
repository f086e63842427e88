"""`BatchNormalization` with TensorFlow's fused kernel in training."""

import keras

__all__ = ["BatchNormalization"]


@keras.saving.register_keras_serializable(package="biper_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, with one fused kernel in training on TensorFlow.

    Keras 3 computes training-mode batch norm on the TF backend from separate ops
    (moments, then the affine map), several times slower than TensorFlow's fused kernel
    that tf_keras (and so Larq) uses. On the TF backend, for 4-D channels-last float32
    inputs without mask, renorm or `synchronized=True`, this layer runs
    `FusedBatchNormV3` in training and updates the moving statistics exactly as Keras
    does (with the biased batch variance). Everything else (inference, other backends,
    other inputs, and `synchronized=True`, whose statistics Keras reduces across
    replicas) is Keras's own code, so weights, serialization and the inference graph
    that LCE folds are unchanged.

    Args:
        axis, momentum, epsilon, center, scale, ..., synchronized, **kwargs: as in
            `keras.layers.BatchNormalization` (the fused kernel needs
            `epsilon >= 1.001e-5`; a smaller one takes Keras's path).

    Input shape:
        Arbitrary. The fused path applies to 4-D `(batch_size, height, width,
        channels)` inputs normalized over the last axis.

    Output shape:
        Same shape as the input.

    Example:

    >>> layer = bk.BatchNormalization(momentum=0.9)
    >>> y = layer(np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32"), training=True)
    >>> tuple(y.shape)
    (8, 4, 4, 3)
    """

    def _can_fuse(self, inputs, training, mask):
        return (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized  # Keras's own path reduces the moments across replicas
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.dtype == "float32"
            and self.epsilon >= 1.001e-5  # the fused kernel's lower bound
        )

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), inputs.dtype)
        beta = self.beta if self.center else tf.zeros((channels,), inputs.dtype)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The fused kernel returns the Bessel-corrected batch variance; Keras keeps the
        # biased one in its moving average.
        n = tf.cast(tf.size(inputs) // channels, variance.dtype)
        variance = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return outputs
