"""Regularizers for BiPer weights."""

import keras
from keras import ops

from biper_keras.quantizers import check_positive_number

__all__ = ["SinSquared"]


@keras.saving.register_keras_serializable(package="biper_keras")
class SinSquared(keras.regularizers.Regularizer):
    r"""BiPer's CIFAR regularizer: `tau * mean(sin(omega * w)**2)`.

    The quantization error of BiPer, QE = E[sin^2] - (E|sin|)^2, is bounded above by
    E[sin^2], the term this penalizes; the authors add it per layer to the loss on
    CIFAR-10.
    The paper uses tau = 0.037 in stage 1 and 0.0468 in stage 2 on CIFAR-10.

    Args:
        tau: weight of the term, a finite number > 0.
        omega: the frequency of the layer's BiPer quantizer.
    """

    def __init__(self, tau=0.037, omega=20.0):
        self.tau = check_positive_number("tau", tau)
        self.omega = check_positive_number("omega", omega)

    def __call__(self, x):
        return self.tau * ops.mean(ops.square(ops.sin(self.omega * x)))

    def get_config(self):
        return {"tau": self.tau, "omega": self.omega}
